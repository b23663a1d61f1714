"""The operators one forward pass dispatches, traced on the meta device, and each one timed alone with real tensors.

A dispatch mode records every aten operator a model's forward pass runs under ``torch.inference_mode()`` on the
meta device (shapes only, nothing allocated): its name, its arguments with each tensor replaced by its shape,
strides and dtype (`encode_args`), the innermost module that ran it, and the features a latency model needs
(FLOPs, bytes in and out, channels, kernel, stride, groups, spatial sizes). Under inference_mode the composite
operators arrive whole (``aten.conv2d``, ``aten.batch_norm``, ``aten.linear``), so an operator here is what a
PyTorch eager forward really calls.

`replay` turns a recorded operator back into a call on real tensors of the same shapes and strides, and
`time_operators_interleaved` times a group of them in turn, with the timer and stopping rule of
`measure.latency` (the rules of `dnnbench run`).
`time_module_calls` times a chain of modules that dispatch nothing: the cost of a module call itself, which a
model pays on top of its operators.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .latency import WarmupPolicy, measure_interleaved, measure_latency
from .stats import StoppingRule

# The features of one operator, in this order everywhere (calibration rows, regressors).
FEATURES = ("flops", "in_bytes", "out_bytes", "out_elements", "batch", "c_in", "c_out", "kernel", "stride", "groups",
            "in_hw", "out_hw", "inplace", "tensor_inputs")
MATMUL_OPS = {"linear", "mm", "addmm", "bmm", "matmul", "baddbmm", "addbmm"}
CONV_OPS = {"conv2d", "convolution", "_convolution", "conv1d", "conv3d"}
MODULE_CALL = "module_call"  # the kind of the module-call overhead probe


@dataclass(frozen=True)
class OperatorCall:
    """One operator as a forward pass dispatched it. `args` is `encode_args`'s JSON-able form."""

    op: str  # "aten.conv2d.default"
    kind: str  # what a latency model is fitted per: the operator's name, convolutions split by their shape
    args: Any
    features: dict[str, float]
    module: str  # the innermost module that ran it ("(model)" for the model's own forward)
    # per tensor input (in `_tensors` order), the index in the trace of the call that produced it, -1 for the
    # model's input, weights and buffers: the data dependence a backend's fusion rules follow
    inputs: tuple[int, ...] = ()

    @property
    def signature(self) -> str:
        """Operator and argument shapes: two calls with the same signature cost the same."""
        return self.op + json.dumps(self.args, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class OperatorTrace:
    model: str
    batch_size: int
    input_size: int
    dtype: str
    calls: tuple[OperatorCall, ...]
    module_calls: int  # forward calls of modules, each paying the module-call overhead

    def kinds(self) -> Counter:
        return Counter(c.kind for c in self.calls)


def _tensor_spec(t: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(t.shape), "stride": list(t.stride()), "dtype": str(t.dtype).replace("torch.", "")}


def encode_args(value: Any) -> Any:
    """Tensors -> {"shape", "stride", "dtype"}; dtypes, devices, layouts, memory formats -> their names."""
    if isinstance(value, torch.Tensor):
        return {"tensor": _tensor_spec(value)}
    if isinstance(value, (list, tuple)):
        return [encode_args(v) for v in value]
    if isinstance(value, dict):
        return {"kwargs": {k: encode_args(v) for k, v in value.items()}}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).replace("torch.", "")}
    if isinstance(value, torch.device):
        return {"device": True}
    if isinstance(value, (torch.memory_format, torch.layout)):
        return {"enum": str(value).replace("torch.", "")}
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            return {"float": str(value)}
        return value
    return {"opaque": type(value).__name__}


def decode_args(value: Any, device: torch.device, dtype: torch.dtype | None, generator: torch.Generator) -> Any:
    """`encode_args`'s form back to values: each tensor a fresh one of the recorded shape and strides (random values
    from `generator`; floating tensors in `dtype` where given)."""
    if isinstance(value, list):
        return [decode_args(v, device, dtype, generator) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        spec = value["tensor"]
        shape, stride = spec["shape"], spec["stride"]
        kind = getattr(torch, spec["dtype"])
        if kind.is_floating_point and dtype is not None:
            kind = dtype
        storage = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
        if kind.is_floating_point:
            base = torch.randn(storage, generator=generator).to(device=device, dtype=kind)
        else:
            base = torch.zeros(storage, dtype=kind, device=device)
        return base.as_strided(shape, stride)
    if "dtype" in value:
        return getattr(torch, value["dtype"])
    if "device" in value:
        return device
    if "enum" in value:
        return getattr(torch, value["enum"])
    if "float" in value:
        return float(value["float"])
    if "kwargs" in value:
        return {k: decode_args(v, device, dtype, generator) for k, v in value["kwargs"].items()}
    raise ValueError(f"cannot rebuild an argument of type {value.get('opaque', value)!r}")


def resolve_op(name: str) -> Any:
    namespace, packet, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload)


# Operators whose tensor arguments after the first are weights. In a model each layer's weights were last touched
# a whole forward pass ago (cold in cache, streamed from memory); an operator timed in a loop would find them hot.
# So these are timed cycling through enough copies of their weights to overflow the caches.
WEIGHTED_OPS = {"conv2d", "convolution", "_convolution", "conv1d", "conv3d", "linear", "addmm", "batch_norm",
                "native_batch_norm", "_native_batch_norm_legit_no_training", "layer_norm", "group_norm"}
COLD_BYTES = 64 * 2**20  # weight copies cycled through: at least this many bytes (twice a large L3)
MAX_COPIES = 256


def replay(op: str, args: Any, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
           cold_weights: bool = True) -> Callable[[], object]:
    """A call of `op` on fresh real tensors of the recorded shapes and strides (random values, fixed seed); with
    `cold_weights`, an operator of WEIGHTED_OPS cycles through copies of its weights (see COLD_BYTES)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    positional, keywords = args
    decoded_args = decode_args(positional, device, dtype, generator)
    decoded_kwargs = decode_args(keywords, device, dtype, generator) if keywords else {}
    func = resolve_op(op)
    weights = [i for i, a in enumerate(decoded_args) if i > 0 and isinstance(a, torch.Tensor)]
    weight_bytes = sum(decoded_args[i].numel() * decoded_args[i].element_size() for i in weights)
    if not (cold_weights and op.split(".")[1] in WEIGHTED_OPS and weight_bytes):
        return lambda: func(*decoded_args, **decoded_kwargs)
    copies = min(MAX_COPIES, -(-COLD_BYTES // weight_bytes))
    variants = [decoded_args] + [[decode_args(positional[i], device, dtype, generator) if i in weights else a
                                  for i, a in enumerate(decoded_args)] for _ in range(copies - 1)]
    state = {"next": 0}

    def call() -> object:
        state["next"] = (state["next"] + 1) % copies
        return func(*variants[state["next"]], **decoded_kwargs)

    return call


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _hw(t: torch.Tensor | None) -> int:
    return int(t.shape[-2] * t.shape[-1]) if t is not None and t.dim() >= 3 else 1


def operator_features(packet: str, args: tuple, kwargs: dict, out: Any) -> tuple[str, dict[str, float]]:
    """(kind, features) of one call of the aten operator named `packet`."""
    inputs = _tensors(list(args)) + _tensors(kwargs)
    outputs = _tensors(out)
    first = inputs[0] if inputs else None
    result = outputs[0] if outputs else None
    out_elements = sum(t.numel() for t in outputs)
    inplace = packet.endswith("_") and not packet.startswith("_")
    name = packet.rstrip("_") if inplace else packet
    f = dict.fromkeys(FEATURES, 0.0)
    f.update(in_bytes=sum(t.numel() * t.element_size() for t in inputs),
             out_bytes=sum(t.numel() * t.element_size() for t in outputs), out_elements=out_elements,
             batch=first.shape[0] if first is not None and first.dim() else 1,
             c_in=first.shape[1] if first is not None and first.dim() >= 2 else 0,
             c_out=result.shape[1] if result is not None and result.dim() >= 2 else 0,
             in_hw=_hw(first), out_hw=_hw(result), inplace=float(inplace), tensor_inputs=len(inputs),
             flops=out_elements, groups=1.0, stride=1.0, kernel=1.0)
    kind = name
    if name in CONV_OPS and len(inputs) >= 2:
        weight = inputs[1]
        groups = args[-1] if isinstance(args[-1], int) and len(args) >= 7 else 1
        stride = args[3] if len(args) > 3 else [1]
        kernel = math.prod(weight.shape[2:])
        f.update(groups=groups, kernel=kernel, stride=max(stride) if isinstance(stride, (list, tuple)) else stride,
                 flops=2 * out_elements * weight.shape[1] * kernel)
        c_in = f["c_in"]
        kind = ("conv2d:depthwise" if groups > 1 and groups == c_in else "conv2d:grouped" if groups > 1
                else "conv2d:pointwise" if kernel == 1 else "conv2d")
    elif name in MATMUL_OPS and inputs:
        depth = (inputs[1] if name in {"addmm", "baddbmm", "addbmm"} and len(inputs) > 1 else first).shape[-1]
        f.update(flops=2 * out_elements * depth, c_in=depth, c_out=result.shape[-1] if result is not None else 0)
    elif "pool" in name and len(args) > 1 and isinstance(args[1], (list, tuple, int)):
        kernel = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        stride = args[2] if len(args) > 2 and args[2] else kernel
        stride = stride if isinstance(stride, (list, tuple)) else [stride]
        f.update(kernel=math.prod(kernel) if len(kernel) > 1 else kernel[0] ** 2, stride=max(stride),
                 flops=out_elements * (math.prod(kernel) if len(kernel) > 1 else kernel[0] ** 2))
    elif name.startswith("adaptive") or name in {"mean", "sum", "amax"}:
        f.update(flops=first.numel() if first is not None else 0)
    return kind, {k: float(v) for k, v in f.items()}


class OperatorRecorder(TorchDispatchMode):
    """Records every operator dispatched inside it, with the module that ran it (see `trace_operators`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {m: name or "(model)" for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.calls: list[OperatorCall] = []
        self.module_calls = 0
        self._handles: list[Any] = []
        # id(tensor) -> index of the call that last wrote it; the tensors are kept alive so that no id is reused
        self._producer: dict[int, int] = {}
        self._alive: list[torch.Tensor] = []

    def _pre(self, module: nn.Module, args: Any) -> None:
        self.stack.append(self.names.get(module, type(module).__name__))
        self.module_calls += 1

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def __enter__(self) -> OperatorRecorder:
        self._handles = [nn.modules.module.register_module_forward_pre_hook(self._pre),
                         nn.modules.module.register_module_forward_hook(self._post)]
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket.__name__
        kind, features = operator_features(packet, args, kwargs, out)
        inputs = tuple(self._producer.get(id(t), -1) for t in _tensors(list(args)) + _tensors(kwargs))
        for t in _tensors(out):  # an in-place operator's output is its input: it becomes that tensor's producer
            self._producer[id(t)] = len(self.calls)
            self._alive.append(t)
        self.calls.append(OperatorCall(op=str(func), kind=kind, args=encode_args([list(args), kwargs]),
                                       features=features, module=self.stack[-1] if self.stack else "(model)",
                                       inputs=inputs))
        return out


def trace_operators(model: nn.Module, input_size: int, batch_size: int = 1, dtype: torch.dtype = torch.float32,
                    name: str = "model") -> OperatorTrace:
    """Every operator of one forward pass of `model` (built on the meta device) on a (batch, 3, size, size) input."""
    model = model.eval()
    x = torch.empty(batch_size, 3, input_size, input_size, device="meta", dtype=dtype)
    recorder = OperatorRecorder(model)
    with torch.inference_mode(), recorder:
        model(x)
    return OperatorTrace(model=name, batch_size=batch_size, input_size=input_size,
                         dtype=str(dtype).replace("torch.", ""), calls=tuple(recorder.calls),
                         module_calls=recorder.module_calls)


@dataclass(frozen=True)
class OperatorTiming:
    """An operator's median time alone, with how it was reached."""

    seconds: float
    samples: int
    converged: bool
    extra: dict[str, Any] = field(default_factory=dict)


# Each operator gets a short budget: micro-benchmarks are many, and a kernel's time varies little.
# A slow operator (a large convolution at batch 8 takes a second on one core) stops after 3 timings and one
# warm-up call: what bounds a calibration is the few slowest operators.
OPERATOR_RULE = StoppingRule(ci_target=0.05, min_samples=3, time_budget_s=0.25)
OPERATOR_WARMUP = WarmupPolicy(min_iters=1, min_seconds=0.02, max_seconds=0.5)


def time_operators_interleaved(ops: list[tuple[str, Any]], device: str = "cpu", dtype: torch.dtype | None = None,
                               rule: StoppingRule = OPERATOR_RULE,
                               warmup: WarmupPolicy = OPERATOR_WARMUP) -> list[OperatorTiming | Exception]:
    """Each operator's median time with the others of the group run in between, in turn
    (`measure.latency.measure_interleaved`), as operators follow one another in a model: timed alone in a loop
    an operator keeps its code, its inputs and the library's state for it hot, and comes out faster than it
    runs inside a model (ResNet-50 at batch 1 on one core here: 14% faster in all). An operator that cannot be
    replayed comes back as its exception; the others are timed without it."""
    calls: list[Callable[[], object] | None] = []
    failures: dict[int, Exception] = {}
    with torch.inference_mode():
        for i, (op, args) in enumerate(ops):
            try:
                call = replay(op, args, device, dtype)
                call()  # fails here, alone, rather than in the middle of the group's rounds
                calls.append(call)
            except Exception as exc:  # noqa: BLE001 - the caller records the reason, the group goes on
                failures[i] = exc
                calls.append(None)
        runnable = [c for c in calls if c is not None]
        results = iter(measure_interleaved(runnable, device, rule, warmup))
    return [failures[i] if call is None else _timing(next(results)) for i, call in enumerate(calls)]


def _timing(result) -> OperatorTiming:
    return OperatorTiming(result.median_s, len(result.samples_s), result.converged)


class _Nothing(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def time_module_calls(count: int, device: str = "cpu", rule: StoppingRule = OPERATOR_RULE,
                      warmup: WarmupPolicy = OPERATOR_WARMUP) -> OperatorTiming:
    """The time of `count` nested module calls that dispatch no operator (nn.Sequential of modules returning x)."""
    chain = nn.Sequential(*[_Nothing() for _ in range(count)]).eval()
    x = torch.zeros(1, device=device)
    with torch.inference_mode():
        result = measure_latency(lambda: chain(x), 1, device, rule, warmup)
    return OperatorTiming(result.median_s, len(result.samples_s), result.converged, {"modules": count + 1})
