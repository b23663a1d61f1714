"""timm's published ImageNet-1k results, shipped as data (`data/timm-results-imagenet.csv`, see its
SOURCE.md): the reported accuracy of a timm pretrained tag, looked up by `ARCH.TAG`.

Standard library only: the zoo reads it without importing timm.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

from .spec import ReportedAccuracy

COMMIT = "aa4b5850c154"
SOURCE = f"timm results-imagenet.csv (huggingface/pytorch-image-models@{COMMIT})"
UNKNOWN = "accuracy unknown"  # how a model without a published row is marked; it is kept, never dropped


@lru_cache(maxsize=1)
def _table() -> dict[str, ReportedAccuracy]:
    text = resources.files("dnnbench.zoo").joinpath("data/timm-results-imagenet.csv").read_text(encoding="utf-8")
    return {row["model"]: ReportedAccuracy(float(row["top1"]), float(row["top5"]), f"{SOURCE}, {row['model']}")
            for row in csv.DictReader(text.splitlines())}


def timm_reported(tag: str) -> ReportedAccuracy | None:
    """What timm reports for the pretrained tag `ARCH.TAG` (a `timm:` prefix is ignored), or None."""
    return _table().get(tag.removeprefix("timm:").lower())


def timm_tags() -> tuple[str, ...]:
    """Every tag with a published row."""
    return tuple(_table())
