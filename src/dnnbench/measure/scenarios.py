"""The offline and server scenarios of MLPerf Inference, scaled down: throughput with several requests in flight,
and latency under a Poisson load. Pure measurement over a stream pool (backends.streams.StreamPool: `submit`,
`wait_all`, `close`); nothing here knows backends, the store or runs. The rules and searches are described in
docs/SCENARIOS.md.

Offline: `streams` requests kept in flight, each a batch; throughput is sustained: images completed inside a
timed window over its wall time, the window opened after a warm-up with every stream busy and closed once it
lasted `min_duration_s` AND held `min_images` images (MLPerf: 600 s and 24,576 samples; scaled down, stated in
OfflineRules). `offline_search` walks stream counts (the cores split evenly: streams x threads = cores) and,
for each, batch sizes upwards until the throughput falls, keeping every point: the whole curve.

Server: requests arrive as a Poisson process of rate R generated here (seeded: the same unit draws at every
rate, scaled by 1/R); each is submitted at its scheduled arrival, served by the first free stream, and its
latency runs from the scheduled arrival to completion, queueing included. `server_search` brackets, then
bisects, the highest rate whose p99 stays under the bound (MLPerf's Server rule), bounded in points and time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from ..backends.streams import ConcurrencyUnsupported
from ..errors import UsageError

SPIN_S = 0.001  # a server arrival's last millisecond is waited by yielding, not sleeping (timer slack)


class Pool(Protocol):
    streams: int
    threads_per_stream: int | None
    concurrency: str

    def submit(self, on_done: Callable[[BaseException | None], None]) -> None: ...

    def wait_all(self) -> None: ...

    def close(self) -> None: ...


# make_pool(streams, batch_size, threads_per_stream) -> a pool running that batch size on that many streams
PoolFactory = Callable[[int, int, "int | None"], Pool]


@dataclass(frozen=True)
class OfflineRules:
    """How long and how much each offline point is timed, and how far the search goes."""

    min_duration_s: float = 2.0  # MLPerf Offline: 600 s
    min_images: int = 64  # MLPerf Offline: 24,576 samples
    warmup_s: float = 0.5  # and at least two requests per stream completed before the window opens
    max_point_s: float = 30.0  # a point still short of its minimums then is kept with met_minimums False
    max_search_s: float = 180.0  # no new point starts after this
    drop_tolerance: float = 0.03  # a larger batch stops being tried once throughput falls this far below the best

    def __post_init__(self) -> None:
        if not (self.min_duration_s > 0 and self.min_images >= 1 and self.max_point_s >= self.min_duration_s):
            raise UsageError(f"offline rules need min_duration_s > 0, min_images >= 1 and max_point_s >= "
                             f"min_duration_s, not {self}")


@dataclass(frozen=True)
class ServerRules:
    """How many requests each offered rate gets, and how the search for the knee is bounded."""

    min_duration_s: float = 2.0  # MLPerf Server: 600 s
    min_queries: int = 200  # MLPerf Server: 270,336 queries; 200 puts the p99 at the second-slowest request
    max_point_s: float = 20.0  # arrivals span at most this; a backlog gets as long again, then the rest are dropped
    max_points: int = 10
    max_search_s: float = 150.0
    rate_tolerance: float = 0.05  # bisection stops when the bracket [meets, fails] is this narrow (relative)
    bound_multiple: float = 4.0  # default p99 bound: this many single-stream medians
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.min_duration_s > 0 and self.min_queries >= 1 and self.max_points >= 2
                and self.rate_tolerance > 0 and self.bound_multiple > 0):
            raise UsageError(f"server rules need positive durations, counts and tolerances, not {self}")


@dataclass(frozen=True)
class OfflinePointResult:
    """One point of the curve (field names as store.values.OfflinePoint)."""

    streams: int
    batch_size: int
    threads_per_stream: int | None
    images_per_s: float | None = None
    samples: int | None = None
    images: int | None = None
    duration_s: float | None = None
    met_minimums: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class OfflineResult:
    concurrency: str
    cores: int
    points: tuple[OfflinePointResult, ...]
    best_images_per_s: float | None
    best_streams: int | None
    best_batch_size: int | None
    single_stream_images_per_s: float | None
    min_duration_s: float
    min_samples: int
    search: str
    search_s: float


@dataclass(frozen=True)
class ServerPointResult:
    """One offered rate (field names as store.values.ServerPoint)."""

    target_rate: float
    achieved_rate: float | None
    count: int
    completed: int
    duration_s: float
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    mean_s: float | None
    max_s: float | None
    dropped: int
    late: int
    meets_bound: bool
    latencies_s: tuple[float, ...] = field(default=(), repr=False)  # for tests and analysis; not stored


@dataclass(frozen=True)
class ServerResult:
    concurrency: str
    streams: int
    threads_per_stream: int | None
    batch_size: int
    p99_bound_s: float
    bound_source: str
    single_stream_median_s: float | None
    points: tuple[ServerPointResult, ...]
    knee_rate: float | None
    seed: int
    search: str
    search_s: float


class _Completions:
    """Completion times, appended from the pool's threads; the first error is kept and raised later."""

    def __init__(self, clock: Callable[[], float]):
        self.clock, self.times, self.error = clock, [], None
        self.lock = threading.Lock()

    def done(self, error: BaseException | None) -> None:
        now = self.clock()
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.times.append(now)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def threads_per_stream(cores: int, streams: int) -> int:
    """The cores split evenly over the streams (at least one thread each)."""
    return max(1, cores // streams)


def offline_point(pool: Pool, batch_size: int, rules: OfflineRules = OfflineRules(),
                  clock: Callable[[], float] = time.perf_counter) -> OfflinePointResult:
    """Sustained images/s with every stream of `pool` kept busy: warm-up, then a timed window until both
    minimums are met (or the point's cap)."""
    done = _Completions(clock)
    started = clock()
    warm_requests = 2 * pool.streams
    window_start = window_count = None
    end = end_count = None
    while True:
        pool.submit(done.done)
        now = clock()
        completed = len(done.times)
        if done.error is not None:
            break
        if window_start is None:
            if now - started >= rules.warmup_s and completed >= warm_requests:
                window_start, window_count = now, completed
            elif now - started >= rules.max_point_s:
                break
            continue
        images = (completed - window_count) * batch_size
        if (now - window_start >= rules.min_duration_s and images >= rules.min_images) or \
                now - started >= rules.max_point_s:
            end, end_count = now, completed
            break
    pool.wait_all()
    done.raise_error()
    if window_start is None or end is None or end_count == window_count:
        return OfflinePointResult(pool.streams, batch_size, pool.threads_per_stream, met_minimums=False,
                                  error=f"fewer than {warm_requests} requests finished in {rules.max_point_s:g} s "
                                        "of warm-up")
    samples = end_count - window_count
    duration = end - window_start
    return OfflinePointResult(pool.streams, batch_size, pool.threads_per_stream,
                              images_per_s=samples * batch_size / duration, samples=samples,
                              images=samples * batch_size, duration_s=duration,
                              met_minimums=duration >= rules.min_duration_s and samples * batch_size >= rules.min_images)


def default_stream_counts(cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the cores, and the cores themselves."""
    counts, n = [], 1
    while n <= cores:
        counts.append(n)
        n *= 2
    return tuple(sorted(set(counts) | {cores}))


def offline_search(make_pool: PoolFactory, cores: int, stream_counts: tuple[int, ...], batch_sizes: tuple[int, ...],
                   rules: OfflineRules = OfflineRules(), clock: Callable[[], float] = time.perf_counter,
                   out_of_memory: Callable[[BaseException], bool] = lambda exc: isinstance(exc, MemoryError)
                   ) -> OfflineResult:
    """Every stream count (ascending; at most the cores), and for each the batch sizes upwards until the throughput
    falls `drop_tolerance` below that stream count's best (or a batch runs out of memory): every point kept.
    `make_pool` may raise backends.streams.ConcurrencyUnsupported: the whole search then says so (raised)."""
    started = clock()
    points: list[OfflinePointResult] = []
    concurrency = ""
    skipped = []
    streams_tried = [s for s in sorted(set(stream_counts)) if s <= cores] or [1]
    for streams in streams_tried:
        threads = threads_per_stream(cores, streams)
        best_here = 0.0
        for batch_size in sorted(set(batch_sizes)):
            if clock() - started >= rules.max_search_s:
                skipped.append(f"{streams}x{batch_size}")
                continue
            try:
                pool = make_pool(streams, batch_size, threads)
            except ConcurrencyUnsupported:
                raise
            except Exception as exc:  # noqa: BLE001 - a point that cannot be set up is a point of the curve too
                points.append(OfflinePointResult(streams, batch_size, threads, error=_line(exc)))
                if out_of_memory(exc):
                    break
                continue
            concurrency = concurrency or pool.concurrency
            # a point never runs past the search's own cap (but always gets its minimum duration)
            left = rules.max_search_s - (clock() - started)
            capped = replace(rules, max_point_s=max(rules.min_duration_s, min(rules.max_point_s, left)))
            try:
                point = offline_point(pool, batch_size, capped, clock)
            except Exception as exc:  # noqa: BLE001
                point = OfflinePointResult(streams, batch_size, threads, error=_line(exc))
                if out_of_memory(exc):
                    points.append(point)
                    break
            finally:
                pool.close()
            points.append(point)
            rate = point.images_per_s or 0.0
            if rate < best_here * (1 - rules.drop_tolerance):
                break  # past this stream count's peak: larger batches only add latency
            best_here = max(best_here, rate)
    measured = [p for p in points if p.images_per_s is not None]
    best = max(measured, key=lambda p: p.images_per_s) if measured else None
    single = next((p.images_per_s for p in measured if p.streams == 1 and p.batch_size == 1), None)
    search = (f"streams {', '.join(map(str, streams_tried))} (threads = {cores} cores // streams); per stream count "
              f"batch sizes {', '.join(map(str, sorted(set(batch_sizes))))} upwards until images/s fell "
              f"{100 * rules.drop_tolerance:g}% below its best")
    if skipped:
        search += f"; not measured (search capped at {rules.max_search_s:g} s): {', '.join(skipped)}"
    return OfflineResult(concurrency, cores, tuple(points), best.images_per_s if best else None,
                         best.streams if best else None, best.batch_size if best else None, single,
                         rules.min_duration_s, rules.min_images, search, clock() - started)


def warm_streams(pool: Pool, seconds: float = 0.5, per_stream: int = 4,
                 clock: Callable[[], float] = time.perf_counter) -> None:
    """Every stream kept busy for `seconds` and `per_stream` requests each at least, before the server's search:
    a stream's first calls are slow (its thread's OpenMP team and malloc arena are new), and a search that meets
    them at its first, highest rates brackets the knee too low (MobileNetV2, eager, 2 streams: 23 requests/s in
    one run against 74 in another, whose first rates had met the bound)."""
    done = _Completions(clock)
    started, submitted = clock(), 0
    while submitted < per_stream * pool.streams or clock() - started < seconds:
        pool.submit(done.done)
        submitted += 1
    pool.wait_all()
    done.raise_error()


def single_stream_median(pool: Pool, min_requests: int = 20, min_seconds: float = 1.0,
                         clock: Callable[[], float] = time.perf_counter) -> float:
    """The median time of one request alone (submitted, waited for, then the next), after three warm-up requests:
    the figure the server scenario's default bound is a multiple of."""
    samples: list[float] = []
    started = clock()
    while len(samples) < min_requests + 3 or clock() - started < min_seconds:
        done = _Completions(clock)
        begin = clock()
        pool.submit(done.done)
        pool.wait_all()
        done.raise_error()
        samples.append(done.times[0] - begin)
        if len(samples) >= 10_000:
            break
    return _percentile(sorted(samples[3:]), 0.5)


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival offsets (s) of a Poisson process of `rate`: the same seeded unit-rate draws at every rate, scaled."""
    draws = random.Random(seed)
    offsets, now = [], 0.0
    for _ in range(count):
        now += draws.expovariate(1.0)
        offsets.append(now / rate)
    return offsets


def server_point(pool: Pool, rate: float, bound_s: float, rules: ServerRules = ServerRules(),
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> ServerPointResult:
    """`count` Poisson arrivals at `rate` per second (count: enough for `min_duration_s` and `min_queries`, at most
    `max_point_s` of arrivals), each submitted at its scheduled time; latency from that time to completion."""
    count = max(rules.min_queries, math.ceil(rate * rules.min_duration_s))
    count = max(1, min(count, math.ceil(rate * rules.max_point_s)))
    arrivals = poisson_arrivals(count, rate, rules.seed)
    latencies: list[float | None] = [None] * count
    errors: list[BaseException] = []

    def finisher(index: int, scheduled: float) -> Callable[[BaseException | None], None]:
        def done(error: BaseException | None) -> None:
            latencies[index] = clock() - scheduled
            if error is not None:
                errors.append(error)
        return done

    base = clock() + 0.01
    # the schedule, then at most `max_point_s` more for a backlog: an overloaded pool drops the rest
    deadline = base + arrivals[-1] + rules.max_point_s
    issued = 0
    for index, offset in enumerate(arrivals):
        scheduled = base + offset
        wait = scheduled - clock()
        if wait > SPIN_S:
            sleep(wait - SPIN_S)  # the OS wakes a sleeper late; the last stretch is waited in short yields
        while clock() < scheduled:
            sleep(0)
        if clock() > deadline:
            break
        pool.submit(finisher(index, scheduled))
        issued += 1
        if errors:
            break
    pool.wait_all()
    if errors:
        raise errors[0]
    finished = clock()
    done_latencies = sorted(latency for latency in latencies[:issued] if latency is not None)
    dropped = count - len(done_latencies)
    duration = finished - base
    p99 = _percentile(done_latencies, 0.99) if done_latencies else None
    return ServerPointResult(
        target_rate=rate, achieved_rate=len(done_latencies) / duration if duration > 0 else None, count=count,
        completed=len(done_latencies), duration_s=duration,
        p50_s=_percentile(done_latencies, 0.5) if done_latencies else None,
        p90_s=_percentile(done_latencies, 0.9) if done_latencies else None, p99_s=p99,
        mean_s=sum(done_latencies) / len(done_latencies) if done_latencies else None,
        max_s=done_latencies[-1] if done_latencies else None, dropped=dropped,
        late=sum(1 for latency in done_latencies if latency > bound_s),
        meets_bound=p99 is not None and p99 <= bound_s and dropped == 0,
        latencies_s=tuple(latency for latency in latencies[:issued] if latency is not None))


def server_search(pool: Pool, batch_size: int, p99_bound_s: float | None, rules: ServerRules = ServerRules(),
                  clock: Callable[[], float] = time.perf_counter,
                  sleep: Callable[[float], None] = time.sleep) -> ServerResult:
    """The highest Poisson rate (requests/s) whose p99 latency meets the bound. The bound: `p99_bound_s`, else
    `bound_multiple` x the single-stream median measured first on this pool. The search starts at half the
    pool's capacity (streams / single-stream median), goes up x1.5 (or down /2) until the bound is bracketed,
    then bisects geometrically until the bracket is `rate_tolerance` narrow, at most `max_points` rates and
    `max_search_s` seconds. Every rate tried is kept."""
    started = clock()
    warm_streams(pool, clock=clock)
    single = single_stream_median(pool, clock=clock)
    if p99_bound_s is None:
        bound, source = rules.bound_multiple * single, f"{rules.bound_multiple:g}x single-stream median"
    else:
        bound, source = p99_bound_s, "user"
    capacity = pool.streams / single
    points: list[ServerPointResult] = []
    meets: float | None = None
    fails: float | None = None
    rate = capacity / 2

    def budget_left() -> bool:
        return len(points) < rules.max_points and clock() - started < rules.max_search_s

    while budget_left():
        point = server_point(pool, rate, bound, rules, clock, sleep)
        points.append(point)
        if point.meets_bound:
            meets = rate if meets is None else max(meets, rate)
        else:
            fails = rate if fails is None else min(fails, rate)
        if meets is not None and fails is not None:
            if fails / meets <= 1 + rules.rate_tolerance:
                break
            rate = math.sqrt(meets * fails)
        elif meets is not None:
            if rate > 4 * capacity:
                break  # meets far past what the streams can serve: the bound does not bind
            rate *= 1.5
        else:
            if rate < capacity / 256:
                break  # even a trickle misses the bound
            rate /= 2
    search = (f"start at half the capacity ({capacity:.3g}/s = {pool.streams} streams / single-stream median), x1.5 up "
              f"or /2 down until bracketed, then geometric bisection to {100 * rules.rate_tolerance:g}%; "
              f"{len(points)} rates (at most {rules.max_points}, {rules.max_search_s:g} s)")
    return ServerResult(pool.concurrency, pool.streams, pool.threads_per_stream, batch_size, bound, source, single,
                        tuple(points), meets, rules.seed, search, clock() - started)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples (a measured latency, never an interpolation)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def point_dicts(points: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Points as dicts of their stored fields (the latency samples left out)."""
    from dataclasses import asdict

    return [{k: v for k, v in asdict(p).items() if k != "latencies_s"} for p in points]


__all__ = ["OfflinePointResult", "OfflineResult", "OfflineRules", "Pool", "PoolFactory", "ServerPointResult",
           "ServerResult", "ServerRules", "default_stream_counts", "offline_point", "offline_search",
           "poisson_arrivals", "point_dicts", "server_point", "server_search", "single_stream_median", "warm_streams",
           "threads_per_stream"]
