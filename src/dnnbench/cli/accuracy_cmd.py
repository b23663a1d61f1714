"""`dnnbench accuracy`: top-1/top-5 on ImageNet validation, measured next to the reported figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import DnnbenchError, UnknownModelError, UsageError
from .options import (
    DEFAULT_DB,
    SuiteFileOpt,
    SuiteOpt,
    console,
    err_console,
    model_names,
    suite_files,
    user_errors,
)

if TYPE_CHECKING:  # the command's modules (torch among them) are imported when it runs, not at start-up
    from ..measure.accuracy import AccuracyResult
    from ..zoo import ModelSpec

STATUS_STYLE = {"ok": "green", "unavailable": "yellow", "error": "red", "crash": "red", "timeout": "red"}


class RichAccuracyProgress:
    """A bar for the models, and one for the model being evaluated with images/s and its running top-1."""

    def __init__(self, console: Console, models: int):
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[top1]}"),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.models = models
        self.suite_task = None
        self.model_task = None
        self.first_batch: tuple[float, int] | None = None

    def __enter__(self) -> RichAccuracyProgress:
        self.bars.start()
        self.suite_task = self.bars.add_task("models", total=self.models, rate="", top1="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def model_started(self, model: str, images: int) -> None:
        self.first_batch = None
        self.model_task = self.bars.add_task(f"  {model}", total=images, rate="", top1="")

    def batch_done(self, images: int, evaluated: int, top1_correct: int) -> None:
        now = time.perf_counter()
        # the rate counts from the first batch: loading weights and starting workers is not throughput
        if self.first_batch is None:
            self.first_batch = (now, images)
        seconds, counted = now - self.first_batch[0], images - self.first_batch[1]
        rate = f"{counted / seconds:.0f} img/s" if counted > 0 else ""
        top1 = f"top-1 {100 * top1_correct / evaluated:.2f}%" if evaluated else ""
        self.bars.update(self.model_task, completed=images, rate=rate, top1=top1)

    def model_done(self, result: AccuracyResult) -> None:
        if self.model_task is not None:
            self.bars.remove_task(self.model_task)
            self.model_task = None
        self.bars.advance(self.suite_task)
        style = STATUS_STYLE.get(result.status, "red")
        if result.status == "ok":
            line = f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  ({result.n} images, {result.images_per_s:.0f} img/s)"
        else:
            line = (result.error or "").removeprefix(f"{result.model}: ")
        self.bars.console.print(f"[{style}]{result.status}[/] {result.model}: {line}", highlight=False)
        for warning in result.warnings:
            self.bars.console.print(f"  [yellow]warning:[/] {warning}", highlight=False)


def _parse_weights(values: list[str]) -> str | dict[str, str] | None:
    """`--weights PATH` for a single model, or `--weights MODEL=PATH` (repeatable)."""
    from .. import zoo

    if not values:
        return None
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep:
            try:
                zoo.get(name)
            except UnknownModelError:
                sep = ""
        if not sep:
            if len(values) > 1:
                raise UsageError(f"--weights {value}: with several --weights, write each as MODEL=PATH")
            return value
        pairs[name] = path
    return pairs


def _percent(value: float | None, ci: tuple[float, float] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _reported(spec: ModelSpec) -> str:
    figures = []
    for label, reported in (("2018", spec.reported), ("weights", spec.weights.reported)):
        if reported is not None:
            top5 = f" / {reported.top5:.2f}" if reported.top5 is not None else ""
            figures.append(f"{reported.top1:.2f}{top5} ({label})")
    return "\n".join(figures) or "-"


def _geometry(result: AccuracyResult) -> str:
    if result.plan is None:
        return "-"
    p = result.plan.preprocessing
    caffe = f", {p.color_order} [0, 255]" if p.value_range == 255.0 else ""
    return f"{p.resize_size} -> {p.input_size} {p.interpolation}{caffe}"


def results_table(results: list[AccuracyResult], specs: dict[str, ModelSpec], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("model", overflow="fold")
    for column in ("status", "top-1 % [95% CI]", "top-5 %", "reported top-1 / top-5", "images", "corrupt", "img/s"):
        table.add_column(column, justify="left" if column == "status" else "right")
    table.add_column("resize -> crop")
    for r in results:
        style = STATUS_STYLE.get(r.status, "red")
        table.add_row(r.model, f"[{style}]{r.status}[/]", _percent(r.top1, r.top1_ci), _percent(r.top5),
                      _reported(specs[r.model]), str(r.n) if r.status == "ok" else "-",
                      str(r.corrupt) if r.status == "ok" else "-",
                      f"{r.images_per_s:.0f}" if r.images_per_s else "-",
                      _geometry(r))
    return table


def accuracy(
    model: list[str] | None = typer.Argument(None, help="Models to evaluate (or use --suite / --models)."),
    data: Path = typer.Option(..., "--data", help="ImageNet validation: class folders, a flat folder with its "
                              "label file, or a path,label CSV."),
    labels: Path | None = typer.Option(None, "--labels", help="Label file for a flat folder: "
                                       "ILSVRC2012_validation_ground_truth.txt, LOC_val_solution.csv or a path,label CSV."),
    synsets: Path | None = typer.Option(None, "--synsets", help="The devkit's class order for its ground-truth "
                                        "file: meta.mat, or 1000 synsets one a line."),
    suite: str | None = SuiteOpt,
    suite_file: list[Path] | None = SuiteFileOpt,
    models: str | None = typer.Option(None, "--models", help="Comma-separated models, added to the suite's."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate N images, the same number from every class "
                                     "(deterministic)."),
    weights: list[str] | None = typer.Option(None, "--weights", help="A checkpoint to load instead of the "
                                             "library's weights: PATH for one model, or MODEL=PATH (repeatable)."),
    paper_preprocessing: bool = typer.Option(False, "--paper-preprocessing", help="The 2018 rule for every "
                                             "model: shorter side floor(input/0.875), bilinear, centre crop."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | mps | auto."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16 | int8 (int8: with --backend openvino or "
                              "onnxruntime, quantized after calibration)."),
    backend: str = typer.Option("eager", "--backend", help="The deployment evaluated: eager, or a backend of "
                                "`dnnbench backends`, called exactly as `dnnbench run` times it."),
    calibration_data: Path | None = typer.Option(None, "--calibration-data", help="int8: calibrate on these "
                                                 "images (any layout --data accepts; not the evaluated ones). "
                                                 "Default: 32 synthetic images."),
    calibration_samples: int | None = typer.Option(None, "--calibration-samples", help="int8: how many "
                                                   "calibration images (default 32)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward pass."),
    workers: int | None = typer.Option(None, "--workers", help="Decoding processes (default: half the cores on "
                                       "CPU, up to 8 on GPU)."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="The results store (SQLite)."),
    save_predictions: Path | None = typer.Option(None, "--save-predictions", help="Write every image's top-5 "
                                                 "predictions of the models evaluated now to this CSV."),
    force: bool = typer.Option(False, "--force", help="Evaluate again models the store has already."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Evaluate again models whose stored result "
                                      "is a failure."),
) -> None:
    """Top-1/top-5 accuracy on ImageNet validation, each model with its own weights and preprocessing."""
    from .. import zoo
    from ..data.imagenet import open_imagenet

    names = model_names(model, models)
    if not names and not suite:
        raise UsageError("name models to evaluate, or a suite with --suite (e.g. --suite paper)")
    specs = zoo.resolve_models(tuple(names), suite, suite_files(suite_file))
    chosen_weights = _parse_weights(list(weights or ()))
    split = open_imagenet(data, labels, synsets)
    console.print(f"{len(split)} images of {len(split.classes)} classes ({split.layout} layout) in {split.root}",
                  highlight=False)
    settings = dict(paper_preprocessing=paper_preprocessing, limit=limit, device=device, dtype=dtype,
                    batch_size=batch_size, workers=workers, backend=backend, calibration_data=calibration_data,
                    calibration_samples=calibration_samples)
    sweep = _evaluate(specs, split, chosen_weights, db, save_predictions, force, retry_failed, settings)
    mode = "the 2018 rule" if paper_preprocessing else "each weights' own preprocessing"
    if backend != "eager" or dtype != "fp32":
        mode += f"; deployed as {backend} {dtype}"
    _show(sweep, specs, f"Accuracy on {len(split.subset(limit))} images ({mode})", db, save_predictions)


def _evaluate(specs, split, weights, db: Path, save_predictions: Path | None, force: bool, retry_failed: bool,
              settings: dict):
    """The accuracy run, with progress bars; an interrupt keeps the finished models and exits 130 (143)."""
    from ..run.accuracy import accuracy_sweep
    from ..run.lifecycle import exit_code

    with RichAccuracyProgress(console, len(specs)) as progress:
        try:
            return accuracy_sweep(specs, split, weights=weights, db=db, save_predictions=save_predictions,
                                  progress=progress, argv=sys.argv, force=force, retry_failed=retry_failed, **settings)
        except KeyboardInterrupt as interrupt:
            err_console.print(f"interrupted: the models finished so far are kept in {db}; run the same command "
                              "to resume")
            raise typer.Exit(exit_code(interrupt)) from None


def _show(sweep, specs, title: str, db: Path, save_predictions: Path | None) -> None:
    """What was skipped as already stored, the results table, the counts; an error when nothing could be evaluated."""
    if sweep.already_done:
        done = "nothing evaluated: every model" if not sweep.evaluated else f"{sweep.already_done} model(s)"
        console.print(f"{done} already in {db} with these settings, not evaluated again "
                      "(--force evaluates again, --retry-failed the failed ones)", highlight=False)
    console.print(results_table(sweep.results, {s.id: s for s in specs}, title))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(sweep.counts.items()))
    wrote = f"; predictions: {save_predictions}" if save_predictions and sweep.evaluated else ""
    console.print(f"{counts}. Results: {db}{wrote}", highlight=False)
    if not sweep.counts.get("ok"):
        raise DnnbenchError("no model could be evaluated (see the messages above)")


def register(app: typer.Typer) -> None:
    """Add `accuracy` to the `dnnbench` app."""
    app.command("accuracy")(user_errors(accuracy))
