"""The sweep: plan cells, skip what the store already has, run the rest through an executor, keep
every result the moment it exists. `execute` does this for jobs of any kind (timing sweeps here,
accuracy in run.accuracy), inside the one run life cycle of run.lifecycle."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Protocol

import pandas as pd

from ..devices import device_type
from ..env import collect_machine, collect_runtime, collect_software
from ..store import ResultRecord, Store, records_frame
from ..store.values import TimeValue
from ..zoo import ModelSpec
from .config import ResumePolicy, SweepConfig
from .executor import Executor, LocalExecutor, MachineInfo, Placed, Target
from .lifecycle import RunLifecycle
from .plan import WorkerJob, plan
from .trials import add_trial, stored_trials


class Progress(Protocol):
    """What a sweep tells whoever watches it. Jobs may run several at once (a cluster): `where` names the
    machine or node a job runs on ("" for this machine), and `cell_done` says which job a record is of."""

    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None: ...
    def job_started(self, job: WorkerJob, where: str = "") -> None: ...
    def cell_done(self, record: ResultRecord, job: WorkerJob | None = None, where: str = "") -> None: ...
    def job_done(self, job: WorkerJob, where: str = "") -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None: ...
    def job_started(self, job: WorkerJob, where: str = "") -> None: ...
    def cell_done(self, record: ResultRecord, job: WorkerJob | None = None, where: str = "") -> None: ...
    def job_done(self, job: WorkerJob, where: str = "") -> None: ...
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
    machine_ids: tuple[str, ...] = ()  # every machine that measures this sweep (one: this machine, locally)
    run_ids: dict[str, str] = field(default_factory=dict)  # machine_id -> its run in the store
    cells: list[ResultRecord] = field(default_factory=list)  # every asked-for cell the store holds, at the end

    def __post_init__(self) -> None:
        self.machine_ids = self.machine_ids or (self.machine_id,)
        self.run_ids = self.run_ids or {self.machine_id: self.run_id}

    def frame(self) -> pd.DataFrame:
        """Every cell this call asked for that the store holds (measured now or before), as a tidy DataFrame
        (`config.*` and `value.*` columns), with `measured_now` saying which this call measured."""
        now = {(r.machine_id, r.cell_key.digest) for r in self.records}
        cells = self.cells or self.records
        frame = records_frame(cells)
        frame.insert(frame.columns.get_loc("status") + 1, "measured_now",
                     [(r.machine_id, r.cell_key.digest) in now for r in cells])
        return frame

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def _contended(record: ResultRecord) -> bool:
    return isinstance(record.values, TimeValue) and record.values.contended


def _stored_time(store: Store, record: ResultRecord) -> TimeValue | None:
    """The cell's stored time value when it is `ok` (the trials so far), else None (a new first trial)."""
    for r in store.results(machine_id=record.machine_id, metric="time", models=[record.model]):
        if r.cell_key.digest == record.cell_key.digest:
            return r.values if stored_trials(r) else None
    return None


def pending_jobs(store: Store, machine_id: str | Iterable[str], jobs: list[WorkerJob],
                 policy: ResumePolicy) -> list[WorkerJob]:
    """The jobs with the cells still to measure (resume), as `policy` says: a time cell is done once it has
    as many trials as the job's trial number asks (a sweep stopped after 2 of 3 trials resumes with the 3rd);
    otherwise a cell the store has is done, except a `skipped` one whose cause is gone (no smaller batch size
    of its job is `oom` any more); with `retry_failed` only `ok` cells are done; with `force` none. With several
    machines (the nodes of one kind on a cluster), a cell any of them has is done."""
    if policy.force:
        return jobs
    machine_ids = [machine_id] if isinstance(machine_id, str) else list(machine_id)

    def stored(statuses: tuple[str, ...] | None) -> set[str]:
        return set().union(*(store.completed_cells(m, statuses) for m in machine_ids))

    done = stored(("ok",) if policy.retry_failed else None)
    skipped, oom = (set(), set()) if policy.retry_failed else (stored(("skipped",)), stored(("oom",)))
    timed = [r for m in machine_ids for r in store.results(machine_id=m, metric="time")]
    trials: dict[str, int] = {}  # time cell -> trials stored (an ok cell of an older layout has one)
    for r in timed:
        trials[r.cell_key.digest] = max(trials.get(r.cell_key.digest, 0), stored_trials(r))
    if policy.remeasure_contended:
        contended = {r.cell_key.digest for r in timed if _contended(r)}
        done -= contended
        trials.update(dict.fromkeys(contended, 0))
    failed = stored(None) - stored(("ok",)) if not policy.retry_failed else set()
    remaining, again = [], set()  # again: cells whose first trial is measured anew now
    for job in sorted(jobs, key=lambda j: getattr(j, "trial", 1)):  # stable: the plan's order within a trial
        if getattr(job, "trial", 1) > 1:  # a later trial: while the cell has fewer, unless it failed for good
            cells = tuple(c for c in job.cells if trials.get(c.digest, 0) < job.trial
                          and (c.digest not in failed or c.digest in again))
            if cells:
                remaining.append(replace(job, cells=cells))
            continue
        oom_batches = [c.batch_size for c in job.cells if c.digest in oom]
        cells = tuple(c for c in job.cells if c.digest not in done
                      or (c.digest in skipped and not any(b < c.batch_size for b in oom_batches)))
        again.update(c.digest for c in cells)
        if cells:
            remaining.append(replace(job, cells=cells))
    return remaining


def this_machine() -> Target:
    """This machine as the one place a sweep is measured."""
    machine = collect_machine()
    software = {**collect_software().to_dict(), "runtime": collect_runtime().to_dict()}
    return Target("local", (MachineInfo(machine.machine_id, machine.to_dict(), software),))


def _targets(executor: Executor, config: SweepConfig) -> list[Target]:
    """Where the sweep is measured: what the executor says (a cluster's node kinds), else this machine."""
    targets = executor.targets(config)
    if targets:
        return list(targets)
    return [this_machine()]


def _ensure_peaks(store: Store, machine_id: str, config: SweepConfig) -> None:
    """The device's peak FLOP/s at each precision and thread count of a timed sweep, measured once per store
    (a few seconds each; a peak measured under contention is measured again): what efficiencies divide by."""
    scope = config.scope
    if (not scope.measure_peak or "time" not in scope.metrics or scope.scenario_metric
            or device_type(scope.device) not in ("cpu", "cuda")):
        return
    from .peak import ensure_peak

    precisions = [("tf32" if p == "fp32" and scope.tf32 and scope.device != "cpu" else p) for p in scope.precisions]
    for precision in dict.fromkeys(precisions):
        for threads in scope.thread_counts if scope.device == "cpu" else (None,):
            ensure_peak(store, machine_id, scope.device, precision, threads)


def run_sweep(specs: list[ModelSpec], config: SweepConfig, store: Store, executor: Executor | None = None,
              progress: Progress | None = None, argv: list[str] | None = None) -> RunSummary:
    """Measure `specs` under `config` into `store`; returns what this call recorded.

    Every finished cell is committed the moment it arrives, under the machine that measured it (the
    executor says which: a cluster node; this machine otherwise), with one run per machine. Ctrl-C or
    SIGTERM stops the workers, marks the runs interrupted and raises KeyboardInterrupt (`Terminated` for
    SIGTERM); a second one exits at once.
    """
    executor = executor or LocalExecutor()
    try:
        targets = _targets(executor, config)

        def peaks(todo: list[Placed]) -> None:
            if executor.name == "local":
                _ensure_peaks(store, targets[0].machines[0].machine_id, config)

        return execute(plan(specs, config), targets, store, executor, config.to_dict(), config.resume, progress, argv,
                       prepare=peaks)
    finally:
        executor.close()


def execute(jobs: list[WorkerJob], targets: Sequence[Target], store: Store, executor: Executor,
            run_config: Mapping[str, Any], resume: ResumePolicy, progress: Progress | None = None,
            argv: Sequence[str] | None = None,
            prepare: Callable[[list[Placed]], None] | None = None) -> RunSummary:
    """Run the cells of `jobs` still missing from the store on every target, inside one run life cycle
    (machines registered, one run per machine, results kept as they come, interrupt handled). `prepare`
    is called with the jobs to run once the runs are open and before the first job starts."""
    progress = progress or NoProgress()
    machines = [m for t in targets for m in t.machines]
    argv = list(argv) if argv is not None else sys.argv
    lifecycle = RunLifecycle(store, machines, argv, run_config, executor.name, executor.cancel, progress)
    with lifecycle as runs:
        todo = [Placed(job, target.name) for target in targets
                for job in pending_jobs(store, [m.machine_id for m in target.machines], jobs, resume)]
        if prepare is not None:
            prepare(todo)
        first = targets[0].machines[0].machine_id
        planned = len({c.digest for j in jobs for c in j.cells}) * len(targets)  # a cell once, however many trials
        to_measure = len({(p.target, c.digest) for p in todo for c in p.job.cells})
        summary = RunSummary(runs.run_ids[first], first, planned, planned - to_measure,
                             frozenset(c.digest for j in jobs for c in j.cells),
                             machine_ids=tuple(runs.run_ids), run_ids=runs.run_ids)
        default_machine = {t.name: t.machines[0].machine_id for t in targets}
        where: dict[int, str] = {}
        kept: set[tuple[str, str, int]] = set()
        latest: dict[tuple[str, str], int] = {}  # (machine, cell) -> its index in summary.records

        def keep(placed: Placed, record: ResultRecord) -> None:
            trial = getattr(placed.job, "trial", 1)  # accuracy jobs have one trial
            key = (placed.target, record.cell_key.digest, trial)
            if key in kept:  # an executor that reports a cell twice: the first word stands
                return
            kept.add(key)
            record.machine_id = record.machine_id or default_machine[placed.target]  # the executor's machine wins
            if record.metric == "time" and record.status == "ok" and isinstance(record.values, TimeValue):
                record.values = add_trial(_stored_time(store, record) if trial > 1 else None,
                                          record.values, placed.job.config.stopping.ci_level)
            runs.keep(record)
            cell = (record.machine_id, record.cell_key.digest)
            if cell in latest:  # a later trial of a cell: the summary holds the cell once, as the store has it
                if record.status == "ok" or summary.records[latest[cell]].status != "ok":
                    summary.records[latest[cell]] = record  # a failed later trial never hides the good ones
            else:
                latest[cell] = len(summary.records)
                summary.records.append(record)
            progress.cell_done(record, job=placed.job, where=where.get(id(placed), ""))

        def started(placed: Placed, node: str) -> None:
            where[id(placed)] = node
            progress.job_started(placed.job, where=node)

        def done(placed: Placed, node: str) -> None:
            progress.job_done(placed.job, where=node)

        progress.start(sum(len(p.job.cells) for p in todo), [p.job for p in todo])
        try:
            executor.run_jobs(todo, keep, started, done)
        except KeyboardInterrupt:
            summary.interrupted = True
            raise
        order = {c.digest: i for i, c in enumerate(c for j in jobs for c in j.cells)}
        summary.cells = sorted((r for m in machines for r in store.results(machine_id=m.machine_id)
                                if r.cell_key.digest in order),
                               key=lambda r: (order[r.cell_key.digest], r.machine_id))
    return summary


def sweep_records(summary: RunSummary, store: Store) -> dict[str, list[ResultRecord]]:
    """The stored record of every cell the sweep planned, per machine that measured it, cells that were already
    in the store included: what a sweep's summary tables show."""
    return {m: [r for r in store.results(machine_id=m) if r.cell_key.digest in summary.planned_digests]
            for m in summary.machine_ids}
