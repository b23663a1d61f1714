"""Sweeps: plan cells (models x batch sizes x threads x backends x precisions), run them in isolated
workers, keep every result.

    >>> from dnnbench.run import benchmark
    >>> summary = benchmark(["resnet18", "mobilenetv2"], db="results.sqlite", batch_sizes=(1, 8), threads=(1,))
    >>> summary.frame()[["model", "metric", "config.batch_size", "value.stats.median"]]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from .config import ResumePolicy, Scope, SweepConfig, TrialPolicy, WorkerLimits, build_sweep_config
from .executor import Executor, LocalExecutor
from .executors import make_executor
from .ray_executor import RayExecutor  # imports Ray only when one is made
from .runner import Progress, RunSummary, run_sweep


def benchmark(models: str | Sequence[str] = (), *, suite: str | None = None, suite_files: Sequence[str | Path] = (),
              db: str | Path = "results/dnnbench.sqlite", executor: str | Executor = "local",
              address: str | None = None, on: Sequence[str] = (), progress: Progress | None = None,
              **settings: Any) -> RunSummary:
    """The Python face of `dnnbench run`, with the same vocabulary.

    `models` and/or `suite` (with `suite_files` defining more suites) say what to measure. `settings` are
    build_sweep_config's: device ("cpu", "cuda", "auto"), backends ("eager", "eager,onnxruntime", "best"),
    precisions ("fp32,bf16"; alias dtype), batch_sizes, threads, metrics, input_size, backend_options,
    tf32, measure_peak, time_budget_s, ci_target, min_samples, warmup_iters, warmup_s, warmup_settle_s,
    cell_timeout_s,
    memory_limit_mb, interop_threads, force, retry_failed, remeasure_contended, repeats (fresh-process trials
    per timed cell). `executor`: "local",
    "ray" (with `address` and `on`, as --executor ray --address --on) or an Executor. Everything is
    checked before the store is touched. The summary's frame() holds every cell asked for that the store
    has, measured now or before; cells already there are not measured again (see ResumePolicy)."""
    import inspect

    from ..store import Store
    from ..zoo import resolve_models

    known = [p for p in inspect.signature(build_sweep_config).parameters if p != "executor"]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise UsageError(f"benchmark() has no setting {', '.join(map(repr, unknown))}; settings: {', '.join(known)}")
    if isinstance(executor, str):
        executor = make_executor(executor, address, on)
    elif address or on:
        raise UsageError("address and on choose a Ray cluster and its nodes: give them with executor='ray', "
                         "not with an Executor already made")
    names = (models,) if isinstance(models, str) else tuple(models)
    if not names and not suite:
        raise UsageError("name models to measure, or a suite (e.g. suite='paper')")
    try:
        config = build_sweep_config(executor=executor, **settings)
        specs = resolve_models(names, suite, tuple(str(p) for p in suite_files))
        executor.targets(config)  # a cluster's nodes, checked before the store is touched
    except BaseException:
        executor.close()
        raise
    with Store(db) as store:
        return run_sweep(specs, config, store, executor, progress, argv=["dnnbench.run.benchmark"])


__all__ = ["Executor", "LocalExecutor", "RayExecutor", "ResumePolicy", "RunSummary", "Scope", "SweepConfig",
           "TrialPolicy", "WorkerLimits", "benchmark", "build_sweep_config", "make_executor", "run_sweep"]
