"""Name resolution: canonical ids, paper names and aliases (case- and punctuation-insensitive),
plus ad hoc `PREFIX:NAME` models of any source (`timm:`, `torchvision:`, `pretrainedmodels:`, `dnnbench:`,
`python:`; see `sources/`)."""

from __future__ import annotations

from functools import lru_cache

from ..errors import UnknownModelError
from .names import close_names, normalize  # noqa: F401 - importable from here as before
from .seed import seed_specs
from .sources import sources, split_name
from .spec import ModelSpec


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


@lru_cache(maxsize=256)
def _adhoc(name: str) -> ModelSpec:
    split = split_name(name)
    assert split is not None
    source, rest = split
    if not rest:
        raise UnknownModelError(name, [], f"{source.description} (no model name after the colon)")
    return source.resolve(rest)


def exact_library_names(name: str) -> list[str]:
    """`efficientnet_b0` typed without its source: point at `timm:efficientnet_b0`, `torchvision:efficientnet_b0`."""
    return [s.full_name(name) for s in sources().values() if s.listable and s.full_name(name) in s.list_names(name)]


def get(name: str) -> ModelSpec:
    """The spec for a seed model name or alias, or an ad hoc `PREFIX:NAME` model of a source."""
    if split_name(name) is not None:
        return _adhoc(name)
    spec = _index().get(normalize(name))
    if spec is not None:
        return spec
    raise UnknownModelError(name, exact_library_names(name) + close_names(name, known_names()))
