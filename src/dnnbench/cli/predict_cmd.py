"""`dnnbench calibrate` and `dnnbench predict`: time the operators models are made of, then predict a model's
latency on a calibrated machine from them (docs/PREDICTION.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from .options import DB_HELP, DEFAULT_DB, FormatOpt, check_format, console, err_console, model_names, printable
from .run_cmd import Address, ExecutorName, On


def calibrate(
    device: str = typer.Option("cpu", "--device", help="cpu (the operators are timed on this device)."),
    backend: str = typer.Option("eager", "--backend", help="eager (PyTorch) or openvino (each operator a one-operator "
                                "model on OpenVINO's CPU plug-in)."),
    precision: str = typer.Option("fp32", "--precision", "--dtype", help="fp32 | bf16 | fp16."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads (CPU)."),
    quick: bool = typer.Option(False, "--quick", help="A first answer: at most 300 operators in 45 s of timing."),
    models: str | None = typer.Option(None, "--models", help="Comma-separated models whose operators are sampled "
                                      "(default: the paper suite's 46)."),
    suite: str | None = typer.Option(None, "--suite", "-s", help="A suite whose models' operators are sampled, with "
                                     "--models' (e.g. --suite paper --models timm:efficientnet_b0)."),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Batch sizes the operator shapes are taken at."),
    operators: int | None = typer.Option(None, "--operators", min=1, help="Operators to time at most, in order of "
                                         "priority until the time budget (default 6000; --quick 300)."),
    seconds: float | None = typer.Option(None, "--seconds", min=1.0, help="Time budget of the timing (default 230 "
                                         "s, 5 minutes with the tracing; --quick 45 s)."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
    executor_name: ExecutorName = "local",
    address: Address = None,
    on: On = None,
) -> None:
    """Time a sample of the operators the zoo's models are made of (convolutions, matrix products, pooling,
    normalisation, activations, element-wise, concatenation, ...), each in an isolated worker, and keep them in
    the store as this machine's calibration for (device, backend, precision, threads). No whole model is run.
    With --executor ray: on every node of each kind (--on) of a Ray cluster, each under its own machine id."""
    from ..errors import UsageError
    from ..run.calibrate import WorkerTimer, calibration_config
    from ..run.calibrate import calibrate as run_calibration
    from ..run.executors import make_executor

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(",") if b.strip())
    except ValueError:
        raise UsageError(f"--batch-sizes must be whole numbers separated by commas, not {batch_sizes!r}") from None
    config = calibration_config("quick" if quick else "default", device=device, backend=backend, precision=precision,
                                threads=threads, models=tuple(model_names(None, models)), suite=suite, batch_sizes=sizes,
                                operators=operators, seconds=seconds)
    executor = make_executor(executor_name, address, on or ())
    if executor.name == "ray":
        from ..run.ray_calibrate import calibrate_on_ray

        with console.status("calibrating on the Ray cluster's nodes (tracing, then timing on each node)"):
            outcomes = calibrate_on_ray(db, config, executor)
        for outcome in outcomes:
            if outcome.summary is None:
                err_console.print(printable(f"node {outcome.where} (machine {outcome.machine_id}): {outcome.error}"),
                                  highlight=False)
            else:
                _print_calibration(outcome.summary, config, f" on node {outcome.where}")
        if not any(o.summary for o in outcomes):
            raise UsageError("no node of the Ray cluster was calibrated; see the messages above")
        return
    with console.status("tracing the models' operators") as status:
        timer = WorkerTimer(progress=lambda done, total: status.update(f"timed {done} of {total} operators"))
        summary = run_calibration(db, config, timer=timer)
    _print_calibration(summary, config)


def _print_calibration(summary, config, where: str = "") -> None:
    table = Table(title=printable(f"Calibration of machine {summary.machine_id}{where} ({config.device}, {config.backend}, "
                                  f"{config.precision}, {config.threads} thread(s)): {summary.timed} of "
                                  f"{summary.sampled} operators timed in {summary.wall_s:.0f} s, from "
                                  f"{summary.distinct} distinct shapes"), title_justify="left")
    table.add_column("operator kind")
    table.add_column("timed", justify="right")
    for kind, count in sorted(summary.kinds.items()):
        table.add_row(kind, str(count))
    console.print(table)
    if summary.unreached:
        console.print(f"{summary.unreached} shape(s) were left when the time budget ran out: the operators the models "
                      "spend least time in, estimated by their kind's regressor")
    if summary.setup_s:
        console.print(f"converting and compiling the one-operator models took {summary.setup_s:.0f} s of that, "
                      "besides the timing")
    for kind, reason in sorted(summary.failed_kinds.items()):
        err_console.print(printable(f"kind {kind}: no operator of it could be timed ({reason}); models that run it "
                                    "cannot be predicted on this calibration"), highlight=False)
    if summary.failed:
        err_console.print(f"note: {summary.failed} operator(s) could not be replayed, left to their kind's regressor")


def predict(
    model: list[str] | None = typer.Argument(None, help="Zoo names, timm:NAME, torchvision:NAME or python:..."),
    machine: str | None = typer.Option(None, "--machine", help="Machine: an id prefix or its host name. Default: "
                                       "this machine, or the only one calibrated."),
    device: str = typer.Option("cpu", "--device"),
    backend: str = typer.Option("eager", "--backend"),
    precision: str = typer.Option("fp32", "--precision", "--dtype"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Default: the only thread count calibrated."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1),
    input_size: int | None = typer.Option(None, "--input-size", min=1, help="Default: each model's native size."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Where the time goes: one row per module."),
    top: int | None = typer.Option(None, "--top", min=1, help="With --per-layer: only the N slowest modules."),
    fmt: str = FormatOpt,
    db: Path = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
) -> None:
    """Predict each model's latency on a calibrated machine (from `dnnbench calibrate`) without running it: its
    operators traced on the meta device, each timed by its kind's regressor, plus module-call overheads (with
    --backend openvino: the operators OpenVINO fuses into others cost nothing, plus one infer request); with a
    5-95% interval (the regressors' error and the model-level error), images/s, the analytic memory estimate,
    and the measured time where the store has one."""
    from ..devices import parse_precision
    from ..errors import UsageError
    from ..predict import predict as run_prediction

    check_format(fmt)
    if not model:
        raise UsageError("name at least one model to predict, e.g. dnnbench predict resnet50")
    if not db.exists():
        raise UsageError(f"{db} does not exist; run `dnnbench calibrate --db {db}` first")
    predictions = run_prediction(model, db, machine, device, backend, parse_precision(precision), threads, batch_size,
                                 input_size)
    rows = [{"model": p.model, "batch_size": p.batch_size, "input_size": p.input_size, "predicted_ms": p.seconds * 1e3,
             "low_ms": p.low * 1e3, "high_ms": p.high * 1e3 if math.isfinite(p.high) else None, "images_per_s": p.images_per_s,
             "memory_mb": p.memory_bytes / 2**20 if p.memory_bytes else None, "operators": p.operators,
             "fitted_operators": p.fitted, "fused_operators": p.fused, "overhead_ms": p.overhead_s * 1e3,
             "measured_ms": p.measured_s * 1e3 if p.measured_s else None, "error": p.error,
             "machine_id": p.calibration.machine_id, "interval_basis": p.interval_basis} for p in predictions]
    if fmt == "json":
        typer.echo(json.dumps(rows if not per_layer else [
            {**r, "layers": [vars(layer) for layer in p.layers]} for r, p in zip(rows, predictions)], indent=2))
        return
    if fmt == "csv":
        import csv
        import sys

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return
    key = predictions[0].calibration
    table = Table(title=printable(f"Predicted on {key.describe()}"), title_justify="left")
    for header in ("model", "batch", "size", "predicted ms", "5-95% ms", "images/s", "memory MB", "operators",
                   "fitted", "measured ms", "error"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for r in rows:
        high = "?" if r["high_ms"] is None else f"{r['high_ms']:.2f}"  # "?": too few timings to bound the error
        table.add_row(printable(r["model"]), str(r["batch_size"]), str(r["input_size"]), f"{r['predicted_ms']:.2f}",
                      f"{r['low_ms']:.2f}-{high}", f"{r['images_per_s']:.1f}",
                      "-" if r["memory_mb"] is None else f"{r['memory_mb']:.0f}",
                      str(r["operators"]) + (f" ({r['fused_operators']} fused)" if r["fused_operators"] else ""),
                      str(r["fitted_operators"]), "-" if r["measured_ms"] is None else f"{r['measured_ms']:.2f}",
                      "-" if r["error"] is None else f"{r['error']:+.1%}")
    console.print(table)
    for basis in dict.fromkeys(p.interval_basis for p in predictions):
        console.print(printable(f"5-95% interval: {basis}"))
    if per_layer:
        for p in predictions:
            layers = sorted(p.layers, key=lambda layer: -layer.seconds)[:top] if top else p.layers
            detail = Table(title=printable(f"{p.model}: where the time goes (operators {p.operators_s * 1e3:.2f} ms + module "
                                 f"calls {p.overhead_s * 1e3:.2f} ms)"), title_justify="left")
            for header in ("module", "operator kinds", "operators", "ms", "share"):
                detail.add_column(header, justify="left" if header in ("module", "operator kinds") else "right")
            for layer in layers:
                detail.add_row(printable(layer.module), layer.kinds, str(layer.operators), f"{layer.seconds * 1e3:.3f}",
                               f"{layer.seconds / p.seconds:.1%}")
            console.print(detail)


def register(app: typer.Typer) -> None:
    """Add `calibrate` and `predict` to the `dnnbench` app."""
    from .options import user_errors

    for command in (calibrate, predict):
        app.command(command.__name__)(user_errors(command))
