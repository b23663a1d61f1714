"""The one place the analysis reads a timed cell's interval from: best deployments, speed-ups and ties
use it, so a better interval is adopted by changing this module only.

A cell measured in several fresh processes (trials) carries its own t-interval over the trial medians,
which holds the between-process spread. A cell measured once cannot see that spread: its within-process
interval covers a rerun only a fraction of the time (benchmarks/coverage.py). Where the same machine and
device also hold cells with several trials, the spread of their trial medians is pooled (the random-effects
estimate: the variance of log trial medians, pooled with its degrees of freedom) and a single-trial cell's
interval is its median times exp(+-t_df * sqrt(pooled variance + its own within-process variance)). The
method text says so; where no such cells exist the within-process interval is shown for what it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy.special import stdtrit

from ..store.values import TimeValue

_Z95 = 1.959963984540054  # a within-process half-width at 95% -> its standard error


@dataclass(frozen=True)
class PooledSpread:
    """Between-process spread of one machine and device: the pooled sd of log trial medians over `cells`
    cells with several uncontended trials, with `df` degrees of freedom (sum of trials - 1)."""

    log_sd: float
    df: int
    cells: int


def pooled_spread(values: Iterable[TimeValue | None]) -> PooledSpread | None:
    """The pooled between-process spread of `values` (cells of one machine and device); None when none has
    two or more uncontended trials."""
    sum_squares, df, cells = 0.0, 0, 0
    for value in values:
        if value is None or not value.trials:
            continue
        logs = [math.log(t.median_s) for t in value.trials if t.median_s and t.median_s > 0 and not t.contended]
        if len(logs) < 2:
            continue
        mean = sum(logs) / len(logs)
        sum_squares += sum((x - mean) ** 2 for x in logs)
        df += len(logs) - 1
        cells += 1
    if not df:
        return None
    return PooledSpread(math.sqrt(sum_squares / df), df, cells)


def latency_interval_s(value: TimeValue | None, pooled: PooledSpread | None = None,
                       ci_level: float = 0.95) -> tuple[float | None, float | None, str | None]:
    """(low, high, method) of the interval of a cell's headline latency, seconds; (None, None, None) when
    the cell stored none. Several trials: the t-interval over trial medians. One trial and a `pooled`
    spread of its machine: the pooled interval (module docstring). Otherwise the one trial's within-process
    interval (batch medians), or "range (n = k)" where too few samples allowed no confidence interval."""
    if value is None:
        return None, None, None
    low, high, method = value.ci
    median = value.latency_s
    if pooled is not None and value.trial_count == 1 and median and median > 0:
        within = (high - low) / 2 / median / _Z95 if low is not None and high is not None else 0.0
        half = float(stdtrit(pooled.df, (1 + ci_level) / 2)) * math.sqrt(pooled.log_sd ** 2 + within ** 2)
        return (median * math.exp(-half), median * math.exp(half),
                f"one trial + between-process sd pooled from {pooled.cells} cells (df = {pooled.df})")
    if low is None or high is None:
        return None, None, None
    if value.trial_count == 1 and not method.startswith("range"):
        method = f"{method}, within one process"
    return low, high, method
