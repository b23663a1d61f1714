"""Calibration and prediction for OpenVINO's CPU plug-in: the fusion pass absorbs exactly what the plug-in fuses
(and nothing in eager), a known timer is predicted exactly net of the fusions, a tiny real OpenVINO calibration
stores rows and predicts a small network, and a kind OpenVINO cannot convert is named, never guessed."""

from __future__ import annotations

import math

import pytest

from dnnbench.errors import UsageError
from dnnbench.measure.openvino_operators import INFER_CALL
from dnnbench.measure.operators import MODULE_CALL, trace_operators
from dnnbench.predict import MissingOperatorKinds, predict
from dnnbench.predict.fusion import openvino_fusions
from dnnbench.run.calibrate import WorkerTimer, calibrate, calibration_config
from dnnbench.zoo import build_model, get

RESIDUAL = "python:dnnbench_prediction_models:residual"
DIGAMMA = "python:dnnbench_prediction_models:with_digamma"
MACHINE = "feedfacecafe0002"
# (kind, rule, index of the operator it is absorbed into; None: runs on its own, -1: in place)
RESIDUAL_RULES = [
    ("conv2d", "", None), ("batch_norm", "fold", 0), ("relu", "activation", 0),  # stem
    ("conv2d", "", None), ("batch_norm", "fold", 3), ("relu", "activation", 3),
    ("conv2d", "", None), ("batch_norm", "fold", 6),
    ("add", "sum", 6), ("relu", "activation", 6),  # the residual add is conv2's sum post-op, its relu follows
    ("conv2d:pointwise", "", None),  # read twice (sigmoid and mul): nothing fuses into it
    ("sigmoid", "", None), ("mul", "eltwise", 11),
    ("adaptive_avg_pool2d", "", None), ("flatten", "in place", -1), ("linear", "", None),
]
COST_S = {"conv2d": 3e-3, "conv2d:pointwise": 1e-3, "batch_norm": 4e-4, "relu": 1e-4, "add": 2e-4, "sigmoid": 1e-4,
          "mul": 1e-4, "adaptive_avg_pool2d": 5e-5, "flatten": 1e-6, "linear": 2e-4}
INFER_CALL_S = 7e-6
MODULE_CALL_S = 2e-6


def known_cost_timer(items, config):
    """Each operator costs its kind's COST_S; an infer request 7 us; a chain of n modules 10 us + n x 2 us."""
    return [INFER_CALL_S if item.kind == INFER_CALL else 1e-5 + MODULE_CALL_S * item.features["modules"]
            if item.kind == MODULE_CALL else COST_S[item.kind] for item in items]


def residual_trace(batch: int = 1):
    return trace_operators(build_model(get(RESIDUAL), "meta"), get(RESIDUAL).input_size, batch)


def test_the_fusion_pass_absorbs_by_data_dependence_exactly_what_the_plugin_fuses():
    trace = residual_trace()
    fusion = openvino_fusions(trace.calls)
    assert [(c.kind, rule, into) for c, rule, into in zip(trace.calls, fusion.rules, fusion.into)] == RESIDUAL_RULES
    assert fusion.absorbed == 9


@pytest.mark.parametrize("backend", ["eager", "openvino"])
def test_a_known_timer_is_predicted_exactly_net_of_the_backends_fusions(tmp_path, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    db = tmp_path / "store.sqlite"
    calibrate(db, calibration_config("quick", models=(RESIDUAL,), backend=backend, batch_sizes=(1,)),
              timer=known_cost_timer, machine_id=MACHINE, fingerprint={"hostname": "calibrated-only"})
    trace = residual_trace()
    [p] = predict([RESIDUAL], db, machine=MACHINE, backend=backend)
    if backend == "eager":  # eager has no fusion: every operator and every module call
        expected = sum(COST_S[c.kind] for c in trace.calls) + trace.module_calls * MODULE_CALL_S
        assert p.fused == 0
    else:  # the operators that run on their own, and one infer request
        expected = sum(COST_S[kind] for kind, _, into in RESIDUAL_RULES if into is None) + INFER_CALL_S
        assert p.fused == 9
    assert p.seconds == pytest.approx(expected, rel=1e-9)
    assert p.operators == len(trace.calls)


def test_a_tiny_openvino_calibration_predicts_a_network_and_names_a_kind_it_cannot_convert(tmp_path):
    """The real worker: each operator a one-operator OpenVINO model; digamma has no conversion rule in OpenVINO's
    PyTorch frontend, and the calibration and the prediction say so."""
    pytest.importorskip("openvino")
    db = tmp_path / "store.sqlite"
    config = calibration_config("quick", models=(RESIDUAL, DIGAMMA), backend="openvino", batch_sizes=(1,),
                                seconds=30.0)
    summary = calibrate(db, config, timer=WorkerTimer(group_size=4), machine_id=MACHINE, fingerprint={})
    assert summary.timed > 10 and summary.kinds[INFER_CALL] == 1
    assert "digamma" not in summary.kinds
    assert "No conversion rule" in summary.failed_kinds["digamma"]
    assert summary.setup_s > 0
    [p] = predict([RESIDUAL], db, machine=MACHINE, backend="openvino")
    assert p.fused == 9 and 0 < p.seconds < math.inf and p.overhead_s > 0
    with pytest.raises(MissingOperatorKinds, match=r"digamma .*OpenVINO could not convert"):
        predict([DIGAMMA], db, machine=MACHINE, backend="openvino")
    with pytest.raises(UsageError, match="no single calibration"):  # an eager one would be another: there is none
        predict([RESIDUAL], db, machine=MACHINE, backend="eager")
