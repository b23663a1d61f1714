"""Build a zoo model with its owning source, on any device (the meta device allocates no weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .sources import get_source
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn


def build_model(spec: ModelSpec, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture with freshly initialised weights, in eval mode, on `device`.

    On the meta device parameters have shapes but no storage, so even VGG-16 costs no memory.
    """
    return get_source(spec.library).build(spec.builder_name, device, **dict(spec.builder_kwargs))
