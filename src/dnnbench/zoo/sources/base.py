"""What every model source does: resolve a name, build it on any device, name its weights with their
preprocessing, load them, and list its names by pattern.

A source module imports its library (torch, torchvision, timm, ...) only inside these methods, so that
naming, listing the seed zoo and resolving seed models never import torch.
"""

from __future__ import annotations

import fnmatch
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..spec import ModelSpec, Preprocessing, WeightsSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..checkpoints import LoadedModel


@dataclass(frozen=True)
class PublishedWeights:
    """Pretrained weights as their publisher names them, with the preprocessing they were trained for:
    preprocessing belongs to the weights, not to the architecture."""

    ref: str  # "PREFIX:TAG", e.g. "timm:dpn68.mx_in1k"
    preprocessing: Preprocessing
    origin: str  # where the preprocessing was read from, in words


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """`names` that match the fnmatch `pattern`, case-insensitively, in their order."""
    pattern = pattern.lower()
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern)]


class ModelSource(ABC):
    """One library of models, named `PREFIX:NAME` (e.g. `timm:convnext_tiny`).

    Adding a source is one module in this package that defines `SOURCE = YourSource()`; the registry
    (`dnnbench.zoo.sources`) finds it by itself.
    """

    prefix: str  # what comes before the colon
    description: str  # in words, for messages: "timm's models"
    listable: bool = True  # False where names cannot be enumerated (your own code)

    @abstractmethod
    def resolve(self, name: str) -> ModelSpec:
        """The spec of `name` (without the prefix), fed as its default weights say; UnknownModelError if none."""

    @abstractmethod
    def construct(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        """The library's constructor call, randomly initialised; `build` sets the device and eval mode."""

    @abstractmethod
    def list_names(self, pattern: str = "*") -> list[str]:
        """Full names (`PREFIX:NAME`) of the models matching the fnmatch `pattern` (without the prefix)."""

    def build(self, name: str, device: str | torch.device = "cpu", **kwargs: Any) -> nn.Module:
        """`name` with freshly initialised weights, in eval mode, on `device` (meta: shapes without storage)."""
        import torch

        with torch.device(device), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = self.construct(name, kwargs)
        return model.eval()

    def weights(self, tag: str) -> PublishedWeights:
        """The weights `PREFIX:TAG` with the preprocessing their publisher evaluates them with."""
        raise UsageError(f"{self.prefix}:{tag}: {self.description} publish no pretrained weights")

    def load_weights(self, spec: ModelSpec) -> LoadedModel:
        """`spec` built with its pretrained weights `spec.weights.ref`, on the CPU."""
        from ..checkpoints import WeightsUnavailableError

        raise WeightsUnavailableError(f"{spec.id}: dnnbench cannot fetch weights {spec.weights.ref}")

    def seed_weights(self, name: str, row: Mapping[str, str]) -> WeightsSpec:
        """The weights a seed model built as `PREFIX:name` loads, from its row of the reference table."""
        return WeightsSpec(ref=None, same_as_2018=None, provenance=f"2018: {row['weights_2018']}")

    def full_name(self, name: str) -> str:
        return f"{self.prefix}:{name}"
