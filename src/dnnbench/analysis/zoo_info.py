"""What the zoo says about the models of a store: display name, family, native input size, reported accuracy.

Seed models come from the seed table (no library import). Ad hoc `timm:` and `torchvision:` models get their
library as family and the accuracy their library publishes for their default weights (timm's shipped results,
`zoo.timm_results`; torchvision's weights metadata), with its source; the library is imported only for them,
nothing is downloaded. `python:` models (user code, never imported here) and models whose library cannot resolve
them have no reported accuracy ("accuracy unknown").
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Iterable

import pandas as pd

from ..zoo import ModelSpec, seed_specs

ZOO_COLUMNS = ("model", "name", "family", "native_input_size", "in_paper",
               "reported_top1", "reported_top5", "reported_source")


@lru_cache(maxsize=1)
def _seed_index() -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in seed_specs()}


def _adhoc_family(model: str) -> str:
    prefix, sep, _ = model.partition(":")
    return {"timm": "timm", "torchvision": "torchvision", "python": "custom"}.get(prefix, "other") if sep else "other"


PUBLISHING_SOURCES = ("timm", "torchvision")  # ad hoc models whose library publishes their accuracy


@cache
def _adhoc_spec(model: str) -> ModelSpec | None:
    """The library's spec of an ad hoc `timm:`/`torchvision:` model (its default weights' published accuracy),
    or None where the library is missing or does not know the name."""
    from ..zoo import get

    if model.partition(":")[0] not in PUBLISHING_SOURCES:
        return None
    try:
        return get(model)
    except Exception:  # a model the installed library no longer has, or no library: its accuracy is unknown
        return None


def _adhoc_row(model: str) -> dict:
    spec = _adhoc_spec(model)
    reported = spec.weights.reported if spec is not None else None
    return {"model": model, "name": model, "family": _adhoc_family(model),
            "native_input_size": spec.input_size if spec is not None else pd.NA, "in_paper": False,
            "reported_top1": reported.top1 if reported else float("nan"),
            "reported_top5": reported.top5 if reported and reported.top5 is not None else float("nan"),
            "reported_source": reported.source if reported else ""}


def zoo_row(model: str) -> dict:
    spec = _seed_index().get(model)
    if spec is None:
        return _adhoc_row(model)
    reported, source = spec.reported, spec.reported.source if spec.reported else ""
    if reported is None and spec.weights.reported is not None:
        # no 2018-era figure: the publisher's figure for the weights dnnbench loads, said so
        reported = spec.weights.reported
        source = f"{reported.source} (weights {spec.weights.ref}, not the 2018 ones)"
    return {
        "model": model, "name": spec.display_name, "family": spec.family, "native_input_size": spec.input_size,
        "in_paper": spec.in_paper,
        "reported_top1": reported.top1 if reported else float("nan"),
        "reported_top5": reported.top5 if reported and reported.top5 is not None else float("nan"),
        "reported_source": source,
    }


def zoo_frame(models: Iterable[str]) -> pd.DataFrame:
    """One row per distinct model, in the order given."""
    rows = [zoo_row(m) for m in dict.fromkeys(models)]
    frame = pd.DataFrame(rows, columns=list(ZOO_COLUMNS))
    frame["native_input_size"] = frame["native_input_size"].astype("Int64")
    return frame
