"""The one place the analysis reads a timed cell's interval from: best deployments, speed-ups and ties
use it, so a better interval (e.g. one over repeated trials) is adopted by changing this function only."""

from __future__ import annotations

from ..store.values import TimeValue


def latency_interval_s(value: TimeValue | None) -> tuple[float | None, float | None, str | None]:
    """(low, high, method) of the interval of a cell's median latency, seconds; (None, None, None) when
    the cell stored none. Today: the within-process interval of the median (`stats.ci_low`/`ci_high`,
    the min-max range when the samples were too few, as `ci_method` says)."""
    stats = value.stats if value is not None else None
    if stats is None or stats.ci_low is None or stats.ci_high is None:
        return None, None, None
    return stats.ci_low, stats.ci_high, stats.ci_method
