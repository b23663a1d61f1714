"""The model sources: one module per library, each defining `SOURCE`, found here by their module.

    >>> from dnnbench.zoo.sources import get_source
    >>> get_source("timm").prefix
    'timm'
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ...errors import UsageError
from .base import ModelSource, PublishedWeights, matching


@lru_cache(maxsize=1)
def sources() -> dict[str, ModelSource]:
    """Every source by prefix, in prefix order. Importing them imports no model library."""
    found: dict[str, ModelSource] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        source = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SOURCE", None)
        if isinstance(source, ModelSource):
            if source.prefix in found:
                raise AssertionError(f"two sources claim the prefix {source.prefix!r}")
            found[source.prefix] = source
    return dict(sorted(found.items()))


def get_source(prefix: str) -> ModelSource:
    source = sources().get(prefix)
    if source is None:
        raise UsageError(f"unknown model source {prefix!r}; sources: {', '.join(f'{p}:' for p in sources())}")
    return source


def split_name(name: str) -> tuple[ModelSource, str] | None:
    """(source, rest) for `PREFIX:REST` with a known prefix; None for a zoo name."""
    prefix, sep, rest = name.partition(":")
    source = sources().get(prefix) if sep else None
    return (source, rest) if source is not None else None


__all__ = ["ModelSource", "PublishedWeights", "get_source", "matching", "sources", "split_name"]
