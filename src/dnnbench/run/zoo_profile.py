"""`dnnbench profile` over whole libraries: every model counted on the meta device by a pool of worker
processes, each result kept in the store the moment it arrives, the models already counted skipped.

Why a pool of our own rather than concurrent.futures: a worker that dies (a segfaulting library, a model
that kills its process, the OOM killer) must cost only the model it held, and the pool must know which one
that was. Each worker here holds one model at a time over its own pipe, so a dead worker's model is
recorded as failed with the signal or exit status, a fresh worker takes its place, and the others go on.
Workers reuse their imports (torch and timm take seconds to import) and are replaced after
`max_tasks` models or when their memory passes `max_rss_bytes` (the libraries' caches grow).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection, wait
from typing import Any

from ..store import CellKey, ResultRecord, Store
from ..store.values import ComplexityValue
from ..zoo import ModelSpec
from .lifecycle import RunLifecycle

METRIC = "complexity"
DEFAULT_TIMEOUT_S = 300.0  # the largest timm models count in seconds on the meta device
DEFAULT_MAX_TASKS = 150
DEFAULT_MAX_RSS = 1_250 * 2**20  # two workers and the CLI stay under 4 GB


@dataclass(frozen=True)
class ProfileRequest:
    """How each model is counted. With the defaults a cell has the key `dnnbench run` gives its complexity
    cell, so either command's count serves the other."""

    input_size: int | None = None  # None: each model's native size
    batch_size: int = 1
    mode: str = "standard"
    dtype: str = "fp32"

    def key(self, spec: ModelSpec) -> CellKey:
        return CellKey(spec.id, METRIC, {"input_size": self.input_size or spec.input_size,
                                         "batch_size": self.batch_size, "mode": self.mode, "dtype": self.dtype})


@dataclass(frozen=True)
class Failure:
    model: str
    status: str  # "unsupported" (its library cannot build it on the meta device), "error" (counting raised),
    # "crash" (the worker died holding it), "timeout"
    reason: str


@dataclass
class ProfileOutcome:
    """What a profile run ended with: the counts (from this run and from the store), and the failures."""

    counted: dict[str, ComplexityValue] = field(default_factory=dict)  # model id -> its count
    failed: list[Failure] = field(default_factory=list)
    reused: int = 0  # counted before, read from the store
    workers_started: int = 0

    def in_order(self, specs: Sequence[ModelSpec]) -> list[ComplexityValue]:
        return [self.counted[s.id] for s in specs if s.id in self.counted]


OnRecord = Callable[[ResultRecord], None]


# --- the worker process ---------------------------------------------------------------------------


class BuildError(Exception):
    """The model's own library could not build it on the meta device (not a counting failure)."""


def count_one(spec: ModelSpec, request: ProfileRequest) -> dict[str, Any]:
    """The model's count as a stored value's dict (without per-layer rows); BuildError when its library
    cannot build it on the meta device."""
    import torch

    from ..devices import parse_precision, torch_dtype
    from ..measure.complexity import count_model
    from ..zoo import build_model

    dtype = torch_dtype(parse_precision(request.dtype))
    try:
        net = build_model(spec, "meta")
        if dtype != torch.float32:
            net = net.to(dtype)
    except Exception as exc:
        raise BuildError(_reason(exc)) from exc
    result = count_model(net, request.input_size or spec.input_size, request.batch_size, request.mode, dtype,
                         spec.id, spec.input_size)
    return result.to_dict()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_main(conn: Connection) -> None:
    """Count the models the pool sends, one at a time, until told to stop (None) or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # counting never needs a download
    import warnings

    warnings.simplefilter("ignore")  # a library's deprecation notices, once per worker, are noise here
    import timm  # noqa: F401  imported once, reused by every model this worker counts
    import torchvision  # noqa: F401

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        spec, request = task
        try:
            reply = ("ok", count_one(spec, request))
        except BuildError as exc:
            reply = ("unsupported", f"cannot be built on the meta device: {exc}")
        except Exception as exc:  # any library's failure to build or run the model is that model's result
            reply = ("error", _reason(exc))
        conn.send((*reply, _rss_bytes()))


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" (at {os.path.basename(where.filename)}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {lines[0] if lines else ''}{place}"[:2000]


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"the worker process was killed by {signal.Signals(-exitcode).name} while counting this model"
        except ValueError:
            pass
    return f"the worker process died (exit status {exitcode}) while counting this model"


# --- the pool -------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: Any
    conn: Connection
    spec: ModelSpec | None = None
    started: float = 0.0
    tasks: int = 0


class ProfilePool:
    """`workers` processes (spawned: no fork of a parent holding torch's threads) counting models."""

    def __init__(self, workers: int, timeout_s: float = DEFAULT_TIMEOUT_S, max_tasks: int = DEFAULT_MAX_TASKS,
                 max_rss_bytes: int = DEFAULT_MAX_RSS):
        self.size = max(1, workers)
        self.timeout_s, self.max_tasks, self.max_rss_bytes = timeout_s, max_tasks, max_rss_bytes
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.started = 0

    def _start(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child,), daemon=True, name="dnnbench-profile")
        process.start()
        child.close()
        self.started += 1
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool = False) -> None:
        self.workers.remove(worker)
        try:
            if kill:
                worker.process.kill()
            else:
                worker.conn.send(None)
        except (OSError, ValueError):
            pass
        worker.process.join(timeout=5 if not kill else None)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def run(self, specs: Sequence[ModelSpec], request: ProfileRequest,
            on_done: Callable[[ModelSpec, str, dict[str, Any] | None, str | None, float, float], None]) -> None:
        """Count every spec; `on_done(spec, status, value_dict, error, started_at, finished_at)` for each,
        in the order they finish."""
        pending = deque(specs)
        try:
            while pending or any(w.spec is not None for w in self.workers):
                while pending and (len(self.workers) < self.size or any(w.spec is None for w in self.workers)):
                    worker = next((w for w in self.workers if w.spec is None), None) or self._start()
                    worker.spec, worker.started = pending.popleft(), time.time()
                    worker.conn.send((worker.spec, request))
                busy = [w for w in self.workers if w.spec is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
                for worker in busy:
                    self._check(worker, ready, request, on_done)
        finally:
            for worker in list(self.workers):
                self._retire(worker, kill=worker.spec is not None)

    def _check(self, worker: _Worker, ready: list, request: ProfileRequest, on_done: Callable) -> None:
        spec, started = worker.spec, worker.started
        assert spec is not None
        if worker.conn in ready or worker.process.sentinel in ready:
            try:
                status, payload, rss = worker.conn.recv()
            except (EOFError, OSError):  # died holding this model: only this model is lost
                worker.process.join(timeout=5)
                self._retire(worker, kill=True)
                on_done(spec, "crash", None, _death(worker.process.exitcode), started, time.time())
                return
            worker.spec, worker.tasks = None, worker.tasks + 1
            if status == "ok":
                on_done(spec, "ok", payload, None, started, time.time())
            else:
                on_done(spec, status, None, payload, started, time.time())
            if worker.tasks >= self.max_tasks or (self.max_rss_bytes and rss > self.max_rss_bytes):
                self._retire(worker)  # a fresh one starts when there is work for it
        elif time.time() - started > self.timeout_s:
            self._retire(worker, kill=True)
            on_done(spec, "timeout", None, f"counting took longer than {self.timeout_s:g} s; the worker was stopped",
                    started, time.time())


# --- the run --------------------------------------------------------------------------------------


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _value(data: dict[str, Any]) -> ComplexityValue:
    return ComplexityValue.from_dict(data)


def stored_counts(store: Store, specs: Sequence[ModelSpec], request: ProfileRequest) -> dict[str, ComplexityValue]:
    """Counts already in the store for these specs, from any machine (counting does not depend on it)."""
    wanted = {request.key(s).digest: s.id for s in specs}
    found: dict[str, ComplexityValue] = {}
    for record in store.results(metric=METRIC, models=sorted(set(wanted.values()))):
        if record.status == "ok" and record.cell_key.digest in wanted and isinstance(record.values, ComplexityValue):
            found[record.model] = record.values
    return found


def profile_models(specs: Sequence[ModelSpec], store: Store, request: ProfileRequest = ProfileRequest(), *,
                   workers: int | None = None, argv: Sequence[str] = (), timeout_s: float = DEFAULT_TIMEOUT_S,
                   max_tasks: int = DEFAULT_MAX_TASKS, max_rss_bytes: int = DEFAULT_MAX_RSS, recount: bool = False,
                   on_start: Callable[[int, int], None] = lambda total, reused: None,
                   on_record: OnRecord = lambda record: None) -> ProfileOutcome:
    """Count `specs` not yet counted in `store`, keeping each result there as it arrives (one run of this
    machine). `workers`: processes in the pool (default: the usable cores, at most one per model); 0 counts
    in this process, without isolation; `recount`: count again what the store has. `on_start(to_count,
    reused)` once, `on_record` per counted model."""
    from .runner import this_machine

    outcome = ProfileOutcome(counted={} if recount else stored_counts(store, specs, request))
    outcome.reused = len(outcome.counted)
    todo = [s for s in specs if s.id not in outcome.counted]
    on_start(len(todo), outcome.reused)
    if not todo:
        return outcome
    machines = this_machine().machines
    config = {"command": "profile", **{f.name: getattr(request, f.name) for f in fields(request)},
              "models": len(todo)}
    with RunLifecycle(store, machines, argv, config, executor="profile-pool") as runs:
        def done(spec: ModelSpec, status: str, data: dict[str, Any] | None, error: str | None,
                 started: float, finished: float) -> None:
            key = request.key(spec)
            value = _value(data) if data is not None else None
            record = ResultRecord(spec.id, METRIC, key.config_dict, status, value, error, started, finished)
            runs.keep(record)
            if value is not None:
                outcome.counted[spec.id] = value
            else:
                outcome.failed.append(Failure(spec.id, status, error or status))
            on_record(record)

        count = usable_cores() if workers is None else workers
        if count == 0:
            for spec in todo:
                started = time.time()
                try:
                    done(spec, "ok", count_one(spec, request), None, started, time.time())
                except BuildError as exc:
                    done(spec, "unsupported", None, f"cannot be built on the meta device: {exc}", started, time.time())
                except Exception as exc:  # the model's failure, recorded like a worker's
                    done(spec, "error", None, _reason(exc), started, time.time())
        else:
            pool = ProfilePool(min(count, len(todo)), timeout_s, max_tasks, max_rss_bytes)
            pool.run(todo, request, done)
            outcome.workers_started = pool.started
    return outcome




def as_result(value: ComplexityValue) -> Any:
    """The stored count as measure.complexity.ComplexityResult (without per-layer rows), for the tables."""
    from ..measure.complexity import ComplexityResult

    data = {f.name: getattr(value, f.name) for f in fields(ComplexityResult) if f.name not in ("layers", "halved")}
    data["output_shape"] = tuple(data["output_shape"] or ())
    return ComplexityResult(**data, layers=(), halved=bool(value.extra.get("halved")))


__all__ = ["BuildError", "Failure", "ProfileOutcome", "ProfilePool", "ProfileRequest", "as_result", "count_one", "profile_models",
           "stored_counts", "usable_cores"]
