"""Calibration and prediction: a network of known layers on a timer whose cost per operator kind is known is
predicted exactly; unknown operator kinds are named, never guessed; a timm model outside the paper suite is
predicted offline. The timer is injected through `calibrate(timer=...)`: no process times anything here."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dnnbench.measure.operators import FEATURES, MODULE_CALL, OperatorCall, trace_operators
from dnnbench.predict import MissingOperatorKinds, predict
from dnnbench.predict.predictor import VALIDATION_BAND, Prediction, add_model_bands
from dnnbench.run.calibrate import (
    FLOOR_PER_KIND,
    CalibrationItem,
    Population,
    WorkerTimer,
    calibrate,
    calibration_config,
    module_call_items,
    sample_items,
)
from dnnbench.store import Store
from dnnbench.zoo import build_model, get, list_models

KNOWN = "python:dnnbench_prediction_models:known_layers"
UNUSUAL = "python:dnnbench_prediction_models:with_unusual_kinds"
KNOWN_KINDS = Counter({"conv2d": 1, "batch_norm": 1, "relu": 2, "max_pool2d": 1, "conv2d:pointwise": 1,
                       "adaptive_avg_pool2d": 1, "flatten": 1, "linear": 1})
COST_S = {"conv2d": 3e-3, "conv2d:pointwise": 1e-3, "batch_norm": 4e-4, "relu": 1e-4, "max_pool2d": 2e-4,
          "adaptive_avg_pool2d": 5e-5, "flatten": 1e-6, "linear": 2e-4}
MODULE_CALL_S = 2e-6  # per module call; the probes also pay a fixed 10 us
MACHINE = "feedfacecafe0001"
SRC = Path(__file__).resolve().parent.parent / "src"


def known_cost_timer(items, config):
    """Each operator costs its kind's COST_S whatever its shape; a chain of n modules costs 10 us + n x 2 us."""
    return [1e-5 + MODULE_CALL_S * item.features["modules"] if item.kind == MODULE_CALL else COST_S[item.kind]
            for item in items]


def calibrated_store(tmp_path: Path, models: tuple[str, ...], timer=known_cost_timer) -> Path:
    db = tmp_path / "store.sqlite"
    calibrate(db, calibration_config("quick", models=models), timer=timer, machine_id=MACHINE,
              fingerprint={"hostname": "calibrated-only"})
    return db


def test_known_layers_on_a_known_timer_are_predicted_exactly(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    net = build_model(get(KNOWN), "meta")
    native = get(KNOWN).input_size
    # batches 1 and 8 at the native size were calibrated shape by shape; others go through the fitted regressors
    for batch, size in ((1, native), (8, native), (2, 32)):
        trace = trace_operators(net, size, batch)
        assert trace.kinds() == KNOWN_KINDS
        assert trace.module_calls == 10  # the Sequential and its nine layers
        expected = sum(COST_S[k] * n for k, n in KNOWN_KINDS.items()) + 10 * MODULE_CALL_S
        [p] = predict([KNOWN], db, machine=MACHINE, batch_size=batch, input_size=size)
        assert p.seconds == pytest.approx(expected, rel=1e-9)
        if size == native:  # every operator looked up: only the model-level error (no measured model: the validation's)
            assert p.low == pytest.approx(expected * VALIDATION_BAND[0], rel=1e-9)
            assert p.high == pytest.approx(expected * VALIDATION_BAND[1], rel=1e-9)
            assert "validation on the development machine" in p.interval_basis
        else:  # two timings per kind cannot be cross-validated: the interval says the error is unknown
            assert p.low <= p.seconds and p.high == math.inf
        assert p.fitted == (0 if size == native else 9)
        assert p.images_per_s == pytest.approx(batch / expected)
        assert sum(layer.seconds for layer in p.layers) == pytest.approx(expected - 10 * MODULE_CALL_S)
        assert p.memory_bytes and p.memory_bytes > 0


def test_unknown_operator_kinds_are_named_not_guessed(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    with pytest.raises(MissingOperatorKinds, match=r"operator kind\(s\) gelu, hardswish that the calibration"):
        predict([UNUSUAL], db, machine=MACHINE, input_size=32)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}
    cli = subprocess.run([sys.executable, "-m", "dnnbench", "predict", UNUSUAL, "--db", str(db), "--machine",
                          MACHINE, "--input-size", "32"], capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 2, cli.stderr
    assert "gelu, hardswish" in cli.stderr and "dnnbench calibrate --suite paper --models" in cli.stderr


def test_a_timm_model_outside_the_paper_suite_is_predicted_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def flops_timer(items, config):  # 1 us per operator plus 1 ns per FLOP: shape-dependent, like a real device
        return [1e-5 + MODULE_CALL_S * i.features["modules"] if i.kind == MODULE_CALL
                else 1e-6 + 1e-9 * i.features["flops"] for i in items]

    db = calibrated_store(tmp_path, ("resnet18", "densenet121"), flops_timer)
    assert "timm:resnet10t" not in list_models(suite="paper")
    [p] = predict(["timm:resnet10t"], db, machine="calibrated-only", batch_size=4)
    trace = trace_operators(build_model(get("timm:resnet10t"), "meta"), p.input_size, 4)
    exact = sum(1e-6 + 1e-9 * c.features["flops"] for c in trace.calls) + trace.module_calls * MODULE_CALL_S
    assert p.fitted > 0 and p.operators == len(trace.calls)
    assert p.seconds == pytest.approx(exact, rel=0.5)  # fitted, not looked up: close, not exact
    assert p.low <= p.seconds <= p.high


def test_the_sample_covers_every_kind_with_its_extremes_first():
    net = build_model(get(KNOWN), "meta")
    population = Population()
    for batch in (1, 8):
        population.add(trace_operators(net, 32, batch).calls)
    items = sample_items(population, total=9)
    kinds = [i.kind for i in items]
    assert set(kinds) == set(KNOWN_KINDS)
    assert kinds[:len(KNOWN_KINDS)] == sorted(KNOWN_KINDS)  # round-robin: one of each kind before any second
    assert len({i.signature for i in items}) == len(items)


def test_a_calibration_is_replaced_whole_and_old_stores_read_none(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    with Store(db) as store:
        [summary] = store.calibrations()
        assert (summary["machine_id"], summary["backend"], summary["threads"]) == (MACHINE, "eager", 1)
        assert summary["kinds"] == len(KNOWN_KINDS) + 1  # and the module-call probes
        store.put_calibration(MACHINE, "cpu", "eager", "fp32", 1, [
            {"kind": "relu", "op": "aten.relu.default", "signature": "s", "features": {}, "seconds": 1e-6}])
        assert [r["kind"] for r in store.calibration(MACHINE, "cpu", "eager", "fp32", 1)] == ["relu"]
        assert store.calibration(MACHINE, "cpu", "eager", "fp32", 2) == []
    old_store = tmp_path / "store-v0.sqlite"  # a copy: opening a store for writing adds the newer tables
    shutil.copyfile(Path(__file__).parent / "fixtures" / "store-v0.sqlite", old_store)
    with Store(old_store, create=False) as old:
        assert old.calibrations() == []


def _call(kind: str, flops: float, name: str) -> OperatorCall:
    features = {f: 0.0 for f in FEATURES}
    features.update(flops=flops, in_bytes=0.0, out_bytes=0.0)
    return OperatorCall(op=f"aten.{kind}.default", kind=kind, args=[[name], {}], features=features, module="m")


def test_after_a_floor_per_kind_the_sample_follows_each_models_time():
    """Past FLOOR_PER_KIND shapes per kind, shapes come by the share of each model's time they cover per second
    of timing: a shape that is most of a small model outranks one that is a sliver of a large model, although
    the large model spends more absolute time in it."""
    population = Population()
    filler = [_call("conv2d", 1e3 * (k + 1), f"filler{k}") for k in range(5 * FLOOR_PER_KIND)]  # the floor's pick
    small_main, large_sliver = _call("conv2d", 2e7, "small"), _call("conv2d", 4e7, "sliver")
    population.add(filler + [small_main])  # the small model: most of its time in one shape
    population.add(filler + [large_sliver, _call("conv2d", 4e10, "huge")])  # a thousandth of its time
    items = sample_items(population, total=len(population.calls))
    signatures = [i.signature for i in items]
    floor = signatures[:FLOOR_PER_KIND]
    assert population.calls[floor[0]].features["flops"] == 1e3 and "huge" in floor[1]  # the extremes first
    rest = signatures[FLOOR_PER_KIND:]
    assert rest.index(small_main.signature) < rest.index(large_sliver.signature)
    assert sorted(signatures) == sorted(population.calls)


def test_the_calibration_worker_times_real_operators_in_groups(tmp_path):
    """The real worker process: operators of a real model timed in interleaved groups, a module-call probe
    alone, and an operator that cannot be replayed reported without ending its group."""
    net = build_model(get(KNOWN), "meta")
    population = Population()
    population.add(trace_operators(net, 32, 1).calls)
    items = module_call_items()[:1] + sample_items(population, total=6)
    broken = CalibrationItem("relu", "aten.relu.default", [[{"opaque": "Widget"}], {}], "broken", {})
    items.append(broken)
    config = calibration_config("quick", seconds=60.0)
    times = WorkerTimer(group_size=3)(items, config)
    assert all(t is not None and 0 < t < 1.0 for t in times[:-1])
    assert math.isnan(times[-1])  # could not be replayed (None would mean: never reached before the budget)


def test_the_model_level_band_comes_from_the_other_measured_models_never_the_models_own():
    """With enough measured models of a batch size, each prediction's interval takes the 5-95% quantiles of
    measured / predicted over the OTHER models (leave-one-out); below that count, the validation's band."""
    def prediction(name, measured, batch=1):
        return Prediction(model=name, calibration=None, batch_size=batch, input_size=224, seconds=1.0, low=1.0,
                          high=1.0, operators_s=1.0, overhead_s=0.0, operators=1, fitted=0, module_calls=1,
                          memory_bytes=None, layers=(), measured_s=measured)

    ratios = [0.9 + 0.01 * k for k in range(20)]  # 0.90 ... 1.09
    outlier = prediction("outlier", 3.0)  # its own error must not widen its own interval
    banded = add_model_bands([prediction(f"m{k}", r) for k, r in enumerate(ratios)]
                             + [outlier, prediction("unmeasured", None), prediction("other-batch", None, batch=8)])
    by_name = {p.model: p for p in banded}
    expected_low, expected_high = np.exp(np.quantile(np.log(ratios), [0.05, 0.95]))  # log space
    assert by_name["outlier"].low == pytest.approx(expected_low) and by_name["outlier"].high == pytest.approx(expected_high)
    assert "20 other models measured on this machine" in by_name["outlier"].interval_basis
    assert by_name["unmeasured"].high > by_name["outlier"].high  # the outlier is among its 21 others
    assert by_name["other-batch"].low == pytest.approx(VALIDATION_BAND[0])  # nothing measured at batch 8


def test_the_summary_tells_operators_that_failed_from_those_the_budget_left(tmp_path):
    def timer(items, config):  # the first operator cannot be replayed, the second was never reached
        return [math.nan, None] + known_cost_timer(items[2:], config)

    summary = calibrate(tmp_path / "store.sqlite", calibration_config("quick", models=(KNOWN,)), timer=timer,
                        machine_id=MACHINE, fingerprint={})
    assert (summary.failed, summary.unreached, summary.timed) == (1, 1, summary.sampled - 2)


def test_a_gpu_calibration_is_found_as_cuda_and_meets_the_gpu_cells_whatever_their_threads(tmp_path):
    """Seen on an H200: `predict --device cuda` missed the calibration stored as cuda:0, and GPU cells (threads
    None) were never put beside a calibration made with its worker's one thread."""
    import time

    from dnnbench.predict.predictor import measured_cells, resolve_calibration
    from dnnbench.store import ResultRecord
    from dnnbench.store.values import decode

    db = tmp_path / "store.sqlite"
    calibrate(db, calibration_config("quick", models=(KNOWN,), device="cuda", precision="fp16"), timer=known_cost_timer,
              machine_id=MACHINE, fingerprint={"hostname": "gpu-box"})
    size = get(KNOWN).input_size
    with Store(db) as store:
        key = resolve_calibration(store, MACHINE, "cuda", "eager", "fp16", None)
        assert (key.device, key.precision) == ("cuda:0", "fp16")
        config = {"device": "cuda:0", "dtype": "fp16", "batch_size": 1, "input_size": size, "threads": None,
                  "backend": "eager"}
        store.put_result(ResultRecord(model=get(KNOWN).id, metric="time", config=config, status="ok",
                                      values=decode("time", {"median_s": 0.002, "stats": {"median": 0.002}}),
                                      error=None, started_at=time.time(), finished_at=time.time(), machine_id=MACHINE))
        assert measured_cells(store, key) == {(get(KNOWN).id, 1, size): (0.002, False)}
