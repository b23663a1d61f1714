"""Latency of one forward pass at one batch size, timed so that the work is really finished.

Conventions (the caller's job, not this module's): the input already lives on the device, the
model is in eval() mode under inference_mode, and ``forward()`` runs exactly one forward pass.

Every timing here waits for the device:

- CPU: ``clock_ns()`` (time.perf_counter_ns) immediately before and after ``forward()``; nothing
  else runs in between. Timer name "perf_counter_ns".
- CUDA: a pair of ``torch.cuda.Event(enable_timing=True)`` recorded on the current stream around
  each ``forward()``. Iterations are launched in chunks (until ~50 ms of wall time or 50
  iterations), then ONE ``torch.cuda.synchronize()`` and only then are the event times read: the
  CPU queues the next iterations while the GPU works, and no time is read before the GPU has
  finished. Timer name "cuda_events".
- MPS: ``torch.mps.synchronize()`` after each forward, inside the clock brackets. Timer name
  "perf_counter_ns+synchronize".

The first call of a measurement (cold for this batch size: allocator growth, cuDNN algorithm
choice, lazy initialisation) is timed on its own, between two synchronisations, by the wall clock,
and counts as the first warm-up iteration. Warm-up then goes on until both ``min_iters`` forwards
and ``min_seconds`` have passed (each warm-up chunk is synchronised) AND the rolling median has
settled (the median of the last ``settle_window`` warm-up iterations within ``settle_tolerance`` of
the median of the window before it), or until ``max_seconds``, which is then recorded as
``warmup_capped``. Settling may extend warm-up past the minimums by at most ``settle_budget_s``
(a noisy machine never settles to 5%, and a 3-second forward cannot afford ten warm-up calls);
``warmup_settled`` says whether the median settled, and when it did ``warmup_iters`` and
``warmup_s`` are the iterations and seconds it took to reach steady state. The timed phase
checks the StoppingRule after every synchronised chunk with all samples so far; its elapsed time is
the wall time since the timed phase began.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Callable

import torch

from dnnbench.errors import UsageError

from .stats import STOP_CONVERGED, SampleStats, StoppingRule, summarize

TIMER_CPU = "perf_counter_ns"
TIMER_CUDA = "cuda_events"
TIMER_MPS = "perf_counter_ns+synchronize"

# A chunk of iterations ends after this much wall time or this many iterations, whichever first;
# the stopping rule is checked (and on CUDA the device synchronised) once per chunk.
CHUNK_NS = 50_000_000
CHUNK_ITERS = 50


class InvalidLatencyArgument(UsageError, ValueError):
    """An argument of measure_latency or WarmupPolicy is out of range."""


@dataclass(frozen=True)
class WarmupPolicy:
    """Warm up until min_iters forwards AND min_seconds have passed, or max_seconds has (a very slow model).

    The first (cold) call counts as the first warm-up iteration.
    """

    min_iters: int = 3
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    settle_window: int = 5  # 0: no settling test, the minimums alone end warm-up
    settle_tolerance: float = 0.05
    settle_budget_s: float = 2.0  # warm-up past the minimums allowed for the rolling median to settle

    def __post_init__(self) -> None:
        if not (isinstance(self.min_iters, Integral) and self.min_iters >= 1):
            raise InvalidLatencyArgument(f"WarmupPolicy.min_iters must be an integer >= 1, got {self.min_iters!r}")
        if not 0 <= self.min_seconds <= self.max_seconds < math.inf:
            raise InvalidLatencyArgument(
                "WarmupPolicy needs 0 <= min_seconds <= max_seconds < inf, "
                f"got min_seconds={self.min_seconds!r}, max_seconds={self.max_seconds!r}"
            )
        if not 0 <= self.settle_budget_s < math.inf:
            raise InvalidLatencyArgument(f"WarmupPolicy.settle_budget_s must be >= 0, got {self.settle_budget_s!r}")


@dataclass(frozen=True)
class LatencyResult:
    """Forward-pass times of one batch size. All times in seconds."""

    batch_size: int
    samples_s: tuple[float, ...]  # every timed forward, in order
    stats: SampleStats
    stop_reason: str
    converged: bool
    warmup_iters: int  # including the first call
    warmup_s: float  # wall time from the start of the first call to the end of warm-up
    warmup_capped: bool  # warm-up stopped at max_seconds before min_iters/min_seconds were met
    first_call_s: float
    timer: str
    timed_s: float  # wall time of the timed phase
    warmup_settled: bool = True  # the rolling median settled before warm-up ended (WarmupPolicy.settle_window)

    @property
    def median_s(self) -> float:
        return self.stats.median

    @property
    def ms_per_image(self) -> float:
        return self.median_s / self.batch_size * 1e3

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_s if self.median_s > 0 else math.inf

    @property
    def sustained_images_per_s(self) -> float:
        """Images over the wall time of the whole timed phase (every forward, slow ones and the gaps between
        chunks included): what a stream of batches gets, beside the median-derived images_per_s."""
        images = self.batch_size * len(self.samples_s)
        return images / self.timed_s if self.timed_s > 0 else math.inf

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_s"] = list(self.samples_s)
        d["stats"] = {k: _json_value(v) for k, v in self.stats.to_dict().items()}
        d.update(median_s=self.median_s, ms_per_image=self.ms_per_image, images_per_s=self.images_per_s,
                 sustained_images_per_s=self.sustained_images_per_s)
        return {k: _json_value(v) for k, v in d.items()}


def measure_latency(
    forward: Callable[[], object],
    batch_size: int,
    device: torch.device | str,
    rule: StoppingRule,
    warmup: WarmupPolicy = WarmupPolicy(),
    *,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
    on_warm: Callable[[], object] | None = None,
) -> LatencyResult:
    """Warm up, then time ``forward()`` until ``rule`` says stop. See the module docstring.

    ``on_warm`` is called once warm-up is over (the device synchronised), before the first timed call: a
    memory peak reset there leaves out what only the first calls need (cuDNN's autotuning workspaces)."""
    if isinstance(batch_size, bool) or not (isinstance(batch_size, Integral) and batch_size >= 1):
        raise InvalidLatencyArgument(f"batch_size must be an integer >= 1, got {batch_size!r}")
    timer = _make_timer(torch.device(device), clock_ns)

    timer.sync()
    t0 = clock_ns()
    forward()
    timer.sync()
    first_call_s = (clock_ns() - t0) / 1e9

    iters, capped, warm, minimums_met_at = 1, False, [first_call_s], None
    while True:
        warmup_s = (clock_ns() - t0) / 1e9
        settled = _settled(warm, warmup.settle_window, warmup.settle_tolerance)
        minimums = iters >= warmup.min_iters and warmup_s >= warmup.min_seconds
        if minimums and minimums_met_at is None:
            minimums_met_at = warmup_s
        if minimums and (settled or warmup_s - minimums_met_at >= warmup.settle_budget_s):
            break
        if warmup_s >= warmup.max_seconds:
            capped = not minimums
            break
        todo = warmup.min_iters - iters if iters < warmup.min_iters else CHUNK_ITERS
        if iters >= warmup.min_iters and warmup_s >= warmup.min_seconds:
            todo = max(1, warmup.settle_window)  # only the median is missing: one window at a time
        chunk = _run_chunk(timer, forward, clock_ns, min(todo, CHUNK_ITERS))
        warm.extend(chunk)
        iters += len(chunk)
    if on_warm is not None:
        timer.sync()
        on_warm()

    samples: list[float] = []
    start = clock_ns()
    while True:
        room = CHUNK_ITERS if rule.max_samples is None else min(CHUNK_ITERS, rule.max_samples - len(samples))
        samples.extend(_run_chunk(timer, forward, clock_ns, room))
        timed_s = (clock_ns() - start) / 1e9
        reason = rule.check(samples, timed_s)
        if reason is not None:
            break

    return LatencyResult(
        batch_size=int(batch_size),
        samples_s=tuple(samples),
        stats=summarize(samples, rule.ci_level),
        stop_reason=reason,
        converged=reason == STOP_CONVERGED,
        warmup_iters=iters,
        warmup_s=warmup_s,
        warmup_capped=capped,
        first_call_s=first_call_s,
        warmup_settled=settled,
        timer=timer.name,
        timed_s=timed_s,
    )


def measure_interleaved(
    forwards: list[Callable[[], object]],
    device: torch.device | str,
    rule: StoppingRule,
    warmup: WarmupPolicy = WarmupPolicy(),
    *,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> list[LatencyResult]:
    """Time several calls taken in turn: a round calls each once, in order, each timed on its own with the same
    timer as `measure_latency` (on CUDA its own pair of events, the device synchronised once per round). So each
    call runs after the others, as an operator runs inside a model (its code, its data and the library's state
    for it gone cold in between), not in a loop that keeps them hot.

    Warm-up: rounds until `warmup.min_iters` rounds and `warmup.min_seconds` have passed (no settling: a round
    mixes calls of very different lengths), at most `warmup.max_seconds`. Timed: rounds until every call's
    samples meet `rule` (each call checked with its own copy of the rule, against the rounds' elapsed time
    scaled by the number of calls, so that the group gets the budget its calls would get one by one), or the
    group's budget is spent with every call at `rule.min_samples`. One LatencyResult per call, batch size 1."""
    import dataclasses

    if not forwards:
        return []
    timer = _make_timer(torch.device(device), clock_ns)
    count = len(forwards)

    def one_round() -> list[float]:
        for forward in forwards:
            timer.launch(forward)
        return timer.collect()

    timer.sync()
    t0 = clock_ns()
    first = one_round()
    rounds, capped = 1, False
    while True:
        warmup_s = (clock_ns() - t0) / 1e9
        if rounds >= warmup.min_iters and warmup_s >= warmup.min_seconds:
            break
        if warmup_s >= warmup.max_seconds:
            capped = True
            break
        one_round()
        rounds += 1

    rules = [dataclasses.replace(rule) for _ in forwards]
    samples: list[list[float]] = [[] for _ in forwards]
    reasons: list[str | None] = [None] * count
    start = clock_ns()
    while True:
        for i, seconds in enumerate(one_round()):
            samples[i].append(seconds)
        timed_s = (clock_ns() - start) / 1e9
        # a call's first reason to stop is kept: it goes on being timed only while the others need rounds
        reasons = [reason or r.check(s, timed_s / count) for reason, r, s in zip(reasons, rules, samples)]
        if all(reason is not None for reason in reasons):
            break
    return [
        LatencyResult(batch_size=1, samples_s=tuple(s), stats=summarize(s, rule.ci_level), stop_reason=reason,
                      converged=reason == STOP_CONVERGED, warmup_iters=rounds, warmup_s=warmup_s,
                      warmup_capped=capped, first_call_s=first[i], warmup_settled=False, timer=timer.name,
                      timed_s=timed_s)
        for i, (s, reason) in enumerate(zip(samples, reasons))]


def _settled(durations: list[float], window: int, tolerance: float) -> bool:
    """Whether the median of the last `window` durations is within `tolerance` (relative) of the median
    of the `window` before them: the rolling median has stopped moving."""
    if window <= 0:
        return True
    if len(durations) < 2 * window:
        return False
    last = sorted(durations[-window:])[window // 2]
    before = sorted(durations[-2 * window:-window])[window // 2]
    return abs(last - before) <= tolerance * before


def _run_chunk(timer, forward: Callable[[], object], clock_ns: Callable[[], int], max_iters: int) -> list[float]:
    """Launch up to max_iters timed forwards (fewer once CHUNK_NS of wall time has passed), then
    synchronise once and return their durations in seconds."""
    start = clock_ns()
    for _ in range(max_iters):
        timer.launch(forward)
        if clock_ns() - start >= CHUNK_NS:
            break
    return timer.collect()


class _CpuTimer:
    name = TIMER_CPU

    def __init__(self, clock_ns: Callable[[], int]):
        self._clock = clock_ns
        self._pending_ns: list[int] = []

    def sync(self) -> None:
        pass

    def launch(self, forward: Callable[[], object]) -> None:
        clock = self._clock
        t0 = clock()
        forward()
        t1 = clock()
        self._pending_ns.append(t1 - t0)

    def collect(self) -> list[float]:
        out = [ns / 1e9 for ns in self._pending_ns]
        self._pending_ns.clear()
        return out


class _MpsTimer(_CpuTimer):
    name = TIMER_MPS

    def sync(self) -> None:
        torch.mps.synchronize()

    def launch(self, forward: Callable[[], object]) -> None:
        clock, sync = self._clock, torch.mps.synchronize
        t0 = clock()
        forward()
        sync()
        t1 = clock()
        self._pending_ns.append(t1 - t0)


class _CudaEventTimer:
    name = TIMER_CUDA

    def __init__(self, device: torch.device):
        self._device = device
        self._stream = torch.cuda.current_stream(device)
        self._pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def sync(self) -> None:
        torch.cuda.synchronize(self._device)

    def launch(self, forward: Callable[[], object]) -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(self._stream)
        forward()
        end.record(self._stream)
        self._pending.append((start, end))

    def collect(self) -> list[float]:
        self.sync()  # event times are only final once the GPU has passed both events
        out = [start.elapsed_time(end) / 1e3 for start, end in self._pending]  # ms -> s
        self._pending.clear()
        return out


def _make_timer(device: torch.device, clock_ns: Callable[[], int]):
    if device.type == "cpu":
        return _CpuTimer(clock_ns)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidLatencyArgument(f"device {device} requested but torch.cuda.is_available() is False")
        return _CudaEventTimer(device)
    if device.type == "mps":
        return _MpsTimer(clock_ns)
    raise InvalidLatencyArgument(f"cannot time on a {device.type!r} device: dnnbench times cpu, cuda and mps")


def _json_value(v):
    """JSON has no NaN or infinity: such floats become None."""
    if isinstance(v, Real) and not isinstance(v, Integral) and not math.isfinite(v):
        return None
    return v
