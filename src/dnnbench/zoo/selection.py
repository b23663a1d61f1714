"""Choosing models by name or by fnmatch pattern: `zoo.list_models("timm:convnext*")`, `resnet*`, and
patterns wherever a model name is accepted (the CLI, suite files, `resolve_models`).

A pattern with a source prefix (`timm:`, `torchvision:`, `pretrainedmodels:`, `dnnbench:`) lists that
source's names; without one it matches the seed zoo's ids, paper names and aliases (case-insensitively).
"""

from __future__ import annotations

import difflib
import re

from ..errors import UsageError
from .names import normalize
from .registry import get, known_names
from .seed import seed_specs
from .sources import matching, split_name
from .spec import ModelSpec

_WILDCARDS = re.compile(r"[*?\[]")


class NoMatchingModelError(UsageError, LookupError):
    """A model pattern that matches nothing."""

    def __init__(self, pattern: str, where: str, suggestions: list[str]):
        self.pattern, self.suggestions = pattern, tuple(suggestions)
        hint = f"closest names: {', '.join(suggestions)}" if suggestions else "no close name either"
        super().__init__(f"model pattern {pattern!r} matches nothing in {where}; {hint}. `dnnbench models` lists "
                         "the zoo; zoo.list_models('timm:*') (or torchvision:*, pretrainedmodels:*) a library's names")


def is_pattern(name: str) -> bool:
    return bool(_WILDCARDS.search(name))


def _literal(pattern: str) -> str:
    """What is left of a pattern without its wildcards and character classes, to find close names."""
    return re.sub(r"\[[^\]]*\]|[*?]", "", pattern)


def close_to_pattern(pattern: str, candidates: list[str], n: int = 5) -> list[str]:
    """Candidates closest to what the pattern spells, compared without their source prefix; a trailing `*`
    compares only the candidates' starts (`resnxt*` is closest to resnext50_32x4d, not to resnet50)."""
    literal = normalize(_literal(pattern.partition(":")[2] if split_name(pattern) else pattern))
    if not literal:
        return []
    open_end = pattern.endswith("*")
    scored: dict[str, tuple[float, str]] = {}  # by normalised name: `ResNet18` and `resnet18` are one
    for candidate in candidates:
        key = normalize(candidate.partition(":")[2] if split_name(candidate) else candidate)
        ratio = difflib.SequenceMatcher(None, literal, key[:len(literal) + 1] if open_end else key).ratio()
        if ratio >= 0.6 and key not in scored:
            scored[key] = (ratio, candidate)
    best = sorted(scored.values(), key=lambda s: -s[0])  # stable: the source's order on ties
    return [c for _, c in best[:n]]


def _seed_matches(pattern: str) -> list[str]:
    return [s.id for s in seed_specs()
            if matching((s.id, s.paper_name or "", s.builder_name, *s.aliases), pattern)]


def list_models(pattern: str = "*") -> list[str]:
    """Names matching the fnmatch `pattern`: `timm:convnext*`, `torchvision:*`, `pretrainedmodels:*`, or
    seed names (`resnet*` gives the seed ids). Lists without importing torch for seed names; a source
    pattern imports its library (nothing is downloaded)."""
    split = split_name(pattern)
    if split is None:
        return _seed_matches(pattern)
    source, rest = split
    return source.list_names(rest or "*")


def expand(name: str) -> list[str]:
    """`name` itself, or every name its pattern matches; a pattern matching nothing is a usage error."""
    if not is_pattern(name):
        return [name]
    found = list_models(name)
    if found:
        return found
    split = split_name(name)
    if split is None:
        raise NoMatchingModelError(name, "the zoo", close_to_pattern(name, known_names()))
    source = split[0]
    if not source.listable:
        raise UsageError(f"model pattern {name!r}: {source.description} cannot be listed; name one model exactly")
    raise NoMatchingModelError(name, source.description, close_to_pattern(name, source.list_names("*")))


def resolve_names(names: list[str] | tuple[str, ...]) -> list[ModelSpec]:
    """Specs for names and patterns, in order, without duplicates."""
    specs = [get(n) for name in names for n in expand(name)]
    return list({s.id: s for s in specs}.values())
