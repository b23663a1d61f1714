"""Deployment backends below the latency and memory measurements, and the output check against eager fp32.

    >>> from dnnbench.backends import available_backends
    >>> available_backends("cpu")  # doctest: +SKIP
    {'eager': None, 'eager-channels-last': None, 'torchscript': None, 'compile': None, 'onnxruntime': None,
     'openvino': None, 'tensorrt': 'tensorrt runs on cuda, not cpu'}
"""

from __future__ import annotations

from difflib import get_close_matches

import torch

from ..errors import UsageError
from .base import PRECISIONS, Backend, BackendOptions, BackendUnavailable, PrecisionUnsupported, SetupCosts, as_tensor
from .output_check import OutputCheck, check_input, compare
from .quantization import CalibrationSet, calibration_set, cpu_flags, int8_cpu_reason
from .runtime_backends import OnnxRuntimeBackend, OpenVINOBackend, TensorRTBackend, int8_cuda_reason
from .torch_backends import ChannelsLastBackend, CompileBackend, EagerBackend, TorchScriptBackend

BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (
    EagerBackend, ChannelsLastBackend, TorchScriptBackend, CompileBackend, OnnxRuntimeBackend, OpenVINOBackend,
    TensorRTBackend)}
SEARCH_WORDS = ("best", "all")  # every backend available here, each timed, the fastest valid one marked


def available_backends(device: torch.device | str) -> dict[str, str | None]:
    """Every backend, with the reason it cannot run on `device` here (None: it can)."""
    device = torch.device(device)
    return {name: backend.unavailable_reason(device) for name, backend in BACKENDS.items()}


def parse_backends(text: str, device: torch.device | str, here: bool = True) -> tuple[tuple[str, ...], bool]:
    """`eager,onnxruntime` -> the names; `best` or `all` -> every backend available on `device`, and True
    (a best-deployment search). Unknown names are refused, listing what this machine has. `here=False`
    (the sweep runs on other machines, a cluster's nodes): `best` plans every backend, and each node
    records the ones it lacks as unavailable."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("no backend given; " + describe_choices(device))
    if any(n in SEARCH_WORDS for n in names):
        if not here:
            return tuple(n for n, b in BACKENDS.items() if torch.device(device).type in b.device_types), True
        return tuple(n for n, reason in available_backends(device).items() if reason is None), True
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        hints = []
        for name in unknown:
            close = get_close_matches(name, list(BACKENDS) + list(SEARCH_WORDS), n=2, cutoff=0.5)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise UsageError(f"unknown backend {', '.join(hints)}; " + describe_choices(device))
    return names, False


def describe_choices(device: torch.device | str) -> str:
    found = available_backends(device)
    here = [n for n, r in found.items() if r is None]
    missing = [f"{n} ({r})" for n, r in found.items() if r is not None]
    text = f"backends available on {torch.device(device).type} here: {', '.join(here)}, or best (all of them)"
    return text + (f"; not available: {'; '.join(missing)}" if missing else "")


def search_precisions(device: torch.device | str, flags: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The precisions a best-deployment search tries when none are asked for: fp32, and the reduced ones
    this device computes natively (CPU: bf16 with AVX512-BF16/AMX, fp16 with AVX512-FP16/AMX-FP16, int8 with
    VNNI, AMX-INT8 or Arm's dot product; CUDA: fp16, and bf16 from compute capability 8.0). `flags`: the
    CPU's flags (default: read from this machine)."""
    device = torch.device(device)
    found = ["fp32"]
    if device.type == "cuda":
        found.append("fp16")
        if torch.cuda.get_device_capability(device) >= (8, 0):
            found.append("bf16")
        if _tensorrt_int8_reason(device) is None:
            found.append("int8")
        return tuple(found)
    flags = set(flags if flags is not None else cpu_flags())
    if flags & {"avx512_bf16", "amx_bf16"}:
        found.append("bf16")
    if flags & {"avx512_fp16", "amx_fp16"}:
        found.append("fp16")
    if int8_cpu_reason(flags) is None:
        found.append("int8")
    return tuple(found)


def _tensorrt_int8_reason(device: torch.device) -> str | None:
    """On a CUDA device int8 is TensorRT's alone (explicit Q/DQ quantization): why it is not searched, or None."""
    tensorrt = BACKENDS.get("tensorrt")
    reason = tensorrt.unavailable_reason(device) if tensorrt else "no tensorrt backend"
    if reason:
        return f"int8 on {device.type} is built by TensorRT, which is not available here: {reason}"
    return int8_cuda_reason(device)


def precision_unavailable_reason(precision: str, device: torch.device | str,
                                 flags: tuple[str, ...] | None = None) -> str | None:
    """Why a best-deployment search here leaves `precision` out (None: it is searched)."""
    device = torch.device(device)
    if precision in search_precisions(device, flags):
        return None
    if precision == "int8":
        if device.type == "cuda":
            return _tensorrt_int8_reason(device)
        if device.type != "cpu":
            return f"dnnbench quantizes to int8 on CPUs (OpenVINO, ONNX Runtime) and NVIDIA GPUs (TensorRT); not on {device.type}"
        return int8_cpu_reason(flags if flags is not None else cpu_flags())
    return f"{device.type} here does not compute {precision} natively"

def make_backend(name: str, device: torch.device | str, precision: str, threads: int | None,
                 options: BackendOptions | None = None, tf32: bool = False) -> Backend:
    return BACKENDS[name](torch.device(device), precision, threads, options, tf32=tf32)


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendOptions", "BackendUnavailable", "OutputCheck",
           "PrecisionUnsupported", "SetupCosts", "as_tensor", "available_backends", "check_input", "compare", "make_backend",
           "parse_backends", "precision_unavailable_reason", "search_precisions", "CalibrationSet", "calibration_set"]
