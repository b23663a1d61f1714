"""Analytic peak-memory estimate of one inference forward pass, without the real device.

The model is copied onto the meta device (shapes and dtypes, no data) and run once under
``torch.inference_mode()`` inside a dispatch mode that watches every aten op's outputs.
Activation memory is counted per *storage*, not per tensor: views and in-place results share
their base's storage and add nothing. A storage is live from the op that first returns it until
PyTorch frees it; we learn that through a weakref on the storage object, which PyTorch keeps
alive exactly as long as the C++ storage (so references held from C++ count too). Parameters,
buffers and the input are never activations, even when an op returns a view of them or writes
into them in place.

What this counts: the tensors a PyTorch eager forward pass keeps alive at once, at the moment
each op's outputs exist together with everything still referenced. What it misses: memory
that lives only inside one op: kernel scratch space (cuDNN/oneDNN workspaces) and temporaries of
composite ops, which inference_mode does not decompose before the dispatch mode sees them
(``aten.conv2d``, ``aten.batch_norm``, ``aten.scaled_dot_product_attention`` arrive whole);
also allocator rounding and caching, the CUDA context, and the interpreter itself. So it is a
lower bound for ``max_memory_allocated`` on CUDA and a much lower one for a process's RSS.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

METHOD = "meta-device dispatch tracking of live storages under inference_mode"


@dataclass(frozen=True)
class MemoryEstimate:
    weight_bytes: int
    buffer_bytes: int
    input_bytes: int
    # Peak of the bytes of storages created by the forward pass and alive at the same time
    # (the output included, the input excluded: it is `input_bytes`).
    peak_activation_bytes: int
    output_bytes: int
    total_peak_bytes: int
    peak_op: str | None
    peak_module: str | None
    method: str = METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def _storage_key(t: torch.Tensor) -> int:
    # Address of the C++ StorageImpl: unique among live storages, also on meta (whose data
    # pointer is always 0). Reuse after a free is harmless because the free untracks it first.
    return t.untyped_storage()._cdata


def _unique_storage_bytes(tensors) -> int:
    return sum({_storage_key(t): t.untyped_storage().nbytes() for t in tensors}.values())


class LiveStorageTracker(TorchDispatchMode):
    """Tracks bytes of live storages returned by aten ops; `excluded` storages never count.

    Device-agnostic: works the same on meta and on real tensors.
    """

    def __init__(self, excluded: set[int] = frozenset(), module_stack: list[str] | None = None):
        super().__init__()
        self.excluded = set(excluded)
        self.module_stack = module_stack if module_stack is not None else []
        self.live: dict[int, tuple[int, weakref.ref]] = {}
        self.current = 0
        self.peak = 0
        self.peak_op: str | None = None
        self.peak_module: str | None = None

    def _freed(self, key: int, _ref) -> None:
        nbytes, _ = self.live.pop(key)
        self.current -= nbytes

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st._cdata
        if key in self.excluded:
            return
        nbytes = st.nbytes()
        if key in self.live:
            old, ref = self.live[key]
            if old != nbytes:  # resized in place (e.g. an out= op)
                self.live[key] = (nbytes, ref)
                self.current += nbytes - old
        elif nbytes:
            self.live[key] = (nbytes, weakref.ref(st, partial(self._freed, key)))
            self.current += nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        # Every input of this op is still referenced, and its outputs now exist: the peak can
        # only be reached here, never between ops (between ops memory is only freed).
        if self.current > self.peak:
            self.peak = self.current
            self.peak_op = str(func)
            self.peak_module = self.module_stack[-1] if self.module_stack else None
        return out


def _meta_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Deep copy of `model` whose parameters and buffers are meta tensors; floating-point ones
    cast to `dtype`. No weight data is read or copied, so this is cheap for a real CPU model too.
    Tensors kept as plain attributes (not registered) are copied as they are."""

    def meta_like(t: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(t, device="meta", dtype=dtype if t.is_floating_point() else t.dtype)

    memo: dict[int, torch.Tensor] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(meta_like(p), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = meta_like(b)
    return copy.deepcopy(model, memo)


def track_forward(model: nn.Module, x: torch.Tensor) -> tuple[LiveStorageTracker, object]:
    """Run ``model(x)`` once under inference_mode with a `LiveStorageTracker`, on whatever
    device `model` and `x` are; `model` is put in eval mode. Returns the tracker and the output."""
    # Hooks must return None: a returned value would replace the module's input or output.
    module_stack: list[str] = []

    def enter(name: str, *_) -> None:
        module_stack.append(name)

    def leave(*_) -> None:
        module_stack.pop()

    handles = []
    for name, mod in model.named_modules():
        if name:  # the root is implied by an empty stack
            handles.append(mod.register_forward_pre_hook(partial(enter, name)))
            handles.append(mod.register_forward_hook(leave))

    excluded = {_storage_key(t) for t in (*model.parameters(), *model.buffers(), x)}
    tracker = LiveStorageTracker(excluded, module_stack)
    try:
        with torch.inference_mode(), tracker:
            out = model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return tracker, out


def estimate_inference_memory(
    model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> MemoryEstimate:
    """Estimate the memory of one eval-mode forward pass of `model` on an input of `input_shape`.

    `model` may live on meta (preferred: build it under ``with torch.device("meta")``) or on a
    real device; either way it is not modified: a meta copy with floating-point parameters and
    buffers in `dtype` is run instead.
    """
    meta_model = _meta_copy(model, dtype)
    weight_bytes = _unique_storage_bytes(meta_model.parameters())
    buffer_bytes = _unique_storage_bytes(meta_model.buffers())
    x = torch.empty(input_shape, device="meta", dtype=dtype)
    input_bytes = x.untyped_storage().nbytes()

    tracker, out = track_forward(meta_model, x)

    # Outputs that are (views of) the input or a parameter add nothing; others are activations.
    out_keys = {_storage_key(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
    output_bytes = sum(tracker.live[k][0] for k in out_keys if k in tracker.live)
    return MemoryEstimate(
        weight_bytes=weight_bytes,
        buffer_bytes=buffer_bytes,
        input_bytes=input_bytes,
        peak_activation_bytes=tracker.peak,
        output_bytes=output_bytes,
        total_peak_bytes=weight_bytes + buffer_bytes + input_bytes + tracker.peak,
        peak_op=tracker.peak_op,
        peak_module=tracker.peak_module,
    )
