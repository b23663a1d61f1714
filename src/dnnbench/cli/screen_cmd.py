"""`dnnbench screen`: whole model sources counted, predicted on a calibrated machine, filtered by limits, the
best measured here, and the Pareto front of accuracy against latency (docs/SCREEN.md)."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from .options import DB_HELP, DEFAULT_DB, FormatOpt, SuiteOpt, check_format, console, err_console, printable


def screen(
    source: list[str] | None = typer.Argument(None, help="Model sources, patterns or names: 'timm:*', "
                                              "'torchvision:*', 'timm:convnext*', resnet50, ..."),
    suite: str | None = SuiteOpt,
    machine: str | None = typer.Option(None, "--machine", "-m", help="The calibrated machine to predict on: an id "
                                       "prefix or its host name (default: this machine, or the only one calibrated)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Batch size the limits apply to."),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Median time of one batch, ms."),
    min_fps: float | None = typer.Option(None, "--min-fps", help="Throughput floor, images/s."),
    max_memory_mb: float | None = typer.Option(None, "--max-memory-mb", help="Memory limit, MB (2^20 bytes)."),
    min_top1: float | None = typer.Option(None, "--min-top1", help="Published top-1 floor, % (models without a "
                                          "published figure are kept, marked accuracy unknown)."),
    top: int = typer.Option(10, "--top", "-k", min=1, help="How many of the best candidates to measure here."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="The calibration's thread count (default: "
                                       "the only one calibrated); the shortlist is measured at it too."),
    time_budget: float = typer.Option(2.0, "--time-budget", min=0.1, help="Seconds of timing per measured model."),
    no_measure: bool = typer.Option(False, "--no-measure", help="Stop after the prediction: measure nothing."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=0, help="Worker processes counting and predicting "
                                    "(default: the usable cores; 0: in this process)."),
    report: Path | None = typer.Option(None, "--report", help="Write the store's HTML report, with the screen, "
                                       "to this folder."),
    fmt: str = FormatOpt,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write every screened model to this file (CSV "
                                       "unless --format json)."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help=DB_HELP + " Counts and measurements are kept there."),
) -> None:
    """Screen whole model sources for a deployment: count every model's operations (counts kept in the store),
    screen out the ones that cannot meet the limits, predict the rest's latency and memory on a calibrated
    machine (`dnnbench calibrate`), rank the ones that fit by published top-1, measure the best --top here, and
    print the Pareto front of accuracy against latency with each figure marked measured or predicted. Without a
    calibration of the machine it stops after the complexity-based screening and says so."""
    import sys

    from ..analysis import Constraints
    from ..errors import UsageError
    from ..screen import screen as run_screen
    from . import render

    check_format(fmt)
    if not source and not suite:
        raise UsageError("name what to screen: sources or patterns ('timm:*', 'torchvision:*') or --suite")
    limits = Constraints(batch_size=batch_size, max_latency_ms=max_latency_ms, min_images_per_s=min_fps,
                         max_memory_mb=max_memory_mb, min_top1=min_top1)
    watch = _Watch()
    try:
        result = run_screen(list(source or ()), db, suite=suite, machine=machine, constraints=limits, top=top,
                            threads=threads, measure=not no_measure, time_budget_s=time_budget, workers=jobs,
                            report_dir=report, progress=watch.hooks(), argv=sys.argv)
    finally:
        watch.finish()
    rows = [_row(m) for m in result.models]
    if fmt != "table" or output is not None:
        render.emit(console, rows, None, fmt, output)
    if fmt == "table":
        _print_tables(result)
    if result.message:
        err_console.print(f"[yellow]{printable(result.message)}[/]", highlight=False)
    if result.report is not None:
        err_console.print(f"report: {result.report}", highlight=False)
    err_console.print(f"screened in {result.seconds.get('total', 0):.0f} s ("
                      + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items() if k != "total") + ")",
                      style="dim", highlight=False)


class _Watch:
    """One live display at a time on stderr: a line per stage, the profile pool's bar while counting, a bar
    while predicting."""

    def __init__(self) -> None:
        from .progress import ProfileProgress, RichProgress

        self.counting = ProfileProgress(err_console)
        self.sweep = RichProgress(err_console)
        self.bars = None
        self.task = None

    def hooks(self):
        from ..screen import ScreenProgress

        return ScreenProgress(stage=self.stage, profile_start=self.counting.start, profile_record=self.counting.record,
                              predicted=self.predicted, sweep=self.sweep)

    def stage(self, text: str) -> None:
        self.finish()
        err_console.print(printable(text), style="dim", highlight=False)

    def predicted(self, done: int, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.bars is None:
            self.bars = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=err_console, transient=True)
            self.bars.start()
            self.task = self.bars.add_task("predicting", total=total)
        self.bars.update(self.task, completed=done)

    def finish(self) -> None:
        self.counting.finish()
        if self.bars is not None:
            self.bars.stop()
            self.bars = None


def _row(m) -> dict:
    return {"model": m.model, "name": m.name, "family": m.family, "in_paper": m.in_paper, "stage": m.stage,
            "fits": m.fits, "pareto": m.on_front, "top1": m.top1, "top5": m.top5, "accuracy_source": m.accuracy_source,
            "latency_ms": m.latency_ms, "latency_source": m.latency_source, "predicted_ms": m.predicted_ms,
            "predicted_low_ms": m.predicted_low_ms, "predicted_high_ms": m.predicted_high_ms,
            "measured_ms": m.measured_ms, "memory_mb": m.memory_mb, "memory_source": m.memory_source,
            "gmacs": m.macs / 1e9 if m.macs is not None else None,
            "params_m": m.params / 1e6 if m.params is not None else None, "why_not": m.why_not}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


SOURCE_MARK = {"measured": "meas.", "predicted": "pred.", "": "-"}


def _print_tables(result) -> None:
    key = result.calibration
    where = key.describe() if key is not None else "no calibration"
    counts: dict[str, int] = {}
    for m in result.models:
        counts[m.stage] = counts.get(m.stage, 0) + 1
    console.print(printable(f"{len(result.models)} models screened for {result.constraints.describe()} on {where}: "
                            + ", ".join(f"{n} {stage}" for stage, n in counts.items())
                            + f"; {len(result.fitting())} fit"), highlight=False)
    for rule in result.rules:
        console.print(printable(f"  rule: {rule}"), style="dim", highlight=False)
    fitting = result.fitting()
    if fitting:
        table = Table(title="Models that fit, best published top-1 first (meas. = measured on this machine, "
                            "pred. = predicted from the calibration)", title_justify="left")
        for header in ("#", "model", "top-1 %", "accuracy source", "ms/batch", "", "predicted 5-95% ms", "MB", "",
                       "Pareto"):
            table.add_column(header, justify="left" if header in ("model", "accuracy source", "", "Pareto")
                             else "right")
        for i, m in enumerate(fitting[:max(20, sum(1 for x in fitting if x.measured_ms is not None))], 1):
            high = "?" if m.predicted_high_ms is None else f"{m.predicted_high_ms:.1f}"
            interval = "-" if m.predicted_low_ms is None else f"{m.predicted_low_ms:.1f}-{high}"
            table.add_row(str(i), printable(m.name), _fmt(m.top1, 2), printable(m.accuracy_source[:60]),
                          _fmt(m.latency_ms, 2), SOURCE_MARK[m.latency_source], interval, _fmt(m.memory_mb, 0),
                          SOURCE_MARK[m.memory_source], "yes" if m.on_front else "")
        console.print(table)
        if len(fitting) > 20:
            console.print(f"... and {len(fitting) - 20} more that fit (--format csv lists every model)", style="dim")
    front = result.front()
    if front:
        table = Table(title="Pareto front: no other model that fits is both more accurate and faster",
                      title_justify="left")
        for header in ("model", "top-1 %", "ms/batch", "latency", "memory MB", "memory"):
            table.add_column(header, justify="left" if header in ("model", "latency", "memory") else "right")
        for m in front:
            table.add_row(printable(m.name), _fmt(m.top1, 2), _fmt(m.latency_ms, 2),
                          {"measured": "measured", "predicted": "predicted"}.get(m.latency_source, "-"),
                          _fmt(m.memory_mb, 0), m.memory_source or "-")
        console.print(table)
    unknown = [m for m in fitting if m.top1 is None]
    if unknown:
        console.print(printable(f"{len(unknown)} models that fit have no published accuracy (accuracy unknown; kept, "
                                f"ranked last): " + ", ".join(m.name for m in unknown[:15])
                                + (" ..." if len(unknown) > 15 else "")), highlight=False)
    failed = [m for m in result.models if m.stage == "not counted"]
    if failed:
        console.print(printable(f"{len(failed)} models could not be counted: " + "; ".join(
            f"{m.name} ({m.why_not[:80]})" for m in failed[:10]) + (" ..." if len(failed) > 10 else "")),
            highlight=False)


def register(app: typer.Typer) -> None:
    """Add `screen` to the `dnnbench` app."""
    from .options import user_errors

    app.command("screen")(user_errors(screen))
