"""PyTorch backends: eager, eager with channels-last memory, TorchScript and torch.compile (inductor)."""

from __future__ import annotations

import contextlib
import shutil
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .base import TORCH_DTYPES, Backend, BackendOptions


@dataclass(frozen=True)
class EagerOptions(BackendOptions):
    autocast: bool = False  # False: weights and input cast to the precision (native); True: torch.autocast


class EagerBackend(Backend):
    """The model as written, run by PyTorch op by op."""

    name = "eager"
    options_type = EagerOptions
    memory_format = torch.contiguous_format

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        model = model.to(memory_format=self.memory_format)
        self.model = model if self._autocast else model.to(TORCH_DTYPES[self.precision])
        self.executed_precision = self.precision

    def is_reference(self) -> bool:
        # the model as built, in fp32, contiguous, no TF32: the very computation of the eager reference
        return type(self) is EagerBackend and self.precision == "fp32" and not self.tf32

    @property
    def _autocast(self) -> bool:
        return bool(getattr(self.options, "autocast", False)) and self.precision != "fp32"

    def _context(self) -> contextlib.AbstractContextManager:
        if self._autocast:
            return torch.autocast(self.device.type, dtype=TORCH_DTYPES[self.precision])
        return contextlib.nullcontext()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        return x if self._autocast else x.to(TORCH_DTYPES[self.precision])

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        model, x = self.model, self._input(x)
        if self._autocast:
            context = self._context

            def forward() -> Any:
                with context():
                    return model(x)
            return forward
        return lambda: model(x)

    def stream_pool(self, x: torch.Tensor, streams: int, threads_per_stream: int | None):
        """One Python thread per stream calling the one model (CPU: each with `threads_per_stream` intra-op
        threads; CUDA: each on its own CUDA stream); see backends/streams.torch_thread_pool."""
        from .streams import torch_thread_pool

        return torch_thread_pool(self.bind(x), streams, threads_per_stream, self.device)


class ChannelsLastBackend(EagerBackend):
    """Eager PyTorch with weights and input in NHWC (channels-last) memory: oneDNN/cuDNN's preferred layout."""

    name = "eager-channels-last"
    memory_format = torch.channels_last


@dataclass(frozen=True)
class TorchScriptOptions(BackendOptions):
    freeze: bool = True
    optimize_for_inference: bool = True


class TorchScriptBackend(Backend):
    """torch.jit.trace, then freeze (weights folded in as constants) and optimize_for_inference."""

    name = "torchscript"
    options_type = TorchScriptOptions

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        model = model.to(TORCH_DTYPES[self.precision])
        example = example.to(TORCH_DTYPES[self.precision])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # freeze/optimize_for_inference deprecation notices
            with self.setup.timed("trace_s"):
                module = torch.jit.trace(model, example, check_trace=False)
            if self.options.freeze:
                with self.setup.timed("freeze_s"):
                    module = torch.jit.freeze(module.eval())
            if self.options.optimize_for_inference:
                with self.setup.timed("optimize_s"):
                    module = torch.jit.optimize_for_inference(module)
        self.module = module
        self.executed_precision = self.precision

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        module, x = self.module, x.to(TORCH_DTYPES[self.precision])
        return lambda: module(x)


@dataclass(frozen=True)
class CompileOptions(BackendOptions):
    mode: str = "default"  # torch.compile mode: default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs
    freezing: bool = True  # inductor folds weights into constants (inference only)
    dynamic: bool = False  # one graph per batch size: the fastest code for each


class CompileBackend(Backend):
    """torch.compile with the inductor backend. Compilation happens at the first call of each batch size,
    the engine's timed first inference (`compiles_at_first_call`), never in a timed sample."""

    name = "compile"
    options_type = CompileOptions
    compiles_at_first_call = True

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        reason = super().unavailable_reason(device)
        if reason:
            return reason
        if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return "torch.compile (inductor) on CPU needs a C++ compiler (g++ or clang++); none on PATH"
        if device.type == "cuda":
            try:
                import triton  # noqa: F401
            except ImportError:
                return "torch.compile (inductor) on CUDA needs triton: pip install triton"
        return None

    def unsupported_reason(self) -> str | None:
        if self.precision == "int8":
            return pt2e_int8_reason()
        return super().unsupported_reason()

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = self.options.freezing
        self.model = model.to(TORCH_DTYPES[self.precision])
        self.compiled = torch.compile(self.model, mode=self.options.mode, dynamic=self.options.dynamic)
        self.executed_precision = self.precision

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        compiled, x = self.compiled, x.to(TORCH_DTYPES[self.precision])
        return lambda: compiled(x)  # the first call compiles this shape

    def release_shapes(self) -> None:
        """Inductor keeps one graph per batch size, each with its frozen weights: dropped before the next."""
        import torch._dynamo

        torch._dynamo.reset()
        self.compiled = torch.compile(self.model, mode=self.options.mode, dynamic=self.options.dynamic)

    def versions(self) -> dict[str, str]:
        versions = super().versions()
        with contextlib.suppress(ImportError):
            import triton

            versions["triton"] = triton.__version__
        return versions


def pt2e_int8_reason() -> str:
    """Why `compile` does not run int8 here: PyTorch's x86 int8 path is PT2E quantization with the X86 inductor
    quantizer, which PyTorch moved out of torch.ao into torchao (this torch has no torch.ao quantize_pt2e);
    dnnbench does not drive it yet."""
    import importlib.util

    in_torch = importlib.util.find_spec("torch.ao.quantization.quantize_pt2e") is not None
    where = ("torch.ao.quantization.quantize_pt2e" if in_torch
             else "torchao (" + ("installed" if importlib.util.find_spec("torchao") else "not installed") + "; "
             f"torch {torch.__version__} no longer ships torch.ao's quantize_pt2e)")
    return (f"PyTorch's int8 path for x86 (PT2E with the X86 inductor quantizer, in {where}) is not driven by "
            "dnnbench yet; int8 deployments: onnxruntime, openvino")
