"""Choosing models by family (ResNet, Inception, ...), as `dnnbench models --family` does."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from .spec import ModelSpec


def of_family(specs: Sequence[ModelSpec], family: str, where: str = "these models") -> list[ModelSpec]:
    """The specs of `family` (case-insensitive), in order; an error listing the families when none is."""
    chosen = [s for s in specs if s.family.lower() == family.lower()]
    if not chosen:
        families = ", ".join(sorted({s.family for s in specs}))
        raise UsageError(f"no model of family {family!r} in {where}; families: {families}")
    return chosen
