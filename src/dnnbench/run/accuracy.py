"""Accuracy sweeps: one cell per model (metric "accuracy"), each evaluated in its own worker process by
the same runner and life cycle as timing sweeps, resumed like them.

    >>> from dnnbench.run.accuracy import accuracy_sweep
    >>> sweep = accuracy_sweep(["resnet50"], "/data/imagenet/val", db="results.sqlite", limit=5000)  # doctest: +SKIP
    >>> [(r.model, r.status, r.top1) for r in sweep.results]                                        # doctest: +SKIP

A second identical call measures nothing: every model's cell is in the store already (`force` measures
again, `retry_failed` only those that failed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.imagenet import ImageNetSplit, open_imagenet
from ..errors import UsageError
from ..measure.accuracy import METRIC, AccuracyProgress, AccuracyResult, EvalSettings, PredictionsWriter, cell_config
from ..store import CellKey, ResultRecord, Store
from ..zoo import ModelSpec
from .accuracy_worker import DEFAULT_TIMEOUT_S, AccuracyJob, AccuracyLimits
from .config import DTYPE_NAMES, parse_dtype, resolve_device
from .executor import LocalExecutor, Placed
from .plan import Cell
from .runner import ResumePolicy, execute, this_machine
from .worker import Progressed


def eval_settings(paper_preprocessing: bool = False, limit: int | None = None, device: str = "cpu",
                  dtype: str = "fp32", batch_size: int = 64, workers: int | None = None) -> EvalSettings:
    """The evaluation settings with the device ("auto", "cuda") and dtype ("float16") names resolved."""
    return EvalSettings(paper_preprocessing, limit, resolve_device(device), DTYPE_NAMES[parse_dtype(dtype)],
                        batch_size, workers)


def result_of(record: ResultRecord) -> AccuracyResult:
    """A stored accuracy cell as the result evaluate_accuracy returns."""
    return AccuracyResult.from_values(record.model, record.status, record.config, record.values, record.error,
                                      record.started_at, record.finished_at)


@dataclass
class AccuracySweep:
    results: list[AccuracyResult]  # every model asked for, in order: evaluated now or found in the store
    dataset: ImageNetSplit
    run_id: str | None = None
    machine_id: str | None = None
    evaluated: list[str] = field(default_factory=list)  # the models evaluated by this call

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    @property
    def already_done(self) -> int:
        return len(self.results) - len(self.evaluated)


class _Events:
    """The runner's progress events as accuracy progress (models started and done, images so far)."""

    def __init__(self, watcher: AccuracyProgress, sweep: AccuracySweep):
        self.watcher, self.sweep = watcher, sweep

    def start(self, total_cells: int, jobs: list) -> None: ...

    def job_started(self, job: AccuracyJob, where: str = "") -> None:
        self.watcher.model_started(job.model, job.images)

    def progressed(self, message: Progressed) -> None:
        detail = dict(message.detail)
        self.watcher.batch_done(message.done, int(detail.get("evaluated", 0)), int(detail.get("top1_correct", 0)))

    def cell_done(self, record: ResultRecord, job: AccuracyJob | None = None, where: str = "") -> None:
        self.sweep.evaluated.append(record.model)
        self.watcher.model_done(result_of(record))

    def job_done(self, job: AccuracyJob, where: str = "") -> None: ...

    def finish(self) -> None: ...


class _Quiet:
    def model_started(self, model: str, images: int) -> None: ...
    def batch_done(self, images: int, evaluated: int, top1_correct: int) -> None: ...
    def model_done(self, result: AccuracyResult) -> None: ...


def _resolve_spec(model: str | ModelSpec) -> ModelSpec:
    from .. import zoo

    return model if isinstance(model, ModelSpec) else zoo.get(model)


def _weights_by_model(specs: list[ModelSpec], weights: str | Path | Mapping[str, str | Path] | None) -> dict[str, Path]:
    if weights is None:
        return {}
    if not isinstance(weights, Mapping):
        if len(specs) != 1:
            raise UsageError(f"one weights file was given for {len(specs)} models; name the model it belongs to "
                             "(--weights MODEL=PATH, repeatable)")
        return {specs[0].id: Path(weights)}
    by_id = {_resolve_spec(name).id: Path(path) for name, path in weights.items()}
    unknown = sorted(set(by_id) - {s.id for s in specs})
    if unknown:
        raise UsageError(f"weights given for {', '.join(unknown)}, which is not among the models evaluated")
    return by_id


def accuracy_sweep(models: Sequence[str | ModelSpec], data: str | Path | ImageNetSplit, *,
                   weights: str | Path | Mapping[str, str | Path] | None = None,
                   db: str | Path = "results/dnnbench.sqlite", labels: str | Path | None = None,
                   synsets: str | Path | None = None, save_predictions: str | Path | None = None,
                   progress: AccuracyProgress | None = None, argv: list[str] | None = None, force: bool = False,
                   retry_failed: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                   **settings: Any) -> AccuracySweep:
    """Every model's top-1/top-5 on `data`, each in its own worker process, committed to the store at `db`
    the moment it exists; models already in the store are not evaluated again (unless `force`, or
    `retry_failed` for failed ones). `settings`: paper_preprocessing, limit, device, dtype, batch_size,
    workers. Predictions (`save_predictions`) are written for the models evaluated by this call."""
    checked = eval_settings(**settings)
    if not timeout_s > 0:
        raise UsageError(f"the accuracy timeout must be positive, not {timeout_s}")
    specs = list({s.id: s for s in map(_resolve_spec, models)}.values())
    if not specs:
        raise UsageError("no model to evaluate")
    files = _weights_by_model(specs, weights)
    split = data if isinstance(data, ImageNetSplit) else open_imagenet(data, labels, synsets)
    predictions = str(save_predictions) if save_predictions else None
    jobs = []
    for spec in specs:
        weights_file = files.get(spec.id)
        key = CellKey(spec.id, METRIC, cell_config(spec, split, checked, weights_file))
        jobs.append(AccuracyJob(spec.id, (Cell(key, checked.batch_size, None),), split, checked,
                                str(weights_file) if weights_file else None, predictions, AccuracyLimits(timeout_s)))
    run_config = {"metric": METRIC, "preprocessing": checked.mode, "limit": checked.limit, "device": checked.device,
                  "dtype": checked.dtype, "batch_size": checked.batch_size, "workers": checked.workers,
                  "dataset": split.fingerprint.to_dict(), "layout": split.layout}
    sweep = AccuracySweep([], split)
    events = _Events(progress or _Quiet(), sweep)

    def start_predictions(todo: list[Placed]) -> None:
        if predictions and todo:  # a new file with its header; each worker appends its model's rows
            PredictionsWriter(predictions).close()

    with Store(db) as store:
        summary = execute(jobs, [this_machine()], store, LocalExecutor(on_progress=events.progressed), run_config,
                          ResumePolicy(force=force, retry_failed=retry_failed), events,  # type: ignore[arg-type]
                          argv, prepare=start_predictions)
        stored = {r.cell_key.digest: r for r in store.results(machine_id=summary.machine_id, metric=METRIC)}
    sweep.run_id, sweep.machine_id = summary.run_id, summary.machine_id
    sweep.results = [result_of(stored[job.cells[0].digest]) for job in jobs if job.cells[0].digest in stored]
    return sweep
