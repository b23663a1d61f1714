"""Name resolution: canonical ids, paper names and aliases (case- and punctuation-insensitive),
plus ad hoc `timm:NAME` / `torchvision:NAME` models."""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

from ..errors import UnknownModelError
from .seed import seed_specs
from .spec import ModelSpec

ADHOC_PREFIXES = ("timm:", "torchvision:", "python:")


def normalize(name: str) -> str:
    """`ResNet-50`, `resnet_50` and `RESNET50` are one name; so are `SqueezeNet1.0` and `squeezenet1_0`."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@lru_cache(maxsize=1)
def _index() -> dict[str, ModelSpec]:
    index: dict[str, ModelSpec] = {}
    for spec in seed_specs():
        for name in (spec.id, spec.paper_name or "", spec.builder_name, *spec.aliases):
            key = normalize(name)
            other = index.setdefault(key, spec)
            if other is not spec:
                raise AssertionError(f"alias {name!r} names both {other.id} and {spec.id}")
    return index


def known_names() -> list[str]:
    """Every name a user may type for a seed model (canonical ids and paper names first)."""
    names: list[str] = []
    for spec in seed_specs():
        names += [spec.id, spec.paper_name or spec.id, *spec.aliases]
    return list(dict.fromkeys(names))


def close_names(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """The closest candidates, compared after normalisation so that case and dashes don't matter."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(normalize(candidate), candidate)
    keys = difflib.get_close_matches(normalize(name), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in keys]


def get(name: str) -> ModelSpec:
    """The spec for a seed model name or alias, or an ad hoc `timm:NAME` / `torchvision:NAME` model."""
    if name.startswith(ADHOC_PREFIXES):
        from .adhoc import adhoc_spec

        return adhoc_spec(name)
    spec = _index().get(normalize(name))
    if spec is not None:
        return spec
    from .adhoc import exact_library_names

    raise UnknownModelError(name, exact_library_names(name) + close_names(name, known_names()))
