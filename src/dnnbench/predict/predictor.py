"""`dnnbench predict`: a model's latency on a calibrated machine, without running it there.

The model is traced on the meta device (`measure.operators`), each operator's time is estimated from the
machine's calibration (`predict.regressors`), and the whole forward pass is their sum plus one module-call
overhead per module called. The interval has two parts, combined in log space: the regressors' error (per
operator kind, the fitted operators' cross-validated 5-95% bounds summed, errors of one kind taken as fully
correlated: one kernel family, one bias; calibrated shapes at their measured time add none), and the
model-level error, what a sum of operators misses (the allocator, caches shared between operators) and how far
a fresh process's time moves: the 5-95% quantiles of measured / predicted over the other models measured on
the machine, where the store holds at least MIN_MEASURED_FOR_BAND of them (leave-one-out, so a model's own
measurement never sets its interval), else those of the validation on the development machine
(VALIDATION_BAND, docs/PREDICTION.md). Memory is the analytic estimate (`measure.analytic_memory`). Where the
store holds a measured time of the same model and configuration, it comes back beside the prediction.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import normalise_device
from ..errors import UsageError
from ..measure.operators import OperatorTrace
from ..store import Store
from ..zoo.spec import ModelSpec
from .fusion import openvino_fusions
from .regressors import LatencyModel, MissingOperatorKinds, OperatorEstimate, fit_latency_model, relative_error

# 5-95% quantiles of measured / predicted over the 46 paper models at batch 1 and 8 (92 models x batch sizes),
# eager fp32, 1 thread, on the development machine (2-core AMD EPYC Zen 4, idle; docs/PREDICTION.md)
VALIDATION_BAND = (0.89, 1.13)
VALIDATION_BASIS = "model-level error of the validation on the development machine (docs/PREDICTION.md)"
MIN_MEASURED_FOR_BAND = 10
BAND_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class ModelBand:
    """The model-level error as a band of measured / predicted ratios, with where it comes from."""

    low: float
    high: float
    basis: str


@dataclass(frozen=True)
class CalibrationKey:
    machine_id: str
    device: str = "cpu"
    backend: str = "eager"
    precision: str = "fp32"
    threads: int = 1

    def describe(self) -> str:
        return f"machine {self.machine_id} ({self.device}, {self.backend}, {self.precision}, {self.threads} thread(s))"


@dataclass(frozen=True)
class LayerPrediction:
    module: str
    kinds: str
    operators: int
    seconds: float


@dataclass(frozen=True)
class Prediction:
    model: str
    calibration: CalibrationKey
    batch_size: int
    input_size: int
    seconds: float
    low: float
    high: float
    operators_s: float
    overhead_s: float
    operators: int
    fitted: int  # operators whose shape was not calibrated (estimated by their kind's regressor)
    module_calls: int
    memory_bytes: int | None
    layers: tuple[LayerPrediction, ...]
    measured_s: float | None = None
    interval_basis: str = "operator regressors only"
    fused: int = 0  # operators the backend absorbs into others (OpenVINO's fusions), counted as costing nothing

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds

    @property
    def error(self) -> float | None:
        return relative_error(self.seconds, self.measured_s) if self.measured_s else None


def predict_trace(trace: OperatorTrace, model: LatencyModel, key: CalibrationKey, memory_bytes: int | None = None,
                  measured_s: float | None = None) -> Prediction:
    """The prediction for one traced forward pass. On an OpenVINO calibration the operators the CPU plug-in
    absorbs into others (`predict.fusion.openvino_fusions`) cost nothing of their own, and a forward pass pays
    one infer request instead of its module calls; eager runs every operator."""
    fusion = openvino_fusions(trace.calls) if key.backend == "openvino" else None
    own = [c for i, c in enumerate(trace.calls) if fusion is None or fusion.into[i] is None]
    missing = model.missing(Counter(c.kind for c in own))
    if missing:
        cause = (" (OpenVINO could not convert or run them, if `dnnbench calibrate --backend openvino` named them; "
                 "otherwise they were not among the calibrated models' operators)" if key.backend == "openvino"
                 else "")
        raise MissingOperatorKinds(
            f"{trace.model} uses operator kind(s) {', '.join(missing)} that the calibration of {key.describe()} has "
            f"no timings for{cause}; calibrate again with this model's operators too: dnnbench calibrate --suite "
            f"paper --models {trace.model}{' --backend openvino' if key.backend == 'openvino' else ''}")
    own_estimates = iter(model.estimate(own))
    free = OperatorEstimate(0.0, 0.0, 0.0, "fused")
    estimates = [next(own_estimates) if fusion is None or fusion.into[i] is None else free
                 for i in range(len(trace.calls))]
    layers: dict[str, list] = defaultdict(lambda: [set(), 0, 0.0])
    for call, estimate in zip(trace.calls, estimates):
        row = layers[call.module]
        row[0].add(call.kind)
        row[1] += 1
        row[2] += estimate.seconds
    overhead = model.infer_call_s if fusion is not None else trace.module_calls * model.module_call_s
    operators_s = sum(e.seconds for e in estimates)
    return Prediction(
        model=trace.model, calibration=key, batch_size=trace.batch_size, input_size=trace.input_size,
        seconds=operators_s + overhead, low=sum(e.low for e in estimates) + overhead,
        high=sum(e.high for e in estimates) + overhead, operators_s=operators_s, overhead_s=overhead,
        operators=len(estimates), fitted=sum(e.source == "fitted" for e in estimates), module_calls=trace.module_calls,
        memory_bytes=memory_bytes,
        layers=tuple(LayerPrediction(m, ",".join(sorted(k)), n, s) for m, (k, n, s) in layers.items()),
        measured_s=measured_s, fused=fusion.absorbed if fusion is not None else 0)


def with_band(prediction: Prediction, band: ModelBand) -> Prediction:
    """The prediction with the model-level band combined into its interval: on each side the regressors' and the
    band's log widths add in quadrature (independent errors)."""
    s = prediction.seconds
    regress_low = math.log(s / prediction.low) if prediction.low > 0 else math.inf
    regress_high = math.log(prediction.high / s) if math.isfinite(prediction.high) else math.inf
    band_low, band_high = -math.log(min(band.low, 1.0)), math.log(max(band.high, 1.0))
    return replace(prediction, low=s * math.exp(-math.hypot(regress_low, band_low)),
                   high=s * math.exp(math.hypot(regress_high, band_high)),
                   interval_basis=f"operator regressors + {band.basis}")


def measured_band(others: Sequence[Prediction]) -> ModelBand:
    """The 5-95% quantiles of measured / predicted over predictions that have a measured time."""
    ratios = np.log([p.measured_s / p.seconds for p in others])
    low, high = np.exp(np.quantile(ratios, BAND_QUANTILES))
    return ModelBand(float(low), float(high), f"model-level error of {len(others)} other models measured on this "
                                              "machine (5-95%)")


def add_model_bands(predictions: Sequence[Prediction]) -> list[Prediction]:
    """Each prediction with its model-level band: from the other measured predictions of the same batch size
    where there are at least MIN_MEASURED_FOR_BAND of them, else VALIDATION_BAND."""
    out = []
    for p in predictions:
        others = [q for q in predictions if q.measured_s and q.batch_size == p.batch_size and q.model != p.model]
        band = (measured_band(others) if len(others) >= MIN_MEASURED_FOR_BAND
                else ModelBand(*VALIDATION_BAND, VALIDATION_BASIS))
        out.append(with_band(p, band))
    return out


def resolve_calibration(store, machine: str | None, device: str, backend: str, precision: str,
                        threads: int | None) -> CalibrationKey:
    """The stored calibration meant: `machine` is an id, an id's prefix or a hostname (None: this machine, or the
    only calibrated one); `threads` None: the only thread count calibrated."""
    device = normalise_device(device)  # stored as cells spell it: `cuda` is `cuda:0`
    stored = store.calibrations()
    if not stored:
        raise UsageError(f"the store {store.path} holds no calibration; run `dnnbench calibrate` first")
    machines = store.machines()
    if machine is None:
        from ..env import collect_machine

        here = collect_machine().machine_id
        ids = {c["machine_id"] for c in stored}
        machine_ids = [here] if here in ids else sorted(ids) if len(ids) == 1 else []
        if not machine_ids:
            raise UsageError(f"this machine has no calibration in {store.path}; name one with --machine "
                             f"({', '.join(sorted(ids))}) or run `dnnbench calibrate`")
    else:
        machine_ids = [m for m in machines if m.startswith(machine)
                       or str(machines[m]["fingerprint"].get("hostname", "")) == machine]
        if len(machine_ids) != 1:
            raise UsageError(f"--machine {machine} names {len(machine_ids)} machines of {store.path}; "
                             f"machines: {', '.join(sorted(machines))}")
    candidates = [c for c in stored if c["machine_id"] == machine_ids[0] and c["device"] == device
                  and c["backend"] == backend and c["precision"] == precision
                  and (threads is None or c["threads"] == threads)]
    if len(candidates) != 1:
        have = "; ".join(f"{c['device']} {c['backend']} {c['precision']} {c['threads']} thread(s)"
                         for c in stored if c["machine_id"] == machine_ids[0]) or "none"
        raise UsageError(f"no single calibration of machine {machine_ids[0]} for {device} {backend} {precision}"
                         f"{'' if threads is None else f' {threads} thread(s)'} (calibrated: {have}); run "
                         "`dnnbench calibrate` with these settings or give --threads")
    c = candidates[0]
    return CalibrationKey(c["machine_id"], c["device"], c["backend"], c["precision"], int(c["threads"]))


def fit_calibration(store: Store, key: CalibrationKey) -> LatencyModel:
    """The regressors fitted on the store's calibration of `key` (a few seconds to tens of seconds: fit once)."""
    rows = store.calibration(key.machine_id, key.device, key.backend, key.precision, key.threads)
    if not rows:
        raise UsageError(f"the store {store.path} holds no calibration of {key.describe()}")
    return fit_latency_model(rows)


class CalibratedPredictor:
    """Predictions on one fitted calibration: a model is built on the meta device, traced at the batch and input
    size asked for, and its analytic memory estimated. `keep_models`: keep each built model for the next batch
    size (a report predicts a model at several); a screen of a whole zoo keeps none."""

    def __init__(self, key: CalibrationKey, latency_model: LatencyModel, keep_models: bool = True) -> None:
        self.key = key
        self.latency_model = latency_model
        self.keep_models = keep_models
        self._nets: dict[str, Any] = {}

    def predict(self, model: str | ModelSpec, batch_size: int, input_size: int | None = None,
                measured_s: float | None = None) -> Prediction:
        from ..devices import torch_dtype
        from ..measure.analytic_memory import estimate_inference_memory
        from ..measure.operators import trace_operators
        from ..zoo import build_model, get

        spec = model if isinstance(model, ModelSpec) else get(model)
        dtype = torch_dtype(self.key.precision)
        net = self._nets.get(spec.id) or build_model(spec, "meta").to(dtype)
        if self.keep_models:
            self._nets[spec.id] = net
        size = input_size or spec.input_size
        trace = trace_operators(net, size, batch_size, dtype, spec.id)
        memory = estimate_inference_memory(net, (batch_size, 3, size, size), dtype).total_peak_bytes
        return predict_trace(trace, self.latency_model, self.key, memory, measured_s)


def measured_cells(store: Store, key: CalibrationKey, models: Sequence[str] | None = None
                   ) -> dict[tuple[str, int, int | None], tuple[float, bool]]:
    """The ok time cells measured in the calibration's configuration on its machine (plain backend: no backend
    options), by (model, batch size, input size): (median seconds of one batch, timed under contention)."""
    found: dict[tuple[str, int, int | None], tuple[float, bool]] = {}
    records = store.results(machine_id=key.machine_id, metric="time", **({"models": list(models)} if models else {}))
    for record in sorted(records, key=lambda r: r.finished_at):  # the latest measurement of a cell wins
        c = record.config
        seconds = getattr(record.values, "latency_s", None) if record.status == "ok" else None
        # threads are a CPU setting: a GPU cell's is None whatever the calibration's worker used
        if (seconds and c.get("device", "cpu") == key.device and c.get("backend", "eager") == key.backend
                and c.get("dtype", "fp32") == key.precision
                and (key.device != "cpu" or int(c.get("threads") or 0) == key.threads)
                and not c.get("backend_options")):
            size = c.get("input_size")
            found[(record.model, int(c.get("batch_size") or 1), int(size) if size else None)] = (
                float(seconds), bool(getattr(record.values, "contended", False)))
    return found


def predict(models: Sequence[str], db: str | Path, machine: str | None = None, device: str = "cpu",
            backend: str = "eager", precision: str = "fp32", threads: int | None = None, batch_size: int = 1,
            input_size: int | None = None) -> list[Prediction]:
    """Predict each model's latency from a stored calibration (see the module docstring)."""
    from ..zoo import resolve_models

    if batch_size < 1 or (input_size is not None and input_size < 1):
        raise UsageError(f"--batch-size and --input-size must be positive, not {batch_size} and {input_size}")
    specs = resolve_models(tuple(models))
    with Store(db, create=False) as store:
        key = resolve_calibration(store, machine, device, backend, precision, threads)
        predictor = CalibratedPredictor(key, fit_calibration(store, key))
        measured = measured_cells(store, key, [spec.id for spec in specs])
        predictions = []
        for spec in specs:
            cell = measured.get((spec.id, batch_size, input_size or spec.input_size))
            predictions.append(predictor.predict(spec.id, batch_size, input_size, cell[0] if cell else None))
    return add_model_bands(predictions)
