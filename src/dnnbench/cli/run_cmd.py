"""`dnnbench run`: measure a sweep into the store, then print its tables."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DnnbenchError, UsageError
from .options import DEFAULT_DB, SuiteFileOpt, SuiteOpt, console, err_console, model_names, suite_files, user_errors


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
    """Measure inference time, memory and complexity over batch sizes; every cell kept in the store.
    Exit code 1 when no cell of the sweep holds a measurement."""
    from .. import zoo
    from ..backends import parse_backends, search_precisions
    from ..run.config import SweepConfig, parse_backend_option, parse_int_list, parse_metrics, resolve_device
    from ..run.executor import make_executor
    from ..run.runner import run_sweep, sweep_records
    from ..store import Store
    from .progress import RichProgress

    names = model_names(model, models)
    if not names and not suite:
        raise UsageError("name models to measure, or a suite with --suite (e.g. --suite paper)")
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
    specs = zoo.resolve_models(tuple(names), suite, suite_files(suite_file))
    if hasattr(executor, "targets"):
        executor.targets(config)  # the cluster's nodes, checked before the store is touched
    with Store(db) as store:
        try:
            summary = run_sweep(specs, config, store, executor, progress=RichProgress(console))
        except KeyboardInterrupt:
            err_console.print(f"interrupted: finished cells are kept in {db}; run the same command to resume")
            raise typer.Exit(130) from None
        records = sweep_records(summary, store)
        show_sweep(records, store.machines(), several_deployments=len(config.backends) * len(config.precision_list) > 1)
    finish(summary, records, config.device, db)


def show_sweep(records: dict[str, list], machines: dict[str, dict], several_deployments: bool) -> None:
    """One summary table per machine that measured (a cluster's nodes each get theirs), then the best
    deployment per model when the sweep compared several."""
    from . import render

    for machine_id, machine_records in records.items():
        if len(records) > 1:
            console.print(f"\n{render.machine_name(machines.get(machine_id, {}))} [{machine_id[:8]}]", highlight=False)
        console.print(render.run_summary_table(machine_records))
    if several_deployments:
        from ..analysis import frames_from_records
        from ..analysis.best import best_deployments

        sweep = [r for machine_records in records.values() for r in machine_records]
        console.print(render.best_table(best_deployments(frames_from_records(sweep).time)))


def finish(summary, records: dict[str, list], device: str, db: Path) -> None:
    """The sweep's counts in one line, the allocator advice, and exit code 1 when no cell holds a measurement."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "nothing new"
    console.print(f"{summary.planned} cells planned, {summary.already_done} already in the store, measured now: "
                  f"{counts}. Results: {db}", highlight=False)
    advice = allocator_advice(device)
    if advice:
        console.print(advice, style="dim", highlight=False)
    if summary.planned and not any(r.status == "ok" for rs in records.values() for r in rs):
        raise DnnbenchError(f"no cell of the {summary.planned} planned was measured (see the messages above); "
                            "fix the cause and run the same command with --retry-failed")


def allocator_advice(device: str) -> str | None:
    """On a CPU with glibc malloc as it comes, a word on what the allocator may cost (README: performance notes)."""
    from ..env import collect_runtime

    runtime = collect_runtime()
    if device != "cpu" or runtime.allocator != "glibc" or runtime.malloc_env:
        return None
    return ("note: timed with glibc malloc as it comes (recorded with every cell). Models that allocate and free "
            "large activations on each forward can run faster with tcmalloc/jemalloc preloaded or glibc's "
            "MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_/MALLOC_TOP_PAD_ raised: see README, Performance notes.")


def register(app: typer.Typer) -> None:
    """Add `run` to the `dnnbench` app."""
    app.command("run")(user_errors(run))
