"""The model zoo: what can be measured, how it is built and how it must be fed.

Models come from sources (`sources/`: torchvision, timm, pretrainedmodels, dnnbench's own architectures,
your `python:` code); the 46 seed architectures of the 2018 study are a table over them. Importing the zoo,
listing and resolving seed models import no torch.

    >>> from dnnbench import zoo
    >>> zoo.get("ResNet-50").id
    'resnet50'
    >>> zoo.list_models("resnet1*")
    ['resnet18', 'resnet101', 'resnet152']
"""

from . import selection
from .builders import build_model
from .registry import get, known_names, normalize
from .seed import seed_specs
from .selection import NoMatchingModelError, expand, is_pattern, resolve_names
from .sources import ModelSource, PublishedWeights, get_source, matching, sources
from .spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec
from .suites import Suite, builtin_suites, get_suite, load_suite_file


def list_models(pattern: str = "*", suite: str | None = None, suite_files: tuple[str, ...] = ()) -> list[str]:
    """Names matching the fnmatch `pattern`: `timm:convnext*`, `torchvision:*`, `pretrainedmodels:*`, or seed
    names and aliases (`resnet*` gives seed ids). With `suite`, the ids of that suite's models that match
    (by id, paper name or alias)."""
    if suite is None:
        return selection.list_models(pattern)
    return [s.id for s in resolve_models(suite=suite, suite_files=suite_files)
            if matching((s.id, s.paper_name or "", *s.aliases), pattern)]


def resolve_models(
    models: list[str] | tuple[str, ...] = (), suite: str | None = None, suite_files: tuple[str, ...] = ()
) -> list[ModelSpec]:
    """Specs for `models` and/or the models of `suite`, in order, without duplicates; names may be fnmatch
    patterns (`timm:efficientnet_b*`, `resnet*`)."""
    names = list(get_suite(suite, suite_files).models) if suite else []
    return resolve_names(names + list(models))


__all__ = [
    "ModelSource", "ModelSpec", "NoMatchingModelError", "Preprocessing", "PublishedWeights", "ReportedAccuracy",
    "Suite", "WeightsSpec", "build_model", "builtin_suites", "expand", "get", "get_source", "get_suite",
    "is_pattern", "known_names", "list_models", "load_suite_file", "normalize", "resolve_models", "resolve_names",
    "seed_specs", "sources",
]
