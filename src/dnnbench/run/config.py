"""What a user asks to measure, parsed and checked before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import UsageError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
METRICS = ("time", "memory", "complexity")
PAPER_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; dtypes: fp32, fp16, bf16") from None


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """`1,2,8` -> (1, 2, 8); every value a positive integer, in the order given, without repeats."""
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"{what} must be positive integers separated by commas, not {item!r} in {text!r}") from None
        if value < 1:
            raise UsageError(f"{what} must be positive, not {value}")
        values.append(value)
    if not values:
        raise UsageError(f"no {what} given")
    return tuple(dict.fromkeys(values))


def parse_metrics(text: str) -> tuple[str, ...]:
    metrics = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UsageError(f"unknown metrics {unknown or text!r}; metrics: {', '.join(METRICS)}")
    return metrics


def resolve_device(name: str) -> str:
    """`auto` -> the best device here; `cuda` -> `cuda:0`. Refuses devices this machine does not have."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} asked for, but PyTorch sees no CUDA device on this machine "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return f"cuda:{index}"
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("device 'mps' asked for, but this machine has no Apple GPU available to PyTorch")
        return "mps"
    raise UsageError(f"unknown device {name!r}; devices: cpu, cuda, cuda:N, mps, auto")


def parse_backend_option(text: str) -> tuple[str, str, str]:
    """`compile.mode=max-autotune` -> ("compile", "mode", "max-autotune")."""
    target, equals, value = text.partition("=")
    backend, dot, key = target.partition(".")
    if not (equals and dot and backend.strip() and key.strip()):
        raise UsageError(f"a backend option is BACKEND.OPTION=VALUE (e.g. compile.mode=max-autotune), not {text!r}")
    return backend.strip().lower(), key.strip(), value.strip()


def _coerce(value: str, kind: type, what: str):
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{what} is true or false, not {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{what} must be {kind.__name__}, not {value!r}") from None


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: every model x batch size x thread count, measured the same way."""

    device: str = "cpu"
    dtype: str = "fp32"
    batch_sizes: tuple[int, ...] = PAPER_BATCH_SIZES
    threads: tuple[int, ...] = ()  # intra-op threads per cell; () = PyTorch's default here, recorded
    interop_threads: int | None = None
    metrics: tuple[str, ...] = METRICS
    input_size: int | None = None  # None: each model's native size
    time_budget_s: float = 10.0  # per timed cell, after warm-up
    ci_target: float = 0.02  # relative half-width of the median's 95% CI
    min_samples: int = 10
    warmup_iters: int = 3
    warmup_s: float = 1.0
    cell_timeout_s: float | None = None  # None: derived from the budget (see timeout_s)
    memory_limit_mb: int | None = None  # address-space cap of each CPU worker; past it a cell is `oom`
    tf32: bool = False
    backends: tuple[str, ...] = ("eager",)  # deployment backends, each timed (see dnnbench.backends)
    precisions: tuple[str, ...] = ()  # () = (dtype,); several: each backend at each precision
    best_search: bool = False  # `--backend best`: every available backend, the fastest valid one marked
    backend_options: tuple[tuple[str, str, str], ...] = ()  # (backend, option, value), e.g. compile mode
    measure_peak: bool = True  # measure the device's peak FLOP/s once per store (efficiency = achieved / peak)
    force: bool = False  # re-measure cells already in the store
    retry_failed: bool = False  # re-measure cells whose status is not ok/oom/skipped
    remeasure_contended: bool = False  # re-measure timed cells flagged as measured under contention

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be positive integers, not {self.batch_sizes}")
        if any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise UsageError(f"thread counts must be positive integers, not {self.threads}")
        if not self.time_budget_s > 0:
            raise UsageError(f"the time budget must be positive, not {self.time_budget_s}")
        if not 0 < self.ci_target < 1:
            raise UsageError(f"the CI target is a relative half-width in (0, 1), e.g. 0.02, not {self.ci_target}")
        if self.min_samples < 1 or self.warmup_iters < 0 or self.warmup_s < 0:
            raise UsageError("min samples must be >= 1, warm-up iterations and seconds >= 0")
        if self.input_size is not None and self.input_size < 1:
            raise UsageError(f"the input size must be positive, not {self.input_size}")
        if self.cell_timeout_s is not None and self.cell_timeout_s <= 0:
            raise UsageError(f"the cell timeout must be positive, not {self.cell_timeout_s}")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            raise UsageError(f"unknown dtype {self.dtype!r}; dtypes: fp32, fp16, bf16")
        parse_metrics(",".join(self.metrics))
        for precision in self.precisions:
            if precision not in ("fp32", "fp16", "bf16"):
                raise UsageError(f"unknown precision {precision!r}; precisions: fp32, fp16, bf16")
        from ..backends import BACKENDS

        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise UsageError(f"unknown backends {unknown or '(none)'}; backends: {', '.join(BACKENDS)}")
        self.options_for("eager")  # checks every --backend-option now, not in a worker

    @property
    def precision_list(self) -> tuple[str, ...]:
        return self.precisions or (self.dtype,)

    def options_for(self, backend: str):
        """The options dataclass of `backend` with this sweep's --backend-option values applied."""
        from dataclasses import fields, replace

        from ..backends import BACKENDS

        options = {}
        for name, key, value in self.backend_options:
            if name not in BACKENDS:
                raise UsageError(f"--backend-option for unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
            known = {f.name: f for f in fields(BACKENDS[name].options_type)}
            if key not in known:
                raise UsageError(f"backend {name!r} has no option {key!r}; its options: {', '.join(known) or 'none'}")
            if name == backend:
                options[key] = _coerce(value, type(getattr(BACKENDS[name].options_type(), key)), f"{name}.{key}")
        return replace(BACKENDS[backend].options_type(), **options)

    @property
    def thread_counts(self) -> tuple[int | None, ...]:
        return self.threads or (None,)

    @property
    def timeout_s(self) -> float:
        """A cell that runs past this is killed and recorded as `timeout`; generous, since a slow model
        still has to finish its minimum samples after the budget is spent."""
        if self.cell_timeout_s is not None:
            return self.cell_timeout_s
        return max(300.0, 30 * (self.time_budget_s + self.warmup_s))

    def to_dict(self) -> dict:
        return asdict(self)

