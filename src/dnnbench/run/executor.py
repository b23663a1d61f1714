"""Executors run worker jobs somewhere and report what happened, cell by cell.

`LocalExecutor` runs each job in a fresh worker program on this machine (`python -m dnnbench.run.worker`,
talking back over an inherited socket), one job at a time. Whatever happens to that process (an
exception, a segfault, a kill, a hang) ends up as results for the cells it was measuring; the parent
never dies with it, and cells it never reached are left unwritten (measured by the next run). The worker
is its own program, not a fork or a `multiprocessing` spawn of the caller: a plain script that calls
`dnnbench.run.benchmark()` is never re-imported. `RayExecutor` (`run.ray_executor`) runs jobs on the nodes
of a Ray cluster, several at once, each inside a `LocalExecutor` on its node. Both are `Executor`s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..devices import resolve_device
from ..store import ResultRecord
from .plan import Cell, WorkerJob
from .worker import Begin, Done, Finished, Progressed, record

if TYPE_CHECKING:
    from .accuracy_worker import AccuracyJob
    from .config import SweepConfig

OnRecord = Callable[[ResultRecord], None]
STARTUP_TIMEOUT_S = 300.0
# `python -m dnnbench.run.worker` runs a module its package has already imported; runpy says so, harmlessly
RUNPY_NOTE = "'dnnbench.run.worker' found in sys.modules"


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


class Executor(ABC):
    """Runs jobs and reports every cell each job's worker measured or was measuring, exactly once.

    `run_jobs` may run several jobs at once (a cluster) or one after the other (`LocalExecutor`). It calls
    `on_job_started(placed, where)` when a job starts on a machine (`where` names it for progress; "" is
    this machine), `on_record(placed, record)` as soon as each cell is known, with `record.machine_id` set
    to the machine that measured it ("" for this machine), and `on_job_done(placed, where)` when a job
    has ended there. Cells a failed worker never reached get no record: they stay to be measured.
    """

    name: str = ""
    measures_here: bool = True  # False: the cells are measured on other machines (a cluster's nodes)

    @abstractmethod
    def run_jobs(self, jobs: Sequence[Placed], on_record: PlacedRecord, on_job_started: PlacedEvent,
                 on_job_done: PlacedEvent) -> None: ...

    @abstractmethod
    def cancel(self) -> None:
        """Stop what is running now (Ctrl-C); cells in flight get no result."""

    def targets(self, config: SweepConfig) -> list[Target] | None:
        """Which machines will measure (for resume and the store); None: this machine."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: only executors that open something in `targets` close it
        """Release what `targets` opened."""

    def resolve_device(self, name: str) -> str:
        """A device as the user names it -> as cells spell it, checked where the cells are measured."""
        return resolve_device(name)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory, or stopped from outside)" if name == "SIGKILL" else ""
        return f"the worker process died from {name}{hint}"
    return f"the worker process exited with code {exitcode} before finishing"


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, poll_s: float = 0.2, kill_grace_s: float = 5.0,
                 on_progress: Callable[[Progressed], None] | None = None):
        self.poll_s = poll_s
        self.kill_grace_s = kill_grace_s
        self.on_progress = on_progress  # what a long cell says while it runs (accuracy: images so far)
        self._process: subprocess.Popen | None = None

    def run_jobs(self, jobs: Sequence[Placed], on_record: PlacedRecord, on_job_started: PlacedEvent,
                 on_job_done: PlacedEvent) -> None:
        """One job at a time, in the order given."""
        for placed in jobs:
            on_job_started(placed, "")
            self.run_job(placed.job, lambda r, placed=placed: on_record(placed, r))
            on_job_done(placed, "")

    def run_job(self, job: WorkerJob | AccuracyJob, on_record: OnRecord) -> None:
        """Measure `job` in a fresh worker process, calling `on_record` once for every cell it measured
        or was measuring when it failed."""
        process, parent = start_worker(job)
        self._process = process
        pending = {c.digest: c for c in job.cells}
        in_flight: tuple[str, ...] = tuple(pending)  # until the worker says otherwise: everything
        phase = "start-up"
        config = job.config
        user_timeout_s = config.limits.cell_timeout_s if isinstance(job, WorkerJob) else config.cell_timeout_s
        # importing PyTorch in a fresh process can take long on a busy machine: not the cell's fault
        deadline = time.monotonic() + max(config.timeout_s, STARTUP_TIMEOUT_S)
        try:
            parent.send(job)
            while pending:
                message = None
                if parent.poll(self.poll_s):
                    try:
                        message = parent.recv()
                    except (EOFError, OSError):  # the worker is gone; its exit code says how
                        self._wait(process)
                        self._fail(pending, in_flight, "crash", f"{describe_exit(process.returncode)} during {phase}",
                                   on_record)
                        return
                elif process.poll() is not None:
                    self._fail(pending, in_flight, "crash", f"{describe_exit(process.returncode)} during {phase}",
                               on_record)
                    return
                elif time.monotonic() > deadline:
                    self._stop(process)
                    self._fail(pending, in_flight, "timeout",
                               f"{phase} ran past the cell timeout of {config.timeout_s:.0f} s; worker killed",
                               on_record)
                    return
                if isinstance(message, Begin):
                    in_flight, phase = message.digests, message.phase
                    # export/compile may take minutes on a big model: the start-up allowance, unless the
                    # user set --cell-timeout, which then holds for every phase
                    generous = message.setup and user_timeout_s is None
                    allowed = max(config.timeout_s, STARTUP_TIMEOUT_S) if generous else config.timeout_s
                    deadline = time.monotonic() + allowed
                elif isinstance(message, Progressed):  # alive and getting on: a new deadline for the rest
                    deadline = time.monotonic() + config.timeout_s
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
        """The cells in flight get `status`. The rest of the job (larger batch sizes) was never attempted:
        no result is written for them, so that a later run measures them (a result would claim a
        measurement that did not happen, and could stand in for a good one)."""
        for digest in [d for d in in_flight if d in pending]:
            on_record(record(pending.pop(digest), status, error=message))
        pending.clear()

    def _wait(self, process: subprocess.Popen) -> None:
        try:
            process.wait(self.kill_grace_s)
        except subprocess.TimeoutExpired:
            pass

    def _stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.kill()  # workers ignore SIGTERM (the runner's own signal, also sent to the process group)
            process.wait()

    def cancel(self) -> None:
        if self._process is not None:
            self._stop(self._process)


def worker_environment() -> dict[str, str]:
    """The worker's environment: this one, with this process's import path (a script's folder, a test's
    helper modules) on PYTHONPATH, so that the worker imports the same dnnbench and the same models."""
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))}


def start_worker(job: WorkerJob | AccuracyJob) -> tuple[subprocess.Popen, Connection]:
    """`python -m dnnbench.run.worker` with one end of a socket pair; the job is sent over the other."""
    ours, theirs = socket.socketpair()
    try:
        label = f"dnnbench-{job.model}"  # visible in `ps`: which model a worker measures
        command = [sys.executable, "-W", f"ignore:{RUNPY_NOTE}:RuntimeWarning", "-m", "dnnbench.run.worker",
                   "--fd", str(theirs.fileno()), "--parent", str(os.getpid()), "--label", label]
        process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=worker_environment(),
                                   stdin=subprocess.DEVNULL)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, Connection(ours.detach())
