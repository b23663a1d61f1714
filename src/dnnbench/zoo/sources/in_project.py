"""Architectures implemented in dnnbench itself (`dnnbench:NAME`, see `zoo/architectures/`), such as
ShuffleNet v1; no pretrained weights exist for them."""

from __future__ import annotations

from typing import Any

from ...errors import UnknownModelError
from ..architectures import ARCHITECTURES, architecture
from ..spec import ModelSpec, WeightsSpec
from .base import ModelSource, matching


class InProjectSource(ModelSource):
    prefix = "dnnbench"
    description = "dnnbench's own architectures"

    def list_names(self, pattern: str = "*") -> list[str]:
        return [self.full_name(n) for n in matching(ARCHITECTURES, pattern)]

    def resolve(self, name: str) -> ModelSpec:
        if name not in ARCHITECTURES:
            from ..names import close_names

            suggestions = [self.full_name(n) for n in close_names(name, list(ARCHITECTURES))]
            raise UnknownModelError(self.full_name(name), suggestions, self.description)
        module = ARCHITECTURES[name].partition(":")[0]
        return ModelSpec(id=self.full_name(name), builder=self.full_name(name), input_size=224, family=module,
                         weights=WeightsSpec(ref=None, same_as_2018=None, provenance="no pretrained weights exist"))

    def construct(self, name: str, kwargs: dict[str, Any]) -> Any:
        return architecture(name)(**kwargs)


SOURCE = InProjectSource()
