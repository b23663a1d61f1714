"""Deployment backends: each one on small zoo models checked against eager fp32, precisions recorded as
executed, set-up apart from steady state, unavailable and unsupported as results, "best" chosen right."""

import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dnnbench import zoo
from dnnbench.analysis import frames_from_records
from dnnbench.analysis.best import best_deployments, with_best_rows
from dnnbench.backends import (
    BACKENDS,
    as_tensor,
    available_backends,
    check_input,
    compare,
    make_backend,
    parse_backends,
    search_precisions,
)
from dnnbench.errors import UsageError
from dnnbench.run.config import build_sweep_config, parse_backend_option
from dnnbench.run.plan import plan
from dnnbench.run.runner import run_sweep
from dnnbench.store import ResultRecord, Store

TESTS = Path(__file__).resolve().parent
CPU = torch.device("cpu")
HERE = [name for name, reason in available_backends(CPU).items() if reason is None]
SMALL_MODELS = ("squeezenet1_1", "mobilenetv2")
INPUT = 96  # small images keep compilation and export quick; every model here accepts them


@pytest.fixture(scope="module")
def references(one_thread):
    """Each small zoo model built once, with eager fp32 logits on the fixed check input."""
    torch.manual_seed(0)
    found = {}
    for name in SMALL_MODELS:
        model = zoo.build_model(zoo.get(name), CPU).eval()
        x = check_input(INPUT, CPU, batch_size=2)
        with torch.inference_mode():
            found[name] = (model, x, as_tensor(model(x)))
    return found


def fresh_copy(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("backend", HERE)
@pytest.mark.parametrize("model_name", SMALL_MODELS)
def test_every_backend_here_matches_eager_fp32(references, backend, model_name):
    model, x, reference = references[model_name]
    deployed = make_backend(backend, CPU, "fp32", 1)
    deployed.prepare(fresh_copy(model), x, key=f"test-{model_name}-{INPUT}")
    with torch.inference_mode():
        check = compare(deployed.outputs(x), reference, deployed.executed_precision)
        forward = deployed.bind(check_input(INPUT, CPU, batch_size=3))
        out = as_tensor(forward())
    assert check.passed, check
    assert check.top1_agreement == 1.0 and check.cosine_similarity > 0.99999
    assert deployed.executed_precision == "fp32"  # fp32 means fp32, OpenVINO's bf16 default included
    assert out.shape == (3, 1000)  # other batch sizes than the check's (dynamic axis or a new shape)
    described = deployed.describe()
    assert described["name"] == backend and described["executed_precision"] == "fp32"


@pytest.mark.skipif("bf16" not in search_precisions("cpu"), reason="this CPU has no native bf16")
@pytest.mark.parametrize("backend", [b for b in ("eager", "openvino") if b in HERE])
def test_bf16_is_recorded_as_executed_and_checked_with_bf16_tolerance(references, backend):
    model, x, reference = references["squeezenet1_1"]
    deployed = make_backend(backend, CPU, "bf16", 1)
    deployed.prepare(fresh_copy(model), x, key=f"test-squeezenet1_1-{INPUT}")
    with torch.inference_mode():
        check = compare(deployed.outputs(x), reference, deployed.executed_precision)
    assert deployed.executed_precision == "bf16"
    assert check.precision == "bf16" and check.passed
    assert 0 < check.relative_max_error  # bf16 really ran: it is not bit-identical to fp32


def test_output_check_flags_what_differs_and_passes_what_does_not():
    reference = torch.tensor([[3.0, 1.0, 0.5, 0.2, 0.1, 0.0], [0.0, 2.0, 1.0, 0.3, 0.2, 0.1]])
    same = compare(reference.clone(), reference, "fp32")
    assert same.passed and same.max_abs_error == 0 and same.top1_agreement == same.top5_agreement == 1.0
    nudged = compare(reference * (1 + 1e-6), reference, "fp32")
    assert nudged.passed
    swapped = reference.clone()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    wrong = compare(swapped, reference, "fp32")
    assert not wrong.passed and wrong.top1_agreement == 0.5
    assert compare(reference + 0.02, reference, "bf16").passed  # 1.8% relative L2: bf16's tolerance, not fp32's
    assert not compare(reference + 0.02, reference, "fp32").passed
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
    five_percent = reference + noise * 0.05 * reference.norm() / noise.norm()  # 5% relative L2 error
    check = compare(five_percent, reference, "bf16")
    assert check.relative_l2_error == pytest.approx(0.05) and not check.passed  # rejected even at bf16
    broken = reference.clone()
    broken[1, 2] = float("nan")
    assert not compare(broken, reference, "fp16").passed
    with pytest.raises(ValueError, match="shape"):
        compare(reference[:1], reference, "fp32")


def test_a_missing_package_makes_a_backend_unavailable_not_a_crash(monkeypatch):
    for module, backend in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
        reason = BACKENDS[backend].unavailable_reason(CPU)
        assert reason and f"pip install {module}" in reason
        names, search = parse_backends("best", CPU)
        assert search and backend not in names and "eager" in names
    assert "cuda" in BACKENDS["tensorrt"].unavailable_reason(CPU)


def test_unknown_backend_or_option_is_refused_with_what_exists_here():
    with pytest.raises(UsageError, match=r"did you mean onnxruntime.*available on cpu here: eager"):
        parse_backends("onnx", CPU)
    with pytest.raises(UsageError, match="unknown precision"):
        build_sweep_config(precisions=("fp8",))
    with pytest.raises(UsageError, match="its options: mode, freezing, dynamic"):
        build_sweep_config(backends=("compile",), backend_options=(parse_backend_option("compile.speed=fast"),))
    with pytest.raises(UsageError, match="BACKEND.OPTION=VALUE"):
        parse_backend_option("max-autotune")
    config = build_sweep_config(backends=("compile",), backend_options=(("compile", "freezing", "false"),))
    assert config.scope.options_for("compile").freezing is False


def test_cells_are_planned_per_backend_and_precision_and_eager_keys_do_not_change():
    spec = zoo.get("resnet18")
    eager_only = plan([spec], build_sweep_config(batch_sizes=(1,), threads=(1,)))
    both = plan([spec], build_sweep_config(batch_sizes=(1,), threads=(1,), backends=("eager", "onnxruntime"),
                                    precisions=("fp32", "bf16")))
    assert [(j.backend, j.precision) for j in both] == [("eager", "fp32"), ("eager", "bf16"),
                                                        ("onnxruntime", "fp32"), ("onnxruntime", "bf16")]
    assert {c.digest for c in eager_only[0].cells} == {c.digest for c in both[0].cells}  # old stores resume
    options = plan([spec], build_sweep_config(batch_sizes=(1,), threads=(1,), backends=("compile",),
                                       backend_options=(("compile", "mode", "max-autotune"),)))
    assert options[0].cells[1].key.config_dict["backend_options"] == {"mode": "max-autotune"}


def test_sweep_records_setup_apart_unsupported_unavailable_and_export_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path / "cache"))
    specs = [zoo.get("python:dnnbench_test_models:tiny"), zoo.get("python:dnnbench_test_models:unexportable")]
    backends = tuple(b for b in ("torchscript", "onnxruntime", "tensorrt") if b in BACKENDS)
    config = build_sweep_config(device="cpu", batch_sizes=(1, 2), threads=(1,), input_size=32, time_budget_s=0.2,
                         min_samples=3, warmup_iters=1, warmup_s=0.0, metrics=("time",), backends=backends,
                         precisions=("fp32", "fp16"), measure_peak=False)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(specs, config, store)
    cells = {(r.model.rsplit(":", 1)[-1], r.config["backend"], r.config["dtype"], r.config["batch_size"]): r
             for r in summary.records}
    ts = cells["tiny", "torchscript", "fp32", 2]
    assert ts.status == "ok"
    setup = ts.values.setup
    assert set(setup.prepare) == {"trace_s", "freeze_s", "optimize_s"} and setup.prepare_s > 0
    # timed apart, not a sample: the first forward at this batch size, before the timing loop's first call
    assert setup.first_inference_s == ts.values.cold_start_s and setup.first_inference_s not in ts.values.samples_s
    assert setup.warmup_iters == ts.values.warmup_iters and setup.build_s == ts.values.build_s
    assert ts.values.output_check.batch_size == 2 and ts.values.to_dict()["layout"] == 2
    assert len(ts.values.samples_s) == ts.values.stats.n
    assert ts.values.output_check.passed and ts.values.executed_precision == "fp32"
    if "onnxruntime" in HERE:
        assert cells["tiny", "onnxruntime", "fp32", 1].status == "ok"
        assert cells["tiny", "onnxruntime", "fp32", 1].values.setup.prepare["export_s"] > 0
        assert cells["tiny", "onnxruntime", "fp16", 1].status == "unsupported"
        failed = cells["unexportable", "onnxruntime", "fp32", 1]
        assert failed.status == "error" and "fft_rfft2" in failed.error  # the exporter's own words
        assert cells["unexportable", "torchscript", "fp32", 1].status == "ok"  # the others still run
    assert {cells["tiny", "tensorrt", p, b].status for p in ("fp32", "fp16") for b in (1, 2)} == {"unavailable"}
    assert "cuda" in cells["tiny", "tensorrt", "fp32", 1].error


def _time_record(model, backend, dtype, latency_s, passed=True, batch=1, status="ok", ci=None, contended=False,
                 converged=True):
    stats = {"median": latency_s, "n": 10, "ci_half_width_rel": 0.01}
    if ci is not None:
        stats.update(ci_low=ci[0], ci_high=ci[1], ci_method="order statistics")
    values = {"median_s": latency_s, "stats": stats, "converged": converged,
              "contention": {"contended": contended, "other_cores": 1.0 if contended else 0.0},
              "ms_per_image": latency_s * 1e3 / batch, "images_per_s": batch / latency_s,
              "stop_reason": "converged" if converged else "max_time",
              "executed_precision": dtype, "output_check": {"passed": passed, "cosine_similarity": 1.0 if passed else 0.5,
                                                            "relative_max_error": 0.0 if passed else 0.9},
              "setup": {"prepare_s": 1.0, "bind_s": 0.0, "first_inference_s": 0.1}}
    config = {"device": "cpu", "dtype": dtype, "batch_size": batch, "input_size": 224, "threads": 1, "backend": backend}
    now = time.time()
    return ResultRecord(model=model, metric="time", config=config, status=status,
                        values=values if status == "ok" else {}, error=None, started_at=now, finished_at=now,
                        machine_id="m1")


def test_best_picks_the_fastest_valid_deployment_and_ignores_flagged_ones():
    records = [
        _time_record("resnet50", "eager", "fp32", 0.100),
        _time_record("resnet50", "onnxruntime", "fp32", 0.060),
        _time_record("resnet50", "openvino", "fp32", 0.055),
        _time_record("resnet50", "openvino", "bf16", 0.030, passed=False),  # fastest, but computes otherwise
        _time_record("resnet50", "compile", "bf16", 0.040),
        _time_record("resnet50", "tensorrt", "fp16", 1.0, status="unavailable"),
        _time_record("mobilenetv2", "eager", "fp32", 0.020),
    ]
    time_frame = frames_from_records(records).time
    best = best_deployments(time_frame).set_index("model")
    assert (best.loc["resnet50", "backend"], best.loc["resnet50", "dtype"]) == ("compile", "bf16")
    assert best.loc["resnet50", "speedup_vs_eager"] == pytest.approx(2.5)
    assert best.loc["resnet50", "candidates"] == 5 and best.loc["resnet50", "flagged"] == 1
    assert best.loc["mobilenetv2", "backend"] == "eager"  # only one deployment timed: it wins
    fp32 = best_deployments(time_frame, ("fp32",)).set_index("model")
    assert fp32.loc["resnet50", "backend"] == "openvino"
    rows = with_best_rows(time_frame)
    added = rows[rows["backend"] == "best"].set_index("dtype")
    assert added.loc["any", "winner_backend"] == "compile" and added.loc["fp32", "winner_backend"] == "openvino"
    assert added.loc["any", "latency_ms"] == pytest.approx(40.0)
    assert "best" in added.loc["any", "setup"]
    assert len(rows) == len(time_frame) + 2  # mobilenetv2 had nothing to choose from: no best rows


def test_best_reports_a_tie_and_recommends_the_simpler_deployment():
    records = [
        _time_record("resnet50", "eager", "fp32", 0.100, ci=(0.095, 0.106)),
        _time_record("resnet50", "openvino", "fp32", 0.050, ci=(0.046, 0.055)),  # fastest median
        _time_record("resnet50", "onnxruntime", "fp32", 0.053, ci=(0.049, 0.058)),  # overlaps openvino's
        _time_record("resnet50", "compile", "bf16", 0.052, ci=(0.047, 0.057)),  # overlaps too, reduced precision
        _time_record("resnet50", "torchscript", "fp32", 0.070, ci=(0.066, 0.074)),  # apart: not tied
    ]
    best = best_deployments(frames_from_records(records).time).set_index("model").loc["resnet50"]
    assert bool(best["tie"]) and best["fastest"] == "openvino fp32"
    assert (best["backend"], best["dtype"]) == ("onnxruntime", "fp32")  # fp32 first, then the simpler backend
    assert set(best["tied_with"].split(", ")) == {"openvino fp32", "compile bf16"}
    assert "recommended over the faster median of openvino fp32" in best["recommendation"]
    assert best["speedup_low"] <= best["speedup_vs_eager"] <= best["speedup_high"]
    assert best["speedup_low"] == pytest.approx(95 / 58) and best["speedup_high"] == pytest.approx(106 / 49)
    apart = best_deployments(frames_from_records(records[:2]).time).iloc[0]  # eager's interval is far away
    assert not apart["tie"] and apart["backend"] == "openvino" and apart["recommendation"].startswith("fastest")


def test_best_excludes_contended_and_unconverged_cells_with_the_reason():
    records = [
        _time_record("resnet50", "eager", "fp32", 0.100, ci=(0.095, 0.106)),
        _time_record("resnet50", "openvino", "fp32", 0.030, ci=(0.029, 0.031), contended=True),  # fastest, untrusted
        _time_record("resnet50", "compile", "fp32", 0.035, ci=(0.034, 0.036), converged=False),
        _time_record("resnet50", "onnxruntime", "fp32", 0.060, ci=(0.058, 0.062)),
        _time_record("vgg16", "eager", "fp32", 0.300, contended=True),  # the baseline itself is excluded
        _time_record("vgg16", "onnxruntime", "fp32", 0.200),
    ]
    best = best_deployments(frames_from_records(records).time).set_index("model")
    assert best.loc["resnet50", "backend"] == "onnxruntime"
    assert best.loc["resnet50", "excluded"] == "1 contended, 1 unconverged"
    assert best.loc["resnet50", "speedup_vs_eager"] == pytest.approx(100 / 60)
    assert best.loc["vgg16", "excluded"] == "1 contended; eager fp32 contended"
    assert pd.isna(best.loc["vgg16", "speedup_vs_eager"])  # no trusted baseline: no speed-up claimed
    rows = with_best_rows(frames_from_records(records).time)
    added = rows[rows["backend"] == "best"]  # chosen among trusted cells, wherever several passed the check
    assert added["winner_backend"].tolist() == ["onnxruntime"] * 4 and set(added["model"]) == {"resnet50", "vgg16"}


def test_report_shows_eager_and_best_side_by_side(tmp_path):
    from dnnbench.report.build import ReportOptions, build_report

    records = [_time_record("resnet50", "eager", "fp32", 0.100), _time_record("resnet50", "openvino", "fp32", 0.055),
               _time_record("resnet50", "openvino", "bf16", 0.030, passed=False),
               _time_record("resnet50", "compile", "bf16", 0.040)]
    result = build_report(frames_from_records(records), tmp_path, ReportOptions(formats=()))
    page = result.index.read_text()
    section = page[page.index('id="deployments"'):page.index('id="roofline"')]
    assert "compile bf16" in section and "openvino bf16" not in section  # the flagged one is never best
    assert ">2.5<" in section  # speed-up over eager fp32
    assert "cpu any 1 thread best" in page and "cpu fp32 1 thread best" in page  # best setups in the figures


def test_best_table_renders_default_threads_and_missing_figures():
    from rich.console import Console

    from dnnbench.cli.render import best_table

    records = [_time_record("resnet50", "eager", "fp32", 0.1), _time_record("resnet50", "onnxruntime", "fp32", 0.05)]
    for r in records:
        r.config["threads"] = None  # PyTorch's default thread count: missing in the frame
    console = Console(width=200, record=True)
    console.print(best_table(best_deployments(frames_from_records(records).time)))
    text = console.export_text()
    assert "default" in text and "onnxruntime fp32" in text and "2.00x" in text
