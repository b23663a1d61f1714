"""The model zoo: what can be measured, how it is built and how it must be fed.

    >>> from dnnbench import zoo
    >>> zoo.get("ResNet-50").id
    'resnet50'
"""

from .builders import build_model
from .registry import get, known_names, normalize
from .seed import seed_specs
from .spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec
from .suites import Suite, builtin_suites, get_suite, load_suite_file


def resolve_models(
    models: list[str] | tuple[str, ...] = (), suite: str | None = None, suite_files: tuple[str, ...] = ()
) -> list[ModelSpec]:
    """Specs for `models` and/or the models of `suite`, in order, without duplicates."""
    names = list(get_suite(suite, suite_files).models) if suite else []
    names += list(models)
    specs = [get(n) for n in names]
    return list({s.id: s for s in specs}.values())


__all__ = [
    "ModelSpec", "Preprocessing", "ReportedAccuracy", "Suite", "WeightsSpec", "build_model", "builtin_suites",
    "get", "get_suite", "known_names", "load_suite_file", "normalize", "resolve_models", "seed_specs",
]
