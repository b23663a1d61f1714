"""What every deployment backend offers the measurement engine: prepare once, bind per batch size, run.

A backend turns the built fp32 PyTorch model into something that runs one forward pass per call:
eager PyTorch, a TorchScript graph, an inductor-compiled module, an ONNX Runtime session, an OpenVINO
compiled model. The engine times the call that `bind()` returns exactly as it times eager PyTorch, so
every backend is measured by the same clock, statistics and stopping rule.

Set-up work (export, tracing, compilation) is timed apart in `setup`; the first inference at each
shape is timed by the engine before any other forward at that shape. Neither enters the steady-state
samples.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from ..devices import PRECISIONS, is_quantized, storage_precision, torch_dtype

if TYPE_CHECKING:
    from .quantization import CalibrationSet
    from .streams import StreamPool

# the dtype the PyTorch side keeps at each precision: int8 keeps fp32 (the backend quantizes the fp32 model)
TORCH_DTYPES = {p: torch_dtype(storage_precision(p)) for p in PRECISIONS}


class BackendUnavailable(Exception):
    """The backend cannot run here at all (package missing, device not supported)."""


class PrecisionUnsupported(Exception):
    """The backend runs here, but not at this precision (e.g. fp16 on ONNX Runtime's CPU provider)."""


@dataclass(frozen=True)
class BackendOptions:
    """Options of a backend that change what is measured; non-default ones become part of the cell key."""

    def non_default(self) -> dict[str, Any]:
        defaults = type(self)()
        return {k: v for k, v in asdict(self).items() if getattr(defaults, k) != v}


@dataclass
class SetupCosts:
    """Seconds spent before steady state, by step (export, trace, compile, first inference per batch)."""

    steps: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str) -> _Stopwatch:
        return _Stopwatch(self, step)

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + seconds

    @property
    def total_s(self) -> float:
        return sum(self.steps.values())


class _Stopwatch:
    def __init__(self, costs: SetupCosts, step: str):
        self.costs, self.step = costs, step

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.costs.add(self.step, time.perf_counter() - self.started)


class Backend(ABC):
    """One way to deploy a model. Subclasses set `name`, `options_type` and the devices they run on."""

    name: ClassVar[str]
    options_type: ClassVar[type[BackendOptions]] = BackendOptions
    device_types: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    # True when a call returns only once the work is done (ONNX Runtime, OpenVINO), False for PyTorch on
    # CUDA. Recorded only: every backend on a device is timed by that device's one clock (CUDA events on
    # PyTorch's current stream, which ONNX Runtime's providers also run on; see docs/BACKENDS.md).
    blocking: ClassVar[bool] = False
    # True when the first call at a new shape compiles it (inductor, TensorRT): that call's time, the
    # first inference, holds the compilation
    compiles_at_first_call: ClassVar[bool] = False
    # (module, what to pip install) this backend cannot run without
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    # the precisions this backend quantizes the fp32 model to (after calibration: `calibrate_with`)
    quantized_precisions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device: torch.device, precision: str, threads: int | None,
                 options: BackendOptions | None = None, tf32: bool = False):
        self.device, self.precision, self.threads = device, precision, threads
        self.tf32 = tf32  # CUDA fp32: TF32 tensor cores allowed (the cell is tf32); otherwise fp32 is fp32
        self.options = options or self.options_type()
        self.setup = SetupCosts()
        self.executed_precision: str | None = None
        self.calibration: CalibrationSet | None = None  # a quantized precision's calibration images

    # ---- what runs where -----------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        """Why this backend cannot run on `device` here (missing package, wrong device), or None."""
        if device.type not in cls.device_types:
            return f"{cls.name} runs on {', '.join(cls.device_types)}, not {device.type}"
        try:
            for module, install in cls.requires:
                require_module(module, install)
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def unsupported_reason(self) -> str | None:
        """Why this backend cannot run at `self.precision` on this device, or None."""
        if is_quantized(self.precision) and self.precision not in self.quantized_precisions:
            return (f"{self.name} does not quantize to {self.precision}; "
                    f"{self.precision} deployments: {', '.join(quantizing_backends(self.precision))}")
        return None

    def calibrate_with(self, calibration: CalibrationSet) -> None:
        """The images a quantized precision is calibrated on (before `prepare`); stored with the cell."""
        self.calibration = calibration

    def load_quantizer(self) -> None:
        """Import the quantization tool (NNCF, onnxruntime.quantization) before the memory baseline is taken: a
        tool used once at set-up is no part of the deployment's memory. Backends without one do nothing."""
        return None

    def _calibration(self) -> CalibrationSet:
        if self.calibration is None:
            raise ValueError(f"{self.name} at {self.precision} needs calibration images: call calibrate_with first")
        return self.calibration

    # ---- the life of a measurement ---------------------------------------------------------------
    @abstractmethod
    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        """Turn the fp32 eval-mode `model` into this backend's form. `example` is an fp32 input on the
        device; `key` identifies model + weights + input size for caches. May consume `model`."""

    @abstractmethod
    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        """The timed call for input `x` (fp32, on the device): one forward pass per call. Per-shape
        work (a compilation, a static reshape) happens here and is recorded in `setup`."""

    def release_shapes(self) -> None:
        """Drop what was built for the shapes bound so far (compiled models, graphs, requests), so that
        the next shape's memory holds its own artefact only. The prepared form stays. Backends without
        per-shape state keep nothing to drop."""
        return None

    def is_reference(self) -> bool:
        """Whether this deployment computes exactly what the output check's eager fp32 reference does (then the
        worker checks it against itself instead of rebuilding the model for a reference)."""
        return False

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for `x` as an fp32 CPU tensor, for the output check."""
        return as_tensor(self.bind(x)())

    def stream_pool(self, x: torch.Tensor, streams: int, threads_per_stream: int | None) -> StreamPool:
        """`streams` requests of input `x` in flight at once, made the way this backend supports best (after
        `prepare`; backends/streams.py). A backend without a proven way raises ConcurrencyUnsupported: its
        scenario cells are stored as unsupported, never timed one request at a time."""
        from .streams import ConcurrencyUnsupported

        raise ConcurrencyUnsupported(f"{self.name} has no proven way to run several requests at once in dnnbench; "
                                     "offline and server scenarios: eager, eager-channels-last, onnxruntime (CPU), "
                                     "openvino")

    def describe(self) -> dict[str, Any]:
        """What ran, for the record: options, versions, the precision actually executed."""
        described = {"name": self.name, "options": asdict(self.options), "executed_precision": self.executed_precision,
                     "versions": self.versions(), "blocking": self.blocking, "tf32": self.tf32}
        if self.calibration is not None:  # how a quantized deployment was calibrated: method, samples, source
            described["quantization"] = {**self.calibration.describe(), **self.quantization_settings()}
        return described

    def quantization_settings(self) -> dict[str, Any]:
        """The quantizer and its settings, for the record (quantized precisions only)."""
        return {}

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


def require_module(name: str, install: str) -> Any:
    """The imported module, or BackendUnavailable saying what to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailable(f"{name} is not installed ({exc}); install it with: pip install {install}") from None


def as_tensor(output: Any) -> torch.Tensor:
    """A backend's raw output (tensor, numpy array, list or dict of them) as an fp32 CPU tensor of logits."""
    if isinstance(output, dict):
        output = next(iter(output.values()))
    if isinstance(output, (list, tuple)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        output = torch.as_tensor(output)
    return output.detach().float().cpu()


def cast_input(x: torch.Tensor, precision: str) -> torch.Tensor:
    return x.to(TORCH_DTYPES[precision])


def quantizing_backends(precision: str) -> list[str]:
    """The names of the backends that quantize to `precision` (int8), for messages."""
    found, todo = [], list(Backend.__subclasses__())
    while todo:
        backend = todo.pop()
        todo.extend(backend.__subclasses__())
        if precision in backend.quantized_precisions and getattr(backend, "name", None):
            found.append(backend.name)
    return sorted(set(found))
