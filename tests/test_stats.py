import json
import math
import time
from fractions import Fraction

import numpy as np
import pytest

from dnnbench.errors import UsageError
from dnnbench.measure import stats as st
from dnnbench.measure.stats import (
    CI_METHOD_MIN_MAX,
    CI_METHOD_ORDER_STATISTICS,
    STOP_CONVERGED,
    STOP_MAX_SAMPLES,
    STOP_TIME_BUDGET,
    InvalidStoppingRule,
    StoppingRule,
    median_ci,
    median_ci_ranks,
    summarize,
)


def coverage(n: int, j: int) -> Fraction:
    """Exact P(j <= B <= n - j), B ~ Binomial(n, 1/2): coverage of [x_(j), x_(n+1-j)]."""
    return Fraction(sum(math.comb(n, i) for i in range(j, n - j + 1)), 2**n)


def ranks_via_values(n: int, level: float) -> tuple[float, float, str]:
    # samples 1..n (shuffled) make each order statistic equal to its 1-based rank
    samples = np.random.default_rng(n).permutation(np.arange(1, n + 1, dtype=float))
    return median_ci(samples, level)


# ---------------------------------------------------------------- summarize


def test_summarize_one_to_ten():
    s = summarize([3, 1, 2, 10, 9, 4, 5, 8, 6, 7])
    assert (s.n, s.min, s.max) == (10, 1.0, 10.0)
    assert s.median == 5.5 and s.mean == 5.5
    # sum of squared deviations from 5.5: 2 * (0.5^2 + 1.5^2 + 2.5^2 + 3.5^2 + 4.5^2) = 82.5
    assert s.std == pytest.approx(math.sqrt(82.5 / 9), rel=1e-12)
    # linear interpolation: position (n - 1) * q = 8.1 and 8.91 in the 0-based sorted array
    assert s.p90 == pytest.approx(9.1, rel=1e-12)
    assert s.p99 == pytest.approx(9.91, rel=1e-12)
    assert s.cv == pytest.approx(math.sqrt(82.5 / 9) / 5.5, rel=1e-12)
    assert (s.ci_low, s.ci_high, s.ci_method) == (2.0, 9.0, CI_METHOD_ORDER_STATISTICS)
    assert s.ci_half_width_rel == pytest.approx((9 - 2) / 2 / 5.5, rel=1e-12)
    assert s.ci_level == 0.95


def test_summarize_skewed_milliseconds():
    s = summarize([0.012, 0.010, 0.011, 0.013, 0.030])
    assert (s.min, s.max, s.median) == (0.010, 0.030, 0.012)
    assert s.mean == pytest.approx(0.0152, rel=1e-12)
    # deviations -5.2, -4.2, -3.2, -2.2, 14.8 (ms); squares sum to 278.8 ms^2
    assert s.std == pytest.approx(math.sqrt(278.8e-6 / 4), rel=1e-12)
    assert s.p90 == pytest.approx(0.013 + 0.6 * 0.017, rel=1e-12)  # position 3.6
    assert s.p99 == pytest.approx(0.013 + 0.96 * 0.017, rel=1e-12)  # position 3.96
    # n = 5 cannot reach 95 %: even [min, max] covers only 1 - 2/32 = 93.75 %
    assert (s.ci_low, s.ci_high, s.ci_method) == (0.010, 0.030, CI_METHOD_MIN_MAX)


def test_summarize_single_sample():
    s = summarize([0.25])
    assert (s.n, s.min, s.max, s.median, s.mean, s.p90, s.p99) == (1, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25)
    assert s.std == 0.0 and s.cv == 0.0 and s.ci_half_width_rel == 0.0
    assert s.ci_method == CI_METHOD_MIN_MAX


def test_zero_latencies_give_zero_ratios():
    s = summarize([0.0] * 8)
    assert s.cv == 0.0 and s.ci_half_width_rel == 0.0


def test_to_dict_is_plain_json():
    d = summarize(np.linspace(0.01, 0.02, 50)).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert type(d["n"]) is int and type(d["ci_method"]) is str
    assert all(type(v) is float for k, v in d.items() if k not in ("n", "ci_method", "within_ci_method"))


@pytest.mark.parametrize(
    "samples, match",
    [
        ([], "no latency samples"),
        ([0.1, float("nan")], "NaN"),
        ([0.1, float("inf")], "infinity"),
        ([0.1, -0.001], "negative.*upstream"),
        ([[0.1, 0.2]], "flat"),
    ],
)
def test_bad_samples_raise(samples, match):
    with pytest.raises(ValueError, match=match):
        summarize(samples)
    with pytest.raises(ValueError, match=match):
        median_ci(samples)


@pytest.mark.parametrize("level", [0.0, 1.0, 95, float("nan")])
def test_bad_level_raises(level):
    with pytest.raises(ValueError, match="ci_level"):
        summarize([1.0, 2.0], ci_level=level)


# ---------------------------------------------------------------- median CI


def test_classic_ranks_n10():
    # by hand: P(B <= 1) = (1 + 10) / 1024, P(B <= 2) = (1 + 10 + 45) / 1024
    assert coverage(10, 2) == 1 - Fraction(2 * 11, 1024) == Fraction(1002, 1024)  # 0.9785
    assert coverage(10, 3) == 1 - Fraction(2 * 56, 1024)  # 0.8906 < 0.95
    assert median_ci_ranks(10) == (2, 9)
    assert ranks_via_values(10, 0.95) == (2.0, 9.0, CI_METHOD_ORDER_STATISTICS)


def test_classic_ranks_n20():
    below5 = 1 + 20 + 190 + 1140 + 4845 + 15504  # P(B <= 5) * 2^20 = 21700
    assert coverage(20, 6) == 1 - Fraction(2 * below5, 2**20)
    assert float(coverage(20, 6)) == pytest.approx(0.9586, abs=5e-5)
    assert coverage(20, 7) == 1 - Fraction(2 * (below5 + 38760), 2**20)  # 0.8847 < 0.95
    assert median_ci_ranks(20) == (6, 15)
    assert ranks_via_values(20, 0.95) == (6.0, 15.0, CI_METHOD_ORDER_STATISTICS)


def test_smallest_n_for_95():
    assert coverage(5, 1) == Fraction(30, 32) < Fraction(95, 100)
    assert coverage(6, 1) == Fraction(62, 64) > Fraction(95, 100)
    for n in range(1, 6):
        assert median_ci_ranks(n) is None
        assert ranks_via_values(n, 0.95) == (1.0, float(n), CI_METHOD_MIN_MAX)
    assert ranks_via_values(6, 0.95) == (1.0, 6.0, CI_METHOD_ORDER_STATISTICS)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
def test_coverage_is_reached_and_tightest(level):
    rng = np.random.default_rng(int(level * 100))
    for n in [6, 7, 8, 9, 500, *rng.integers(6, 501, size=25)]:
        n = int(n)
        low, high, method = ranks_via_values(n, level)
        if method == CI_METHOD_MIN_MAX:
            assert coverage(n, 1) < level
            continue
        j, k = int(low), int(high)
        assert k == n + 1 - j
        assert coverage(n, j) >= level
        if j + 1 <= n // 2:
            assert coverage(n, j + 1) < level


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_logspace_agrees_with_exact_around_switch(level):
    for n in range(st.EXACT_MAX_N - 60, st.EXACT_MAX_N + 61):
        assert st._lower_rank_logspace(n, level) == st._lower_rank_exact(n, level), n
    for n in (2_500, 10_007):
        assert st._lower_rank_logspace(n, level) == st._lower_rank_exact(n, level), n


def test_large_n_matches_normal_approximation_and_is_fast():
    n = 100_000
    # continuity-corrected normal quantile of Bin(n, 1/2): j - 1/2 = n/2 - 1.959964 * sqrt(n) / 2
    approx = n / 2 + 0.5 - 1.959964 * math.sqrt(n) / 2
    j, k = median_ci_ranks(n)
    assert abs(j - approx) <= 1 and k == n + 1 - j
    x = np.random.default_rng(0).lognormal(size=n)
    t0 = time.perf_counter()
    low, high, _ = median_ci(x)
    # loose guard (~5 ms here) against an O(n^2) exact path sneaking in (~1 s)
    assert time.perf_counter() - t0 < 0.5
    s = np.sort(x)
    assert (low, high) == (s[j - 1], s[k - 1])


# ---------------------------------------------------------------- StoppingRule


def run(rule: StoppingRule, sample, seconds_per_sample: float, limit: int = 100_000):
    """Drive the rule with a fake clock; returns (reason, n)."""
    samples: list[float] = []
    for i in range(limit):
        reason = rule.check(samples, elapsed_s=len(samples) * seconds_per_sample)
        if reason is not None:
            return reason, len(samples)
        samples.append(sample(i))
    raise AssertionError("rule never stopped")


def noisy(i: int) -> float:
    return 1.0 if i % 2 == 0 else 2.0  # median CI spans both values: relative half-width >= 1/4


def van_der_corput(i: int) -> float:
    u, denom = 0.0, 1.0
    while i:
        denom *= 2
        i, bit = divmod(i, 2)
        u += bit / denom
    return u


def test_controlled_spread_converges_at_predicted_count():
    # Uniform on [0.9, 1.1] in low-discrepancy order: order statistics sit on a grid, so
    # half-width ~ 0.2 * (k - j) / (2 n) ~ 0.1 * 1.96 / sqrt(n) <= 0.02 near n ~ 96.
    def sample(i):
        return 0.9 + 0.2 * van_der_corput(i + 1)

    reason, n = run(StoppingRule(ci_target=0.02, time_budget_s=1e9), sample, 0.001)
    assert reason == STOP_CONVERGED
    values = [sample(i) for i in range(n)]
    first = next(m for m in range(10, n + 1) if summarize(values[:m]).ci_half_width_rel <= 0.02)
    assert 80 <= first <= 110
    assert first <= n <= math.ceil(first * st.RECHECK_GROWTH) + 1
    # the rule stops right where it recomputed the CI, so the full run meets the target
    assert summarize(values).ci_half_width_rel <= 0.02


def test_outliers_do_not_delay_convergence():
    # every 10th pass is 10x slower: the mean's spread is huge, the median CI has none
    reason, n = run(StoppingRule(), lambda i: 10.0 if i % 10 == 9 else 1.0, 0.001)
    assert (reason, n) == (STOP_CONVERGED, 10)


def test_noisy_stops_on_time_budget():
    reason, n = run(StoppingRule(time_budget_s=10.0), noisy, 0.125)
    assert (reason, n) == (STOP_TIME_BUDGET, 80)  # 80 * 0.125 s = 10 s exactly


def test_min_samples_are_honoured_past_the_time_budget():
    def noisy_slow(i):  # never converges with 10 samples at 2%
        return 1.0 + (i % 3)

    reason, n = run(StoppingRule(min_samples=10, time_budget_s=2.0), noisy_slow, 0.5)
    assert (reason, n) == (STOP_TIME_BUDGET, 10)


def test_never_stops_without_a_sample():
    assert StoppingRule(time_budget_s=1.0).check([], elapsed_s=100.0) is None
    assert StoppingRule(time_budget_s=1.0, min_samples=1).check([5.0], elapsed_s=100.0) == STOP_TIME_BUDGET
    assert StoppingRule(time_budget_s=1.0, min_samples=2).check([5.0], elapsed_s=100.0) is None


def test_max_samples():
    assert run(StoppingRule(max_samples=50, time_budget_s=1e9), noisy, 0.001) == (STOP_MAX_SAMPLES, 50)
    # both met at once: the target wins, it is what the caller cares about
    assert run(StoppingRule(max_samples=10), lambda i: 1.0, 0.001) == (STOP_CONVERGED, 10)


def test_min_time_delays_convergence():
    assert run(StoppingRule(min_time_s=3.0), lambda i: 1.0, 0.125) == (STOP_CONVERGED, 24)


def test_min_max_fallback_never_converges():
    rule = StoppingRule(min_samples=1)
    assert run(rule, lambda i: 1.0, 0.001) == (STOP_CONVERGED, 6)  # first n with a real 95 % CI


def test_ci_recomputed_geometrically_and_cache_resets(monkeypatch):
    calls = []
    real = st.summarize

    def counting(samples, ci_level=0.95):
        calls.append(len(samples))
        return real(samples, ci_level)

    monkeypatch.setattr(st, "summarize", counting)
    rule = StoppingRule(max_samples=20_000, time_budget_s=1e9)
    assert run(rule, noisy, 0.001) == (STOP_MAX_SAMPLES, 20_000)
    # n_{k+1} >= 1.1 n_k from 10 to 20000 takes ~80 steps instead of 20000
    assert len(calls) < 120
    assert all(b >= a * st.RECHECK_GROWTH for a, b in zip(calls, calls[1:]))
    # the same rule on a new, converging run must not reuse the noisy run's CI
    assert run(rule, lambda i: 1.0, 0.001) == (STOP_CONVERGED, 10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"ci_target": 0.0}, "ci_target"),
        ({"ci_target": float("nan")}, "ci_target"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 2.5}, "min_samples"),
        ({"min_samples": 10, "max_samples": 5}, "max_samples"),
        ({"time_budget_s": 0.0}, "time_budget_s"),
        ({"time_budget_s": math.inf}, "time_budget_s"),
        ({"min_time_s": -1.0}, "min_time_s"),
        ({"min_time_s": 20.0, "time_budget_s": 10.0}, "min_time_s"),
        ({"ci_level": 1.0}, "ci_level"),
    ],
)
def test_rule_validation_names_the_field(kwargs, name):
    with pytest.raises(InvalidStoppingRule, match=rf"StoppingRule\.{name} must be"):
        StoppingRule(**kwargs)


def test_rule_errors_are_value_and_usage_errors():
    assert issubclass(InvalidStoppingRule, ValueError) and issubclass(InvalidStoppingRule, UsageError)
    StoppingRule(time_budget_s=math.inf, max_samples=1000)  # infinite budget is fine with a cap
    with pytest.raises(ValueError, match="elapsed_s"):
        StoppingRule().check([1.0], elapsed_s=float("nan"))
