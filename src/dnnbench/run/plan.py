"""Cells: the units a sweep measures and the store keeps, one per (model, metric, config)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..devices import is_quantized
from ..store import CellKey
from ..zoo import ModelSpec
from .config import SweepConfig


@dataclass(frozen=True)
class Cell:
    key: CellKey
    batch_size: int
    threads: int | None

    @property
    def model(self) -> str:
        return self.key.model

    @property
    def metric(self) -> str:
        return self.key.metric

    @property
    def digest(self) -> str:
        return self.key.digest


@dataclass(frozen=True)
class WorkerJob:
    """What one isolated worker process measures: one model at one thread count, its batch sizes in
    ascending order (so an out-of-memory at batch B skips only the larger ones). `trial` counts the fresh
    processes that measure the same timed cells (1 to the sweep's repeats); trials after the first measure
    time only (memory and complexity do not depend on the process's luck the way time does)."""

    model: str
    threads: int | None
    cells: tuple[Cell, ...]
    config: SweepConfig
    backend: str = "eager"
    precision: str = "fp32"
    trial: int = 1

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({c.batch_size for c in self.cells if c.metric != "complexity"}))


def cell_config(spec: ModelSpec, config: SweepConfig, metric: str, batch_size: int, threads: int | None,
                backend: str = "eager", precision: str | None = None) -> dict:
    """What defines a measured quantity (and so the resume key). Budgets and CI targets are not part of it:
    they decide how precisely a quantity is measured, and are stored with the run. Backend options count
    only when they differ from the backend's defaults (so eager cells keep one key)."""
    scope = config.scope
    input_size = scope.input_size or spec.input_size
    if metric == "complexity":
        return {"input_size": input_size, "batch_size": 1, "mode": "standard", "dtype": scope.dtype}
    cfg = {"device": scope.device, "dtype": precision or scope.dtype, "batch_size": batch_size,
           "input_size": input_size, "threads": threads, "backend": backend}
    options = scope.options_for(backend).non_default()
    if options:
        cfg["backend_options"] = options
    if is_quantized(cfg["dtype"]):  # the calibration decides the quantized model: method, source, samples
        from ..backends.quantization import DIRECTORY, SYNTHETIC

        cfg["calibration"] = {"method": DIRECTORY if scope.calibration_data else SYNTHETIC,
                              "source": scope.calibration_data, "samples": scope.calibration_samples}
    if scope.device.startswith("cuda"):
        cfg["tf32"] = scope.tf32
    return cfg


def scenario_cell(spec: ModelSpec, config: SweepConfig, threads: int | None, backend: str, precision: str) -> Cell:
    """The offline or server cell of one deployment. Its key holds what the scenario searched (offline: batch
    sizes and stream counts; server: the batch size, the stream count and the p99 bound; None: the defaults)."""
    scope = config.scope
    metric = scope.scenario_metric
    first_batch = sorted(scope.batch_sizes)[0] if metric == "offline" else scope.batch_sizes[0]
    cfg = cell_config(spec, config, metric, first_batch, threads, backend, precision)
    cfg["scenario"] = metric
    if metric == "offline":
        cfg["batch_sizes"] = sorted(scope.batch_sizes)
        cfg["streams"] = sorted(scope.streams) or None
    else:
        cfg["streams"] = scope.streams[0] if scope.streams else None
        cfg["p99_ms"] = scope.p99_ms
    return Cell(CellKey(spec.id, metric, cfg), first_batch, threads)


def plan(specs: list[ModelSpec], config: SweepConfig) -> list[WorkerJob]:
    """One job per model x thread count x backend x precision: a crash in one backend (a segfaulting
    runtime) costs only that backend's cells. The model's complexity cell rides with its first job.

    With `repeats` N > 1 the time cells are measured in N trials, interleaved round-robin: trial 1 of
    every job, then trial 2 of every job, and so on, so that a slow drift of the machine (another load,
    thermal state) spreads over every model instead of landing on one model's trials."""
    first_trials = _first_trials(specs, config)
    jobs = list(first_trials)
    for trial in range(2, config.trials.repeats + 1):
        for job in first_trials:
            timed = tuple(c for c in job.cells if c.metric == "time")
            if timed:
                jobs.append(replace(job, cells=timed, trial=trial))
    return jobs


def _first_trials(specs: list[ModelSpec], config: SweepConfig) -> list[WorkerJob]:
    jobs, scope = [], config.scope
    for spec in specs:
        first = True
        for threads in scope.thread_counts:
            for backend in scope.backends:
                for precision in scope.precisions:
                    cells = []
                    if "complexity" in scope.metrics and first:
                        key = CellKey(spec.id, "complexity", cell_config(spec, config, "complexity", 1, None))
                        cells.append(Cell(key, 1, None))
                    first = False
                    if scope.scenario_metric:  # one scenario cell per deployment: its search spans batch sizes
                        cells.append(scenario_cell(spec, config, threads, backend, precision))
                    for batch_size in (() if scope.scenario_metric else sorted(scope.batch_sizes)):
                        for metric in ("time", "memory", "energy"):
                            if metric in scope.metrics:
                                cfg = cell_config(spec, config, metric, batch_size, threads, backend, precision)
                                cells.append(Cell(CellKey(spec.id, metric, cfg), batch_size, threads))
                    if cells:
                        jobs.append(WorkerJob(spec.id, threads, tuple(cells), config, backend, precision))
    return jobs
