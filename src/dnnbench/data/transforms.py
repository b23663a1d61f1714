"""One eval transform for every model, built from a `dnnbench.zoo.Preprocessing`.

The steps and their floating-point operations are the ones torchvision's `ImageClassification`, timm's
`transforms_imagenet_eval` and pretrainedmodels' `TransformImage` perform, in the same order, so the
tensors are bit-identical to theirs (tests/test_transforms.py checks every seed model):

    PIL image -> resize shorter side (PIL, antialiased) -> centre crop -> uint8 CHW -> float / 255
    -> [BGR: swap R and B] -> [Caffe range: * 255] -> (x - mean) / std
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from ..zoo.spec import Preprocessing


@dataclass(frozen=True)
class ImageTransform:
    """Picklable (DataLoader workers get a copy), so a plain class rather than a closure."""

    preprocessing: Preprocessing

    def __call__(self, image: Image.Image) -> torch.Tensor:
        p = self.preprocessing
        image = F.resize(image, [p.resize_size], interpolation=InterpolationMode(p.interpolation), antialias=True)
        image = F.center_crop(image, [p.input_size])
        x = F.pil_to_tensor(image).to(torch.float32).div(255)  # what ToTensor / convert_image_dtype compute
        if p.color_order == "BGR":
            x = x[[2, 1, 0]]
        if p.value_range == 255.0:
            x = x.mul(255)  # pretrainedmodels' ToRange255 scales the [0, 1] tensor, it does not skip the division
        mean = torch.as_tensor(p.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.as_tensor(p.std, dtype=torch.float32).view(-1, 1, 1)
        return x.sub_(mean).div_(std)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (3, self.preprocessing.input_size, self.preprocessing.input_size)


def build_transform(preprocessing: Preprocessing) -> ImageTransform:
    return ImageTransform(preprocessing)


def load_rgb(path: str) -> Image.Image:
    """Decode as torchvision's and timm's dataset loaders do (grayscale and CMYK become RGB)."""
    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")
