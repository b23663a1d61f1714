"""The sweep: plan cells, skip what the store already has, run the rest through an executor, keep
every result the moment it exists."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Protocol

from ..env import collect_machine, collect_runtime, collect_software
import pandas as pd

from ..store import ResultRecord, Store, records_frame
from ..zoo import ModelSpec
from .config import SweepConfig
from .executor import Executor, LocalExecutor
from .plan import WorkerJob, plan

FINAL_STATUSES = ("ok", "oom", "skipped")  # re-running the same command does not measure these again


class Progress(Protocol):
    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None: ...
    def job_started(self, job: WorkerJob) -> None: ...
    def cell_done(self, record: ResultRecord) -> None: ...
    def job_done(self, job: WorkerJob) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None: ...
    def job_started(self, job: WorkerJob) -> None: ...
    def cell_done(self, record: ResultRecord) -> None: ...
    def job_done(self, job: WorkerJob) -> None: ...
    def finish(self) -> None: ...


@dataclass
class RunSummary:
    run_id: str
    machine_id: str
    planned: int
    already_done: int
    planned_digests: frozenset[str] = frozenset()
    records: list[ResultRecord] = field(default_factory=list)
    interrupted: bool = False

    def frame(self) -> pd.DataFrame:
        """The records of this call as a tidy DataFrame (`config.*` and `value.*` columns)."""
        return records_frame(self.records)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def _contended(record: ResultRecord) -> bool:
    return bool(record.values.get("contention", {}).get("contended"))


def pending_jobs(store: Store, machine_id: str, jobs: list[WorkerJob], config: SweepConfig) -> list[WorkerJob]:
    """The jobs with the cells still to measure (resume): all of them with `force`."""
    if config.force:
        return jobs
    done = store.completed_cells(machine_id, None if not config.retry_failed else FINAL_STATUSES)
    if config.remeasure_contended:
        done -= {r.cell_key.digest for r in store.results(machine_id=machine_id, metric="time") if _contended(r)}
    remaining = []
    for job in jobs:
        cells = tuple(c for c in job.cells if c.digest not in done)
        if cells:
            remaining.append(WorkerJob(job.model, job.threads, cells, job.config))
    return remaining


def run_sweep(specs: list[ModelSpec], config: SweepConfig, store: Store, executor: Executor | None = None,
              progress: Progress | None = None, argv: list[str] | None = None) -> RunSummary:
    """Measure `specs` under `config` into `store`; returns what this call recorded.

    Every finished cell is committed before the next starts. Ctrl-C stops the worker, marks the run
    interrupted and raises KeyboardInterrupt; a second Ctrl-C exits at once.
    """
    executor = executor or LocalExecutor()
    progress = progress or NoProgress()
    machine = collect_machine()
    store.register_machine(machine.machine_id, machine.to_dict())
    software = {**collect_software().to_dict(), "runtime": collect_runtime().to_dict(), "executor": executor.name}
    jobs = plan(specs, config)
    planned = sum(len(j.cells) for j in jobs)
    todo = pending_jobs(store, machine.machine_id, jobs, config)
    run_id = store.start_run(machine.machine_id, argv if argv is not None else sys.argv, config.to_dict(), software)
    summary = RunSummary(run_id, machine.machine_id, planned, planned - sum(len(j.cells) for j in todo),
                         frozenset(c.digest for j in jobs for c in j.cells))

    def keep(record: ResultRecord) -> None:
        record.run_id, record.machine_id = run_id, machine.machine_id
        store.put_result(record)
        summary.records.append(record)
        progress.cell_done(record)

    progress.start(sum(len(j.cells) for j in todo), todo)
    previous_handler = signal.getsignal(signal.SIGINT)
    try:
        for job in todo:
            progress.job_started(job)
            executor.run_job(job, keep)
            progress.job_done(job)
    except KeyboardInterrupt:
        # from now on a second Ctrl-C leaves at once; finished cells are already committed
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))
        summary.interrupted = True
        executor.cancel()
        store.finish_run(run_id, "interrupted")
        progress.finish()
        signal.signal(signal.SIGINT, previous_handler)
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    store.finish_run(run_id, "finished")
    progress.finish()
    return summary
