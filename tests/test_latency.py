import itertools
import json
import math
import random

import pytest
import torch

from dnnbench.errors import UsageError
from dnnbench.measure import latency as lat
from dnnbench.measure.latency import LatencyResult, WarmupPolicy, measure_latency
from dnnbench.measure.stats import STOP_CONVERGED, STOP_MAX_SAMPLES, STOP_TIME_BUDGET, StoppingRule

NO_WARMUP = WarmupPolicy(min_iters=1, min_seconds=0.0, max_seconds=1e9)


class LoggingClock:
    """A fake clock that returns the next value of an iterator and logs every read."""

    def __init__(self, values):
        self._values = iter(values)
        self.reads = []

    def __call__(self):
        value = next(self._values)
        self.reads.append(value)
        return value


class SimTime:
    """Simulated time that only a forward pass advances, by the next of `durations_s`."""

    def __init__(self, durations_s):
        self._durations = iter(durations_s)
        self.now_ns = 0
        self.calls = 0

    def clock(self):
        return self.now_ns

    def forward(self):
        self.now_ns += round(next(self._durations) * 1e9)
        self.calls += 1


def test_samples_are_exactly_the_clock_differences_around_forward():
    rng = random.Random(1)
    clock = LoggingClock(itertools.accumulate(rng.randint(1, 10**6) for _ in itertools.count()))
    marks = []  # number of clock reads before each forward

    res = measure_latency(
        lambda: marks.append(len(clock.reads)),
        batch_size=4,
        device="cpu",
        rule=StoppingRule(ci_target=1e-9, min_samples=30, max_samples=30, time_budget_s=1e9),
        warmup=WarmupPolicy(min_iters=3, min_seconds=0.0, max_seconds=1e9, settle_window=0),
        clock_ns=clock,
    )

    def bracket_s(mark):  # the reads immediately before and after that forward
        return (clock.reads[mark] - clock.reads[mark - 1]) / 1e9

    assert res.samples_s == tuple(bracket_s(m) for m in marks[-30:])
    assert res.first_call_s == bracket_s(marks[0])
    assert res.stop_reason == STOP_MAX_SAMPLES and not res.converged
    assert res.warmup_iters == 3 and len(marks) == 3 + 30
    assert res.timer == "perf_counter_ns"


def test_warmup_by_count_when_time_is_already_met():
    t = SimTime(itertools.repeat(0.001))
    res = measure_latency(t.forward, 1, "cpu", StoppingRule(), WarmupPolicy(20, 0.001, 60), clock_ns=t.clock)
    assert res.warmup_iters == 20
    assert t.calls == 20 + len(res.samples_s)
    assert not res.warmup_capped


def test_warmup_by_time_when_count_is_already_met():
    t = SimTime(itertools.repeat(0.1))
    res = measure_latency(t.forward, 1, "cpu", StoppingRule(), WarmupPolicy(3, 1.0, 60), clock_ns=t.clock)
    assert res.warmup_iters == 10
    assert res.warmup_s == pytest.approx(1.0)
    assert not res.warmup_capped


def test_warmup_stops_at_max_seconds_and_says_so():
    t = SimTime(itertools.repeat(2.0))
    rule = StoppingRule(min_samples=3, max_samples=3)
    res = measure_latency(t.forward, 1, "cpu", rule, WarmupPolicy(10, 0.5, 5.0), clock_ns=t.clock)
    assert res.warmup_capped
    assert res.warmup_iters == 3  # 2 s, 4 s, 6 s >= 5 s: stop, although min_iters is 10
    assert res.warmup_s == pytest.approx(6.0)


def test_constant_duration_converges():
    t = SimTime(itertools.repeat(0.001))
    rule = StoppingRule(ci_target=0.02, min_samples=10)
    res = measure_latency(t.forward, 1, "cpu", rule, NO_WARMUP, clock_ns=t.clock)
    assert res.stop_reason == STOP_CONVERGED and res.converged
    assert set(res.samples_s) == {0.001}
    assert len(res.samples_s) == lat.CHUNK_ITERS  # the rule is checked once per chunk


def test_noisy_duration_runs_out_of_time():
    rng = random.Random(2)
    t = SimTime(rng.uniform(0.001, 0.003) for _ in itertools.count())
    rule = StoppingRule(ci_target=1e-6, time_budget_s=0.5)
    res = measure_latency(t.forward, 1, "cpu", rule, NO_WARMUP, clock_ns=t.clock)
    assert res.stop_reason == STOP_TIME_BUDGET and not res.converged
    # the rule is checked after every chunk: at most one chunk (~50 ms + one forward) late
    assert 0.5 <= res.timed_s <= 0.5 + lat.CHUNK_NS / 1e9 + 0.003
    assert res.timed_s == pytest.approx(sum(res.samples_s))


def test_max_samples_is_not_overshot_by_a_chunk():
    rng = random.Random(4)
    t = SimTime(rng.uniform(1e-6, 2e-6) for _ in itertools.count())
    rule = StoppingRule(ci_target=1e-9, min_samples=5, max_samples=73)
    res = measure_latency(t.forward, 1, "cpu", rule, NO_WARMUP, clock_ns=t.clock)
    assert res.stop_reason == STOP_MAX_SAMPLES
    assert len(res.samples_s) == 73


def test_first_call_is_the_cold_one():
    t = SimTime(itertools.chain([0.7], itertools.repeat(0.001)))
    res = measure_latency(t.forward, 1, "cpu", StoppingRule(), WarmupPolicy(3, 0.0, 60), clock_ns=t.clock)
    assert res.first_call_s == pytest.approx(0.7)
    assert set(res.samples_s) == {0.001}


def test_derived_properties_and_json():
    t = SimTime(itertools.repeat(0.004))
    res = measure_latency(t.forward, 8, "cpu", StoppingRule(), NO_WARMUP, clock_ns=t.clock)
    assert res.median_s == pytest.approx(0.004)
    assert res.ms_per_image == pytest.approx(0.5)
    assert res.images_per_s == pytest.approx(2000)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["images_per_s"] == pytest.approx(2000)
    assert d["stats"]["n"] == len(res.samples_s) == len(d["samples_s"])
    assert d["stop_reason"] == STOP_CONVERGED


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_batch_size_is_validated(bad):
    with pytest.raises(UsageError):
        measure_latency(lambda: None, bad, "cpu", StoppingRule())


@pytest.mark.parametrize("kwargs", [dict(min_iters=0), dict(min_seconds=-1), dict(min_seconds=5, max_seconds=1)])
def test_warmup_policy_is_validated(kwargs):
    with pytest.raises(UsageError):
        WarmupPolicy(**kwargs)


def test_tiny_cpu_model_end_to_end():
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    x = torch.randn(2, 3, 32, 32)
    rule = StoppingRule(ci_target=0.05, min_samples=5, time_budget_s=0.5)
    with torch.inference_mode():
        res = measure_latency(lambda: model(x), 2, "cpu", rule, WarmupPolicy(2, 0.05, 5))
    assert isinstance(res, LatencyResult)
    assert res.stats.n == len(res.samples_s) > 0
    assert min(res.samples_s) > 0 and res.first_call_s > 0
    assert res.timer == "perf_counter_ns"
    assert res.timed_s >= sum(res.samples_s)


class FakeCuda:
    """Stands in for torch.cuda: a GPU whose queue advances by each forward's duration, and whose
    events only have a time once a synchronize() has passed them (as cudaEventElapsedTime)."""

    def __init__(self, durations_ms):
        self._durations = iter(durations_ms)
        self.queue_ms = 0.0
        self.log = []
        self.unsynced = []
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t_ms, self.done = None, False

            def record(self, stream=None):
                self.t_ms = fake.queue_ms
                fake.unsynced.append(self)

            def elapsed_time(self, end):
                if not (self.done and end.done):
                    raise RuntimeError("event not ready: read before synchronize")
                return end.t_ms - self.t_ms

        self.Event = Event

    def forward(self):
        self.queue_ms += next(self._durations)
        self.log.append("forward")

    def synchronize(self, device=None):
        for event in self.unsynced:
            event.done = True
        self.unsynced.clear()
        self.log.append("sync")


def test_cuda_path_reads_events_only_after_one_synchronize_per_chunk(monkeypatch):
    rng = random.Random(3)
    durations = [rng.uniform(1, 5) for _ in range(200)]
    fake = FakeCuda(durations)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: object())
    monkeypatch.setattr(torch.cuda, "Event", fake.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", fake.synchronize)

    rule = StoppingRule(ci_target=1e-9, min_samples=10, max_samples=120, time_budget_s=1e9)
    res = measure_latency(fake.forward, 1, "cuda", rule, WarmupPolicy(3, 0.0, 1e9, settle_window=0), clock_ns=lambda: 0)

    assert res.timer == "cuda_events"
    assert res.samples_s == pytest.approx([d / 1e3 for d in durations[3:123]])
    # first call between two syncs, one warm-up chunk (2 forwards), then chunks of 50, 50, 20
    assert fake.log[:3] == ["sync", "forward", "sync"]
    assert fake.log[3:6] == ["forward", "forward", "sync"]
    timed = fake.log[6:]
    assert timed == (["forward"] * 50 + ["sync"]) * 2 + ["forward"] * 20 + ["sync"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matmul_time_is_synchronised():
    a = torch.randn(4096, 4096, device="cuda")
    rule = StoppingRule(ci_target=0.05, min_samples=10, time_budget_s=3)
    res = measure_latency(lambda: a @ a, 1, "cuda", rule, WarmupPolicy(3, 0.2, 10))
    assert res.timer == "cuda_events"
    # ~137 GFLOP: milliseconds on any GPU; an unsynchronised timer would read the ~10 us launch
    assert res.median_s > 1e-4
    assert math.isfinite(res.first_call_s) and res.first_call_s > 1e-4


def test_warmup_goes_on_until_the_rolling_median_settles():
    # 40 slowly speeding-up iterations (caches, clocks, allocator), then steady: warm-up ends in the plateau
    durations = [0.1 * (1 - i / 40) + 0.01 for i in range(40)] + [0.01] * 10_000
    t = SimTime(durations)
    policy = WarmupPolicy(3, 0.0, 60, settle_window=5, settle_tolerance=0.05, settle_budget_s=60)
    res = measure_latency(t.forward, 1, "cpu", StoppingRule(min_samples=3, max_samples=3), policy, clock_ns=t.clock)
    assert res.warmup_settled and not res.warmup_capped
    assert res.warmup_iters >= 40  # not before the drift ended
    assert res.warmup_s == pytest.approx(sum(durations[:res.warmup_iters]))
    never = SimTime(itertools.cycle([0.01, 0.02, 0.04, 0.08]))  # a median that never settles: capped
    res = measure_latency(never.forward, 1, "cpu", StoppingRule(min_samples=3, max_samples=3),
                          WarmupPolicy(3, 0.0, 2.0, settle_window=2, settle_tolerance=0.01, settle_budget_s=60),
                          clock_ns=never.clock)
    assert not res.warmup_settled and 2.0 <= res.warmup_s < 2.2
    assert not res.warmup_capped  # its minimums were met: only settling was cut short


def test_settling_extends_warm_up_by_its_budget_only():
    """A slow forward on a noisy machine never settles to 5%: warm-up goes past its minimums by at most
    settle_budget_s, and says the median did not settle (ten 3-second calls would cost 30 s per cell)."""
    noisy = SimTime(itertools.cycle([3.0, 3.6, 2.7, 3.9]))
    res = measure_latency(noisy.forward, 8, "cpu", StoppingRule(min_samples=3, max_samples=3),
                          WarmupPolicy(1, 0.1, 60, settle_window=5, settle_tolerance=0.05, settle_budget_s=2.0),
                          clock_ns=noisy.clock)
    assert not res.warmup_settled and not res.warmup_capped
    assert res.warmup_iters <= 3  # the cold call, then one chunk past the budget at most


def test_interleaved_calls_are_timed_each_on_its_own_in_turn():
    """Calls of known, different costs, taken in turn: each one's samples are its own cost, in round order,
    and the group stops once every call meets the rule (the slow call does not keep the fast ones short)."""
    now = {"ns": 0}
    order: list[str] = []

    def costing(name, seconds):
        def call():
            order.append(name)
            now["ns"] += round(seconds * 1e9)
        return call

    costs = {"a": 1e-3, "b": 5e-5, "c": 2e-2}
    rule = StoppingRule(ci_target=0.05, min_samples=4, time_budget_s=10.0)
    results = lat.measure_interleaved([costing(n, s) for n, s in costs.items()], "cpu", rule,
                                      WarmupPolicy(min_iters=2, min_seconds=0.0, max_seconds=1e9),
                                      clock_ns=lambda: now["ns"])
    assert order[:6] == ["a", "b", "c"] * 2  # warm-up rounds, in turn
    assert len(order) % 3 == 0 and order == ["a", "b", "c"] * (len(order) // 3)
    for result, seconds in zip(results, costs.values()):
        assert result.samples_s and all(s == pytest.approx(seconds) for s in result.samples_s)
        assert result.median_s == pytest.approx(seconds) and result.converged
        assert result.warmup_iters == 2 and result.first_call_s == pytest.approx(seconds)
        # constant costs converge together, at the first count with a 95% order-statistics interval (6)
        assert len(result.samples_s) == 6


def test_interleaved_group_budget_stops_a_noisy_call_at_its_minimum():
    now = {"ns": 0}
    rng = random.Random(3)

    def noisy():
        now["ns"] += round(rng.uniform(1e-3, 9e-3) * 1e9)

    def steady():
        now["ns"] += 1_000_000

    rule = StoppingRule(ci_target=1e-6, min_samples=3, time_budget_s=0.05)
    noisy_result, steady_result = lat.measure_interleaved([noisy, steady], "cpu", rule, NO_WARMUP,
                                                          clock_ns=lambda: now["ns"])
    assert noisy_result.stop_reason == STOP_TIME_BUDGET and not noisy_result.converged
    # the group's budget is the calls' budgets together: 2 x 0.05 s of rounds of about 6 ms
    assert 10 <= len(noisy_result.samples_s) == len(steady_result.samples_s) <= 25
