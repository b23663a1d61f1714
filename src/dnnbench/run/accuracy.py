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

from ..data.classes import synset_to_index
from ..data.imagenet import ImageNetSplit, open_imagenet
from ..data.preprocessing import InputPlan
from ..devices import DEFAULT_CALIBRATION_SAMPLES, parse_precision, resolve_device
from ..errors import UsageError
from ..measure.accuracy import (
    METRIC,
    AccuracyProgress,
    AccuracyResult,
    ClassAccuracy,
    EvalSettings,
    PredictionsWriter,
    cell_config,
)
from ..store import CellKey, ResultRecord, Store
from ..store.values import AccuracyValue
from ..zoo import ModelSpec
from ..zoo.spec import Preprocessing
from ..zoo.weights import WeightsIdentity
from .accuracy_worker import DEFAULT_TIMEOUT_S, AccuracyJob, AccuracyLimits
from .config import ResumePolicy
from .executor import LocalExecutor, Placed
from .plan import Cell
from .runner import execute, this_machine
from .worker import Progressed


def eval_settings(paper_preprocessing: bool = False, limit: int | None = None, device: str = "cpu",
                  dtype: str = "fp32", batch_size: int = 64, workers: int | None = None, backend: str = "eager",
                  calibration_data: str | Path | None = None,
                  calibration_samples: int | None = None) -> EvalSettings:
    """The evaluation settings with the device ("auto", "cuda") and dtype ("float16") names resolved; a
    calibration folder is checked now (its layout) and kept as an absolute path."""
    from .config import calibration_folder

    return EvalSettings(paper_preprocessing, limit, resolve_device(device), parse_precision(dtype),
                        batch_size, workers, backend.strip().lower(), calibration_folder(calibration_data),
                        calibration_samples or DEFAULT_CALIBRATION_SAMPLES)


def result_of(record: ResultRecord) -> AccuracyResult:
    """A stored accuracy cell as the result evaluate_accuracy returns; any other status (a crash, a timeout
    recorded by the runner) comes back with its message and no figures."""
    value = record.values if isinstance(record.values, AccuracyValue) else AccuracyValue()
    p, w = value.preprocessing, value.weights
    plan = None
    if p is not None and p.input_size is not None:
        preprocessing = Preprocessing(p.input_size, p.resize_size, p.interpolation, tuple(p.mean), tuple(p.std),
                                      p.color_order or "RGB", p.value_range or 1.0)
        plan = InputPlan(preprocessing, p.mode or "", p.source or "", p.transform_input, p.note or "")
    weights = (WeightsIdentity(w.source, w.ref, w.file, w.sha256, w.url, w.checkpoint_key, w.stripped_prefix)
               if w is not None and w.sha256 is not None else None)
    result = AccuracyResult(record.model, record.status, dict(record.config), error=record.error,
                            started_at=record.started_at, finished_at=record.finished_at, plan=plan, weights=weights)
    if record.status != "ok":
        return result
    index = synset_to_index()
    result.top1, result.top5, result.n = value.top1, value.top5, value.n or 0
    result.top1_correct, result.top5_correct = value.top1_correct or 0, value.top5_correct or 0
    result.top1_ci, result.top5_ci = value.top1_ci or None, value.top5_ci or None  # type: ignore[assignment]
    result.per_class = tuple(ClassAccuracy(index[c.synset], c.synset, c.n, c.top1_correct, c.top5_correct)
                             for c in value.per_class or ())
    result.corrupt, result.corrupt_files = value.corrupt or 0, value.corrupt_files or ()
    result.classes_seen, result.images_per_s = value.classes_seen or 0, value.images_per_s
    result.elapsed_s, result.warnings = value.elapsed_s or 0.0, value.warnings or ()
    return result


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
                  "dtype": checked.dtype, "backend": checked.backend, "calibration_data": checked.calibration_data,
                  "batch_size": checked.batch_size, "workers": checked.workers,
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
