"""Every timed shape of a backend is checked against eager PyTorch in fp32 before it is timed.

A fast backend that computes something else is not a deployment: the figures are stored with every
timing of that batch size, and a shape beyond the tolerance of its precision is flagged in every
table and never chosen as "best". Backends that build one artefact per shape (OpenVINO's static
models, inductor's graphs, TensorRT's engines) are checked at every batch size they are timed at.

The check input (`check_images`) is a set of structured images: gradients, rectangles and discs,
drawn with numpy from a fixed seed and normalised like ImageNet, so that the logits differ from image
to image (a wrong row or a mixed-up batch moves them by 10-30% relative L2). A batch of B images
cycles through the set (`tile_check`): image i of the batch is image i mod N, and its reference row is
eager's row i mod N. The criterion is the relative L2 error of the whole logit tensor, which near-tied
classes do not disturb (top-1 agreement is stored, never a criterion). Why the zoo's random weights
are not re-calibrated on such images: docs/BACKENDS.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

# Per executed precision: the largest relative L2 error ||out - ref|| / ||ref|| of the whole logit
# tensor, and the largest max-abs error relative to the reference's largest logit. Justified in
# docs/BACKENDS.md: fp32 backends reorder sums (~1e-6..1e-5 measured); fp16 keeps 11 significant bits
# (~0.1-0.5% measured through a whole network), bf16 8 (~0.5-2%); 5% relative L2 is rejected at every
# precision. int8 (quantized, docs/BACKENDS.md "Quantized int8"): 2-8% relative L2 measured through ResNet-18/50,
# SqueezeNet, MobileNetV2 with OpenVINO/NNCF and ONNX Runtime QDQ, one layer's scale doubled 54-85%.
TOLERANCES = {"fp32": (1e-3, 2e-3), "fp16": (1e-2, 3e-2), "bf16": (3e-2, 8e-2), "int8": (0.15, 0.25)}
# Per image (row): the largest relative L2 error of one image's logits, for precisions whose whole-tensor
# tolerance is too wide to see a mixed-up batch: int8 rows err by up to 14% (measured), two swapped rows by
# 29-52%, so a batch whose rows were mixed up is rejected although the whole tensor moved by only 11-18%.
ROW_TOLERANCES = {"int8": 0.25}
CHECK_IMAGES = 8
CHECK_SEED = 20180101
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class OutputCheck:
    max_abs_error: float
    relative_max_error: float  # max |out - ref| / max |ref|
    relative_l2_error: float  # ||out - ref|| / ||ref|| over the whole logit tensor
    cosine_similarity: float  # of the flattened logits
    top1_agreement: float  # fraction of the images whose top-1 class is the reference's
    top5_agreement: float  # mean overlap of the top-5 sets
    precision: str
    max_relative_l2_error: float  # the tolerances of `precision`
    max_relative_error: float
    batch_size: int
    passed: bool
    max_row_relative_l2_error: float = 0.0  # the largest ||out_i - ref_i|| / ||ref_i|| over the images i
    row_tolerance: float | None = None  # its bound, for precisions that have one (ROW_TOLERANCES)

    def to_dict(self) -> dict:
        return asdict(self)


def check_images(input_size: int, count: int = CHECK_IMAGES, seed: int = CHECK_SEED) -> torch.Tensor:
    """`count` structured RGB images (N, 3, S, S), normalised with ImageNet's mean and std: each a colour
    gradient in a random direction with a few random rectangles and discs over it. Seeded: the same in
    every process."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:input_size, 0:input_size].astype(np.float32) / max(input_size - 1, 1)
    images = np.empty((count, input_size, input_size, 3), dtype=np.float32)
    for n in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        low, high = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        image = low + ramp[..., None] * (high - low)
        for _ in range(rng.integers(2, 6)):
            colour = rng.uniform(0, 1, 3)
            if rng.random() < 0.5:
                x0, y0 = rng.uniform(0, 0.8, 2)
                w, h = rng.uniform(0.1, 0.5, 2)
                mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
            else:
                cx, cy, r = *rng.uniform(0.1, 0.9, 2), rng.uniform(0.05, 0.3)
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            image[mask] = colour
        images[n] = image
    images = (images - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def tile_check(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Rows 0..batch_size-1 of the check set repeated: row i is row i mod len(tensor)."""
    index = torch.arange(batch_size) % tensor.shape[0]
    return tensor[index].contiguous()


def check_input(input_size: int, device: torch.device | str = "cpu", batch_size: int = CHECK_IMAGES) -> torch.Tensor:
    """The input a backend is checked on at `batch_size`: the structured check set, cycled, on `device`."""
    return tile_check(check_images(input_size), batch_size).to(device)


def compare(output: torch.Tensor, reference: torch.Tensor, precision: str) -> OutputCheck:
    output, reference = output.detach().double().cpu(), reference.detach().double().cpu()
    if output.shape != reference.shape:
        raise ValueError(f"the backend's output has shape {tuple(output.shape)}, eager's {tuple(reference.shape)}")
    difference = (output - reference).abs()
    max_abs = float(difference.max()) if difference.numel() else 0.0
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    relative = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    norm = float(reference.norm())
    l2 = float(difference.norm())
    relative_l2 = l2 / norm if norm > 0 else (0.0 if l2 == 0 else float("inf"))
    cosine = float(torch.nn.functional.cosine_similarity(output.flatten(), reference.flatten(), dim=0, eps=1e-30))
    if not torch.isfinite(output).all():
        cosine, relative, relative_l2 = float("nan"), float("inf"), float("inf")
    top1 = float((output.argmax(-1) == reference.argmax(-1)).double().mean())
    k = min(5, reference.shape[-1])
    out_top, ref_top = output.topk(k, -1).indices, reference.topk(k, -1).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(out_top, ref_top)]
    rows = _row_relative_l2(output, reference)
    max_l2, max_relative = TOLERANCES[precision]
    row_bound = ROW_TOLERANCES.get(precision)
    passed = relative_l2 <= max_l2 and relative <= max_relative and (row_bound is None or rows <= row_bound)
    return OutputCheck(max_abs, relative, relative_l2, cosine, top1, sum(overlap) / len(overlap), precision, max_l2,
                       max_relative, int(output.shape[0]) if output.dim() else 1, passed, rows, row_bound)


def _row_relative_l2(output: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest relative L2 error of one row (one image's logits); inf where an output is not finite."""
    if output.dim() < 2 or not output.numel():
        return 0.0
    if not torch.isfinite(output).all():
        return float("inf")
    errors = (output - reference).flatten(1).norm(dim=1)
    norms = reference.flatten(1).norm(dim=1)
    ratios = torch.where(norms > 0, errors / norms.clamp_min(1e-300), torch.where(errors > 0, float("inf"), 0.0))
    return float(ratios.max())
