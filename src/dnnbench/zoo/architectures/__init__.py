"""Architectures no maintained library has, implemented in dnnbench from their papers.

`ARCHITECTURES` names each one's module and factory, so that listing them imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

ARCHITECTURES: dict[str, str] = {"shufflenet_v1_g8": "shufflenet_v1:shufflenet_v1_g8"}


def architecture(name: str) -> Callable[..., Any]:
    """The factory of `name` (a key of ARCHITECTURES)."""
    module, _, factory = ARCHITECTURES[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), factory)
