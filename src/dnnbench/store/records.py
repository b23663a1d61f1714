"""Typed records of the results store: which cell was measured, and what came out of it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .values import Value, decode

STATUSES = ("ok", "oom", "error", "crash", "timeout", "skipped", "unavailable", "unsupported", "lost")


def canonical_json(obj: Any) -> str:
    """One spelling per value, so that equal configs always hash and compare the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CellKey:
    """Identity of one cell of a sweep: (model, metric, config). Accepts config as a mapping."""

    model: str
    metric: str
    config: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        items = self.config.items() if isinstance(self.config, Mapping) else self.config
        object.__setattr__(self, "config", tuple(sorted(items)))

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)

    @cached_property
    def digest(self) -> str:
        doc = {"model": self.model, "metric": self.metric, "config": self.config_dict}
        return hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:20]


@dataclass
class ResultRecord:
    """Outcome of one cell on one machine.

    `values` is the typed value of the metric (store/values.py), None for a cell that failed before it
    measured anything. A mapping given here (a stored dict, an export, a hand-written test record) is
    decoded into that type, so that every record holds the same shape however it was made.
    """

    model: str
    metric: str
    config: dict[str, Any]
    status: str
    values: Value | None
    error: str | None
    started_at: float
    finished_at: float
    run_id: str = ""
    machine_id: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown result status {self.status!r}; expected one of {', '.join(STATUSES)}")
        if self.values is None or isinstance(self.values, Mapping):
            self.values = decode(self.metric, self.values)

    @property
    def cell_key(self) -> CellKey:
        return CellKey(self.model, self.metric, self.config)
