"""The isolated worker: one process per (model, thread count), started with `spawn`.

It builds the model, measures its cells in ascending batch size and sends each result back as soon
as it exists, announcing before each cell which cells are in flight, so that the parent can record
a crash, a kill or a timeout against the right cells. The worker never writes to the store.
"""

from __future__ import annotations

import os
import resource
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

from ..store import ResultRecord
from .plan import Cell, WorkerJob


@dataclass(frozen=True)
class Begin:
    """These cells are being measured now."""

    digests: tuple[str, ...]
    phase: str


@dataclass(frozen=True)
class Finished:
    record: ResultRecord


@dataclass(frozen=True)
class Done:
    pass


OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def record(cell: Cell, status: str, values: dict | None = None, error: str | None = None,
           started_at: float | None = None) -> ResultRecord:
    now = time.time()
    return ResultRecord(model=cell.model, metric=cell.metric, config=cell.key.config_dict, status=status,
                        values=values or {}, error=error, started_at=started_at or now, finished_at=now)


def _limit_address_space(megabytes: int) -> None:
    """Cap the worker's virtual memory at what it has now plus `megabytes`: past it allocations fail
    inside PyTorch (recorded as `oom`) instead of the kernel's OOM killer picking a process."""
    with open("/proc/self/status") as status:
        vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    limit = vm + megabytes * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


class _Measurer:
    def __init__(self, job: WorkerJob, conn: Connection):
        import torch

        from ..zoo import get

        self.job, self.conn, self.config = job, conn, job.config
        self.spec = get(job.model)
        self.device = torch.device(self.config.device)
        from .config import parse_dtype

        self.dtype = parse_dtype(self.config.dtype)
        self.input_size = self.config.input_size or self.spec.input_size

    def send(self, message: object) -> None:
        self.conn.send(message)

    def complexity(self, cell: Cell) -> None:
        from ..measure.complexity import complexity

        self.send(Begin((cell.digest,), "complexity"))
        started = time.time()
        result = complexity(self.spec, self.input_size, 1, "standard", self.dtype)
        self.send(Finished(record(cell, "ok", result.to_dict(), started_at=started)))

    def sweep(self, cells: list[Cell]) -> None:
        import torch

        from ..measure.analytic_memory import estimate_inference_memory
        from ..measure.complexity import count_parameters
        from ..measure.memory import current_rss_bytes
        from ..zoo import build_model

        self.send(Begin(tuple(c.digest for c in cells), "build"))
        baseline_rss = current_rss_bytes()
        started = time.perf_counter()
        try:
            model = build_model(self.spec, self.device).to(self.dtype)
            self.sync()
            meta_model = build_model(self.spec, "meta")
        except Exception as exc:  # noqa: BLE001 - a model that cannot be built is a result too
            status = "oom" if is_out_of_memory(exc) else "error"
            message = "building the model failed: " + "".join(traceback.format_exception_only(type(exc), exc)).strip()
            for cell in cells:
                self.send(Finished(record(cell, status, error=message[:2000])))
            return
        build_s = time.perf_counter() - started
        weight_bytes = count_parameters(model)[2]
        cold_start_s = None
        by_batch = sorted({c.batch_size for c in cells})
        for position, batch_size in enumerate(by_batch):
            batch_cells = [c for c in cells if c.batch_size == batch_size]
            self.send(Begin(tuple(c.digest for c in batch_cells), f"batch {batch_size}"))
            started_at = time.time()
            try:
                x = torch.randn(batch_size, 3, self.input_size, self.input_size, device=self.device, dtype=self.dtype)
                if cold_start_s is None:
                    cold_start_s = self.first_inference(model, x)
                values = self.measure(model, x, batch_size, baseline_rss)
                if any(c.metric == "memory" for c in batch_cells):
                    estimate = estimate_inference_memory(meta_model, tuple(x.shape), self.dtype)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a result
                if is_out_of_memory(exc):
                    message = f"out of memory at batch size {batch_size}: {str(exc).splitlines()[0][:300]}"
                    for cell in batch_cells:
                        self.send(Finished(record(cell, "oom", error=message, started_at=started_at)))
                    skip = f"not measured: out of memory at the smaller batch size {batch_size}"
                    for cell in (c for c in cells if c.batch_size in by_batch[position + 1:]):
                        self.send(Finished(record(cell, "skipped", error=skip)))
                    return
                message = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
                for cell in batch_cells:
                    self.send(Finished(record(cell, "error", error=message, started_at=started_at)))
                continue
            finally:
                x = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            common = {"build_s": build_s, "cold_start_s": cold_start_s}
            for cell in batch_cells:
                if cell.metric == "time":
                    payload = {**values["time"], **common, "contention": values["contention"],
                               "runtime": values["runtime"]}
                else:
                    measured = values["memory"]
                    payload = {**measured, "weight_bytes": weight_bytes, "baseline_rss_bytes": baseline_rss,
                               "analytic": estimate.to_dict()}
                    payload["analytic_ratio"] = self.analytic_ratio(measured, estimate.total_peak_bytes)
                self.send(Finished(record(cell, "ok", payload, started_at=started_at)))

    def analytic_ratio(self, measured: dict, estimate_bytes: int) -> float | None:
        """Measured / estimated: CUDA tensor peak against the estimate; on CPU, the RSS growth over the
        pre-model baseline (which also holds allocator slack and library workspaces)."""
        from ..measure.memory import headline_memory

        value = headline_memory(measured)[0]
        return value / estimate_bytes if value and estimate_bytes else None

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def first_inference(self, model, x) -> float:
        import torch

        with torch.inference_mode():
            started = time.perf_counter()
            model(x)
            self.sync()
        return time.perf_counter() - started

    def measure(self, model, x, batch_size: int, baseline_rss: int) -> dict:
        import torch

        from ..env import collect_runtime
        from ..measure.contention import ContentionMonitor
        from ..measure.latency import WarmupPolicy, measure_latency
        from ..measure.memory import CudaPeak, PeakRSS
        from ..measure.stats import StoppingRule

        config = self.config
        rule = StoppingRule(ci_target=config.ci_target, min_samples=config.min_samples,
                            time_budget_s=config.time_budget_s)
        warmup = WarmupPolicy(min_iters=config.warmup_iters, min_seconds=config.warmup_s)
        peak = CudaPeak(self.device) if self.device.type == "cuda" else PeakRSS()
        with torch.inference_mode(), peak, ContentionMonitor() as monitor:
            latency = measure_latency(lambda: model(x), batch_size, self.device, rule, warmup)
        memory = (peak.result(baseline_rss) if isinstance(peak, PeakRSS) else peak.result()).to_dict()
        return {"time": latency.to_dict(), "memory": memory, "contention": monitor.report.to_dict(),
                "runtime": collect_runtime().to_dict()}


def configure_process(job: WorkerJob) -> None:
    """Threads, precision flags and limits, set before any model is built."""
    import torch

    config = job.config
    if job.threads:
        torch.set_num_threads(job.threads)
    if config.interop_threads:
        torch.set_num_interop_threads(config.interop_threads)
    # fp32 means fp32: TF32 only when asked for; cudnn autotuning on, re-warmed at every batch size
    torch.backends.cuda.matmul.allow_tf32 = config.tf32
    torch.backends.cudnn.allow_tf32 = config.tf32
    torch.backends.cudnn.benchmark = True
    if config.memory_limit_mb and config.device == "cpu":
        _limit_address_space(config.memory_limit_mb)


def worker_main(conn: Connection, job: WorkerJob) -> None:
    # The parent owns Ctrl-C: it stops this process itself, after keeping what is finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_process(job)
    measurer = _Measurer(job, conn)
    complexity_cells = [c for c in job.cells if c.metric == "complexity"]
    timed_cells = [c for c in job.cells if c.metric != "complexity"]
    for cell in complexity_cells:
        try:
            measurer.complexity(cell)
        except Exception as exc:  # noqa: BLE001
            conn.send(Finished(record(cell, "error", error=str(exc)[:2000])))
    if timed_cells:
        measurer.sweep(timed_cells)
    conn.send(Done())
    conn.close()
