"""The 46 architectures of the 2018 study (Bianco et al., IEEE Access), built from the shipped
reference table `data/seed-architectures.csv` plus what the table does not say (family, year, builder
arguments). Which weights each loads is asked of its builder's source (`sources/*.py`, `seed_weights`)."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from importlib import resources

from .sources import get_source
from .spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec

# paper name prefix -> (family, year of first publication, arXiv)
_FAMILIES: list[tuple[str, str, int]] = [
    ("AlexNet", "AlexNet", 2012),
    ("BNInception", "Inception", 2015),
    ("CaffeResNet", "ResNet", 2015),
    ("DenseNet", "DenseNet", 2016),
    ("DualPathNet", "DPN", 2017),
    ("FBResNet", "ResNet", 2015),
    ("GoogLeNet", "Inception", 2014),
    ("InceptionResNetV2", "Inception", 2016),
    ("InceptionV3", "Inception", 2015),
    ("InceptionV4", "Inception", 2016),
    ("MobileNetV2", "MobileNet", 2018),
    ("MobileNet", "MobileNet", 2017),
    ("NASNet", "NASNet", 2017),
    ("ResNeXt", "ResNeXt", 2016),
    ("ResNet", "ResNet", 2015),
    ("SENet", "SENet", 2017),
    ("SE-", "SENet", 2017),
    ("ShuffleNet", "ShuffleNet", 2017),
    ("SqueezeNet", "SqueezeNet", 2016),
    ("VGG", "VGG", 2014),
    ("Xception", "Xception", 2016),
]

# Inference form: the auxiliary classifiers of GoogLeNet and Inception-v3 only run in training and
# torchvision drops them when they are not asked for; init_weights is passed to silence its warning.
_BUILDER_KWARGS: dict[str, tuple[tuple[str, object], ...]] = {
    "torchvision:googlenet": (("aux_logits", False), ("init_weights", True)),
    "torchvision:inception_v3": (("aux_logits", False), ("init_weights", True)),
}

_NOTES = {
    "googlenet": "torchvision's GoogLeNet adds batch normalisation to every convolution; the 2018 study "
    "measured the BVLC Caffe GoogLeNet (no BN, with LRN). Auxiliary classifiers removed (training only).",
    "inceptionv3": "Auxiliary classifier removed (training only), as torchvision does by default.",
    "mobilenet": "timm's MobileNet-v1 architecture; the 2018 weights (marvis/pytorch-mobilenet) are in no "
    "maintained library, so the weights are timm's own, much stronger.",
    "mobilenetv2": "torchvision architecture and weights; the 2018 study used ericsun99/MobileNet-V2-Pytorch.",
    "resnext101_32x4d": "timm architecture with Gluon weights, not the 2018 Torch7 port.",
    "resnext101_64x4d": "torchvision architecture; its IMAGENET1K_V1 weights come from torchvision's 2021 "
    "training recipe, not the 2018 Torch7 port.",
    "shufflenet": "ShuffleNet v1 (groups=8, 1x) implemented in dnnbench from Zhang et al. (CVPR 2018); no "
    "maintained library has it and no pretrained weights exist, so its accuracy stays reported.",
}

# Obvious names people type that normalisation alone does not reach.
_EXTRA_ALIASES = {
    "googlenet": ("Inception-v1", "InceptionV1"),
    "bninception": ("BN-Inception", "Inception-BN"),
    "inceptionresnetv2": ("Inception-ResNet-v2",),
    "mobilenet": ("MobileNet-v1", "MobileNetV1", "mobilenet_v1"),
    "nasnetalarge": ("NASNetLarge", "NASNet-Large"),
    "nasnetamobile": ("NASNetMobile", "NASNet-Mobile"),
    "shufflenet": ("ShuffleNet-v1", "ShuffleNetV1", "shufflenet_v1", "shufflenet_v1_g8"),
    "senet154": ("SE-Net-154", "SENet-154"),
    "cafferesnet101": ("Caffe-ResNet-101",),
    "fbresnet152": ("FB-ResNet-152",),
}

_MOBILE = ("mobilenet", "mobilenetv2", "shufflenet", "squeezenet1_0", "squeezenet1_1", "nasnetamobile")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in json.loads(text))


def _family(paper_name: str) -> tuple[str, int]:
    for prefix, family, year in _FAMILIES:
        if paper_name.startswith(prefix):
            return family, year
    raise ValueError(f"no family known for {paper_name}")


def _builder(maintained_source: str, key: str) -> str:
    if maintained_source.startswith("none"):
        if key == "shufflenet":
            return "dnnbench:shufflenet_v1_g8"
        raise ValueError(f"{key}: no builder in any library and none in dnnbench")
    return maintained_source.split()[0]


def _weights(row: dict[str, str], builder: str) -> WeightsSpec:
    """The weights of the builder's source for this row (e.g. torchvision's V1 enum, timm's tag)."""
    library, name = builder.split(":", 1)
    return get_source(library).seed_weights(name, row)


def _paper_preprocessing(row: dict[str, str]) -> Preprocessing:
    resize, crop = (int(v) for v in row["eval_resize_then_crop"].split("->"))
    value_range = max(_floats(row["input_range"]))
    # Caffe ports (BGR, [0, 255]) list their means in B, G, R order, as they are applied
    mean, std = _floats(row["mean"]), _floats(row["std"])
    # the 2018 companion code (pretrainedmodels' TransformImage) resizes with PIL's bilinear filter
    return Preprocessing(
        input_size=crop, resize_size=resize, interpolation="bilinear", mean=mean, std=std,  # type: ignore[arg-type]
        color_order=row["color_space"], value_range=value_range,
    )


def _spec(row: dict[str, str]) -> ModelSpec:
    key = row["pretrainedmodels_key"]
    builder = _builder(row["maintained_source"], key)
    family, year = _family(row["paper_name"])
    reported = None
    if row["reported_top1"]:
        reported = ReportedAccuracy(float(row["reported_top1"]), float(row["reported_top5"]), row["reported_source"])
    return ModelSpec(
        id=key,
        builder=builder,
        input_size=int(row["input_size"]),
        family=family,
        year=year,
        paper_name=row["paper_name"],
        aliases=_EXTRA_ALIASES.get(key, ()),
        builder_kwargs=_BUILDER_KWARGS.get(builder, ()),
        preprocessing=_paper_preprocessing(row),
        weights=_weights(row, builder),
        reported=reported,
        notes=_NOTES.get(key, ""),
        in_paper=True,
    )


@lru_cache(maxsize=1)
def seed_specs() -> tuple[ModelSpec, ...]:
    """The 46 seed architectures, in the reference table's order."""
    text = resources.files("dnnbench.zoo").joinpath("data/seed-architectures.csv").read_text(encoding="utf-8")
    return tuple(_spec(row) for row in csv.DictReader(text.splitlines()))


def mobile_ids() -> tuple[str, ...]:
    return _MOBILE
