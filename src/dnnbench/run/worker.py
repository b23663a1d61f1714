"""The isolated worker: one process per job, its own program (`python -m dnnbench.run.worker`).

It builds the model, measures its cells in ascending batch size and sends each result back as soon
as it exists, announcing before each cell which cells are in flight, so that the parent can record
a crash, a kill or a timeout against the right cells. The worker never writes to the store.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Callable

from ..store import ResultRecord
from ..store.values import (
    AnalyticMemory,
    BackendInfo,
    ComplexityValue,
    ContentionInfo,
    EnergyValue,
    LatencyStats,
    MemoryValue,
    OfflinePoint,
    OfflineValue,
    OutputCheckInfo,
    RuntimeInfo,
    ServerPoint,
    ServerValue,
    SetupInfo,
    TimeValue,
    Value,
)
from .config import SCENARIO_METRICS
from .plan import Cell, WorkerJob

if TYPE_CHECKING:
    import torch

    from ..backends import Backend
    from ..env.fingerprint import RuntimeSettings
    from ..measure.analytic_memory import MemoryEstimate
    from ..measure.contention import ContentionReport
    from ..measure.energy import EnergyResult
    from ..measure.latency import LatencyResult
    from ..measure.memory import CpuMemory, CudaMemory


@dataclass(frozen=True)
class Begin:
    """These cells are being measured now."""

    digests: tuple[str, ...]
    phase: str
    setup: bool = False  # export/compile: given the start-up deadline too (inductor on a big model takes minutes)


@dataclass(frozen=True)
class Finished:
    record: ResultRecord


@dataclass(frozen=True)
class Progressed:
    """A long cell is getting on (an accuracy evaluation: images done so far): resets the cell's deadline,
    and the parent shows it. `detail`: what the kind of cell reports besides (running counts)."""

    digest: str
    done: int
    total: int
    detail: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Done:
    pass


OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def record(cell: Cell, status: str, values: Value | None = None, error: str | None = None,
           started_at: float | None = None) -> ResultRecord:
    now = time.time()
    return ResultRecord(model=cell.model, metric=cell.metric, config=cell.key.config_dict, status=status,
                        values=values, error=error, started_at=started_at or now, finished_at=now)


@dataclass(frozen=True)
class Measured:
    """What one timed block produced (measure/ types), before it becomes the cells' typed values."""

    latency: LatencyResult
    memory: CpuMemory | CudaMemory
    contention: ContentionReport
    runtime: RuntimeSettings


@dataclass(frozen=True)
class Deployment:
    """How the backend was deployed for every batch size of a worker: built and prepared once."""

    backend: BackendInfo
    executed_precision: str | None
    build_s: float
    prepare: dict[str, float]
    compiles_at_first_call: bool


@dataclass(frozen=True)
class Prepared:
    """What set-up left for the batch sizes: the prepared backend, the eager reference and check images,
    and the figures every cell of the worker shares."""

    backend: Backend
    reference: EagerReference | None  # None: the deployment is the reference computation (Backend.is_reference)
    images: torch.Tensor
    build_s: float
    prepare_steps: dict[str, float]
    meta_model: torch.nn.Module
    weight_bytes: int
    baseline_rss: int


@dataclass(frozen=True)
class ShapeSetup:
    """What one batch size cost before its timed samples: the bind (a per-shape compile), the first
    forward at that shape (timed before any other), and the output check of that shape."""

    bind_s: float
    first_inference_s: float
    output_check: OutputCheckInfo


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: the store keeps such figures as null."""
    return None if value is None or value != value or value in (float("inf"), float("-inf")) else value


def time_value(m: Measured, deployment: Deployment, shape: ShapeSetup) -> TimeValue:
    latency = m.latency
    return TimeValue(
        batch_size=latency.batch_size, samples_s=tuple(latency.samples_s),
        stats=LatencyStats.from_dict({k: _finite(v) for k, v in asdict(latency.stats).items()}),
        stop_reason=latency.stop_reason, converged=latency.converged, warmup_iters=latency.warmup_iters,
        warmup_s=latency.warmup_s, warmup_capped=latency.warmup_capped, first_call_s=latency.first_call_s,
        timer=latency.timer, timed_s=latency.timed_s, median_s=_finite(latency.median_s),
        ms_per_image=_finite(latency.ms_per_image), images_per_s=_finite(latency.images_per_s),
        sustained_images_per_s=_finite(latency.sustained_images_per_s),
        build_s=deployment.build_s, cold_start_s=shape.first_inference_s, backend=deployment.backend,
        executed_precision=deployment.executed_precision, output_check=shape.output_check,
        setup=SetupInfo(prepare=deployment.prepare, prepare_s=sum(deployment.prepare.values()), bind_s=shape.bind_s,
                        first_inference_s=shape.first_inference_s, build_s=deployment.build_s,
                        first_inference_compiles=deployment.compiles_at_first_call,
                        warmup_iters=latency.warmup_iters, warmup_s=latency.warmup_s,
                        warmup_settled=latency.warmup_settled),
        contention=ContentionInfo.from_dict(asdict(m.contention)),
        runtime=RuntimeInfo.from_dict(asdict(m.runtime)))


def memory_value(m: Measured, deployment: Deployment, shape: ShapeSetup, weight_bytes: int, baseline_rss: int,
                 estimate: MemoryEstimate) -> MemoryValue:
    """CPU or CUDA figures, the deployment, and the analytic estimate (measure.analytic_memory.MemoryEstimate);
    `analytic_ratio` is measured / estimated (on CPU the RSS growth, which also holds allocator slack)."""
    value = replace(MemoryValue.from_dict(asdict(m.memory)), backend=deployment.backend,
                    executed_precision=deployment.executed_precision, output_check=shape.output_check,
                    weight_bytes=weight_bytes, baseline_rss_bytes=baseline_rss,
                    analytic=AnalyticMemory.from_dict(asdict(estimate)))
    # the headline is the figure that sees the whole deployment (NVML's on CUDA), recorded by its kind
    return replace(value, analytic_ratio=value.ratio_to_estimate(), headline_kind=value.headline()[1] or None)


def energy_value(result: EnergyResult, deployment: Deployment, shape: ShapeSetup) -> EnergyValue:
    return replace(EnergyValue.from_dict(result.to_dict()), backend=deployment.backend,
                   executed_precision=deployment.executed_precision, output_check=shape.output_check)


class EagerReference:
    """Eager fp32 logits of the check images, for the output check of every batch size.

    Computed lazily, at batch size B right after the backend's first inference at B, for the first
    min(B, N) check images: every forward of it runs at a shape that was already timed cold, or at one
    that is never timed (N, where N is not a batch size of the sweep), so no timed shape has run
    before its own first inference. The fp32 weights wait in a temporary file meanwhile (the backend
    may convert the model in place, and a copy in memory would count in the memory cells); the rebuilt
    model is freed before the shape is timed."""

    def __init__(self, spec, device, model, images):
        import tempfile

        import torch

        self.spec, self.device, self.images = spec, device, images
        self.rows = None
        handle, self.path = tempfile.mkstemp(prefix="dnnbench-reference-", suffix=".pt")
        os.close(handle)
        torch.save(model.state_dict(), self.path)

    def logits(self, batch_size: int):
        """Eager fp32 logits of the check input at `batch_size` (tile_check of the images)."""
        import torch

        from ..backends import as_tensor
        from ..backends.output_check import tile_check
        from ..devices import fp32_math
        from ..zoo import build_model

        needed = min(batch_size, len(self.images))
        if self.rows is None or len(self.rows) < needed:
            model = build_model(self.spec, self.device)
            model.load_state_dict(torch.load(self.path, map_location=self.device))
            with torch.inference_mode(), fp32_math(tf32=False):  # exact fp32, even in a tf32 sweep
                self.rows = as_tensor(model(self.images[:needed].to(self.device)))
            model = None
            if needed == len(self.images):
                self.close()
        return tile_check(self.rows, batch_size)

    def close(self) -> None:
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def return_freed_memory() -> None:
    """Collect garbage, then hand the heap's free pages back to the OS (glibc's malloc_trim), so the peak RSS
    of the next block starts from what is really in use: freed artefacts of other shapes otherwise stay
    resident in malloc's arenas, fragmented, and inflate the next shape's memory (OpenVINO: +37 MB at batch 8
    after batch 1, measured). A no-op where the C library has no malloc_trim."""
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


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
        from ..devices import is_quantized, storage_precision, torch_dtype

        self.scope = self.config.scope
        self.device = torch.device(self.scope.device)
        # the PyTorch side's dtype (int8 keeps the fp32 model: the backend quantizes it) and the deployed
        # weights' element type (int8: one byte a weight)
        self.dtype = torch_dtype(storage_precision(job.precision))
        self.weight_dtype = torch.int8 if is_quantized(job.precision) else self.dtype
        self.input_size = self.scope.input_size or self.spec.input_size

    def send(self, message: object) -> None:
        self.conn.send(message)

    def complexity(self, cell: Cell) -> None:
        from ..measure.complexity import complexity

        self.send(Begin((cell.digest,), "complexity"))
        started = time.time()
        result = complexity(self.spec, self.input_size, 1, "standard", self.dtype)
        self.send(Finished(record(cell, "ok", ComplexityValue.from_dict(result.to_dict()), started_at=started)))

    def _fail_all(self, cells: list[Cell], status: str, message: str) -> None:
        for cell in cells:
            self.send(Finished(record(cell, status, error=message[:2000])))

    def sweep(self, cells: list[Cell]) -> None:
        """Build the fp32 model and its reference logits, prepare the backend, then per batch size: release the
        other shapes, bind, time the first inference, check the outputs against eager fp32, time."""
        from ..backends import BACKENDS, BackendUnavailable, PrecisionUnsupported
        from ..backends.output_check import check_images, tile_check
        from ..devices import is_quantized
        from ..measure.complexity import count_parameters
        from ..measure.memory import current_rss_bytes
        from ..zoo import build_model

        job = self.job
        backend_type = BACKENDS[job.backend]
        reason = backend_type.unavailable_reason(self.device)
        if reason:
            return self._fail_all(cells, "unavailable", f"backend {job.backend} is not available here: {reason}")
        backend = backend_type(self.device, job.precision, job.threads, self.scope.options_for(job.backend),
                               tf32=self.scope.tf32)
        reason = backend.unsupported_reason()
        if reason:
            return self._fail_all(cells, "unsupported", f"{job.backend} at {job.precision}: {reason}")
        cells = self.energy_cells_checked(cells)
        if not cells:
            return

        self.send(Begin(tuple(c.digest for c in cells), "build"))
        if is_quantized(job.precision):
            try:  # the quantizer is a set-up tool: imported before the baseline, out of the memory cells
                backend.load_quantizer()
            except BackendUnavailable as exc:
                return self._fail_all(cells, "unavailable", f"backend {job.backend} is not available here: {exc}")
        baseline_rss = current_rss_bytes()
        if self.device.type == "cuda":  # the CUDA context exists before the baseline: it is no model's memory
            from ..measure.memory import cuda_baseline

            self.cuda_baseline = cuda_baseline(self.device)
        started = time.perf_counter()
        try:
            model = build_model(self.spec, self.device)  # fp32: the reference, then the backend's input
            self.sync()
            meta_model = build_model(self.spec, "meta")
        except Exception as exc:  # noqa: BLE001 - a model that cannot be built is a result too
            status = "oom" if is_out_of_memory(exc) else "error"
            return self._fail_all(cells, status, "building the model failed: " + _exception_line(exc))
        build_s = time.perf_counter() - started
        weight_bytes = count_parameters(model, self.weight_dtype)[2]

        by_batch = sorted({c.batch_size for c in cells})
        # set-up runs with the smallest batch size: a crash there is that batch's, the rest skipped
        first_batch = tuple(c.digest for c in cells if c.batch_size == by_batch[0])
        self.send(Begin(first_batch, f"{job.backend} set-up", setup=True))
        try:
            images = check_images(self.input_size)
            # a deployment that is the reference computation is checked against itself: no rebuild, no weight file
            reference = None if backend.is_reference() else EagerReference(self.spec, self.device, model, images)
            example = tile_check(images, by_batch[0]).to(self.device)  # traced/exported, never run by the backend
            if is_quantized(job.precision):
                self.calibrate(backend)
            try:
                backend.prepare(model, example, key=f"{self.spec.id}-{self.input_size}")
            except BaseException:
                if reference is not None:
                    reference.close()
                raise
            model = example = None  # the backend keeps what it needs: memory cells see the deployed form only
            prepare_steps = dict(backend.setup.steps)  # export, trace, session, conversion
        except BackendUnavailable as exc:
            return self._fail_all(cells, "unavailable", f"backend {job.backend} is not available here: {exc}")
        except PrecisionUnsupported as exc:
            return self._fail_all(cells, "unsupported", f"{job.backend} at {job.precision}: {exc}")
        except Exception as exc:  # noqa: BLE001 - an export that fails is recorded with the exporter's words
            status = "oom" if is_out_of_memory(exc) else "error"
            return self._fail_all(cells, status, f"{job.backend} set-up failed: " + _exception_line(exc))
        prepared = Prepared(backend, reference, images, build_s, prepare_steps, meta_model, weight_bytes,
                            baseline_rss)
        try:
            per_batch = [c for c in cells if c.metric not in SCENARIO_METRICS]
            if per_batch:
                self._batches(per_batch, sorted({c.batch_size for c in per_batch}), prepared)
            for cell in (c for c in cells if c.metric in SCENARIO_METRICS):
                self.scenario(cell, prepared)
        finally:
            if reference is not None:
                reference.close()

    def calibrate(self, backend: Backend) -> None:
        """The calibration images of a quantized precision (the sweep's --calibration-data, else the synthetic
        set), loaded as the set-up step `calibration_data_s` and handed to the backend before `prepare`."""
        from ..backends.quantization import calibration_set

        with backend.setup.timed("calibration_data_s"):
            calibration = calibration_set(self.scope.calibration_data, self.spec, self.input_size,
                                          self.scope.calibration_samples)
        backend.calibrate_with(calibration)

    def _bind_checked(self, prepared: Prepared, batch_size: int) -> tuple[Any, Callable[[], Any], float, float, Any]:
        """One batch size made ready and checked before anything is timed: the other shapes released (memory at
        this batch size holds this shape's artefact only), the input bound, the first inference run (before any
        other forward at this shape), its outputs compared with eager fp32's. Returns the input, the bound call,
        bind and first-inference seconds, and the output check."""
        import torch

        from ..backends import as_tensor, compare
        from ..backends.output_check import tile_check

        backend, reference = prepared.backend, prepared.reference
        backend.release_shapes()
        x = tile_check(prepared.images, batch_size).to(self.device)
        before = backend.setup.total_s
        with torch.inference_mode():
            forward = backend.bind(x)
        bind_s = backend.setup.total_s - before
        first_s, first_output = self.first_inference(forward)
        precision = backend.executed_precision or self.job.precision
        with torch.inference_mode():
            if reference is None:  # the reference computation itself: its first output is the reference
                outputs = as_tensor(first_output)
                check = compare(outputs, outputs, precision)
            else:
                check = compare(backend.outputs(x), reference.logits(batch_size), precision)
        return x, forward, bind_s, first_s, check

    def _batches(self, cells: list[Cell], by_batch: list[int], prepared: Prepared) -> None:
        """Each batch size in ascending order: release, bind, first inference, check, time."""
        import torch

        from ..backends import PrecisionUnsupported
        from ..measure.analytic_memory import estimate_inference_memory

        job, backend, baseline_rss = self.job, prepared.backend, prepared.baseline_rss
        deployment = None
        for position, batch_size in enumerate(by_batch):
            batch_cells = [c for c in cells if c.batch_size == batch_size]
            self.send(Begin(tuple(c.digest for c in batch_cells), f"batch {batch_size}",
                            setup=backend.compiles_at_first_call))
            started_at = time.time()
            try:
                x, forward, bind_s, first_s, check = self._bind_checked(prepared, batch_size)
                if deployment is None:
                    deployment = Deployment(BackendInfo.from_dict(backend.describe()), backend.executed_precision,
                                            prepared.build_s, prepared.prepare_steps,
                                            backend.compiles_at_first_call)
                shape = ShapeSetup(bind_s, first_s, OutputCheckInfo.from_dict(asdict(check)))
                if any(c.metric in ("time", "memory") for c in batch_cells):
                    return_freed_memory()  # what the released shapes and the reference freed is not this shape's
                    measured = self.measure(forward, batch_size, baseline_rss, backend.blocking)
                if any(c.metric == "memory" for c in batch_cells):
                    estimate = estimate_inference_memory(prepared.meta_model, tuple(x.shape), self.dtype)
                if any(c.metric == "energy" for c in batch_cells):
                    energy = self.energy(forward, batch_size)
            except PrecisionUnsupported as exc:
                return self._fail_all([c for c in cells if c.batch_size >= batch_size], "unsupported",
                                      f"{job.backend} at {job.precision}: {exc}")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a result
                if is_out_of_memory(exc):
                    message = f"out of memory at batch size {batch_size}: {str(exc).splitlines()[0][:300]}"
                    for cell in batch_cells:
                        self.send(Finished(record(cell, "oom", error=message, started_at=started_at)))
                    skip = f"not measured: out of memory at the smaller batch size {batch_size}"
                    for cell in (c for c in cells if c.batch_size in by_batch[position + 1:]):
                        self.send(Finished(record(cell, "skipped", error=skip)))
                    return
                message = _exception_line(exc)
                for cell in batch_cells:
                    self.send(Finished(record(cell, "error", error=message, started_at=started_at)))
                continue
            finally:
                x = forward = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            for cell in batch_cells:
                if cell.metric == "time":
                    value = time_value(measured, deployment, shape)
                elif cell.metric == "energy":
                    value = energy_value(energy, deployment, shape)
                else:
                    value = memory_value(measured, deployment, shape, prepared.weight_bytes, baseline_rss,
                                         estimate)
                self.send(Finished(record(cell, "ok", value, started_at=started_at)))

    def scenario(self, cell: Cell, prepared: Prepared) -> None:
        """An offline or server cell (measure/scenarios.py): bind and check the first batch size as a time cell
        does, then search over streams the backend makes (Backend.stream_pool), the cores given split evenly. A
        backend that cannot run requests concurrently is recorded as unsupported, with its reason."""
        import torch

        from ..backends import PrecisionUnsupported
        from ..backends.output_check import tile_check
        from ..backends.streams import ConcurrencyUnsupported
        from ..measure import scenarios
        from ..measure.contention import ContentionMonitor

        job, backend, scope = self.job, prepared.backend, self.scope
        self.send(Begin((cell.digest,), f"{cell.metric} scenario", setup=backend.compiles_at_first_call))
        started_at = time.time()
        batch_size = cell.batch_size
        try:
            _, _, _, _, check = self._bind_checked(prepared, batch_size)
            cores = job.threads or torch.get_num_threads()

            def make_pool(streams: int, batch: int, threads: int | None):
                return backend.stream_pool(tile_check(prepared.images, batch).to(self.device), streams, threads)

            with ContentionMonitor(threads=cores) as monitor:
                if cell.metric == "offline":
                    result = scenarios.offline_search(
                        make_pool, cores, tuple(scope.streams) or scenarios.default_stream_counts(cores),
                        tuple(sorted(scope.batch_sizes)), self.config.offline, out_of_memory=is_out_of_memory)
                else:
                    streams = scope.streams[0] if scope.streams else cores
                    with make_pool(streams, batch_size, scenarios.threads_per_stream(cores, streams)) as pool:
                        result = scenarios.server_search(pool, batch_size,
                                                         scope.p99_ms / 1000 if scope.p99_ms else None,
                                                         self.config.server)
        except (ConcurrencyUnsupported, PrecisionUnsupported) as exc:
            self.send(Finished(record(cell, "unsupported", error=f"{job.backend} at {job.precision}: {exc}",
                                      started_at=started_at)))
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            status = "oom" if is_out_of_memory(exc) else "error"
            self.send(Finished(record(cell, status, error=_exception_line(exc), started_at=started_at)))
            return
        shared = dict(backend=BackendInfo.from_dict(backend.describe()), executed_precision=backend.executed_precision,
                      output_check=OutputCheckInfo.from_dict(asdict(check)),
                      contention=ContentionInfo.from_dict(asdict(monitor.report)))
        points = scenarios.point_dicts(result.points)
        if cell.metric == "offline":
            value: Value = OfflineValue(
                concurrency=result.concurrency, cores=result.cores,
                points=tuple(OfflinePoint.from_dict(p) for p in points), best_images_per_s=result.best_images_per_s,
                best_streams=result.best_streams, best_batch_size=result.best_batch_size,
                single_stream_images_per_s=result.single_stream_images_per_s, min_duration_s=result.min_duration_s,
                min_samples=result.min_samples, search=result.search, search_s=result.search_s, **shared)
        else:
            value = ServerValue(
                concurrency=result.concurrency, cores=cores, streams=result.streams,
                threads_per_stream=result.threads_per_stream, batch_size=result.batch_size,
                p99_bound_s=result.p99_bound_s, bound_source=result.bound_source,
                single_stream_median_s=result.single_stream_median_s,
                points=tuple(ServerPoint.from_dict(p) for p in points), knee_rate=result.knee_rate, seed=result.seed,
                search=result.search, search_s=result.search_s, **shared)
        self.send(Finished(record(cell, "ok", value, started_at=started_at)))

    def energy_cells_checked(self, cells: list[Cell]) -> list[Cell]:
        """The cells left to measure: energy cells are recorded as unavailable, with the reason, where no energy
        counter can be read here (the other cells go on)."""
        if not any(c.metric == "energy" for c in cells):
            return cells
        from ..measure.energy import EnergyUnavailable, energy_meter

        try:
            self.energy_meter = energy_meter(str(self.device))
            return cells
        except EnergyUnavailable as exc:
            self._fail_all([c for c in cells if c.metric == "energy"], "unavailable",
                           f"energy is unavailable here, because {exc}")
            return [c for c in cells if c.metric != "energy"]

    def energy(self, forward, batch_size: int) -> EnergyResult:
        import torch

        from ..measure.energy import measure_energy

        with torch.inference_mode():
            return measure_energy(forward, batch_size, self.energy_meter, self.sync)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def first_inference(self, forward) -> tuple[float, object]:
        """Seconds of the first forward at a shape (cold), and what it returned."""
        import torch

        with torch.inference_mode():
            started = time.perf_counter()
            output = forward()
            self.sync()
        return time.perf_counter() - started, output

    def measure(self, forward, batch_size: int, baseline_rss: int, blocking: bool = False) -> Measured:
        """Time `forward` (one forward pass per call) by the device's one clock, whatever the backend: on CUDA,
        CUDA events on PyTorch's current stream, which ONNX Runtime's CUDA and TensorRT providers run on too
        (user_compute_stream), so a blocking call is bracketed by the same events as PyTorch's asynchronous one
        and backends are never compared across two clocks (docs/BACKENDS.md); `blocking` is recorded with the
        backend only. On CUDA the memory peak is reset once warm-up is over."""
        import torch

        from ..env import collect_runtime
        from ..measure import latency as latency_module
        from ..measure import memory as memory_module
        from ..measure.contention import ContentionMonitor

        rule = replace(self.config.stopping)  # a fresh one per cell: the rule caches its last CI
        warmup = self.config.warmup
        cuda = self.device.type == "cuda"
        peak = (memory_module.CudaPeak(self.device, getattr(self, "cuda_baseline", None)) if cuda
                else memory_module.PeakRSS())
        with torch.inference_mode(), peak, ContentionMonitor() as monitor:
            latency = latency_module.measure_latency(forward, batch_size, self.device, rule, warmup,
                                                     on_warm=peak.reset if cuda else None)
        memory = peak.result() if cuda else peak.result(baseline_rss)
        return Measured(latency, memory, monitor.report, collect_runtime())


def _exception_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]


def configure_process(job: WorkerJob) -> None:
    """Threads, precision flags and limits, set before any model is built."""
    import torch

    scope, limits = job.config.scope, job.config.limits
    if job.threads:
        torch.set_num_threads(job.threads)
    if limits.interop_threads:
        torch.set_num_interop_threads(limits.interop_threads)
    # fp32 means fp32: TF32 only when asked for; cudnn autotuning on, re-warmed at every batch size
    torch.backends.cuda.matmul.allow_tf32 = scope.tf32
    torch.backends.cudnn.allow_tf32 = scope.tf32
    torch.backends.cudnn.benchmark = True
    # ...and on CPUs with bf16/AMX units, fp32 matmuls stay fp32 unless --tf32 says otherwise
    torch.set_float32_matmul_precision("high" if scope.tf32 else "highest")
    tf32_environment(scope.device, scope.tf32, os.environ)
    if limits.memory_limit_mb and scope.device == "cpu":
        _limit_address_space(limits.memory_limit_mb)


def tf32_environment(device: str, tf32: bool, environ) -> None:
    """TensorRT enables TF32 by default and ONNX Runtime exposes no switch for it: NVIDIA_TF32_OVERRIDE=0 (read by
    TensorRT, cuBLAS and cuDNN when they start, hence set before any of them is loaded) keeps fp32 fp32 in every
    library of a CUDA worker; a tf32 cell leaves the libraries' defaults alone."""
    if device.startswith("cuda") and not tf32:
        environ["NVIDIA_TF32_OVERRIDE"] = "0"


def leave_signals_to_the_runner() -> None:
    """The runner owns Ctrl-C and SIGTERM (also sent to the whole process group): it stops a worker itself,
    after keeping what is finished. Every kind of worker calls this first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def worker_main(conn: Connection, job: WorkerJob) -> None:
    leave_signals_to_the_runner()
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


def _die_with_parent(parent_pid: int) -> None:
    """Linux: die with the parent. A worker must not outlive whatever started it (a Ray worker killed
    with its node, a runner killed with SIGKILL) and go on using a device beside the next timed cell."""
    if sys.platform.startswith("linux"):
        try:
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """Started by LocalExecutor: receives one job over the inherited socket, answers on it."""
    parser = argparse.ArgumentParser(prog="python -m dnnbench.run.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the socket inherited from the parent")
    parser.add_argument("--parent", type=int, required=True, help="the parent's process id")
    parser.add_argument("--label", default="", help="what this worker measures, for `ps`")
    args = parser.parse_args(argv)
    leave_signals_to_the_runner()  # the parent owns Ctrl-C and SIGTERM, from the first instant
    _die_with_parent(args.parent)
    conn = Connection(args.fd)
    job = conn.recv()
    if isinstance(job, WorkerJob):
        worker_main(conn, job)
    else:  # another kind of cell (accuracy: run.accuracy_worker.AccuracyJob), unpickled with its module
        job.run_in_worker(conn)


if __name__ == "__main__":
    # run through the package's own module, so that what is sent back pickles as dnnbench.run.worker.*
    # (not __main__.*, which the parent could not load)
    from dnnbench.run.worker import main as package_main

    package_main()
