"""Executors run worker jobs somewhere and report what happened, cell by cell.

`LocalExecutor` runs each job in a fresh spawned process on this machine. Whatever happens to that
process (an exception, a segfault, a kill, a hang) ends up as results for the job's cells; the parent
never dies with it. Other executors (a cluster) plug in behind the same `Executor` protocol.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from typing import Callable, Iterable, Protocol

from ..store import ResultRecord
from .plan import Cell, WorkerJob
from .worker import Begin, Done, Finished, record, worker_main

OnRecord = Callable[[ResultRecord], None]
STARTUP_TIMEOUT_S = 300.0


class Executor(Protocol):
    name: str

    def run_job(self, job: WorkerJob, on_record: OnRecord) -> None:
        """Measure `job`, calling `on_record` once for every cell of it, as soon as each is known."""

    def cancel(self) -> None:
        """Stop what is running now (Ctrl-C); cells in flight get no result."""


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

    def __init__(self, poll_s: float = 0.2, kill_grace_s: float = 5.0):
        self.poll_s = poll_s
        self.kill_grace_s = kill_grace_s
        self._context = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None

    def run_job(self, job: WorkerJob, on_record: OnRecord) -> None:
        parent, child = self._context.Pipe(duplex=False)
        process = self._context.Process(target=worker_main, args=(child, job), name=f"dnnbench-{job.model}",
                                        daemon=True)
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
                    deadline = time.monotonic() + job.config.timeout_s
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
            process.terminate()
            process.join(self.kill_grace_s)
        if process.is_alive():
            process.kill()
            process.join()

    def cancel(self) -> None:
        if self._process is not None:
            self._stop(self._process)
