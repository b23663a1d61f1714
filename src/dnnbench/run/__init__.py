"""Sweeps: plan cells (models x batch sizes x threads), run them in isolated workers, keep every result.

    >>> from dnnbench.run import benchmark
    >>> summary = benchmark(["resnet18", "mobilenetv2"], db="results.sqlite", batch_sizes=(1, 8), threads=(1,))
    >>> summary.frame()[["model", "metric", "config.batch_size", "value.stats.median"]]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import SweepConfig, resolve_device
from .executor import Executor, LocalExecutor, make_executor
from .ray_executor import RayExecutor  # imports Ray only when one is made
from .runner import RunSummary, run_sweep


def benchmark(models: list[str] | tuple[str, ...] = (), *, suite: str | None = None,
              db: str | Path = "results/dnnbench.sqlite", executor: Executor | None = None,
              **config: Any) -> RunSummary:
    """The Python face of `dnnbench run`: `config` takes SweepConfig's fields (device, dtype, batch_sizes,
    threads, time_budget_s, ci_target, ...). Cells already in the store are skipped unless force=True.
    On a Ray cluster: executor=RayExecutor("auto", on=["machine=xeon"]) (docs/SCALE-OUT.md)."""
    from ..store import Store
    from ..zoo import resolve_models

    if "device" in config:
        local = executor is None or executor.name == "local"
        config["device"] = resolve_device(config["device"]) if local else RayExecutor.resolve_device(config["device"])
    sweep = SweepConfig(**config)
    with Store(db) as store:
        return run_sweep(resolve_models(tuple(models), suite), sweep, store, executor, argv=["dnnbench.run.benchmark"])


__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RunSummary", "SweepConfig", "benchmark", "make_executor",
           "run_sweep"]
