"""Typed values of the results store: one frozen dataclass per kind of result.

A result row of the store holds a JSON object, its `values`; this module is the one place that knows
its layout. The worker builds these types, the store writes `to_dict()` and reads `decode()`, and the
readers (analysis, report, CLI) use attributes and the small rules that interpret a value (which
memory figure is the headline, which precision a cell executed, what its set-up cost).

Layouts. Each top-level type has a `LAYOUT` number, written into its dict as `"layout"`. A dict without
that key is layout 0: what release 0190a26 wrote. Layout 1 has the same keys as layout 0 plus the
marker, so old stores, exports and CSV columns read exactly as before. A dict of a layout newer than
this code is refused loudly (ValueLayoutError): guessing at it would misreport a measurement.

Unknown keys. A key this code does not know is kept, in the `extra` mapping of the part that held it,
and written back by `to_dict()`. Refusing them instead would make a store merged with one from a newer
release (or with backend-specific fields, such as ONNX Runtime's `provider`) unreadable, and dropping
them would lose measurements on the next merge or export; keeping them costs nothing and
`from_dict(to_dict(v)) == v` still holds.

Absent and null. Most fields may be absent in stored dicts (older cells, hand-written test stores):
they read as None. `to_dict()` leaves a None field out, except fields marked nullable, whose writers
store an explicit null (a runtime setting that could not be read, a weights file without a URL), some of
them only beside the fields written with them (`executed_precision` beside `backend`).

Pure data: standard library only, no torch, numpy or pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..errors import DnnbenchError


class ValueLayoutError(DnnbenchError, ValueError):
    """A stored values dict this code cannot read (a newer layout, or not a JSON object)."""


# --- the machinery: dataclass <-> JSON-able dict ----------------------------------------------------


def _nullable(with_field: str | None = None) -> Any:
    """A field whose writer stores an explicit null: `to_dict()` writes it even when None (with `with_field`:
    when that other field, written by the same writer at the same time, is there)."""
    return field(default=None, metadata={"nullable": with_field or True})


def _freeze(value: Any) -> Any:
    """JSON lists become tuples (deeply), so that values stay immutable and compare by content."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    if hasattr(value, "_encoded"):
        return value._encoded()
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


class _Part:
    """A nested part of a value: a dict in the store. Subclasses are frozen dataclasses with an
    `extra` field; `_NESTED` names the fields that hold another part (or a tuple of parts)."""

    _NESTED: ClassVar[Mapping[str, type]] = {}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {}

    def __post_init__(self) -> None:
        # lists given by a caller (samples, shapes) become tuples: equal values compare equal however built
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, Mapping)) or (isinstance(value, tuple) and f.name not in self._TUPLES_OF):
                object.__setattr__(self, f.name, _freeze(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        if not isinstance(data, Mapping):
            raise ValueLayoutError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls) if f.init and f.name != "extra"}
        kwargs: dict[str, Any] = {}
        for name in known & data.keys():
            kwargs[name] = cls._read_field(name, data[name])
        kwargs["extra"] = {k: _freeze(v) for k, v in data.items() if k not in known and k != "layout"}
        return cls(**kwargs)

    @classmethod
    def _read_field(cls, name: str, raw: Any) -> Any:
        if raw is None:
            return None
        if name in cls._NESTED:
            return cls._NESTED[name].from_dict(raw)
        if name in cls._TUPLES_OF:
            return tuple(cls._TUPLES_OF[name].from_dict(item) for item in raw)
        return _freeze(raw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra" or not f.init:
                continue
            value = getattr(self, f.name)
            if value is None and not self._writes_null(f.metadata.get("nullable")):
                continue
            out[f.name] = _thaw(value)
        out.update(_thaw(self.extra))
        return out

    def _encoded(self) -> Any:
        return self.to_dict()

    def _writes_null(self, nullable: bool | str | None) -> bool:
        return nullable is True or (isinstance(nullable, str) and getattr(self, nullable) is not None)


class _Value(_Part):
    """A top-level value: one result row's `values`, with a layout number."""

    LAYOUT: ClassVar[int] = 1
    METRIC: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        if not isinstance(data, Mapping):
            raise ValueLayoutError(f"{cls.METRIC} values: expected a JSON object, got {type(data).__name__}")
        layout = data.get("layout", 0)
        if not isinstance(layout, int) or isinstance(layout, bool) or layout < 0:
            raise ValueLayoutError(f"{cls.METRIC} values: layout {layout!r} is not a layout number")
        if layout > cls.LAYOUT:
            raise ValueLayoutError(f"{cls.METRIC} values have layout {layout}, written by a newer dnnbench; this one "
                                   f"reads up to layout {cls.LAYOUT}: upgrade dnnbench to read this store")
        value = super().from_dict(data)
        # a value read back keeps the layout it was written with (0 is written as 1: the same keys), so that
        # an export of an old store does not claim a newer layout's meanings for its figures
        object.__setattr__(value, "_read_layout", max(layout, 1))
        return value

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "layout": getattr(self, "_read_layout", self.LAYOUT)}


# --- parts shared by time and memory cells ---------------------------------------------------------


@dataclass(frozen=True)
class BackendInfo(_Part):
    """What ran a cell (Backend.describe()). Backend-specific keys (ONNX Runtime's `provider`, `onnx_file`,
    `intra_op_threads`; OpenVINO's `config`, `source_file`; `export_cached`) are kept in `extra`."""

    name: str | None = None
    options: Mapping[str, Any] | None = None
    executed_precision: str | None = _nullable()
    versions: Mapping[str, str] | None = None
    blocking: bool | None = None
    tf32: bool | None = None  # CUDA fp32 with TF32 tensor cores allowed (the runtime's setting, as built)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputCheckInfo(_Part):
    """The backend's logits against eager PyTorch in fp32 on a fixed input (backends/output_check.py)."""

    max_abs_error: float | None = None
    relative_max_error: float | None = None  # max |out - ref| / max |ref|
    cosine_similarity: float | None = None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    precision: str | None = None
    min_cosine: float | None = None  # the tolerance of `precision`
    max_relative_error: float | None = None
    passed: bool | None = None
    # layout 2: the check runs at the cell's own batch size, on structured images, by relative L2 error
    relative_l2_error: float | None = None  # ||out - ref|| / ||ref||
    max_relative_l2_error: float | None = None  # the tolerance of `precision`
    batch_size: int | None = None  # the batch size checked (layout <= 1: the job's smallest)
    extra: Mapping[str, Any] = field(default_factory=dict)


# --- time ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats(_Part):
    """Summary of the latency samples, seconds (measure/stats.SampleStats); non-finite figures are None."""

    n: int | None = None
    min: float | None = None
    max: float | None = None
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    p90: float | None = None
    p99: float | None = None
    cv: float | None = None
    ci_level: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_half_width_rel: float | None = None
    ci_method: str | None = None
    within_ci_low: float | None = None  # batch medians (measure/stats.within_trial_ci); absent before layout 2
    within_ci_high: float | None = None
    within_ci_method: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialSummary(_Part):
    """One trial of a time cell: one fresh worker process's measurement (layout 2)."""

    median_s: float | None = None
    n: int | None = None
    ci_low: float | None = None  # the within-trial interval (batch medians, or the range when n is small)
    ci_high: float | None = None
    ci_method: str | None = None
    stop_reason: str | None = None
    converged: bool | None = None
    contended: bool | None = None
    timed_s: float | None = None
    sustained_images_per_s: float | None = None
    samples_s: tuple[float, ...] | None = None  # this trial's timed forwards, in order
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IntervalInfo(_Part):
    """The headline interval of a time cell (layout 2): over trials when there are several (between-process
    variance included), else the single trial's within-trial interval. `method` names it; a method starting
    with "range" is a min-max range, never shown as a confidence interval."""

    level: float | None = None
    low_s: float | None = None
    high_s: float | None = None
    method: str | None = None
    trials: int | None = None
    between_cv: float | None = None  # sd of the trial medians / their mean
    within_rel: float | None = None  # median over trials of the within-trial relative half-width
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContentionInfo(_Part):
    """CPU use by other processes around a timed block (measure/contention.ContentionReport). Peak
    estimates keep only contended, other_cores and wall_s."""

    wall_s: float | None = None
    process_cpu_s: float | None = None
    machine_busy_cpu_s: float | None = None
    other_cpu_s: float | None = None
    other_cores: float | None = None
    threshold_cores: float | None = None
    contended: bool | None = None
    method: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeInfo(_Part):
    """Threading, precision and allocator settings in force while timing (env/fingerprint.RuntimeSettings);
    a setting that could not be read is stored as null."""

    intra_op_threads: int | None = _nullable()
    inter_op_threads: int | None = _nullable()
    omp_num_threads: str | None = _nullable()
    mkl_num_threads: str | None = _nullable()
    matmul_allow_tf32: bool | None = _nullable()
    cudnn_allow_tf32: bool | None = _nullable()
    cudnn_benchmark: bool | None = _nullable()
    cudnn_deterministic: bool | None = _nullable()
    float32_matmul_precision: str | None = _nullable()
    allocator: str | None = _nullable()
    malloc_env: Mapping[str, str] | None = _nullable()
    cuda_alloc_conf: str | None = _nullable()
    extra: Mapping[str, Any] = field(default_factory=dict)


SETUP_PARTS = ("prepare_s", "bind_s", "first_inference_s")


@dataclass(frozen=True)
class SetupInfo(_Part):
    """One-off costs of a deployment: `prepare` steps (export, session, compile: seconds by step, paid once
    per worker), this batch size's `bind_s`, and the first inference.

    Layout 2: `first_inference_s` is the first forward of the deployed artefact at this batch size, timed
    before any other forward at that shape (with inductor and TensorRT it holds the shape's compilation:
    `first_inference_compiles`); layout <= 1 stored the first call of the timing loop, after the output
    check. `build_s`: building the model and loading its weights. `warmup_iters`/`warmup_s`: warm-up until
    the rolling median settled (`warmup_settled`), or until the warm-up policy's cap."""

    prepare: Mapping[str, float] | None = None
    prepare_s: float | None = None
    bind_s: float | None = None
    first_inference_s: float | None = None
    build_s: float | None = None
    first_inference_compiles: bool | None = None
    warmup_iters: int | None = None
    warmup_s: float | None = None
    warmup_settled: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        """The whole set-up cost of a cell: prepare + this batch's bind + first inference."""
        return sum(getattr(self, part) or 0.0 for part in SETUP_PARTS)


@dataclass(frozen=True)
class TimeValue(_Value):
    """A timed cell: the latency samples and their statistics, how the deployment was built and checked,
    and the conditions it was timed under. Flat in the store (as layout 0 was)."""

    METRIC: ClassVar[str] = "time"
    # layout 2: `trials` (one summary per fresh-process trial), `interval` (the headline interval),
    # `sustained_images_per_s`, `median_s` the median over trial medians (layout 0/1 dicts read as one trial);
    # cold_start_s and setup.first_inference_s are the first forward at this batch size (before, the third at
    # the smallest one); output_check is this batch size's own
    LAYOUT: ClassVar[int] = 2
    _NESTED: ClassVar[Mapping[str, type]] = {
        "stats": LatencyStats, "backend": BackendInfo, "output_check": OutputCheckInfo, "setup": SetupInfo,
        "contention": ContentionInfo, "runtime": RuntimeInfo, "interval": IntervalInfo}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {"trials": TrialSummary}

    batch_size: int | None = None
    samples_s: tuple[float, ...] | None = None  # every timed forward, in order
    stats: LatencyStats | None = None
    stop_reason: str | None = None
    converged: bool | None = None
    warmup_iters: int | None = None
    warmup_s: float | None = None
    warmup_capped: bool | None = None
    first_call_s: float | None = None
    timer: str | None = None
    timed_s: float | None = None
    median_s: float | None = None
    ms_per_image: float | None = None
    images_per_s: float | None = None
    sustained_images_per_s: float | None = None  # images over the wall time of the timed phase(s)
    build_s: float | None = None
    cold_start_s: float | None = None
    backend: BackendInfo | None = None
    executed_precision: str | None = _nullable("backend")
    output_check: OutputCheckInfo | None = None
    setup: SetupInfo | None = None
    contention: ContentionInfo | None = None
    runtime: RuntimeInfo | None = None
    trials: tuple[TrialSummary, ...] | None = None
    interval: IntervalInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trial_count(self) -> int:
        """Fresh-process trials behind this cell; a value from before trials (layout 0/1) is one."""
        return len(self.trials) if self.trials else 1

    @property
    def ci(self) -> tuple[float | None, float | None, str]:
        """The headline interval `(low, high, method)` in seconds: over trials (layout 2), else the within-trial
        batch-medians interval, else (older cells) the stored order-statistics interval. Whenever there were too
        few samples for an interval, the method is "range (n = k)": a min-max range, not a confidence interval."""
        if self.interval is not None and self.interval.method:
            return self.interval.low_s, self.interval.high_s, self.interval.method
        return self.within_trial_ci

    @property
    def within_trial_ci(self) -> tuple[float | None, float | None, str]:
        """This process's own interval `(low, high, method)`: batch medians, else (older cells) the stored
        order-statistics interval, "range (n = k)" where there were too few samples."""
        st = self.stats
        if st is None:
            return None, None, ""
        if st.within_ci_method:
            return st.within_ci_low, st.within_ci_high, st.within_ci_method
        if st.ci_method and st.ci_method.startswith("min-max"):
            return st.ci_low, st.ci_high, f"range (n = {st.n})"
        return st.ci_low, st.ci_high, st.ci_method or ""

    @property
    def ci_is_range(self) -> bool:
        return self.ci[2].startswith("range")

    @property
    def ci_half_width_rel(self) -> float | None:
        """Half the headline interval's width over the headline median (the interval need not be symmetric)."""
        low, high, _ = self.ci
        median = self.latency_s
        if low is None or high is None or not median:
            return None
        return (high - low) / 2 / median

    @property
    def ci_text(self) -> str:
        """The interval as a table shows it: `±1.2%` for a confidence interval, `range (n = 3) ±8.0%` for a range."""
        rel = self.ci_half_width_rel
        if rel is None:
            return "-"
        width = f"±{100 * rel:.1f}%"
        return f"{self.ci[2]} {width}" if self.ci_is_range else width

    @property
    def between_trial_cv(self) -> float | None:
        return self.interval.between_cv if self.interval is not None else None

    @property
    def within_trial_rel(self) -> float | None:
        """The within-trial relative half-width (median over trials): how precisely one process measured."""
        if self.interval is not None and self.interval.within_rel is not None:
            return self.interval.within_rel
        st = self.stats
        if st is None or not st.median:
            return None
        low, high = (st.within_ci_low, st.within_ci_high) if st.within_ci_method else (st.ci_low, st.ci_high)
        return None if low is None or high is None else (high - low) / 2 / st.median

    @property
    def latency_s(self) -> float | None:
        """The median latency of one call (one batch), seconds."""
        return self.median_s if self.median_s is not None else (self.stats.median if self.stats else None)

    @property
    def contended(self) -> bool:
        """Any trial measured under contention (cells from before trials: the one measurement)."""
        if getattr(self, "trials", None) and any(t.contended for t in self.trials):
            return True
        return bool(self.contention and self.contention.contended)

    @property
    def check_passed(self) -> bool:
        """Whether the outputs matched eager fp32; cells timed before output checks existed were eager
        PyTorch, checked by construction."""
        return True if self.output_check is None or self.output_check.passed is None else bool(self.output_check.passed)

    def precision_executed(self, requested: str) -> str:
        """The precision the backend actually ran (a backend may fall back), else the one asked for."""
        return self.executed_precision or requested

    @property
    def setup_s(self) -> float | None:
        """The cell's whole set-up cost; cells from before set-up costs were recorded: the first call."""
        return self.setup.total_s if self.setup is not None and self.setup.to_dict() else self.first_call_s

    @property
    def sample_count(self) -> int | None:
        """Timed forwards behind the cell, over all its trials."""
        if self.trials and all(t.n is not None for t in self.trials):
            return sum(t.n for t in self.trials)
        if self.stats is not None and self.stats.n is not None:
            return self.stats.n
        return len(self.samples_s) if self.samples_s else None


# --- memory ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticMemory(_Part):
    """Live tensor storage estimated on the meta device (measure/analytic_memory.MemoryEstimate)."""

    weight_bytes: int | None = None
    buffer_bytes: int | None = None
    input_bytes: int | None = None
    peak_activation_bytes: int | None = None
    output_bytes: int | None = None
    total_peak_bytes: int | None = None
    peak_op: str | None = _nullable("total_peak_bytes")
    peak_module: str | None = _nullable("total_peak_bytes")
    method: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


MEMORY_KINDS = {
    "cuda_nvml_process_above_baseline": "CUDA memory of the worker per NVML after the timed calls, above its "
                                        "pre-model figure (every runtime's allocations; not PyTorch's alone)",
    "cuda_device_used_above_baseline": "CUDA memory in use on the device (cudaMemGetInfo) after the timed calls, "
                                       "above the pre-model figure (every runtime; other processes too)",
    "cuda_max_allocated": "CUDA peak allocated by PyTorch (torch.cuda.max_memory_allocated): PyTorch's tensors only",
    "cpu_peak_rss_above_baseline": "peak resident set of the worker above its pre-model baseline (VmHWM)",
}


@dataclass(frozen=True)
class MemoryValue(_Value):
    """A memory cell: CPU (peak RSS above the pre-model baseline) or CUDA (the caching allocator's peaks),
    the deployment it measured, and the analytic estimate it is compared with."""

    METRIC: ClassVar[str] = "memory"
    # 2: measured with the other batch sizes' artefacts released; output_check is this batch size's own
    LAYOUT: ClassVar[int] = 2
    _NESTED: ClassVar[Mapping[str, type]] = {"backend": BackendInfo, "output_check": OutputCheckInfo,
                                             "analytic": AnalyticMemory}

    # CPU (measure/memory.CpuMemory)
    baseline_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    peak_above_baseline_bytes: int | None = None
    method: str | None = None
    # CUDA (measure/memory.CudaMemory); nvml_process_bytes is stored as null when NVML had no figure
    max_allocated_bytes: int | None = None
    max_reserved_bytes: int | None = None
    nvml_process_bytes: int | None = _nullable("max_allocated_bytes")
    device_name: str | None = None
    # CUDA figures that see every runtime (ONNX Runtime's and TensorRT's memory too), with their pre-model baselines
    nvml_baseline_bytes: int | None = None
    device_used_bytes: int | None = None
    device_used_baseline_bytes: int | None = None
    headline_kind: str | None = None  # the MEMORY_KINDS key of the headline, as the worker chose it
    # the deployment and the estimate
    backend: BackendInfo | None = None
    executed_precision: str | None = _nullable("backend")
    output_check: OutputCheckInfo | None = None
    weight_bytes: int | None = None
    analytic: AnalyticMemory | None = None
    analytic_ratio: float | None = _nullable("analytic")
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_cuda(self) -> bool:
        return self.max_allocated_bytes is not None or self.device_name is not None

    def figures(self) -> dict[str, int]:
        """Every headline candidate this cell has, by MEMORY_KINDS key."""
        out: dict[str, int] = {}
        if self.nvml_process_bytes is not None and self.nvml_baseline_bytes is not None:
            out["cuda_nvml_process_above_baseline"] = self.nvml_process_bytes - self.nvml_baseline_bytes
        if self.device_used_bytes is not None and self.device_used_baseline_bytes is not None:
            out["cuda_device_used_above_baseline"] = self.device_used_bytes - self.device_used_baseline_bytes
        if self.max_allocated_bytes is not None:
            out["cuda_max_allocated"] = self.max_allocated_bytes
        if self.peak_above_baseline_bytes is not None:
            out["cpu_peak_rss_above_baseline"] = self.peak_above_baseline_bytes
        return out

    def headline(self) -> tuple[int | None, str]:
        """The one measured number a memory cell is compared and plotted by, and its kind (a MEMORY_KINDS key).

        The figure that sees the whole deployment, whatever runtime holds the memory: CUDA: NVML's figure for
        the worker above its pre-model baseline, else the device's used memory above its baseline, else (cells
        from before those were kept, or no reading) `max_memory_allocated`, which sees PyTorch's tensors only;
        CPU: the worker's peak RSS above its pre-model baseline. `headline_kind`, when stored, picks the figure.
        (None, "") when nothing was measured.
        """
        figures = self.figures()
        if self.headline_kind in figures:
            return figures[self.headline_kind], self.headline_kind
        for kind in MEMORY_KINDS:
            if kind in figures:
                return figures[kind], kind
        return None, ""

    @property
    def headline_bytes(self) -> int | None:
        return self.headline()[0]

    def ratio_to_estimate(self) -> float | None:
        """Measured headline / analytic estimate (None when either is missing or zero)."""
        value = self.headline_bytes
        estimate = self.analytic.total_peak_bytes if self.analytic else None
        return value / estimate if value and estimate else None


# --- energy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyValue(_Value):
    """An energy cell (measure/energy.EnergyResult): joules of `calls` forward passes read from NVML's or
    RAPL's energy counter at the start and end of the block, idle power (measured before) subtracted."""

    METRIC: ClassVar[str] = "energy"
    LAYOUT: ClassVar[int] = 1
    _NESTED: ClassVar[Mapping[str, type]] = {"backend": BackendInfo, "output_check": OutputCheckInfo}

    batch_size: int | None = None
    calls: int | None = None
    seconds: float | None = None
    joules: float | None = None
    idle_watts: float | None = None
    idle_seconds: float | None = None
    net_joules: float | None = None
    joules_per_batch: float | None = None
    joules_per_image: float | None = None
    images_per_joule: float | None = _nullable("joules_per_image")
    method: str | None = None
    sampling_interval_s: float | None = None
    domains: tuple[str, ...] | None = None
    backend: BackendInfo | None = None
    executed_precision: str | None = _nullable("backend")
    output_check: OutputCheckInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


# --- scenarios: offline throughput and server latency under load (measure/scenarios.py) -------------

# how a backend runs several requests at once (Backend.stream_pool): recorded in `concurrency`
CONCURRENCY_KINDS = {
    "openvino-async-infer-queue": "OpenVINO AsyncInferQueue, one infer request per stream, NUM_STREAMS = streams",
    "onnxruntime-session-threads": "one ONNX Runtime session run from one Python thread per stream",
    "torch-threads": "one Python thread per stream, each with its own intra-op thread count",
    "torch-cuda-streams": "one Python thread per stream, each queueing on its own torch.cuda.Stream",
    "threads": "one Python thread per stream (a backend's blocking call)",
}


@dataclass(frozen=True)
class OfflinePoint(_Part):
    """One point of the offline curve: `streams` requests in flight, each a batch of `batch_size`, the cores
    split as `threads_per_stream` each. Throughput is sustained: images completed in the timed window over its
    wall time (warm-up excluded); the window ran until both `min_duration_s` and `min_samples` of the value
    were met (`met_minimums`), or until the point's cap. `error`: why the point was not measured (an out of
    memory at a large batch), its figures then None."""

    streams: int | None = None
    batch_size: int | None = None
    threads_per_stream: int | None = None
    images_per_s: float | None = None  # sustained: images / duration_s
    samples: int | None = None  # requests (batches) completed in the timed window
    images: int | None = None
    duration_s: float | None = None
    met_minimums: bool | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OfflineValue(_Value):
    """The offline scenario of one deployment: the whole throughput curve over stream counts and batch sizes
    (`points`, in the order measured), the best point, and how the streams were made (`concurrency`, a
    CONCURRENCY_KINDS key). `single_stream_images_per_s`: the (1 stream, batch 1) point, the baseline of the
    offline gain. `cores`: the cores given (streams x threads_per_stream = cores at every point)."""

    METRIC: ClassVar[str] = "offline"
    LAYOUT: ClassVar[int] = 1
    _NESTED: ClassVar[Mapping[str, type]] = {"backend": BackendInfo, "output_check": OutputCheckInfo,
                                             "contention": ContentionInfo}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {"points": OfflinePoint}

    concurrency: str | None = None
    cores: int | None = None
    points: tuple[OfflinePoint, ...] | None = None
    best_images_per_s: float | None = None
    best_streams: int | None = None
    best_batch_size: int | None = None
    single_stream_images_per_s: float | None = None
    min_duration_s: float | None = None  # the rules every point was timed under
    min_samples: int | None = None
    search: str | None = None  # how the points were chosen, in words
    search_s: float | None = None  # wall time of the whole search
    backend: BackendInfo | None = None
    executed_precision: str | None = _nullable("backend")
    output_check: OutputCheckInfo | None = None
    contention: ContentionInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> OfflinePoint | None:
        """The point of the highest sustained throughput."""
        measured = [p for p in self.points or () if p.images_per_s is not None]
        return max(measured, key=lambda p: p.images_per_s) if measured else None

    @property
    def gain_over_single_stream(self) -> float | None:
        """Best offline images/s over the single-stream batch-1 figure."""
        if self.best_images_per_s and self.single_stream_images_per_s:
            return self.best_images_per_s / self.single_stream_images_per_s
        return None


@dataclass(frozen=True)
class ServerPoint(_Part):
    """One offered load of the server scenario: `count` requests at Poisson arrival times of rate `target_rate`
    (per second), each served by the first free stream; latencies are from the scheduled arrival to completion,
    queueing included. `achieved_rate`: completed requests over the wall time from the first arrival to the last
    completion. `dropped`: requests not completed when the point's time cap ran out (counted as over the
    bound); `late`: requests whose latency exceeded the p99 bound. `meets_bound`: p99 <= the bound and nothing
    dropped."""

    target_rate: float | None = None
    achieved_rate: float | None = None
    count: int | None = None
    completed: int | None = None
    duration_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    mean_s: float | None = None
    max_s: float | None = None
    dropped: int | None = None
    late: int | None = None
    meets_bound: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerValue(_Value):
    """The server scenario of one deployment: latency percentiles at each offered rate tried (`points`, in the
    order tried), the p99 bound they were held to, and the knee: the highest rate whose p99 met it. `streams`
    requests in flight at most, each batch `batch_size`, made as `concurrency` says (a CONCURRENCY_KINDS key).
    `bound_source`: "user" (--p99-ms) or "4x single-stream median" (measured first in the same worker,
    `single_stream_median_s`). `seed`: the arrival times' random seed."""

    METRIC: ClassVar[str] = "server"
    LAYOUT: ClassVar[int] = 1
    _NESTED: ClassVar[Mapping[str, type]] = {"backend": BackendInfo, "output_check": OutputCheckInfo,
                                             "contention": ContentionInfo}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {"points": ServerPoint}

    concurrency: str | None = None
    cores: int | None = None
    streams: int | None = None
    threads_per_stream: int | None = None
    batch_size: int | None = None
    p99_bound_s: float | None = None
    bound_source: str | None = None
    single_stream_median_s: float | None = None
    points: tuple[ServerPoint, ...] | None = None
    knee_rate: float | None = _nullable("p99_bound_s")  # None: not even the lowest rate tried met the bound
    seed: int | None = None
    search: str | None = None
    search_s: float | None = None
    backend: BackendInfo | None = None
    executed_precision: str | None = _nullable("backend")
    output_check: OutputCheckInfo | None = None
    contention: ContentionInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def knee(self) -> ServerPoint | None:
        """The point at the knee rate (the highest rate meeting the bound)."""
        meeting = [p for p in self.points or () if p.meets_bound and p.target_rate is not None]
        return max(meeting, key=lambda p: p.target_rate) if meeting else None

    def at_rate(self, rate: float) -> ServerPoint | None:
        """The measured point of the lowest offered rate >= `rate` (what a p99 at `rate` is bounded by), or None
        when no rate that high was tried."""
        above = [p for p in self.points or () if p.target_rate is not None and p.target_rate >= rate]
        return min(above, key=lambda p: p.target_rate) if above else None


# --- complexity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComplexityValue(_Value):
    """Parameters and operations of one forward pass (measure/complexity.ComplexityResult, without layers).
    Totals are for `batch_size` images."""

    METRIC: ClassVar[str] = "complexity"

    model: str | None = None
    input_size: int | None = None
    batch_size: int | None = None
    mode: str | None = None
    dtype: str | None = None
    params: int | None = None
    trainable_params: int | None = None
    param_bytes: int | None = None
    buffers: int | None = None
    buffer_bytes: int | None = None
    macs: int | None = None
    conv_macs: int | None = None
    matmul_macs: int | None = None
    element_ops: int | None = None
    activations: int | None = None
    output_elements: int | None = None
    output_shape: tuple[int, ...] | None = None
    counter: str | None = None
    flops: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    PER_BATCH: ClassVar[tuple[str, ...]] = ("macs", "flops", "activations", "conv_macs", "matmul_macs",
                                            "element_ops", "output_elements")

    def per_image(self, name: str, batch_size: int | None = None) -> float | int | None:
        """Field `name` for one image: operation counts are divided by the batch size, sizes are not."""
        value = getattr(self, name)
        if value is None or name not in self.PER_BATCH:
            return value
        return value / max(int(self.batch_size or batch_size or 1), 1)


# --- accuracy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessingInfo(_Part):
    """How images became the model's input (data/preprocessing.InputPlan)."""

    mode: str | None = None  # "weights" | "paper"
    source: str | None = None
    description: str | None = None
    input_size: int | None = None
    resize_size: int | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color_order: str | None = None
    value_range: float | None = None
    transform_input: bool | None = _nullable("mode")
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsInfo(_Part):
    """Which weights were evaluated (zoo/weights.WeightsIdentity)."""

    source: str | None = None  # "torchvision" | "timm" | "pretrainedmodels" | "file"
    ref: str | None = _nullable("sha256")
    file: str | None = None
    sha256: str | None = None
    url: str | None = _nullable("sha256")
    checkpoint_key: str | None = _nullable("sha256")
    stripped_prefix: str | None = _nullable("sha256")
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassCount:
    """One class's images and hits; stored as the list [synset, n, top1_correct, top5_correct] (a list, not
    a mapping: exports flatten mappings into columns, 1000 of them here)."""

    synset: str
    n: int
    top1_correct: int
    top5_correct: int

    @classmethod
    def from_dict(cls, item: Any) -> ClassCount:
        if isinstance(item, Mapping):
            return cls(item["synset"], item["n"], item["top1_correct"], item["top5_correct"])
        synset, n, top1, top5 = item
        return cls(synset, n, top1, top5)

    def _encoded(self) -> list[Any]:
        return [self.synset, self.n, self.top1_correct, self.top5_correct]

    @property
    def top1(self) -> float:
        return 100.0 * self.top1_correct / self.n if self.n else math.nan


@dataclass(frozen=True)
class AccuracyValue(_Value):
    """Top-1/top-5 accuracy (percent) of one model on a validation set. A failed evaluation keeps only
    what was settled before it failed (`preprocessing`, `weights`): the other fields are None."""

    METRIC: ClassVar[str] = "accuracy"
    _NESTED: ClassVar[Mapping[str, type]] = {"preprocessing": PreprocessingInfo, "weights": WeightsInfo}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {"per_class": ClassCount}

    preprocessing: PreprocessingInfo | None = _nullable()
    weights: WeightsInfo | None = _nullable()
    top1: float | None = None
    top5: float | None = None
    n: int | None = None  # decodable images evaluated
    top1_correct: int | None = None
    top5_correct: int | None = None
    top1_ci: tuple[float, ...] | None = None  # percent
    top5_ci: tuple[float, ...] | None = None
    ci_method: str | None = None
    ci_level: float | None = None
    per_class: tuple[ClassCount, ...] | None = None
    corrupt: int | None = None
    corrupt_files: tuple[str, ...] | None = None
    classes_seen: int | None = None
    images_per_s: float | None = None
    elapsed_s: float | None = None
    warnings: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


# --- peak ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecPeakInfo(_Part):
    """The theoretical peak and every input it was computed from (env/peak.SpecPeak)."""

    precision: str | None = None
    flops: float | None = _nullable("precision")
    units: int | None = None
    unit_kind: str | None = None
    flop_per_cycle_per_unit: float | None = _nullable("precision")
    clock_mhz: float | None = _nullable("precision")
    clock_source: str | None = None
    core: str | None = None
    path: str | None = None
    from_flags_only: bool | None = None
    notes: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KernelInfo(_Part):
    """One timed kernel (env/peak.KernelMeasurement): best and median rate over `calls` calls."""

    kernel: str | None = None  # "matmul", "conv3x3" or "copy"
    op: str | None = None
    shape: str | None = None
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    work_per_call: float | None = None  # FLOPs (bytes moved for "copy")
    calls: int | None = None
    seconds: float | None = None
    best_s: float | None = None
    median_s: float | None = None
    timer: str | None = None
    rate: float | None = None
    median_rate: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeakValue(_Value):
    """The peak FLOP/s of one device at one precision and thread count (env/peak.PeakEstimate.to_dict()),
    as the store's `peaks` table holds it in `estimate_json`."""

    METRIC: ClassVar[str] = "peak"
    _NESTED: ClassVar[Mapping[str, type]] = {"spec": SpecPeakInfo, "bandwidth": KernelInfo,
                                             "contention": ContentionInfo}
    _TUPLES_OF: ClassVar[Mapping[str, type]] = {"kernels": KernelInfo}

    device: str | None = None
    precision: str | None = None
    threads: int | None = None  # CPU: intra-op threads measured with; other devices: 0
    peak_flops: float | None = _nullable("device")
    basis: str | None = None  # "spec", "measured matmul", "measured conv3x3" or "none"
    basis_detail: str | None = None
    theoretical_flops: float | None = _nullable("device")
    measured_flops: float | None = _nullable("device")
    spec: SpecPeakInfo | None = _nullable("device")
    kernels: tuple[KernelInfo, ...] | None = None
    bandwidth_bytes_per_s: float | None = _nullable("device")
    bandwidth: KernelInfo | None = _nullable("device")
    contention: ContentionInfo | None = _nullable("device")
    measured_at: float | None = None
    torch_version: str | None = _nullable("device")
    device_name: str | None = _nullable("device")
    unit: str | None = None  # "FLOP/s", or "OP/s" for int8
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def contended(self) -> bool:
        """Any trial measured under contention (cells from before trials: the one measurement)."""
        if getattr(self, "trials", None) and any(t.contended for t in self.trials):
            return True
        return bool(self.contention and self.contention.contended)

    @property
    def measured_fraction_of_spec(self) -> float | None:
        if self.measured_flops and self.theoretical_flops:
            return self.measured_flops / self.theoretical_flops
        return None


# --- values of metrics this release does not know ---------------------------------------------------


@dataclass(frozen=True)
class RawValue:
    """The values of a metric this release has no type for (written by a newer dnnbench): kept verbatim, so
    that a merge or an export carries them on; readers skip them."""

    metric: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _thaw(self.data)


Value = (TimeValue | MemoryValue | EnergyValue | ComplexityValue | AccuracyValue | PeakValue | OfflineValue
         | ServerValue | RawValue)

VALUE_TYPES: dict[str, type[_Value]] = {
    "time": TimeValue, "memory": MemoryValue, "energy": EnergyValue, "complexity": ComplexityValue,
    "accuracy": AccuracyValue, "peak": PeakValue, "offline": OfflineValue, "server": ServerValue,
}


def decode(metric: str, mapping: Mapping[str, Any] | None) -> Any:
    """The typed value of one stored values dict; None for an empty one (a cell that failed before it
    measured anything). Raises ValueLayoutError for a layout newer than this code."""
    if mapping is None or (isinstance(mapping, Mapping) and not mapping):
        return None
    value_type = VALUE_TYPES.get(metric)
    if value_type is None:
        if not isinstance(mapping, Mapping):
            raise ValueLayoutError(f"{metric} values: expected a JSON object, got {type(mapping).__name__}")
        return RawValue(metric, _freeze(mapping))
    return value_type.from_dict(mapping)


def encode(value: Any) -> dict[str, Any]:
    """The JSON-able dict of a typed value; {} for None (a failed cell)."""
    return {} if value is None else value.to_dict()


__all__ = [
    "CONCURRENCY_KINDS", "MEMORY_KINDS", "SETUP_PARTS", "VALUE_TYPES", "AccuracyValue", "AnalyticMemory", "BackendInfo",
    "ClassCount", "ComplexityValue", "ContentionInfo", "EnergyValue", "KernelInfo", "LatencyStats", "MemoryValue",
    "OfflinePoint", "OfflineValue", "OutputCheckInfo", "PeakValue", "PreprocessingInfo", "RawValue", "RuntimeInfo",
    "ServerPoint", "ServerValue", "SetupInfo", "SpecPeakInfo", "TimeValue", "Value", "ValueLayoutError", "WeightsInfo",
    "decode", "encode",
]
