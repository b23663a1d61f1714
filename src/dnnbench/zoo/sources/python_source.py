"""Your own network: `python:package.module:factory`, where `factory()` returns an nn.Module taking
(N, 3, 224, 224) images. The module is imported (it is your code) only when the model is built."""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import UnknownModelError
from ..spec import ModelSpec
from .base import ModelSource


class PythonSource(ModelSource):
    prefix = "python"
    description = "python: models (write python:package.module:factory)"
    listable = False  # arbitrary code cannot be enumerated

    def list_names(self, pattern: str = "*") -> list[str]:
        return []

    def resolve(self, name: str) -> ModelSpec:
        module, _, factory = name.partition(":")
        if not module or not factory.isidentifier():
            raise UnknownModelError(self.full_name(name), [], self.description)
        return ModelSpec(id=self.full_name(name), builder=self.full_name(name), input_size=224, family="custom")

    def construct(self, name: str, kwargs: dict[str, Any]) -> Any:
        module, _, factory = name.partition(":")
        return getattr(importlib.import_module(module), factory)(**kwargs)


SOURCE = PythonSource()
