"""Recorded operators timed as single-operator OpenVINO models on the CPU plug-in (`dnnbench calibrate --backend
openvino`).

Each operator (`measure.operators`' recorded aten call) becomes a one-operator model through OpenVINO's PyTorch
frontend: a small torch module applies the recorded aten operator, its activations are the model's inputs and
its weights (the tensors after the first of `WEIGHTED_OPS`) constants, as in a converted network, where the
plug-in reorders weights once at compile time. The frontend covers every aten operator OpenVINO converts with
the converter real models go through, which a hand-written opset graph per kind would not; its cost (a
TorchScript trace and a conversion, about 0.2 s a call here) is paid once per group of operators: a group is
converted as one module with an output per operator (`convert_operators`) and cut into one model per operator.
An operator the frontend cannot convert, or the plug-in cannot compile, comes back as its exception.

Each model is compiled with the calibration's threads and precision (`INFERENCE_PRECISION_HINT`: f32, or bf16
where the CPU offers it), one stream and the latency hint, as `dnnbench run --backend openvino` compiles a
network, and each operator's call is a synchronous infer request on input tensors set once. A group is timed
in turn with `measure.latency`'s `measure_interleaved` and stopping rule, as eager operators are. An
operator's time is the median request less what a network would not pay per operator: the request's own cost
(`time_infer_call`: a request on a one-element model, which a network pays once per forward pass) and the
reorders the plug-in adds at a one-operator model's boundaries (to and from its blocked layouts: where the
runtime model has any, their share of the node time, from the performance counters of a second compiled copy;
counters on the timed copy would double a convolution's request time here).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .latency import WarmupPolicy, measure_interleaved, measure_latency
from .operators import OPERATOR_RULE, OPERATOR_WARMUP, WEIGHTED_OPS, OperatorTiming, decode_args, resolve_op
from .stats import StoppingRule

INFER_CALL = "infer_call"  # the kind of the probe: an infer request's own cost, paid once per forward pass
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
OV_CAPABILITY = {"fp32": "FP32", "bf16": "BF16"}
# plug-in nodes a one-operator model has at its boundaries and a network has (almost) none of per operator
BOUNDARY_NODES = frozenset({"Input", "Output", "Parameter", "Result", "Reorder"})
MIN_NET_S = 1e-8  # an operator the plug-in runs in place (a reshape) nets about nothing; a time is positive


class OperatorNotConverted(RuntimeError):
    """OpenVINO's PyTorch frontend or CPU plug-in could not turn a recorded operator into a compiled model."""


def precision_reason(precision: str) -> str | None:
    """Why OpenVINO's CPU plug-in cannot run `precision` here (None: it can)."""
    import openvino as ov

    if precision not in OV_PRECISION:
        return f"OpenVINO operators are calibrated in {', '.join(OV_PRECISION)}, not {precision}"
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if OV_CAPABILITY[precision] not in capabilities:
        return (f"this CPU offers OpenVINO {', '.join(capabilities)}; no {OV_CAPABILITY[precision]} "
                "(bf16 needs AVX512-BF16 or AMX)")
    return None


def compile_config(precision: str, threads: int) -> dict[str, Any]:
    """The CPU plug-in's settings for a calibration: those of `dnnbench run --backend openvino`."""
    return {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": threads}


@dataclass
class _Slot:
    """Where one tensor of an operator's arguments comes from: the model's input `index`, or constant `name`."""

    index: int | None = None
    name: str | None = None


class _Operators(nn.Module):
    """Several recorded operators side by side: `forward(*inputs)` applies each to its own inputs and returns
    every output, flattened; weights are buffers (constants of the converted model)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, Any, Any]] = []

    def add(self, op: str, args: Any, first_input: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Add one operator; its example inputs (numbered from `first_input`) come back."""
        positional, keywords = decode_args(args, torch.device("cpu"), torch.float32, generator)
        weighted = op.split(".")[1] in WEIGHTED_OPS
        inputs: list[torch.Tensor] = []

        def template(value: Any, top: int | None) -> Any:
            if isinstance(value, torch.Tensor):
                if weighted and top is not None and top > 0:
                    name = f"c{len(self.ops)}_{len(list(self.buffers()))}"
                    self.register_buffer(name, value.contiguous())
                    return _Slot(name=name)
                inputs.append(value.contiguous())
                return _Slot(index=first_input + len(inputs) - 1)
            if isinstance(value, list):
                return [template(v, None) for v in value]
            if isinstance(value, dict):
                return {k: template(v, None) for k, v in value.items()}
            return value

        self.ops.append((resolve_op(op), [template(v, i) for i, v in enumerate(positional)],
                         template(keywords or {}, None)))
        return inputs

    def run(self, k: int, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Operator `k` applied to its inputs among `inputs` (all the module's), its outputs flattened."""
        def fill(value: Any) -> Any:
            if isinstance(value, _Slot):
                return inputs[value.index] if value.index is not None else getattr(self, value.name)
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, dict):
                return {key: fill(v) for key, v in value.items()}
            return value

        func, positional, keywords = self.ops[k]
        return _flat(func(*fill(positional), **fill(keywords)))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for k in range(len(self.ops)) for t in self.run(k, inputs))


def _flat(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    return []


@dataclass
class ConvertedOperator:
    """One operator as an OpenVINO model, with example inputs of its recorded shapes."""

    model: Any
    inputs: list[np.ndarray]


def _convert_group(ops: Sequence[tuple[str, Any]]) -> list[ConvertedOperator]:
    """`ops` converted in one call of the frontend, then cut into one model per operator."""
    import openvino as ov

    generator = torch.Generator().manual_seed(0)
    module = _Operators().eval()
    per_op: list[tuple[int, int]] = []  # (inputs, outputs) of each operator
    examples: list[torch.Tensor] = []
    for op, args in ops:
        inputs = module.add(op, args, len(examples), generator)
        examples += inputs
        with torch.inference_mode():
            outputs = len(module.run(len(module.ops) - 1, [t.clone() for t in examples]))
        if not inputs or not outputs:
            raise OperatorNotConverted(f"{op} has {'no tensor input' if not inputs else 'no tensor output'}: "
                                       "not a model OpenVINO can run")
        per_op.append((len(inputs), outputs))
    converted = ov.convert_model(module, example_input=tuple(examples),
                                 input=[(list(t.shape), ov.Type.f32) for t in examples])
    parameters, results = converted.get_parameters(), converted.outputs
    if len(parameters) != len(examples) or len(results) != sum(n for _, n in per_op):
        raise OperatorNotConverted(f"the converted group has {len(parameters)} inputs and {len(results)} outputs "
                                   f"for {len(examples)} and {sum(n for _, n in per_op)}")
    models, at_in, at_out = [], 0, 0
    for n_in, n_out in per_op:
        models.append(ConvertedOperator(
            ov.Model(list(results[at_out:at_out + n_out]), list(parameters[at_in:at_in + n_in])),
            [t.numpy() for t in examples[at_in:at_in + n_in]]))
        at_in, at_out = at_in + n_in, at_out + n_out
    return models


def convert_operators(ops: Sequence[tuple[str, Any]]) -> list[ConvertedOperator | Exception]:
    """Each recorded operator (op name, `encode_args` form) as a one-operator OpenVINO model: converted all in
    one frontend call, or where that fails one by one, an operator that fails alone coming back as its exception."""
    try:
        return list(_convert_group(ops))
    except Exception as exc:  # noqa: BLE001 - the caller records the reason; the group's others go on
        if len(ops) > 1:  # some operator of the group failed: find which, one by one
            return [converted for op in ops for converted in convert_operators([op])]
        return [OperatorNotConverted(f"OpenVINO cannot convert {ops[0][0]}: {_reason(exc)}")]


def _reason(exc: Exception) -> str:
    """The line of an OpenVINO exception that says what failed (its first lines name C++ source files)."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if "conversion rule" in line or "Unsupported" in line or "Not Implemented" in line
               or "aten::" in line]
    return (telling or lines or [type(exc).__name__])[-1 if not telling else 0]


def _request(core: Any, converted: ConvertedOperator, config: dict[str, Any]) -> Any:
    import openvino as ov

    compiled = core.compile_model(converted.model, "CPU", config)
    request = compiled.create_infer_request()
    for i, array in enumerate(converted.inputs):
        request.set_input_tensor(i, ov.Tensor(array, shared_memory=True))
    request.infer()  # fails here, alone, rather than in the middle of the group's rounds
    return request


def has_reorders(request: Any) -> bool:
    """Whether the plug-in added layout reorders to this one-operator model (its runtime model's layer types)."""
    for op in request.get_compiled_model().get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info.keys() and info["layerType"].astype(str) == "Reorder":
            return True
    return False


def boundary_share(core: Any, converted: ConvertedOperator, config: dict[str, Any], runs: int = 3) -> float:
    """The share of a request's node time spent in BOUNDARY_NODES, from the plug-in's performance counters (the
    median of `runs` requests). Counters are read from a second compiled copy: with them on, a request takes
    up to twice as long here, so the timed copy runs without them and only the share is taken from this one."""
    request = _request(core, converted, {**config, "PERF_COUNT": True})
    shares = []
    for _ in range(runs):
        request.infer()
        nodes = [(info.node_type, info.real_time.total_seconds()) for info in request.get_profiling_info()]
        total = sum(t for _, t in nodes)
        shares.append(sum(t for kind, t in nodes if kind in BOUNDARY_NODES) / total if total > 0 else 0.0)
    return float(np.median(shares))


@dataclass(frozen=True)
class GroupTiming:
    """The timings of a group, and the seconds spent converting and compiling it (not timing)."""

    timings: list[OperatorTiming | Exception]
    setup_s: float


def time_operators_openvino(ops: Sequence[tuple[str, Any]], precision: str = "fp32", threads: int = 1,
                            infer_call_s: float = 0.0, rule: StoppingRule = OPERATOR_RULE,
                            warmup: WarmupPolicy = OPERATOR_WARMUP) -> GroupTiming:
    """Each operator's time as a one-operator OpenVINO model, the group's requests taken in turn
    (`measure_interleaved`), less `infer_call_s` and the boundary reorders' share (see the module docstring)."""
    import openvino as ov

    started = time.perf_counter()
    core = ov.Core()
    config = compile_config(precision, threads)
    requests: list[Any] = []
    failures: dict[int, Exception] = {}
    converted_ops = convert_operators(ops)
    for i, converted in enumerate(converted_ops):
        if isinstance(converted, Exception):
            failures[i] = converted
            requests.append(None)
            continue
        try:
            requests.append(_request(core, converted, config))
        except Exception as exc:  # noqa: BLE001 - compiled or run: the caller records the reason
            failures[i] = OperatorNotConverted(f"OpenVINO's CPU plug-in cannot run {ops[i][0]}: {_reason(exc)}")
            requests.append(None)
    setup_s = time.perf_counter() - started
    runnable = [r for r in requests if r is not None]
    results = iter(measure_interleaved([r.infer for r in runnable], "cpu", rule, warmup))
    timings: list[OperatorTiming | Exception] = []
    started = time.perf_counter()
    for i, request in enumerate(requests):
        if request is None:
            timings.append(failures[i])
            continue
        result = next(results)
        share = boundary_share(core, converted_ops[i], config) if has_reorders(request) else 0.0
        net = max((result.median_s - infer_call_s) * (1.0 - share), MIN_NET_S)
        timings.append(OperatorTiming(net, len(result.samples_s), result.converged,
                                      {"request_s": result.median_s, "boundary_share": share}))
    return GroupTiming(timings, setup_s + time.perf_counter() - started)


def time_infer_call(precision: str = "fp32", threads: int = 1, rule: StoppingRule = OPERATOR_RULE,
                    warmup: WarmupPolicy = OPERATOR_WARMUP) -> OperatorTiming:
    """The time of a synchronous infer request on a one-element model (a relu): what a request costs besides
    its operators, which a network pays once per forward pass and a one-operator model once per operator."""
    import openvino as ov
    import openvino.opset13 as ops

    parameter = ops.parameter([1], ov.Type.f32)
    compiled = ov.Core().compile_model(ov.Model([ops.relu(parameter)], [parameter]), "CPU",
                                       compile_config(precision, threads))
    request = compiled.create_infer_request()
    array = np.zeros(1, dtype=np.float32)
    request.set_input_tensor(ov.Tensor(array, shared_memory=True))
    result = measure_latency(request.infer, 1, "cpu", rule, warmup)
    return OperatorTiming(result.median_s, len(result.samples_s), result.converged)
