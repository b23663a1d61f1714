"""What the zoo knows about a model: how to build it, how it must be fed, which weights, what was reported."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation preprocessing: resize the shorter side, centre-crop, scale, normalise.

    `resize_size` may be smaller than `input_size` (timm's crop_pct above 1, e.g. volo_d5_512's 1.15): the
    image is resized, then the centre crop pads it with zeros, as timm's and torchvision's CenterCrop do.

    The tensor fed to the network is ((pixel / 255 * value_range) - mean) / std in `color_order`,
    where `value_range` is 1.0 for inputs in [0, 1] and 255.0 for Caffe-style inputs in [0, 255].
    """

    input_size: int
    resize_size: int
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"  # or "BGR" (Caffe ports)
    value_range: float = 1.0

    def __post_init__(self) -> None:
        if self.color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be RGB or BGR, not {self.color_order!r}")
        if self.value_range not in (1.0, 255.0):
            raise ValueError(f"value_range must be 1.0 or 255.0, not {self.value_range!r}")
        if self.input_size <= 0 or self.resize_size <= 0:
            raise ValueError(f"resize_size {self.resize_size} and crop {self.input_size} must be positive")

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def describe(self) -> str:
        scale = "[0, 255]" if self.value_range == 255.0 else "[0, 1]"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return (
            f"resize {self.resize_size} ({self.interpolation}) -> centre crop {self.input_size}"
            f"{' (zero-padded)' if self.resize_size < self.input_size else ''}, "
            f"{self.color_order} {scale}, mean ({mean}), std ({std})"
        )


@dataclass(frozen=True)
class ReportedAccuracy:
    """Accuracy reported in the literature or by a library, never measured by dnnbench."""

    top1: float
    top5: float | None
    source: str


@dataclass(frozen=True)
class WeightsSpec:
    """The pretrained weights dnnbench loads for accuracy.

    `ref` names them in the owning library's terms: `torchvision:ResNet50_Weights.IMAGENET1K_V1`,
    `timm:dpn68.mx_in1k`, `pretrainedmodels:bninception/imagenet`; None when no weights exist.
    `same_as_2018` says whether they are the weights the 2018 study evaluated.
    """

    ref: str | None
    same_as_2018: bool | None
    provenance: str = ""
    reported: ReportedAccuracy | None = None  # what the weights' publisher reports for them

    @property
    def library(self) -> str | None:
        return self.ref.split(":", 1)[0] if self.ref else None


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry. `id` is canonical; `builder` is `SOURCE:NAME`, SOURCE the prefix of a model source
    (torchvision, timm, pretrainedmodels, dnnbench, python; see `zoo/sources/`)."""

    id: str
    builder: str
    input_size: int
    family: str
    year: int | None = None
    paper_name: str | None = None
    aliases: tuple[str, ...] = ()
    builder_kwargs: tuple[tuple[str, object], ...] = ()
    # preprocessing of the 2018 companion code (paper suite) or of the library's default weights (ad hoc)
    preprocessing: Preprocessing | None = None
    weights: WeightsSpec = field(default_factory=lambda: WeightsSpec(ref=None, same_as_2018=None))
    reported: ReportedAccuracy | None = None  # the 2018-era figure, with its source
    notes: str = ""
    in_paper: bool = False

    @property
    def library(self) -> str:
        return self.builder.split(":", 1)[0]

    @property
    def published_accuracy(self) -> ReportedAccuracy | None:
        """The accuracy shown as the model's reported one: the 2018-era figure, else its weights' publisher's
        (timm's results for timm tags, torchvision's weights metadata); None where there is none."""
        return self.reported or self.weights.reported

    @property
    def builder_name(self) -> str:
        return self.builder.split(":", 1)[1]

    @property
    def display_name(self) -> str:
        return self.paper_name or self.id
