"""The `dnnbench` command: a thin layer over the Python API."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import DnnbenchError, UsageError
from . import render

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark image-recognition networks on this machine (Bianco et al., IEEE Access 2018).")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def user_errors(command: F) -> F:
    """Errors a user can act on are printed without a traceback, with their exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DnnbenchError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


SuiteOpt = typer.Option(None, "--suite", "-s", help="A named suite: paper, mobile, quick, or one from --suite-file.")
SuiteFileOpt = typer.Option(None, "--suite-file", help="TOML or YAML file defining more suites (repeatable).")


def _check_format(fmt: str) -> None:
    if fmt not in render.FORMATS:
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(render.FORMATS)}")


@app.command()
@user_errors
def models(
    suite: Optional[str] = SuiteOpt,
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only this family (e.g. ResNet, Inception)."),
    suite_file: Optional[List[Path]] = SuiteFileOpt,
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """List the zoo's models (the paper suite unless --suite says otherwise)."""
    from .. import zoo

    _check_format(fmt)
    files = tuple(str(p) for p in suite_file or ())
    chosen = zoo.get_suite(suite or "paper", files)
    specs = zoo.resolve_models(suite=chosen.name, suite_files=files)
    if family:
        families = sorted({s.family for s in specs})
        specs = [s for s in specs if s.family.lower() == family.lower()]
        if not specs:
            raise UsageError(f"no model of family {family!r} in suite {chosen.name!r}; families: {', '.join(families)}")
    title = f"Suite {chosen.name!r}: {len(specs)} models" + (f" - {chosen.description}" if chosen.description else "")
    render.emit(console, render.model_rows(specs), render.models_table(specs, title), fmt, output)


@app.command()
@user_errors
def profile(
    model: Optional[List[str]] = typer.Argument(None, help="Zoo names or aliases, or timm:NAME / torchvision:NAME."),
    suite: Optional[str] = SuiteOpt,
    suite_file: Optional[List[Path]] = SuiteFileOpt,
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Square input side (default: each model's native size)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Batch size; totals are for the whole batch."),
    mode: str = typer.Option("standard", "--mode", help="standard | extended | paper (see docs/METHODOLOGY.md)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16: the dtype weight bytes are given at."),
    per_layer: bool = typer.Option(False, "--per-layer", help="One row per module with its own params and MACs."),
    sort_by: str = typer.Option("order", "--sort-by", help="Per-layer order: order | macs | params | path | type."),
    top: Optional[int] = typer.Option(None, "--top", help="Only the first N layers after sorting."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (CSV unless --format json)."),
) -> None:
    """Parameters and operations (MACs; FLOPs = 2 x MACs), counted on the meta device."""
    from .. import zoo
    from ..measure.complexity import MODES, complexity
    from ..run.config import parse_dtype

    _check_format(fmt)
    if mode not in MODES:
        raise UsageError(f"unknown counting mode {mode!r}; modes: {', '.join(MODES)}")
    if sort_by not in render.LAYER_SORTS:
        raise UsageError(f"unknown sort {sort_by!r}; choose one of {', '.join(render.LAYER_SORTS)}")
    if not model and not suite:
        raise UsageError("name at least one model, or a suite with --suite (e.g. --suite paper)")
    torch_dtype = parse_dtype(dtype)
    specs = zoo.resolve_models(tuple(model or ()), suite, tuple(str(p) for p in suite_file or ()))
    results = []
    with console.status("counting") as status:
        for spec in specs:
            status.update(f"counting {spec.id}")
            results.append(complexity(spec, input_size, batch_size, mode, torch_dtype))
    if per_layer:
        rows = []
        for result in results:
            layers = render.sorted_layers(result.layers, sort_by)[:top]
            rows += render.layer_rows(result, layers)
            if fmt == "table" and output is None:
                console.print(render.layers_table(result, layers))
        if fmt != "table" or output is not None:
            render.emit(console, rows, None, fmt, output)
        return
    render.emit(console, render.complexity_rows(results), render.complexity_table(results), fmt, output)


DEFAULT_DB = Path("results/dnnbench.sqlite")


@app.command()
@user_errors
def run(
    model: Optional[List[str]] = typer.Argument(None, help="Models to measure (or use --suite)."),
    suite: Optional[str] = SuiteOpt,
    suite_file: Optional[List[Path]] = SuiteFileOpt,
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated models, added to the suite's."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | mps | auto."),
    dtype: Optional[str] = typer.Option(None, "--dtype", "--precision", help="fp32 | fp16 | bf16, or several: fp32,bf16 (fp32 means fp32: TF32 off unless --tf32). Default fp32; with --backend best, fp32 and the reduced precisions this device runs natively."),
    backend: str = typer.Option("eager", "--backend", "--backends", help="eager | eager-channels-last | torchscript | compile | onnxruntime | openvino | tensorrt, several (comma-separated), or best / all: every backend available here (see `dnnbench backends`)."),
    backend_option: Optional[List[str]] = typer.Option(None, "--backend-option", help="BACKEND.OPTION=VALUE, e.g. compile.mode=max-autotune (repeatable)."),
    batch_sizes: str = typer.Option("1,2,4,8,16,32,64", "--batch-sizes", help="Comma-separated; the paper's by default."),
    threads: Optional[str] = typer.Option(None, "--threads", help="Intra-op threads, e.g. 1 or 1,2 (a sweep). Default: PyTorch's."),
    interop_threads: Optional[int] = typer.Option(None, "--interop-threads", help="Inter-op threads."),
    metrics: str = typer.Option("time,memory,complexity", "--metrics", help="Any of time, memory, complexity."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Square input side (default: native)."),
    time_budget: float = typer.Option(10.0, "--time-budget", help="Seconds of timed iterations per cell, after warm-up."),
    ci_target: float = typer.Option(0.02, "--ci-target", help="Stop when the median's 95% CI half-width is below this fraction."),
    min_samples: int = typer.Option(10, "--min-samples", help="Timed iterations per cell at least."),
    warmup_iters: int = typer.Option(3, "--warmup-iters", help="Warm-up iterations at least (and --warmup-s seconds)."),
    warmup_s: float = typer.Option(1.0, "--warmup-s", help="Warm-up seconds at least."),
    cell_timeout: Optional[float] = typer.Option(None, "--cell-timeout", help="Kill a cell after this many seconds."),
    memory_limit_mb: Optional[int] = typer.Option(None, "--memory-limit-mb", help="Cap each CPU worker's memory; past it: oom."),
    tf32: bool = typer.Option(False, "--tf32", help="Allow TF32 matmuls and convolutions on CUDA."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="The results store (SQLite)."),
    force: bool = typer.Option(False, "--force", help="Measure again cells the store already has."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Measure again cells that failed (error, crash, timeout)."),
    remeasure_contended: bool = typer.Option(False, "--remeasure-contended", help="Measure again cells timed while other processes used the CPU."),
    peak: bool = typer.Option(True, "--peak/--no-peak", help="Measure the device's peak FLOP/s once per store (a few seconds; `dnnbench peak`) for %-of-peak figures."),
    executor_name: str = typer.Option("local", "--executor", help="local (this machine, one worker at a time) | ray (the nodes of a Ray cluster; docs/SCALE-OUT.md)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --executor ray: auto (default), HOST:PORT or ray://HOST:PORT."),
    on: Optional[List[str]] = typer.Option(None, "--on", help="With --executor ray: the kind of node to measure on, KEY=VALUE[,KEY=VALUE] (e.g. machine=jetson-orin); repeat to measure on several kinds."),
) -> None:
    """Measure inference time, memory and complexity over batch sizes; every cell kept in the store."""
    from .. import zoo
    from ..run.config import SweepConfig, parse_int_list, parse_metrics, resolve_device
    from ..run.runner import run_sweep
    from ..store import Store
    from .progress import RichProgress

    names = list(model or ()) + [m.strip() for m in (models or "").split(",") if m.strip()]
    if not names and not suite:
        raise UsageError("name models to measure, or a suite with --suite (e.g. --suite paper)")
    from ..backends import parse_backends, search_precisions
    from ..run.config import parse_backend_option
    from ..run.executor import make_executor

    executor = make_executor(executor_name, address, on or ())
    device = resolve_device(device) if executor.name == "local" else executor.resolve_device(device)
    backends, best_search = parse_backends(backend, device, here=executor.name == "local")
    if dtype:
        precisions = tuple(dict.fromkeys(p.strip().lower() for p in dtype.split(",") if p.strip())) or ("fp32",)
    else:
        precisions = search_precisions(device) if best_search else ("fp32",)
    config = SweepConfig(
        device=device, dtype=precisions[0], precisions=precisions, backends=backends, best_search=best_search,
        backend_options=tuple(parse_backend_option(o) for o in backend_option or ()), batch_sizes=parse_int_list(batch_sizes, "batch sizes"),
        threads=parse_int_list(threads, "thread counts") if threads else (), interop_threads=interop_threads,
        metrics=parse_metrics(metrics), input_size=input_size, time_budget_s=time_budget, ci_target=ci_target,
        min_samples=min_samples, warmup_iters=warmup_iters, warmup_s=warmup_s, cell_timeout_s=cell_timeout,
        memory_limit_mb=memory_limit_mb, tf32=tf32, force=force, retry_failed=retry_failed,
        remeasure_contended=remeasure_contended, measure_peak=peak,
    )
    specs = zoo.resolve_models(tuple(names), suite, tuple(str(p) for p in suite_file or ()))
    if hasattr(executor, "targets"):
        executor.targets(config)  # the cluster's nodes, checked before the store is touched
    with Store(db) as store:
        try:
            summary = run_sweep(specs, config, store, executor, progress=RichProgress(console))
        except KeyboardInterrupt:
            err_console.print(f"interrupted: finished cells are kept in {db}; run the same command to resume")
            raise typer.Exit(130) from None
        sweep = [r for m in summary.machine_ids for r in store.results(machine_id=m)
                 if r.cell_key.digest in summary.planned_digests]
        machines = store.machines()
        for machine_id in summary.machine_ids:  # on a cluster: one table per node that measured
            if len(summary.machine_ids) > 1:
                fingerprint = machines.get(machine_id, {}).get("fingerprint", {})
                name = fingerprint.get("ray_node_name") or fingerprint.get("hostname") or ""
                console.print(f"\n{name} [{machine_id[:8]}]", highlight=False)
            console.print(render.run_summary_table([r for r in sweep if r.machine_id == machine_id]))
        if len(config.backends) * len(config.precision_list) > 1:
            from ..analysis import frames_from_records
            from ..analysis.best import best_deployments

            console.print(render.best_table(best_deployments(frames_from_records(sweep).time)))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "nothing new"
    console.print(f"{summary.planned} cells planned, {summary.already_done} already in the store, measured now: "
                  f"{counts}. Results: {db}", highlight=False)
    advice = allocator_advice(config.device)
    if advice:
        console.print(advice, style="dim", highlight=False)


def allocator_advice(device: str) -> str | None:
    """On a CPU with glibc malloc as it comes, a word on what the allocator may cost (README: performance notes)."""
    from ..env import collect_runtime

    runtime = collect_runtime()
    if device != "cpu" or runtime.allocator != "glibc" or runtime.malloc_env:
        return None
    return ("note: timed with glibc malloc as it comes (recorded with every cell). Models that allocate and free "
            "large activations on each forward can run faster with tcmalloc/jemalloc preloaded or glibc's "
            "MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_/MALLOC_TOP_PAD_ raised: see README, Performance notes.")


@app.command()
@user_errors
def export(
    output: Path = typer.Argument(..., help="File to write: .csv, .parquet or .json."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="The results store (SQLite)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv | parquet | json (default: from the suffix)."),
    salvage: bool = typer.Option(False, "--salvage", help="Leave out cells whose stored text is damaged, and list them."),
) -> None:
    """Export the results store to CSV, Parquet or JSON."""
    from ..store import Store

    with Store(db, create=False) as store:
        damaged = store.export(output, fmt, salvage=salvage)
    console.print(f"wrote {output}", style="dim")
    for cell in damaged:
        err_console.print(f"left out, damaged: {escape(cell)}", highlight=False)


def _register_commands() -> None:
    from . import accuracy_cmd, backends_cmd, peak_cmd, report_cmd

    accuracy_cmd.register(app)
    backends_cmd.register(app)
    report_cmd.register(app)
    peak_cmd.register(app)


_register_commands()


def main() -> None:
    app()
