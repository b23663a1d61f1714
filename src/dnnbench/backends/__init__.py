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
from .runtime_backends import OnnxRuntimeBackend, OpenVINOBackend, TensorRTBackend
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


def search_precisions(device: torch.device | str, cpu_flags: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The precisions a best-deployment search tries when none are asked for: fp32, and the reduced ones
    this device computes natively (CPU: bf16 with AVX512-BF16/AMX, fp16 with AVX512-FP16/AMX-FP16;
    CUDA: fp16, and bf16 from compute capability 8.0)."""
    device = torch.device(device)
    found = ["fp32"]
    if device.type == "cuda":
        found.append("fp16")
        if torch.cuda.get_device_capability(device) >= (8, 0):
            found.append("bf16")
        return tuple(found)
    flags = set(cpu_flags if cpu_flags is not None else _cpu_flags())
    if flags & {"avx512_bf16", "amx_bf16"}:
        found.append("bf16")
    if flags & {"avx512_fp16", "amx_fp16"}:
        found.append("fp16")
    return tuple(found)


def _cpu_flags() -> tuple[str, ...]:
    from ..env.fingerprint import collect_machine

    return collect_machine().cpu_flags or ()


def make_backend(name: str, device: torch.device | str, precision: str, threads: int | None,
                 options: BackendOptions | None = None, tf32: bool = False) -> Backend:
    return BACKENDS[name](torch.device(device), precision, threads, options, tf32=tf32)


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendOptions", "BackendUnavailable", "OutputCheck",
           "PrecisionUnsupported", "SetupCosts", "as_tensor", "available_backends", "check_input", "compare", "make_backend",
           "parse_backends", "search_precisions"]
