"""Executors run worker jobs somewhere and report what happened, cell by cell.

`LocalExecutor` runs each job in a fresh spawned process on this machine, one job at a time. Whatever
happens to that process (an exception, a segfault, a kill, a hang) ends up as results for the job's
cells; the parent never dies with it. `RayExecutor` (`run.ray_executor`) runs jobs on the nodes of a Ray
cluster, several at once, each inside a `LocalExecutor` on its node. Both sit behind `Executor`.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from ..errors import UsageError
from ..store import ResultRecord
from .plan import Cell, WorkerJob
from .accuracy_worker import AccuracyJob, accuracy_main
from .worker import Begin, Done, Finished, Progressed, record, worker_main

OnRecord = Callable[[ResultRecord], None]
STARTUP_TIMEOUT_S = 300.0
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class MachineInfo:
    """A machine that measures cells of a sweep: its store identity, and what it runs."""

    machine_id: str
    fingerprint: Mapping[str, Any]
    software: Mapping[str, Any]  # SoftwareFingerprint, plus "runtime" (and "ray" on a cluster node)
    where: str = ""  # how progress names it: "" for this machine, a node's name or address on a cluster


@dataclass(frozen=True)
class Target:
    """Where a sweep's cells are measured once each: this machine, or one kind of cluster node. Resume
    counts a cell as done when any of `machines` has it in the store."""

    name: str
    machines: tuple[MachineInfo, ...]


@dataclass(frozen=True, eq=False)
class Placed:
    """A job for one target. Compared by identity: the same job may be placed on several targets."""

    job: WorkerJob
    target: str = "local"


PlacedRecord = Callable[[Placed, ResultRecord], None]
PlacedEvent = Callable[[Placed, str], None]


class Executor(Protocol):
    """Runs jobs and reports every cell of every job exactly once.

    `run_jobs` may run several jobs at once (a cluster) or one after the other (`LocalExecutor`). It calls
    `on_job_started(placed, where)` when a job starts on a machine (`where` names it for progress; "" is
    this machine), `on_record(placed, record)` as soon as each cell is known, with `record.machine_id` set
    to the machine that measured it ("" for this machine), and `on_job_done(placed, where)` when a job
    has ended there. Optional: `targets(config)` says which machines will measure (for resume and the
    store; None or absent: this machine), and `close()` releases what `targets` opened.
    """

    name: str

    def run_jobs(self, jobs: Sequence[Placed], on_record: PlacedRecord, on_job_started: PlacedEvent,
                 on_job_done: PlacedEvent) -> None: ...

    def cancel(self) -> None:
        """Stop what is running now (Ctrl-C); cells in flight get no result."""


def make_executor(name: str, address: str | None = None, on: Sequence[str] = ()) -> Executor:
    """`local` or `ray` (with the cluster's address and the node kinds to measure on), checked now."""
    name = (name or "local").strip().lower()
    if name == "local":
        if on:
            raise UsageError("--on picks kinds of Ray cluster nodes: use it with --executor ray")
        if address:
            raise UsageError("--address is a Ray cluster's address: use it with --executor ray")
        return LocalExecutor()
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=address or "auto", on=tuple(on))
    raise UsageError(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}")


def _set_parent_death_signal() -> None:
    """Linux: die with the parent. A worker must not outlive whatever started it (a Ray worker killed
    with its node, a runner killed with SIGKILL) and go on using a device beside the next timed cell."""
    if not sys.platform.startswith("linux"):
        return
    try:
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _worker_entry(conn, job: WorkerJob | AccuracyJob, parent_pid: int) -> None:
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if isinstance(job, AccuracyJob):  # one model's accuracy: the same isolation, another measurement
        accuracy_main(conn, job)
    else:
        worker_main(conn, job)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory, or stopped from outside)" if name == "SIGKILL" else ""
        return f"the worker process died from {name}{hint}"
    return f"the worker process exited with code {exitcode} before finishing"


class LocalExecutor:
    name = "local"

    def __init__(self, poll_s: float = 0.2, kill_grace_s: float = 5.0,
                 on_progress: Callable[[Progressed], None] | None = None):
        self.poll_s = poll_s
        self.kill_grace_s = kill_grace_s
        self.on_progress = on_progress  # what a long cell says while it runs (accuracy: images so far)
        self._context = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None

    def run_jobs(self, jobs: Sequence[Placed], on_record: PlacedRecord, on_job_started: PlacedEvent,
                 on_job_done: PlacedEvent) -> None:
        """One job at a time, in the order given."""
        for placed in jobs:
            on_job_started(placed, "")
            self.run_job(placed.job, lambda r, placed=placed: on_record(placed, r))
            on_job_done(placed, "")

    def run_job(self, job: WorkerJob, on_record: OnRecord) -> None:
        """Measure `job` in a fresh process, calling `on_record` once for every cell of it."""
        parent, child = self._context.Pipe(duplex=False)
        # not a daemon: a worker may start processes of its own (image decoding); _stop and the parent-death
        # signal make sure it never outlives the runner
        process = self._context.Process(target=_worker_entry, args=(child, job, os.getpid()),
                                        name=f"dnnbench-{job.model}", daemon=False)
        self._process = process
        process.start()
        child.close()
        pending = {c.digest: c for c in job.cells}
        in_flight: tuple[str, ...] = tuple(pending)  # until the worker says otherwise: everything
        phase = "start-up"
        # importing PyTorch in a fresh process can take long on a busy machine: not the cell's fault
        deadline = time.monotonic() + max(job.config.timeout_s, STARTUP_TIMEOUT_S)
        try:
            while pending:
                message = None
                if parent.poll(self.poll_s):
                    try:
                        message = parent.recv()
                    except EOFError:  # the worker is gone; its exit code says how
                        process.join(self.kill_grace_s)
                        self._fail(pending, in_flight, "crash", f"{describe_exit(process.exitcode)} during {phase}",
                                   on_record)
                        return
                elif not process.is_alive():
                    self._fail(pending, in_flight, "crash", f"{describe_exit(process.exitcode)} during {phase}",
                               on_record)
                    return
                elif time.monotonic() > deadline:
                    self._stop(process)
                    self._fail(pending, in_flight, "timeout",
                               f"{phase} ran past the cell timeout of {job.config.timeout_s:.0f} s; worker killed",
                               on_record)
                    return
                if isinstance(message, Begin):
                    in_flight, phase = message.digests, message.phase
                    # export/compile may take minutes on a big model: the start-up allowance, unless the
                    # user set --cell-timeout, which then holds for every phase
                    generous = message.setup and job.config.cell_timeout_s is None
                    allowed = max(job.config.timeout_s, STARTUP_TIMEOUT_S) if generous else job.config.timeout_s
                    deadline = time.monotonic() + allowed
                elif isinstance(message, Progressed):  # alive and getting on: a new deadline for the rest
                    deadline = time.monotonic() + job.config.timeout_s
                    if self.on_progress is not None:
                        self.on_progress(message)
                elif isinstance(message, Finished):
                    if pending.pop(message.record.cell_key.digest, None) is not None:
                        on_record(message.record)
                elif isinstance(message, Done):
                    break
            for cell in pending.values():  # the worker finished without a word about these: a bug, said so
                on_record(record(cell, "error", error="the worker finished without measuring this cell"))
        finally:
            self._stop(process)
            parent.close()
            self._process = None

    def _fail(self, pending: dict[str, Cell], in_flight: Iterable[str], status: str, message: str,
              on_record: OnRecord) -> None:
        """The cells in flight get `status`; the rest of the job (larger batch sizes) is skipped."""
        in_flight = [d for d in in_flight if d in pending]
        for digest in in_flight:
            on_record(record(pending.pop(digest), status, error=message))
        for cell in list(pending.values()):
            on_record(record(cell, "skipped", error=f"not measured: {message}"))
        pending.clear()

    def _stop(self, process: mp.process.BaseProcess) -> None:
        if process.is_alive():
            process.kill()  # workers ignore SIGTERM (the runner's own signal); SIGKILL is what stopped them before
            process.join(self.kill_grace_s)
        if process.is_alive():
            process.kill()
            process.join()

    def cancel(self) -> None:
        if self._process is not None:
            self._stop(self._process)
