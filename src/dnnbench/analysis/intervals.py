"""The one place the analysis reads a timed cell's interval from: best deployments, speed-ups and ties
use it, so a better interval (e.g. one over repeated trials) is adopted by changing this function only."""

from __future__ import annotations

from ..store.values import TimeValue


def latency_interval_s(value: TimeValue | None) -> tuple[float | None, float | None, str | None]:
    """(low, high, method) of the interval of a cell's headline latency, seconds; (None, None, None) when
    the cell stored none. The headline interval (`TimeValue.ci`): a t-interval over fresh-process trial
    medians when the cell has several trials, else the one trial's batch-medians interval, and a
    "range (n = k)" where too few samples allowed no confidence interval, as the method says."""
    if value is None:
        return None, None, None
    low, high, method = value.ci
    if low is None or high is None:
        return None, None, None
    return low, high, method
