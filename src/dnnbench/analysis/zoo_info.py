"""What the zoo says about the models of a store: display name, family, native input size, reported accuracy.

Only the seed table is consulted (no library import, no network): ad hoc `timm:`, `torchvision:` and
`python:` models get their library as family and no reported accuracy.
"""

from __future__ import annotations

from functools import lru_cache
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


def zoo_row(model: str) -> dict:
    spec = _seed_index().get(model)
    if spec is None:
        return {"model": model, "name": model, "family": _adhoc_family(model), "native_input_size": pd.NA,
                "in_paper": False, "reported_top1": float("nan"), "reported_top5": float("nan"),
                "reported_source": ""}
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
