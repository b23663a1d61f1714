"""`dnnbench report`, `select`, `compare` and `merge`: what a person reads from a results store."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import UsageError
from .options import DB_HELP, DEFAULT_DB, MACHINE_HELP, FormatOpt, check_format, console, model_names, user_errors


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas, not {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise UsageError(f"{what} must be positive numbers, not {text!r}")
    return values


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}x"


# --- report ---------------------------------------------------------------------------------------------


def report(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Folder for index.html and the images."),
    machine: list[str] | None = typer.Option(None, "--machine", "-m", help="Only these machines (repeatable)."),
    image_formats: str = typer.Option("png,svg", "--images", help="Static image formats: any of png, svg, pdf; "
                                      "'none' for none."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Batch size of the accuracy-vs-speed figures "
                                   "and the constraint tables."),
    fps: str | None = typer.Option(None, "--fps", help="Throughput floors of the constraint tables, images/s "
                                      "(default 15,30,60)."),
    memory_mb: str | None = typer.Option(None, "--memory-mb", help="Memory limits of the constraint tables, MB "
                                            "(default 512,1024,2048)."),
    title: str = typer.Option("dnnbench report", "--title", help="Title of the page."),
) -> None:
    """Write one self-contained interactive HTML report (report/index.html) and PNG/SVG figures beside it."""
    from ..report import ReportOptions, build_report
    from ..report.figures import FORMATS

    formats = () if image_formats.strip().lower() == "none" else tuple(
        f.strip().lower() for f in image_formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown image format {', '.join(unknown)}; formats: {', '.join(FORMATS)} (or none)")
    defaults = ReportOptions()
    options = ReportOptions(
        formats=formats, batch_size=batch_size, fps_levels=_floats(fps, "--fps") or defaults.fps_levels,
        memory_levels_mb=_floats(memory_mb, "--memory-mb") or defaults.memory_levels_mb,
        machines=tuple(machine or ()), title=title)
    with console.status("building the report"):
        result = build_report(db or DEFAULT_DB, output, options)
    console.print(f"wrote {result.index} ({result.figures} interactive figures, {len(result.images)} images) in "
                  f"{result.seconds:.1f} s", highlight=False)
    for reason in result.skipped:
        console.print(f"[yellow]not drawn[/] {reason}", highlight=False)


# --- select ---------------------------------------------------------------------------------------------


def select(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    machine: str | None = typer.Option(None, "--machine", "-m", help=MACHINE_HELP),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Batch size the limits apply to."),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Median time of one batch, ms."),
    min_fps: float | None = typer.Option(None, "--min-fps", help="Throughput floor, images/s."),
    max_memory_mb: float | None = typer.Option(None, "--max-memory-mb", help="Memory limit, MB (2^20 bytes)."),
    min_top1: float | None = typer.Option(None, "--min-top1", help="Top-1 accuracy floor, %."),
    max_joules_per_image: float | None = typer.Option(None, "--max-joules-per-image",
                                                      help="Energy limit, joules per image (--metrics energy cells)."),
    min_throughput: float | None = typer.Option(None, "--min-throughput", help="Floor on the best offline "
                                                "images/s, any streams and batch size (`run --scenario offline`)."),
    max_p99_ms: float | None = typer.Option(None, "--max-p99-ms", help="Bound on the server p99 latency, ms, at "
                                            "--at-rate (`run --scenario server`)."),
    at_rate: float | None = typer.Option(None, "--at-rate", help="Offered rate, requests/s, where --max-p99-ms is "
                                         "judged: the p99 measured at the smallest rate tried >= it."),
    top: int = typer.Option(5, "--top", help="How many models to list (and how many excluded ones to explain)."),
    models: str | None = typer.Option(None, "--models", help="On a calibrated machine: the models to predict "
                                      "where none was measured (comma-separated, patterns too; default: the "
                                      "store's models, or the paper suite when it has none)."),
    fmt: str = FormatOpt,
    output: Path | None = typer.Option(None, "--output", help="Write to this file."),
) -> None:
    """The best models that meet latency, throughput, memory and accuracy limits on one machine (ranked by
    top-1, then speed), and why the best excluded ones failed. On a machine with a calibration (`dnnbench
    calibrate`), models it has not measured are predicted, labelled "predicted" with their 5-95% interval, and a
    latency or throughput limit is judged at the interval's pessimistic end. --min-throughput and --max-p99-ms
    judge the offline and server scenario cells; deployments without them are listed as not measured. Exit code 1
    when no model fits."""
    from ..analysis import Constraints, load_frames, performance, select_models
    from ..analysis.select import selection_rows
    from . import render

    check_format(fmt)
    limits = Constraints(batch_size=batch_size, max_latency_ms=max_latency_ms, min_images_per_s=min_fps,
                         max_memory_mb=max_memory_mb, min_top1=min_top1, max_joules_per_image=max_joules_per_image,
                         min_offline_images_per_s=min_throughput, max_p99_ms=max_p99_ms, at_rate=at_rate)
    frames = load_frames(db or DEFAULT_DB)
    calibrated = _calibrated_machines(db or DEFAULT_DB)
    if not calibrated:
        frames.require_data()
    chosen = frames.machine(machine)
    perf = performance(frames)
    if chosen.machine_id in calibrated:
        perf = _with_predicted(db or DEFAULT_DB, frames, perf, chosen.machine_id, batch_size, models)
    scenarios = None
    if limits.scenario_limits:
        from ..analysis.scenarios import scenario_figures

        scenarios = scenario_figures(frames, limits.at_rate)
    selection = select_models(perf, limits, top=top, machine_id=chosen.machine_id, scenarios=scenarios)
    rows = selection_rows(selection, top)
    if fmt != "table" or output is not None:
        render.emit(console, rows, None, fmt, output)
    else:
        if selection.chosen:
            console.print(_selection_table(selection, chosen.label))
        if selection.rejected:
            console.print(_rejection_table(selection, top))
        unlisted = _not_measured(selection, top)
        if unlisted:
            console.print(_not_measured_table(unlisted))
    if not selection.chosen:
        console.print(f"[bold]no model meets {limits.describe()}[/] on {chosen.label}", highlight=False)
        raise typer.Exit(1)


def _calibrated_machines(db: Path) -> set[str]:
    from ..store import Store

    with Store(db, create=False) as store:
        return {c["machine_id"] for c in store.calibrations()}


def _with_predicted(db: Path, frames, perf, machine_id: str, batch_size: int, models: str | None):
    """`perf` with predicted rows for the cells of `machine_id`'s calibrated configurations it has not measured
    at `batch_size`."""
    from ..analysis.prediction import predicted_performance, with_predictions
    from ..predict.frames import calibrated_keys, predicted_cells
    from ..store import Store
    from ..zoo import list_models, resolve_names

    wanted = ([s.id for s in resolve_names(model_names(None, models))] if models else frames.models) or list_models(
        suite="paper")
    parts = []
    with Store(db, create=False) as store:
        for key in calibrated_keys(store, [machine_id]):
            mine = perf[(perf["machine_id"] == machine_id) & (perf["batch_size"] == batch_size)
                        & (perf["device"] == key.device) & (perf["dtype"] == key.precision)
                        & (perf["backend"] == key.backend) & (perf["threads"].fillna(-1) == key.threads)]
            missing = [m for m in wanted if m not in set(mine["model"])]
            if missing:
                with console.status(f"predicting {len(missing)} model(s) from the calibration of {key.describe()}"):
                    parts.append(predicted_cells(store, key, missing, batch_size))
    import pandas as pd

    predicted = predicted_performance(pd.concat(parts, ignore_index=True), frames) if parts else pd.DataFrame()
    return with_predictions(perf, predicted)


SOURCE_MARK = {"measured": "meas.", "reported": "rep.", "none": "-"}


def _selection_table(selection, machine_label: str) -> Table:
    setups = {c.setup for c in selection.chosen}
    one_setup = len(setups) == 1
    title = (f"Models that fit on {machine_label}" + (f", {next(iter(setups))}" if one_setup else "")
             + f": {selection.constraints.describe()}. {selection.eligible} fit; ranked by top-1, then speed")
    table = Table(title=title, title_justify="left")
    energy = any(c.joules_per_image is not None for c in selection.chosen)
    predicted = any(c.predicted for c in selection.chosen)
    quantized = any(c.quantization for c in selection.chosen)  # int8 setups: their accuracy, or that it is unknown
    limits = selection.constraints
    offline = limits.min_offline_images_per_s is not None
    served = limits.max_p99_ms is not None
    headers = (["#", "model", "top-1 %", "acc.", "ms/batch"] + (["latency", "5-95% ms"] if predicted else [])
               + ["images/s", "MB"] + (["J/image"] if energy else [])
               + (["offline img/s", "at"] if offline else []) + (["p99 ms", "judged at req/s"] if served else [])
               + (["scenario note"] if any(c.scenario_note for c in selection.chosen) else [])
               + ([] if one_setup else ["config"]) + (["quantized"] if quantized else []))
    for header in headers:
        table.add_column(header, justify="left" if header in ("model", "acc.", "config", "latency", "quantized", "at",
                                                              "scenario note") else "right")
    for i, c in enumerate(selection.chosen, 1):
        row = [str(i), c.name, _fmt(c.top1, 2), SOURCE_MARK.get(c.accuracy_source, c.accuracy_source),
               _fmt(c.latency_ms, 2)]
        if predicted:  # which figures are measured and which predicted (memory then the analytic estimate)
            row += [c.latency_source, _interval(c) if c.predicted else ""]
        row += [_fmt(c.images_per_s), _fmt(c.memory_mb, 0)]
        row += [_fmt(c.joules_per_image, 3)] if energy else []
        row += [_fmt(c.offline_images_per_s), c.offline_point] if offline else []
        row += [_fmt(c.server_p99_ms, 2), "-" if c.server_rate is None else f"{c.server_rate:.4g}"] if served else []
        row += [c.scenario_note] if "scenario note" in headers else []
        table.add_row(*row + ([] if one_setup else [c.setup]) + ([c.quantization or "-"] if quantized else []))
    return table


def _interval(c) -> str:
    high = c.latency_high_ms
    return f"{_fmt(c.latency_low_ms, 2)}-{'?' if high is None or not math.isfinite(high) else _fmt(high, 2)}"


def _rejection_table(selection, top: int) -> Table:
    table = Table(title=f"Why the best excluded models do not fit ({min(top, len(selection.rejected))} of "
                        f"{len(selection.rejected)} shown)", title_justify="left")
    for header in ("model", "top-1 %", "fails"):
        table.add_column(header, justify="right" if header == "top-1 %" else "left")
    for r in selection.rejected[:top]:
        table.add_row(r.candidate.name, _fmt(r.candidate.top1, 2), r.describe())
    return table


def _not_measured(selection, top: int) -> list:
    """Deployments without the scenario figures a constraint needs, less those the rejection table shows."""
    shown = {(r.candidate.model, r.candidate.setup) for r in selection.rejected[:top]}
    return [r for r in selection.not_measured if (r.candidate.model, r.candidate.setup) not in shown]


def _not_measured_table(rejections: list) -> Table:
    table = Table(title="Deployments not measured in that scenario (none can fit until measured: "
                        "`dnnbench run --scenario offline|server`)", title_justify="left")
    for header in ("model", "config", "why"):
        table.add_column(header)
    for r in rejections:
        table.add_row(r.candidate.name, r.candidate.setup, r.describe())
    return table


# --- compare --------------------------------------------------------------------------------------------


def compare(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    machine: list[str] | None = typer.Option(None, "--machine", "-m", help="Machine A, then machine B "
                                                "(optional when the store holds exactly two)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Only this batch size."),
    ignore: str | None = typer.Option(None, "--ignore", help="Config columns that may differ, e.g. "
                                         "device,threads to set a CPU against a GPU."),
    fmt: str = FormatOpt,
    output: Path | None = typer.Option(None, "--output", help="Write to this file."),
) -> None:
    """Per-model speed ratio (images/s on A / on B) and memory ratio for the configs both machines ran."""
    from ..analysis import load_frames, performance
    from ..analysis.derived import matching_ratios, speed_ratio_summary
    from ..analysis.machines import two_machines
    from . import render

    check_format(fmt)
    frames = load_frames(db or DEFAULT_DB)
    frames.require_data()
    a, b = two_machines(list(machine or ()), frames.machines)
    ignored = tuple(c.strip() for c in (ignore or "").split(",") if c.strip())
    ratios = matching_ratios(performance(frames), a.machine_id, b.machine_id, ignored, batch_size)
    if fmt != "table" or output is not None:
        render.emit(console, ratios.drop(columns=["family"]).to_dict(orient="records"), None, fmt, output)
        return
    console.print(_ratios_table(ratios, a.label, b.label))
    summary = speed_ratio_summary(ratios)
    if summary:
        cells, mean, low, high = summary
        console.print(f"{cells} matching cells; speed ratio A/B: geometric mean {_ratio(mean)}, min {_ratio(low)}, "
                      f"max {_ratio(high)}", highlight=False)


def _ratios_table(ratios, label_a: str, label_b: str) -> Table:
    one_setup = ratios["setup_a"].nunique() == 1 and ratios["setup_b"].nunique() == 1
    setup_a = f", {ratios['setup_a'].iloc[0]}" if one_setup else ""
    setup_b = f", {ratios['setup_b'].iloc[0]}" if one_setup else ""
    table = Table(title=f"A: {label_a}{setup_a}\nB: {label_b}{setup_b}\nspeed = images/s on A / images/s on B "
                        "(> 1: A is faster); memory = MB on A / MB on B", title_justify="left")
    headers = ["model", "batch", "images/s A", "images/s B", "speed A/B", "MB A", "MB B", "memory A/B"]
    for header in headers + ([] if one_setup else ["config A", "config B"]):
        table.add_column(header, justify="left" if header in ("model", "config A", "config B") else "right")
    for r in ratios.itertuples():
        row = [r.name, str(r.batch_size), _fmt(r.images_per_s_a), _fmt(r.images_per_s_b), _ratio(r.speed_ratio),
               _fmt(r.memory_mb_a, 0), _fmt(r.memory_mb_b, 0), _ratio(r.memory_ratio)]
        table.add_row(*row + ([] if one_setup else [r.setup_a, r.setup_b]))
    return table


# --- merge ----------------------------------------------------------------------------------------------


def merge(
    target: Path = typer.Argument(..., help="The store to merge into (created if missing)."),
    sources: list[Path] = typer.Argument(..., help="Stores to merge from (left unchanged)."),
) -> None:
    """Merge results stores (e.g. from several machines) into TARGET, without duplicates: a cell present in
    both keeps the more recently finished measurement; a calibration (`dnnbench calibrate`) of the same machine and
    configuration is replaced whole by the newer one."""
    from ..store import Store

    for source in sources:
        if not source.exists():
            raise UsageError(f"no results store at {source}")
    with Store(target) as store:
        for source in sources:
            before = len(store.results())
            calibrated = {_calibration_key(c): c["measured_at"] for c in store.calibrations()}
            added = store.merge_from(source)
            after = len(store.results())
            taken = sum(calibrated.get(_calibration_key(c)) != c["measured_at"] for c in store.calibrations())
            with Store(source, create=False) as other:
                offered = len(other.results())
                offered_calibrations = len(other.calibrations())
            console.print(f"{source}: {after - before} new results, {offered - (after - before)} already in "
                          f"{target} (the newer measurement kept); {added} rows added in all (machines, runs, "
                          "results, calibrations)", highlight=False)
            if offered_calibrations:
                console.print(f"{source}: {taken} of {offered_calibrations} calibration(s) taken (a newer calibration "
                              "of the same machine and configuration replaces the older whole)", highlight=False)
        console.print(f"{target}: {len(store.machines())} machine(s), {len(store.results())} results, "
                      f"{len(store.calibrations())} calibration(s)", highlight=False)


def _calibration_key(summary: dict) -> tuple:
    return tuple(summary[k] for k in ("machine_id", "device", "backend", "precision", "threads"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `dnnbench` app."""
    for command in (report, select, compare, merge):
        app.command(command.__name__)(user_errors(command))
