"""Which preprocessing a model is evaluated with.

Two modes:

- `weights` (default): exactly what the weights' publisher feeds them, read from the library itself by
  the weights' source (`zoo/sources/`, `ModelSource.weights`): the torchvision weights enum's
  `transforms()`, timm's pretrained config through `timm.data.resolve_data_config`, pretrainedmodels'
  `pretrained_settings`.
- `paper`: the 2018 companion code's rule for every model: shorter side to floor(input / 0.875), bilinear,
  centre crop, with the spec's own mean/std/colour order/value range. Where that normalisation describes
  the 2018 weights but not the ones loaded today (the weights were replaced), the loaded weights' own
  normalisation is kept and the plan says so: feeding weights an input scale they never saw measures nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from ..zoo.sources import get_source
from ..zoo.spec import ModelSpec, Preprocessing

MODES = ("weights", "paper")
PAPER_CROP_FRACTION = 0.875  # pretrainedmodels' TransformImage(scale=0.875)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# For models without any library configuration (python: models): the usual ImageNet evaluation.
DEFAULT_PREPROCESSING = Preprocessing(input_size=224, resize_size=256, interpolation="bilinear",
                                      mean=IMAGENET_MEAN, std=IMAGENET_STD)
# torchvision's GoogLeNet and Inception-v3 weights are TensorFlow ports: torchvision builds them with
# transform_input=True, which turns an ImageNet-normalised input into (x - 0.5) / 0.5 inside the model.
TRANSFORM_INPUT_WEIGHTS = frozenset({"GoogLeNet_Weights", "Inception_V3_Weights"})
_HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class InputPlan:
    """How images are turned into the tensor a model sees."""

    preprocessing: Preprocessing
    mode: str  # "weights" | "paper"
    source: str  # where the numbers come from, in words
    # torchvision GoogLeNet / Inception-v3 only: the value `model.transform_input` must have (None: as built)
    transform_input: bool | None = None
    note: str = ""

    def to_dict(self) -> dict:
        p = self.preprocessing
        return {"mode": self.mode, "source": self.source, "description": p.describe(), "input_size": p.input_size,
                "resize_size": p.resize_size, "interpolation": p.interpolation, "mean": list(p.mean),
                "std": list(p.std), "color_order": p.color_order, "value_range": p.value_range,
                "transform_input": self.transform_input, "note": self.note}


def weights_preprocessing(spec: ModelSpec) -> tuple[Preprocessing, str]:
    """The preprocessing the spec's pretrained weights expect, and where it was read from."""
    ref = spec.weights.ref
    if ref is None:
        if spec.preprocessing is not None:
            return spec.preprocessing, "the zoo's preprocessing (no pretrained weights to read it from)"
        return DEFAULT_PREPROCESSING, "dnnbench's default ImageNet evaluation (resize 256, crop 224)"
    library, tag = ref.split(":", 1)
    published = get_source(library).weights(tag)
    return published.preprocessing, published.origin


def _normalisation(p: Preprocessing) -> tuple:
    return p.mean, p.std, p.color_order, p.value_range


def _same_normalisation(a: tuple, b: tuple) -> bool:
    (mean_a, std_a, color_a, range_a), (mean_b, std_b, color_b, range_b) = a, b
    # the reference table rounds some means to 4 digits (DPN: 0.4863 for 124/255)
    close = all(math.isclose(x, y, rel_tol=1e-3) for x, y in zip(mean_a + std_a, mean_b + std_b))
    return close and color_a == color_b and range_a == range_b


def _transform_input_weights(spec: ModelSpec) -> bool:
    ref = spec.weights.ref or ""
    return ref.startswith("torchvision:") and ref.split(":", 1)[1].split(".")[0] in TRANSFORM_INPUT_WEIGHTS


def paper_preprocessing(spec: ModelSpec, library_weights: bool = True) -> InputPlan:
    """The 2018 rule applied to `spec`. `library_weights` False: a user's weights file is loaded, whose
    normalisation nobody can know better than the spec."""
    size = spec.input_size
    geometry = dict(input_size=size, resize_size=math.floor(size / PAPER_CROP_FRACTION), interpolation="bilinear")
    source = "2018 rule: shorter side floor(input / 0.875), bilinear, centre crop"
    own = spec.preprocessing
    if not library_weights or spec.weights.ref is None:
        base = own or DEFAULT_PREPROCESSING
        return InputPlan(Preprocessing(**geometry, mean=base.mean, std=base.std, color_order=base.color_order,
                                       value_range=base.value_range), "paper", source + "; the zoo's normalisation")
    loaded, loaded_source = weights_preprocessing(spec)
    native = ((_HALF, _HALF, "RGB", 1.0) if _transform_input_weights(spec) else _normalisation(loaded))
    if own is not None and _same_normalisation(_normalisation(own), native):
        transform_input = False if _transform_input_weights(spec) else None
        return InputPlan(Preprocessing(**geometry, mean=own.mean, std=own.std, color_order=own.color_order,
                                       value_range=own.value_range), "paper", source + "; the zoo's normalisation",
                         transform_input)
    note = (f"the 2018 normalisation ({own.describe().split(', ', 1)[1] if own else 'none'}) belongs to the 2018 "
            f"weights, not to {spec.weights.ref}; their own normalisation ({loaded_source}) is used")
    return InputPlan(Preprocessing(**geometry, mean=loaded.mean, std=loaded.std, color_order=loaded.color_order,
                                   value_range=loaded.value_range), "paper", source + "; the weights' normalisation",
                     None, note)


def input_plan(spec: ModelSpec, mode: str = "weights", library_weights: bool = True) -> InputPlan:
    """The preprocessing to evaluate `spec` with in `mode` ("weights" or "paper")."""
    if mode == "paper":
        return paper_preprocessing(spec, library_weights)
    if mode != "weights":
        raise UsageError(f"unknown preprocessing mode {mode!r}; modes: {', '.join(MODES)}")
    preprocessing, source = weights_preprocessing(spec)
    return InputPlan(preprocessing, "weights", source)
