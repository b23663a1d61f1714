"""Build a zoo model with its owning library, on any device (the meta device allocates no weights)."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from .spec import ModelSpec


def _torchvision(name: str, kwargs: dict) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None, **kwargs)


def _timm(name: str, kwargs: dict) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


def _pretrainedmodels(name: str, kwargs: dict) -> nn.Module:
    # pretrainedmodels prints and warns on import with current torchvision; keep the user's terminal clean
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import pretrainedmodels
    return pretrainedmodels.__dict__[name](num_classes=1000, pretrained=None, **kwargs)


def _dnnbench(name: str, kwargs: dict) -> nn.Module:
    from .architectures import ARCHITECTURES

    return ARCHITECTURES[name](**kwargs)


def _python(target: str, kwargs: dict) -> nn.Module:
    import importlib

    module, _, factory = target.partition(":")
    return getattr(importlib.import_module(module), factory)(**kwargs)


_LIBRARIES = {"torchvision": _torchvision, "timm": _timm, "pretrainedmodels": _pretrainedmodels, "dnnbench": _dnnbench,
              "python": _python}


def build_model(spec: ModelSpec, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture with freshly initialised weights, in eval mode, on `device`.

    On the meta device parameters have shapes but no storage, so even VGG-16 costs no memory.
    """
    build = _LIBRARIES[spec.library]
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = build(spec.builder_name, dict(spec.builder_kwargs))
    return model.eval()
