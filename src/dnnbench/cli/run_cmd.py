"""`dnnbench run`: measure a sweep into the store, then print its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DnnbenchError, UsageError
from .options import DEFAULT_DB, SUITE_FILE_HELP, SUITE_HELP, console, err_console, model_names, suite_files, user_errors

# The options of `run`, declared once here so that the command itself reads as what it does.
Models = Annotated[list[str] | None, typer.Argument(help="Models to measure (or use --suite).")]
Suite = Annotated[str | None, typer.Option("--suite", "-s", help=SUITE_HELP)]
SuiteFiles = Annotated[list[Path] | None, typer.Option("--suite-file", help=SUITE_FILE_HELP)]
ModelList = Annotated[str | None, typer.Option("--models", help="Comma-separated models, added to the suite's.")]
Device = Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N | mps | auto.")]
Dtype = Annotated[str | None, typer.Option(
    "--dtype", "--precision", help="fp32 | fp16 | bf16 | int8, or several: fp32,bf16 (fp32 means fp32: TF32 off "
    "unless --tf32; int8 is quantized by openvino or onnxruntime after calibration). Default fp32; with --backend "
    "best, fp32 and the reduced precisions this device runs natively.")]
CalibrationData = Annotated[Path | None, typer.Option(
    "--calibration-data", help="int8: calibrate on these images (any layout `dnnbench accuracy` reads), each "
    "model with its own preprocessing. Default: 32 synthetic structured images (docs/BACKENDS.md).")]
CalibrationSamples = Annotated[int | None, typer.Option(
    "--calibration-samples", help="int8: how many calibration images (default 32).")]
Backend = Annotated[str, typer.Option(
    "--backend", "--backends", help="eager | eager-channels-last | torchscript | compile | onnxruntime | openvino | "
    "tensorrt, several (comma-separated), or best / all: every backend available here (see `dnnbench backends`).")]
BackendOptions = Annotated[list[str] | None, typer.Option(
    "--backend-option", help="BACKEND.OPTION=VALUE, e.g. compile.mode=max-autotune (repeatable).")]
BatchSizes = Annotated[str, typer.Option("--batch-sizes", help="Comma-separated; the paper's by default.")]
Threads = Annotated[str | None, typer.Option(
    "--threads", help="Intra-op threads, e.g. 1 or 1,2 (a sweep). Default: PyTorch's.")]
InteropThreads = Annotated[int | None, typer.Option("--interop-threads", help="Inter-op threads.")]
Metrics = Annotated[str, typer.Option("--metrics", help="Any of time, memory, complexity, energy (J/image: NVML, RAPL).")]
InputSize = Annotated[int | None, typer.Option("--input-size", help="Square input side (default: native).")]
TimeBudget = Annotated[float, typer.Option(
    "--time-budget", help="Seconds of timed iterations per cell, after warm-up.")]
CiTarget = Annotated[float, typer.Option(
    "--ci-target", help="Stop when the median's 95% CI half-width is below this fraction.")]
Repeats = Annotated[int, typer.Option(
    "--repeats", help="Trials per timed cell: fresh worker processes, interleaved over the sweep; the median over "
    "trials is the headline, with an interval that holds the between-process spread.")]
MinSamples = Annotated[int, typer.Option("--min-samples", help="Timed iterations per cell at least.")]
WarmupIters = Annotated[int, typer.Option(
    "--warmup-iters", help="Warm-up iterations at least (and --warmup-s seconds).")]
WarmupS = Annotated[float, typer.Option("--warmup-s", help="Warm-up seconds at least.")]
WarmupSettleS = Annotated[float, typer.Option(
    "--warmup-settle-s", help="Warm-up seconds allowed past --warmup-iters/--warmup-s for the rolling median of "
    "the forward time to settle (within 5% over 5 calls); whether it did is recorded.")]
CellTimeout = Annotated[float | None, typer.Option("--cell-timeout", help="Kill a cell after this many seconds.")]
MemoryLimit = Annotated[int | None, typer.Option(
    "--memory-limit-mb", help="Cap each CPU worker's memory; past it: oom.")]
Tf32 = Annotated[bool, typer.Option("--tf32", help="Allow TF32 matmuls and convolutions on CUDA.")]
Scenario = Annotated[str, typer.Option(
    "--scenario", help="single-stream (one request at a time: time, memory, energy cells) | offline (images/s with "
    "several requests in flight: streams x batch sizes searched, the whole curve kept) | server (Poisson arrivals: "
    "the highest rate whose p99 latency meets --p99-ms). docs/SCENARIOS.md.")]
Streams = Annotated[str | None, typer.Option(
    "--streams", help="Scenarios: requests in flight. offline: the stream counts searched (default 1, 2, 4, ... the "
    "cores); server: one count (default one per core).")]
P99Ms = Annotated[float | None, typer.Option(
    "--p99-ms", help="--scenario server: the p99 latency bound in ms (default 4x the single-stream median).")]
ScenarioMinS = Annotated[float | None, typer.Option(
    "--scenario-min-s", help="Scenarios: seconds each offline point or offered rate runs at least (default 2; the "
    "searches' caps scale with it).")]
Db = Annotated[Path, typer.Option("--db", help="The results store (SQLite).")]
Force = Annotated[bool, typer.Option("--force", help="Measure again cells the store already has.")]
RetryFailed = Annotated[bool, typer.Option(
    "--retry-failed", help="Measure again every cell that is not ok (error, crash, timeout, oom, skipped, ...).")]
RemeasureContended = Annotated[bool, typer.Option(
    "--remeasure-contended", help="Measure again cells timed while other processes used the CPU.")]
Peak = Annotated[bool, typer.Option(
    "--peak/--no-peak", help="Measure the device's peak FLOP/s once per store (a few seconds; `dnnbench peak`) for "
    "%-of-peak figures.")]
ExecutorName = Annotated[str, typer.Option(
    "--executor", help="local (this machine, one worker at a time) | ray (the nodes of a Ray cluster; "
    "docs/SCALE-OUT.md).")]
Address = Annotated[str | None, typer.Option(
    "--address", help="With --executor ray: auto (default), HOST:PORT or ray://HOST:PORT.")]
On = Annotated[list[str] | None, typer.Option(
    "--on", help="With --executor ray: the kind of node to measure on, KEY=VALUE[,KEY=VALUE] (e.g. "
    "machine=jetson-orin); repeat to measure on several kinds.")]


def run(model: Models = None, suite: Suite = None, suite_file: SuiteFiles = None, models: ModelList = None,
        device: Device = "cpu", dtype: Dtype = None, backend: Backend = "eager", backend_option: BackendOptions = None,
        batch_sizes: BatchSizes = "1,2,4,8,16,32,64", threads: Threads = None, interop_threads: InteropThreads = None,
        metrics: Metrics = "time,memory,complexity", input_size: InputSize = None, time_budget: TimeBudget = 10.0,
        ci_target: CiTarget = 0.02, min_samples: MinSamples = 10, warmup_iters: WarmupIters = 3,
        warmup_s: WarmupS = 1.0, warmup_settle_s: WarmupSettleS = 2.0, cell_timeout: CellTimeout = None,
        memory_limit_mb: MemoryLimit = None,
        tf32: Tf32 = False, db: Db = DEFAULT_DB, force: Force = False, retry_failed: RetryFailed = False,
        remeasure_contended: RemeasureContended = False, peak: Peak = True, executor_name: ExecutorName = "local",
        address: Address = None, on: On = None, repeats: Repeats = 1, calibration_data: CalibrationData = None,
        calibration_samples: CalibrationSamples = None, scenario: Scenario = "single-stream", streams: Streams = None,
        p99_ms: P99Ms = None, scenario_min_s: ScenarioMinS = None) -> None:
    """Measure inference time, memory and complexity over batch sizes; every cell kept in the store.
    Exit code 1 when no cell of the sweep holds a measurement."""
    from .. import zoo
    from ..run.config import build_sweep_config
    from ..run.executors import make_executor
    from ..run.runner import run_sweep, sweep_records
    from ..store import Store
    from .progress import RichProgress

    names = model_names(model, models)
    if not names and not suite:
        raise UsageError("name models to measure, or a suite with --suite (e.g. --suite paper)")
    executor = make_executor(executor_name, address, on or ())
    config = build_sweep_config(
        executor=executor, device=device, backends=backend, precisions=dtype, backend_options=backend_option or (),
        batch_sizes=batch_sizes, threads=threads, interop_threads=interop_threads, metrics=metrics,
        input_size=input_size, time_budget_s=time_budget, ci_target=ci_target, min_samples=min_samples,
        warmup_iters=warmup_iters, warmup_s=warmup_s, warmup_settle_s=warmup_settle_s, cell_timeout_s=cell_timeout,
        memory_limit_mb=memory_limit_mb,
        tf32=tf32, force=force, retry_failed=retry_failed, remeasure_contended=remeasure_contended, measure_peak=peak,
        repeats=repeats, calibration_data=calibration_data, calibration_samples=calibration_samples,
        scenario=scenario, streams=streams, p99_ms=p99_ms, scenario_min_s=scenario_min_s)
    specs = zoo.resolve_models(tuple(names), suite, suite_files(suite_file))
    executor.targets(config)  # the cluster's nodes, checked before the store is touched
    with Store(db) as store:
        try:
            summary = run_sweep(specs, config, store, executor, progress=RichProgress(console))
        except KeyboardInterrupt as interrupt:  # Ctrl-C (130) or SIGTERM (143)
            from ..run.lifecycle import exit_code

            err_console.print(f"interrupted: finished cells are kept in {db}; run the same command to resume")
            raise typer.Exit(exit_code(interrupt)) from None
        records = sweep_records(summary, store)
        show_sweep(records, store.machines(), several_deployments=len(config.scope.backends) * len(config.scope.precisions) > 1)
    finish(summary, records, config.scope.device, db)


def show_sweep(records: dict[str, list], machines: dict[str, dict], several_deployments: bool) -> None:
    """One summary table per machine that measured (a cluster's nodes each get theirs), then the best
    deployment per model when the sweep compared several."""
    from . import render

    for machine_id, machine_records in records.items():
        if len(records) > 1:
            console.print(f"\n{render.machine_name(machines.get(machine_id, {}))} [{machine_id[:8]}]", highlight=False)
        if any(r.metric in ("time", "memory", "energy") for r in machine_records):
            console.print(render.run_summary_table(machine_records))
        for table in render.scenario_tables(machine_records):
            console.print(table)
    timed = any(r.metric == "time" for machine_records in records.values() for r in machine_records)
    if several_deployments and timed:
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
