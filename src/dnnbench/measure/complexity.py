"""Parameters and operations of a model, counted without allocating its weights.

Operations are counted by PyTorch's dispatch-level counter (torch.utils.flop_counter.FlopCounterMode)
on the meta device: every aten operator the forward pass dispatches is seen, whatever Python code
called it, and shapes alone decide the count. PyTorch reports FLOPs = 2 x multiply-accumulates for
convolutions and matrix products; dnnbench reports MACs (= FLOPs / 2) as the primary figure.

Counting modes:
- ``standard``:   MACs of convolutions, linear layers and matrix products (including attention).
- ``conv-only``:  MACs of convolutions only (``paper`` is an old name for it, mapped with a warning:
                  it never was the 2018 companion code's count).
- ``extended``:   ``standard`` plus element operations of normalisation, activation, pooling and
                  element-wise arithmetic, reported separately as ``element_ops`` (one op per element
                  and per pooled input, two per element for inference batch norm: scale and shift).
- ``bianco2018``: the count behind the 2018 study's operation figures (Bianco et al., IEEE Access 2018;
                  companion code CeLuigi/models-comparison.pytorch, ``pretrainedmodels/utils.py``,
                  ``conv_flops_counter_hook`` before commit caaf76b of 18 Sep 2018): forward hooks on
                  ``nn.Conv2d`` modules only, ``2 x k_h x k_w x C_in x C_out`` FLOPs per output position
                  with ``groups`` ignored, plus one per output element for a bias, and the total halved
                  only for models named resnet*. Kept to compare with the paper, not to be believed: it
                  inflates depthwise and grouped convolutions by their group count (MobileNetV2 11.1 G
                  against 0.30 G MACs in ``conv-only``) and mixes FLOPs with MACs across families.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import InputSizeError
from ..zoo import ModelSpec, build_model, get

aten = torch.ops.aten
MODES = ("standard", "extended", "conv-only", "bianco2018")
# Old mode names and what they count now. `paper` promised the 2018 companion code's count but counted
# convolution MACs with groups respected; it keeps its numbers under the name that says so.
MODE_ALIASES = {"paper": "conv-only"}
BIANCO2018 = "bianco2018"
COUNTER = "torch.utils.flop_counter.FlopCounterMode (dispatch level, meta device)"
BIANCO2018_COUNTER = "forward hooks on nn.Conv2d, the 2018 companion code's rule"

CONV_OPS = {aten.convolution, aten._convolution, aten.cudnn_convolution, aten.convolution_overrideable,
            aten._slow_conv2d_forward}


def _elements(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


def _per_output(ops: float):
    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return int(ops * _elements(out_shape))
    return formula


def _per_input(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return _elements(args[0])


def _pool(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
    kernel = list(kernel) * 2 if len(kernel) == 1 else list(kernel)
    return _elements(out_shape) * math.prod(kernel)


def _first_output(formula):
    """Formulas for ops whose output is a tuple (e.g. max pool with indices) see only the values."""
    def wrapped(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return formula(*args, out_shape=out_shape[0], **kwargs)
    return wrapped


# Element operations counted in `extended` mode. They are not multiply-accumulates: dnnbench keeps
# them apart and adds them to FLOPs only (FLOPs = 2 x MACs + element ops).
ELEMENT_OPS: dict[Any, Any] = {
    aten.batch_norm: _per_output(2), aten._native_batch_norm_legit_no_training: _first_output(_per_output(2)),
    aten.layer_norm: _per_output(5), aten.group_norm: _per_output(5), aten.instance_norm: _per_output(5),
    aten.max_pool2d: _pool, aten.max_pool2d_with_indices: _first_output(_pool), aten.avg_pool2d: _pool,
    aten.adaptive_avg_pool2d: _per_input, aten._adaptive_avg_pool2d: _per_input,
    aten.adaptive_max_pool2d: _per_input, aten.mean: _per_input, aten.softmax: _per_output(3),
    aten._softmax: _per_output(3),
}
for _op in ("relu", "relu_", "hardtanh", "hardtanh_", "silu", "silu_", "gelu", "gelu_", "sigmoid", "sigmoid_",
            "tanh", "tanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "leaky_relu_",
            "elu", "elu_", "mish", "mish_", "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"):
    ELEMENT_OPS[getattr(aten, _op)] = _per_output(1)


@dataclass(frozen=True)
class LayerComplexity:
    """One module's own share: operations dispatched while it ran and not inside a child module."""

    path: str
    type: str
    params: int  # the module's own parameters, not its children's
    macs: int
    element_ops: int
    output_shape: tuple[int, ...] | None
    calls: int


@dataclass(frozen=True)
class ComplexityResult:
    """Totals are for the whole batch; `macs_per_image` divides by the batch size."""

    model: str
    input_size: int
    batch_size: int
    mode: str
    dtype: str
    params: int
    trainable_params: int
    param_bytes: int
    buffers: int
    buffer_bytes: int
    macs: int
    conv_macs: int
    matmul_macs: int
    element_ops: int
    activations: int  # elements output by convolution and linear layers (the usual activation count)
    output_elements: int  # elements output by all leaf modules, in the order they ran
    output_shape: tuple[int, ...]
    layers: tuple[LayerComplexity, ...]
    counter: str = COUNTER
    halved: bool = False  # bianco2018 mode on a resnet*: FLOPs halved, as the companion code reported them

    @property
    def flops(self) -> int | float:
        total = 2 * self.macs + self.element_ops
        return total / 2 if self.halved else total

    @property
    def macs_per_image(self) -> float:
        return self.macs / self.batch_size

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["flops"] = self.flops
        if not layers:
            data.pop("layers")
        return data


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


class _LayerTracker:
    """Forward hooks that split the counter's running totals into each module's own share."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode):
        self.counter = counter
        self.names = {m: name or "(model)" for name, m in model.named_modules()}
        self.stack: list[tuple[nn.Module, Counter, Counter]] = []
        self.own: dict[nn.Module, Counter] = defaultdict(Counter)
        self.calls: Counter = Counter()
        self.shapes: dict[nn.Module, tuple[int, ...] | None] = {}
        self.leaf_output_elements = 0
        self.handles = []
        for module in self.names:
            self.handles.append(module.register_forward_pre_hook(self._pre))
            self.handles.append(module.register_forward_hook(self._post))

    def _totals(self) -> Counter:
        return Counter(self.counter.flop_counts["Global"])

    def _pre(self, module: nn.Module, args: Any) -> None:
        self.stack.append((module, self._totals(), Counter()))

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        popped, before, children = self.stack.pop()
        assert popped is module, "forward hooks out of order"
        inclusive = self._totals() - before
        self.own[module] += inclusive - children
        if self.stack:
            self.stack[-1][2].update(inclusive)
        self.calls[module] += 1
        tensor = _first_tensor(output)
        self.shapes[module] = tuple(tensor.shape) if tensor is not None else None
        if tensor is not None and not any(True for _ in module.children()):
            self.leaf_output_elements += tensor.numel()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _split(counts: Counter) -> tuple[int, int, int]:
    """(conv MACs, matmul MACs, element ops) from per-op counts (PyTorch counts 2 FLOPs per MAC)."""
    conv = sum(v for op, v in counts.items() if op in CONV_OPS) // 2
    element = sum(v for op, v in counts.items() if op in ELEMENT_OPS)
    matmul = (sum(counts.values()) - element) // 2 - conv
    return conv, matmul, element


def _mode_macs(mode: str, conv: int, matmul: int) -> int:
    return conv if mode == "conv-only" else conv + matmul


def resolve_mode(mode: str) -> tuple[str, str | None]:
    """The counting mode `mode` names, and a one-line note when it is an old alias (else None)."""
    if mode in MODES:
        return mode, None
    if mode in MODE_ALIASES:
        new = MODE_ALIASES[mode]
        return new, (f"--mode {mode} is now called {new!r} (convolution MACs, groups respected); "
                     f"the 2018 companion code's count is --mode {BIANCO2018}")
    raise ValueError(f"unknown counting mode {mode!r}; modes: {', '.join(MODES)}")


class _Bianco2018Hooks:
    """The 2018 companion code's convolution count, module by module (see the module docstring).

    Per nn.Conv2d call: FLOPs = 2 x k_h x k_w x C_in x C_out x positions (groups ignored), kept here as
    MACs = k_h x k_w x C_in x C_out x positions, and bias additions = C_out x positions, so that
    FLOPs = 2 x MACs + bias additions, the companion code's figure before its resnet halving.
    """

    def __init__(self, model: nn.Module):
        self.macs: Counter = Counter()
        self.bias_adds: Counter = Counter()
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.Conv2d)]

    def _hook(self, module: nn.Conv2d, args: Any, output: torch.Tensor) -> None:
        positions = output.shape[0] * output.shape[2] * output.shape[3]
        k_h, k_w = module.kernel_size
        self.macs[module] += k_h * k_w * module.in_channels * module.out_channels * positions
        if module.bias is not None:
            self.bias_adds[module] += module.out_channels * positions

    def total_macs(self) -> int:
        return sum(self.macs.values())

    def total_bias_adds(self) -> int:
        return sum(self.bias_adds.values())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def bianco2018_halves(name: str) -> bool:
    """Whether the companion code's figure for `name` was halved (models named resnet* only)."""
    return name.rsplit(":", 1)[-1].lower().startswith("resnet")


def _probe(model: nn.Module, size: int, batch: int, device: str) -> bool:
    try:
        with torch.inference_mode():
            model(torch.empty(batch, 3, size, size, device=device))
        return True
    except (RuntimeError, ValueError, AssertionError):
        return False


def _smallest_working_size(model: nn.Module, failed: int, native: int, device: str) -> int | None:
    """Binary search between a failing size and the native one (which must work)."""
    if not _probe(model, native, 1, device):
        return None
    low, high = failed, native  # low fails, high works
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _probe(model, mid, 1, device) else (mid, high)
    return high


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters that require no gradient while the counter runs, then as they were. The counter's module
    tracker (torch.utils.module_tracker) hooks autograd on every module input that requires a gradient, and
    fails ("'NoneType' object has no attribute 'next_functions'") on a view of a parameter taken under
    inference mode, e.g. the learned query of an attention-pool head (timm's MAP heads); counting needs no
    autograd at all."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def count_parameters(model: nn.Module, dtype: torch.dtype | None = None) -> tuple[int, int, int, int, int]:
    """(params, trainable params, param bytes, buffer elements, buffer bytes); shared tensors count once.

    Bytes are at `dtype` when given (the model converted to it), else at each tensor's own dtype.
    """
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers()}.values())

    def nbytes(t: torch.Tensor) -> int:
        size = torch.empty((), dtype=dtype).element_size() if dtype is not None and t.is_floating_point() else t.element_size()
        return t.numel() * size

    return (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
            sum(nbytes(p) for p in params), sum(b.numel() for b in buffers), sum(nbytes(b) for b in buffers))


def count_model(model: nn.Module, input_size: int, batch_size: int = 1, mode: str = "standard",
                dtype: torch.dtype = torch.float32, name: str = "model", native_size: int | None = None
                ) -> ComplexityResult:
    """Count `model` (on any device; meta allocates nothing) on a (batch, 3, size, size) input."""
    mode, note = resolve_mode(mode)
    if note:
        warnings.warn(note, FutureWarning, stacklevel=2)
    if batch_size < 1 or input_size < 1:
        raise InputSizeError(f"batch size and input size must be positive, not {batch_size} and {input_size}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model = model.eval()
    x = torch.empty(batch_size, 3, input_size, input_size, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False, custom_mapping=ELEMENT_OPS if mode == "extended" else {})
    tracker = _LayerTracker(model, counter)
    bianco = _Bianco2018Hooks(model) if mode == BIANCO2018 else None
    try:
        with _frozen(model), torch.inference_mode(), counter:
            output = model(x)
    except (RuntimeError, ValueError, AssertionError) as exc:
        too_small = native_size and input_size < native_size
        smallest = _smallest_working_size(model, input_size, native_size, device) if too_small else None
        hint = f"; the smallest input size that works is {smallest}" if smallest else ""
        raise InputSizeError(f"{name} cannot run on a {input_size}x{input_size} input{hint} "
                             f"(PyTorch said: {str(exc).splitlines()[0]})") from None
    finally:
        tracker.remove()
        if bianco:
            bianco.remove()
    output = _first_tensor(output)
    conv, matmul, element = _split(Counter(counter.flop_counts["Global"]))
    layers = []
    activations = 0
    for module, path in tracker.names.items():
        own = tracker.own.get(module, Counter())
        l_conv, l_matmul, l_element = _split(own)
        row_macs, row_element = _mode_macs(mode, l_conv, l_matmul), l_element if mode == "extended" else 0
        if bianco:
            row_macs, row_element = bianco.macs[module], bianco.bias_adds[module]
        own_params = sum(p.numel() for p in module.parameters(recurse=False))
        if tracker.calls[module] and (own_params or l_conv or l_matmul or l_element or row_macs):
            layers.append(LayerComplexity(path, type(module).__name__, own_params, row_macs, row_element,
                                          tracker.shapes.get(module), tracker.calls[module]))
            if l_conv or l_matmul:
                activations += _elements(tracker.shapes.get(module)) * tracker.calls[module]
    params, trainable, param_bytes, buffers, buffer_bytes = count_parameters(model, dtype)
    macs = bianco.total_macs() if bianco else _mode_macs(mode, conv, matmul)
    element_ops = bianco.total_bias_adds() if bianco else element if mode == "extended" else 0
    return ComplexityResult(
        model=name, input_size=input_size, batch_size=batch_size, mode=mode, dtype=str(dtype).replace("torch.", ""),
        params=params, trainable_params=trainable, param_bytes=param_bytes, buffers=buffers, buffer_bytes=buffer_bytes,
        macs=macs, conv_macs=conv, matmul_macs=matmul, element_ops=element_ops, activations=activations,
        output_elements=tracker.leaf_output_elements, output_shape=tuple(output.shape) if output is not None else (),
        layers=tuple(layers), counter=BIANCO2018_COUNTER if bianco else COUNTER,
        halved=bool(bianco) and bianco2018_halves(name),
    )


def complexity(model: str | ModelSpec, input_size: int | None = None, batch_size: int = 1, mode: str = "standard",
               dtype: torch.dtype = torch.float32) -> ComplexityResult:
    """Parameters and MACs of a zoo model, built on the meta device (no weights allocated).

    >>> complexity("resnet50").macs  # doctest: +SKIP
    4089184256
    """
    spec = get(model) if isinstance(model, str) else model
    net = build_model(spec, "meta")
    if dtype != torch.float32:
        net = net.to(dtype)
    return count_model(net, input_size or spec.input_size, batch_size, mode, dtype, spec.id, spec.input_size)
