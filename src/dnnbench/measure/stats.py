"""Statistics over latency samples and the adaptive rule that decides when to stop sampling.

A sample is the wall time of one forward pass, in seconds. Conventions:

- ``std`` is the sample standard deviation (ddof=1): the samples are a sample of the latency
  distribution, not the whole population.
- Percentiles use numpy's default ``linear`` method (Hyndman & Fan type 7, R's and Excel's
  PERCENTILE.INC default); the median is the 50th percentile under that method.
- The confidence interval is for the *median*, not the mean: latencies are skewed with a heavy
  right tail (interrupts, clock changes, allocator stalls), so the median is the robust location,
  and the order-statistics interval for it holds for any continuous distribution -- of
  *independent* samples. Successive forward passes are not independent (clock changes, thermal
  drift, cache state carry over), so that interval is too narrow under drift; it is kept, named
  for what it is, beside the within-trial interval below.
- The within-trial interval (`within_trial_ci`) respects autocorrelation by batch medians: the
  samples, in time order, are cut into b consecutive batches (b = n // 20, between 5 and 10), the
  median of each batch is taken, and the interval is the overall median +- t_{b-1} * sd(batch
  medians) / sqrt(b). Batches long against the correlation time are nearly independent, so their
  spread carries the drift the order statistics ignore. Below MIN_BATCH_SAMPLES samples no interval
  is claimed: the min-max range is given, labelled "range (n = k)".
- Between processes (`trials_interval`): a t-interval over the medians of k independent trials
  (fresh worker processes), which holds the between-process variance and, through each trial's
  median, the within-trial noise as well (docs/METHODOLOGY.md argues the choice).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from numbers import Integral
from typing import Sequence

import numpy as np

# imported with the module, never lazily: a worker imports it before its memory baseline, so no memory cell
# holds the import (done inside the first timed block, it added ~60 MB to every later batch size's figure)
from scipy.special import stdtrit

from dnnbench.errors import UsageError

STOP_CONVERGED = "converged"
STOP_MAX_SAMPLES = "max_samples"
STOP_TIME_BUDGET = "time_budget"

CI_METHOD_ORDER_STATISTICS = "order-statistics"
CI_METHOD_MIN_MAX = "min-max (n too small for the requested level)"
CI_METHOD_BATCH_MEDIANS = "batch medians"
CI_METHOD_TRIALS = "t over trial medians"

# Batch medians: b = n // BATCH_LENGTH batches, clamped to [MIN_BATCHES, MAX_BATCHES]; fewer samples
# than MIN_BATCH_SAMPLES: no interval (the range). Chosen by simulation on AR(1) noise (tests/test_stats.py).
BATCH_LENGTH = 20
MIN_BATCHES = 5
MAX_BATCHES = 10
MIN_BATCH_SAMPLES = 25

# Up to this n the binomial tail is summed exactly in integers; above it, in floating-point
# log-space (exact big-integer sums cost O(n^2) bit operations: ~1 s at n = 100k).
EXACT_MAX_N = 1000

# StoppingRule recomputes the median CI only once n has grown by this factor since the last time.
RECHECK_GROWTH = 1.1


class InvalidStoppingRule(UsageError, ValueError):
    """A StoppingRule field is out of range (user input, so a UsageError too)."""


@dataclass(frozen=True)
class SampleStats:
    """Summary of one benchmark's latency samples (seconds). See the module docstring for conventions."""

    n: int
    min: float
    max: float
    median: float
    mean: float
    std: float  # ddof=1; 0.0 when n == 1
    p90: float  # numpy's default linear interpolation
    p99: float
    cv: float  # std / mean
    ci_level: float
    ci_low: float  # confidence interval of the median
    ci_high: float
    ci_half_width_rel: float  # (ci_high - ci_low) / 2 / median; the interval need not be symmetric
    ci_method: str
    # the within-trial interval that respects autocorrelation (see within_trial_ci)
    within_ci_low: float = math.nan
    within_ci_high: float = math.nan
    within_ci_method: str = ""

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def summarize(samples: Sequence[float], ci_level: float = 0.95) -> SampleStats:
    """Summarize latency samples (seconds). Raises ValueError on empty, NaN/inf or negative input.

    Ratios (cv, ci_half_width_rel) are 0.0 when the numerator is 0 (no spread at all, even if
    every sample is 0 s) and inf when only the denominator is 0.
    """
    _check_level(ci_level)
    x = _sorted_samples(samples)
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    mean = float(np.mean(x))
    median, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    low, high, method = _median_ci_sorted(x, ci_level)
    w_low, w_high, w_method = within_trial_ci(samples, ci_level)
    return SampleStats(
        n=int(x.size),
        min=float(x[0]),
        max=float(x[-1]),
        median=median,
        mean=mean,
        std=std,
        p90=p90,
        p99=p99,
        cv=_ratio(std, mean),
        ci_level=float(ci_level),
        ci_low=low,
        ci_high=high,
        ci_half_width_rel=_ratio((high - low) / 2, median),
        ci_method=method,
        within_ci_low=w_low,
        within_ci_high=w_high,
        within_ci_method=w_method,
    )


def range_label(n: int) -> str:
    """How an interval that is only the min-max range is named everywhere: never a "95% CI"."""
    return f"range (n = {n})"


def is_range(method: str | None) -> bool:
    return bool(method) and (method.startswith("range") or method == CI_METHOD_MIN_MAX)


def within_trial_ci(samples: Sequence[float], ci_level: float = 0.95) -> tuple[float, float, str]:
    """Interval for the median of one trial's samples (in time order) by batch medians: see the module
    docstring. `(low, high, method)`; with fewer than MIN_BATCH_SAMPLES samples, (min, max, "range (n = k)")."""
    _check_level(ci_level)
    ordered = np.asarray(samples, dtype=float)
    x = _sorted_samples(ordered)
    n = int(x.size)
    if n < MIN_BATCH_SAMPLES:
        return float(x[0]), float(x[-1]), range_label(n)
    b = max(MIN_BATCHES, min(MAX_BATCHES, n // BATCH_LENGTH))
    m = n // b
    medians = np.median(ordered[n - b * m:].reshape(b, m), axis=1)  # the latest b*m samples, in order
    centre = float(np.median(x))
    half = t_quantile((1 + ci_level) / 2, b - 1) * float(np.std(medians, ddof=1)) / math.sqrt(b)
    return centre - half, centre + half, f"{CI_METHOD_BATCH_MEDIANS} (b = {b})"


@dataclass(frozen=True)
class TrialsInterval:
    """The headline of k trials: the median of their medians, and an interval holding between-trial variance."""

    k: int
    median: float
    low: float
    high: float
    method: str
    between_cv: float  # sd of the trial medians / their mean: the between-process spread
    level: float


def trials_interval(medians: Sequence[float], ci_level: float = 0.95) -> TrialsInterval:
    """k trial medians -> median of medians and mean +- t_{k-1} sd / sqrt(k); k == 1: no between-trial
    interval (the caller shows the within-trial one); the range is never called a CI."""
    _check_level(ci_level)
    x = _sorted_samples(medians)
    k = int(x.size)
    centre = float(np.median(x))
    if k < 2:
        return TrialsInterval(k, centre, centre, centre, range_label(k), 0.0, float(ci_level))
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    half = t_quantile((1 + ci_level) / 2, k - 1) * sd / math.sqrt(k)
    return TrialsInterval(k, centre, mean - half, mean + half, f"{CI_METHOD_TRIALS} (k = {k})",
                          _ratio(sd, mean), float(ci_level))


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (scipy.special.stdtrit, what scipy.stats.t.ppf computes, at a third of its import)."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p!r}, df={df!r}")
    return float(stdtrit(df, p))


def median_ci(samples: Sequence[float], ci_level: float = 0.95) -> tuple[float, float, str]:
    """Distribution-free confidence interval of the median: ``(low, high, method)``.

    With sorted samples x_(1) <= ... <= x_(n), the interval [x_(j), x_(n+1-j)] contains the true
    median with probability P(j <= B <= n - j), B ~ Binomial(n, 1/2) (B = number of samples below
    the median). j is the largest rank whose coverage is still >= ci_level, which gives the
    narrowest such symmetric-in-rank interval (see `median_ci_ranks`). When even [min, max] falls
    short of the level (n < 6 at 95 %), returns (min, max) with method CI_METHOD_MIN_MAX.
    """
    _check_level(ci_level)
    return _median_ci_sorted(_sorted_samples(samples), ci_level)


def median_ci_ranks(n: int, ci_level: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (j, n + 1 - j) of the median CI for n samples, or None if n is too small."""
    _check_level(ci_level)
    j = _lower_rank(n, ci_level)
    return (j, n + 1 - j) if j > 0 else None


@dataclass(frozen=True)
class StoppingRule:
    """When to stop sampling: once the median CI is narrow enough, or a sample/time limit is hit.

    `check` returns None to go on, or the reason to stop, tested in this order (so a run that
    meets the target and a limit at once reports that the target was met):

    - STOP_CONVERGED: n >= min_samples, elapsed_s >= min_time_s and the median CI's relative
      half-width <= ci_target: the order-statistics interval, and from MIN_BATCH_SAMPLES samples on
      also the batch-medians interval (so that drift delays convergence). An interval that fell back
      to min-max (n too small for ci_level) never counts as converged.
    - STOP_MAX_SAMPLES: n >= max_samples.
    - STOP_TIME_BUDGET: elapsed_s >= time_budget_s and n >= min_samples: the minimum sample count
      is honoured even past the budget (a slow model still gets min_samples timings; the caller's
      cell timeout bounds that), and the caller records that the target was not met.

    Cost: the CI needs a sort, so checking every iteration would be O(n^2 log n) over a run.
    The CI is recomputed only when n has grown by RECHECK_GROWTH (10 %) since the last
    computation, and the last value is reused in between (O(n log n) amortized). The reused value
    came from fewer samples, so it errs towards sampling a little longer (at most ~10 %), never
    towards stopping early. The cache assumes successive calls pass one growing run; a different
    sequence object or a shorter one starts over.
    """

    ci_target: float = 0.02
    min_samples: int = 10
    max_samples: int | None = None
    time_budget_s: float = 10.0
    min_time_s: float = 0.0
    ci_level: float = 0.95
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def bad(name: str, requirement: str) -> InvalidStoppingRule:
            value = getattr(self, name)
            return InvalidStoppingRule(f"StoppingRule.{name} must be {requirement}, got {value!r}")

        if not self.ci_target > 0:  # `not >` also rejects NaN
            raise bad("ci_target", "> 0 (relative half-width of the median CI, e.g. 0.02)")
        if not (isinstance(self.min_samples, Integral) and self.min_samples >= 1):
            raise bad("min_samples", "an integer >= 1")
        if self.max_samples is not None and not (
            isinstance(self.max_samples, Integral) and self.max_samples >= self.min_samples
        ):
            raise bad("max_samples", f"None or an integer >= min_samples ({self.min_samples})")
        if not self.time_budget_s > 0:
            raise bad("time_budget_s", "> 0 seconds")
        if math.isinf(self.time_budget_s) and self.max_samples is None:
            raise bad("time_budget_s", "finite unless max_samples is set (else a noisy run never stops)")
        if not 0 <= self.min_time_s <= self.time_budget_s:
            raise bad("min_time_s", f"between 0 and time_budget_s ({self.time_budget_s}) seconds")
        if not 0 < self.ci_level < 1:
            raise bad("ci_level", "strictly between 0 and 1 (e.g. 0.95)")

    def check(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        """None to take another sample, else the reason to stop (a STOP_* constant)."""
        if not elapsed_s >= 0:
            raise ValueError(f"elapsed_s must be >= 0 seconds, got {elapsed_s!r}")
        n = len(samples)
        if n == 0:
            return None
        ready = n >= self.min_samples and elapsed_s >= self.min_time_s
        if ready and self._ci_half_width_rel(samples) <= self.ci_target:
            return STOP_CONVERGED
        if self.max_samples is not None and n >= self.max_samples:
            return STOP_MAX_SAMPLES
        if elapsed_s >= self.time_budget_s and n >= self.min_samples:
            return STOP_TIME_BUDGET
        return None

    def _ci_half_width_rel(self, samples: Sequence[float]) -> float:
        n = len(samples)
        cached = self._cache.get("ci")
        if cached is not None:
            key, n_done, value = cached
            if key == id(samples) and n_done <= n < n_done * RECHECK_GROWTH:
                return value
        stats = summarize(samples, self.ci_level)
        value = stats.ci_half_width_rel if stats.ci_method == CI_METHOD_ORDER_STATISTICS else math.inf
        if not is_range(stats.within_ci_method):  # enough samples for batch medians: drift counts too
            value = max(value, _ratio((stats.within_ci_high - stats.within_ci_low) / 2, stats.median))
        self._cache["ci"] = (id(samples), n, value)
        return value


def _check_level(ci_level: float) -> None:
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be strictly between 0 and 1 (e.g. 0.95), got {ci_level!r}")


def _sorted_samples(samples: Sequence[float]) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"latency samples must be a flat sequence of seconds, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("no latency samples: need at least one")
    if not np.isfinite(x).all():
        raise ValueError("latency samples contain NaN or infinity: the timing code upstream is broken")
    if (x < 0).any():
        raise ValueError(
            f"negative latency sample ({x.min()!r} s): a wall time cannot be negative, so the timing "
            "code upstream is broken (non-monotonic clock or swapped start/end?)"
        )
    return np.sort(x)


def _median_ci_sorted(x: np.ndarray, ci_level: float) -> tuple[float, float, str]:
    j = _lower_rank(x.size, ci_level)
    if j == 0:
        return float(x[0]), float(x[-1]), CI_METHOD_MIN_MAX
    return float(x[j - 1]), float(x[x.size - j]), CI_METHOD_ORDER_STATISTICS


def _ratio(num: float, den: float) -> float:
    if num == 0:
        return 0.0
    return num / den if den > 0 else math.inf


def _lower_rank(n: int, ci_level: float) -> int:
    """Largest j <= n // 2 with P(B <= j - 1) <= (1 - ci_level) / 2, B ~ Bin(n, 1/2); 0 if none.

    By symmetry P(j <= B <= n - j) = 1 - 2 P(B <= j - 1), so this is the narrowest symmetric
    interval whose coverage is >= ci_level.
    """
    return _lower_rank_exact(n, ci_level) if n <= EXACT_MAX_N else _lower_rank_logspace(n, ci_level)


def _lower_rank_exact(n: int, ci_level: float) -> int:
    # Integer counts against the exact rational value of the float ci_level: no rounding at all.
    allowed = (1 - Fraction(ci_level)) * 2 ** (n - 1)  # (1 - level) / 2 * 2^n
    below, comb, j = 0, 1, 0  # below = sum_{t <= i} C(n, t); comb = C(n, i)
    for i in range(n // 2):
        below += comb
        if below > allowed:
            break
        j = i + 1
        comb = comb * (n - i) // (i + 1)
    return j


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def _lower_rank_logspace(n: int, ci_level: float) -> int:
    # Hoeffding: P(B <= n/2 - t) <= exp(-2 t^2 / n); with t = 8 sqrt(n) that is < exp(-128), so
    # the sum may start there. Each log C(n, i) comes straight from lgamma (relative error ~1e-9
    # at n = 1e6), and the window of ~8 sqrt(n) terms keeps this fast for any n.
    lo = max(0, math.floor(n / 2 - 8 * math.sqrt(n)))
    i = np.arange(lo, n // 2, dtype=float)
    log_pmf = math.lgamma(n + 1) - _lgamma(i + 1) - _lgamma(n - i + 1) - n * math.log(2)
    cdf = np.cumsum(np.exp(log_pmf))
    return lo + int(np.searchsorted(cdf, (1 - ci_level) / 2, side="right"))
