"""benchmarks/gpu_acceptance.py: it refuses cleanly without a CUDA device, and its pass/fail table is built right
from records (synthetic ones here: the GPU run itself happens on a lent GPU)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dnnbench.store import ResultRecord
from dnnbench.store.values import decode

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"


@pytest.fixture(scope="module")
def acceptance():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_acceptance"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_acceptance", None)


def record(model, metric, values, status="ok", backend="eager", dtype="fp16", batch=1, error=None):
    config = {"device": "cuda:0", "dtype": dtype, "batch_size": batch, "input_size": 224, "threads": None,
              "backend": backend, "tf32": False}
    return ResultRecord(model=model, metric=metric, config=config, status=status,
                        values=decode(metric, values) if status == "ok" else None, error=error,
                        started_at=time.time(), finished_at=time.time(), machine_id="m")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: the script would run")
def test_without_cuda_it_exits_2_with_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no CUDA device here" in done.stderr


def test_fidelity_is_judged_within_five_percent(acceptance):
    checks = acceptance.fidelity_checks({("fp16", 1): 0.00104, ("fp16", 64): 0.030, ("fp32", 1): None},
                                        {("fp16", 1): 0.00100, ("fp16", 64): 0.0270, ("fp32", 1): 0.002})
    assert [(c.item, c.status) for c in checks] == [
        ("resnet50 eager fp16 b1", "PASS"), ("resnet50 eager fp16 b64", "FAIL"), ("resnet50 eager fp32 b1", "FAIL")]


def test_deployments_memory_energy_and_paper_rows(acceptance):
    timed = {"median_s": 0.002, "stats": {"median": 0.002}, "output_check": {"passed": True, "cosine_similarity": 0.99999}}
    flagged = {**timed, "output_check": {"passed": False, "cosine_similarity": 0.5}}
    records = [
        record("resnet50", "time", timed, backend="tensorrt"),
        record("resnet50", "time", flagged, backend="onnxruntime"),
        record("resnet50", "time", {}, status="unsupported", backend="onnxruntime", dtype="bf16", error="no bf16"),
        record("resnet50", "time", {}, status="error", backend="compile", error="RuntimeError: boom"),
    ]
    rows = {(c.item, c.status) for c in acceptance.deployment_checks(records)}
    assert rows == {("resnet50 tensorrt fp16 b1", "PASS"), ("resnet50 onnxruntime fp16 b1", "FAIL"),
                    ("resnet50 onnxruntime bf16 b1", "n/a"), ("resnet50 compile fp16 b1", "FAIL")}

    mib = 2**20
    memory = {"weight_bytes": 50 * mib, "analytic": {"total_peak_bytes": 80 * mib}, "max_allocated_bytes": mib,
              "nvml_process_bytes": 900 * mib, "nvml_baseline_bytes": 500 * mib}
    too_small = {**memory, "nvml_process_bytes": 520 * mib}  # below the weights: it did not see the deployment
    too_big = {**memory, "nvml_process_bytes": 1500 * mib}
    checks = acceptance.memory_checks([record("resnet50", "memory", m) for m in (memory, too_small, too_big)])
    assert [c.status for c in checks] == ["PASS", "FAIL", "FAIL"]
    assert "cuda_nvml_process_above_baseline" in checks[0].detail

    energy = acceptance.energy_checks([
        record("resnet50", "energy", {"joules_per_image": 0.05, "images_per_joule": 20.0, "idle_watts": 80.0,
                                      "calls": 100, "seconds": 3.0, "method": "NVML"}),
        record("resnet50", "energy", {}, status="unavailable", error="energy is unavailable here, because ...")])
    assert [c.status for c in energy] == ["PASS", "FAIL"]

    paper = ["resnet50", "vgg16"]
    ok = [record(m, "time", timed, batch=b) for m in paper for b in (1, 64)]
    assert acceptance.paper_checks(ok, paper)[0].status == "PASS"
    oom = ok[:-1] + [record("vgg16", "time", {}, status="oom", batch=64, error="out of memory")]
    assert acceptance.paper_checks(oom, paper)[0].status == "FAIL"
    assert acceptance.paper_checks(ok[:2], paper)[0].detail.endswith("not measured: vgg16")


def test_peak_rows_need_the_datasheet_and_a_plausible_share(acceptance):
    def estimate(measured, clock_source="datasheet"):
        kernels = [{"kernel": "matmul", "rate": measured}, {"kernel": "conv3x3", "rate": 1500e12}]  # Winograd
        return {"device": "cuda:0", "device_name": "NVIDIA H200", "precision": "fp16", "theoretical_flops": 989.4e12,
                "measured_flops": 1500e12, "kernels": kernels, "spec": {"clock_source": clock_source},
                "basis_detail": "..."}

    checks = acceptance.peak_checks([estimate(700e12), estimate(1200e12), estimate(700e12, "NVML max SM clock")])
    assert [c.status for c in checks] == ["PASS", "FAIL", "FAIL"]
    assert checks[0].detail.startswith("matmul 700.0 T, datasheet 989.4 T = 71%")


def test_render_and_exit_status(acceptance):
    checks = [acceptance.Check("peak", "H200 fp16", "PASS", "ok"), acceptance.Check("energy", "x", "SKIP")]
    text = acceptance.render(checks, 420.0, "NVIDIA H200")
    assert text.splitlines()[0] == "dnnbench GPU acceptance on NVIDIA H200, 7.0 min"
    assert text.splitlines()[-1] == "PASS 1 FAIL 0 n/a 0 SKIP 1" and acceptance.exit_status(checks) == 0
    assert acceptance.exit_status([*checks, acceptance.Check("memory", "y", "FAIL")]) == 1


def test_main_runs_every_step_through_dnnbenchs_api_and_prints_one_table(acceptance, monkeypatch, capsys, tmp_path):
    """The whole flow with the GPU replaced: the calls it makes to dnnbench, and the table it prints."""
    import dnnbench.backends
    import dnnbench.env.peak
    import dnnbench.run
    import dnnbench.zoo

    calls = []
    timed = {"median_s": 0.002, "stats": {"median": 0.002}, "output_check": {"passed": True, "cosine_similarity": 1.0}}
    mib = 2**20
    memory = {"weight_bytes": 50 * mib, "analytic": {"total_peak_bytes": 80 * mib}, "nvml_process_bytes": 700 * mib,
              "nvml_baseline_bytes": 500 * mib, "max_allocated_bytes": 1}
    energy = {"joules_per_image": 0.05, "images_per_joule": 20.0, "idle_watts": 80.0, "calls": 100, "seconds": 3.0,
              "method": "NVML"}

    def benchmark(models, *, suite=None, backends, precisions, metrics, **settings):
        calls.append((tuple(models), suite, backends, precisions, metrics))
        names = list(models) or ["resnet50", "vgg16"]
        out = []
        for model in names:
            for backend in backends.split(","):
                for dtype in precisions.split(","):
                    for batch in (1, 64):
                        for metric in metrics.split(","):
                            values = {"time": timed, "memory": memory, "energy": energy}[metric]
                            out.append(record(model, metric, values, backend=backend, dtype=dtype, batch=batch))
        return type("Summary", (), {"cells": out, "records": out})()

    def estimate_peak(device, precision, seconds, bandwidth):
        return {"device": device, "device_name": "NVIDIA H200", "precision": precision, "theoretical_flops": 989.4e12,
                "kernels": [{"kernel": "matmul", "rate": 800e12}], "spec": {"clock_source": "datasheet"}}

    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)  # main sets it as the workers have it; undone after
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(dnnbench.run, "benchmark", benchmark)
    monkeypatch.setattr(dnnbench.env.peak, "estimate_peak", estimate_peak)
    monkeypatch.setattr(dnnbench.backends, "search_precisions", lambda device: ("fp32", "fp16", "bf16"))
    monkeypatch.setattr(dnnbench.backends, "available_backends", lambda device: {
        "eager": None, "eager-channels-last": None, "torchscript": None, "onnxruntime": None, "compile": None,
        "tensorrt": "no TensorrtExecutionProvider in this onnxruntime build", "openvino": "runs on cpu"})
    monkeypatch.setattr(acceptance, "reference_latency", lambda model, precision, batch, device, calls: 0.00201)
    monkeypatch.setattr(acceptance, "in_process_latency",
                        lambda model, precision, batch, device, calls: (0.00202, 0.00201))
    monkeypatch.setattr(dnnbench.zoo, "resolve_models", lambda *a: [type("S", (), {"id": m}) for m in ("resnet50",
                                                                                                       "vgg16")])
    status = acceptance.main(["--db", str(tmp_path / "a.sqlite")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert calls[0] == (("resnet50",), None, "eager", "fp32,fp16", "time,memory,energy")
    assert calls[1] == (("resnet50", "mobilenetv2"), None, "eager,eager-channels-last,torchscript,onnxruntime",
                        "fp32,fp16,bf16", "time,memory")
    assert calls[2] == ((), "paper", "eager", "fp16", "time") and calls[3][2] == "compile" and len(calls) == 4
    assert "tensorrt" in out and "n/a" in out and "FAIL 0" in out and "PASS" in out
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"  # the loops ran in the fp32 workers' environment


def test_an_fp16_flag_from_logits_below_fp16s_range_is_the_weights_not_a_failure(acceptance):
    """MobileNetV2's random-weight logits (~3e-9) underflow fp16 to zeros (seen on an H200): n/a with the reason;
    a flagged fp16 cell with logits of normal size stays a failure."""
    underflow = {"median_s": 0.003, "stats": {"median": 0.003},
                 "output_check": {"passed": False, "cosine_similarity": 0.0, "max_abs_error": 3.4e-9,
                                  "relative_max_error": 1.0}}
    wrong = {**underflow, "output_check": {"passed": False, "cosine_similarity": 0.9, "max_abs_error": 0.5,
                                           "relative_max_error": 0.1}}
    checks = acceptance.deployment_checks([record("mobilenetv2", "time", underflow),
                                           record("resnet50", "time", wrong),
                                           record("mobilenetv2", "time", underflow, dtype="bf16")])
    assert [c.status for c in checks] == ["n/a", "FAIL", "FAIL"]
    assert "below fp16" in checks[0].detail and "3.4e-09" in checks[0].detail


def test_launch_bound_shapes_compared_across_processes_read_na_but_are_judged_in_one_process(acceptance):
    """ResNet-50 on an H200: 2.8 ms at batch 1 and 19 ms at batch 64 (per image 2.8 vs 0.3 ms): batch 1 waits for
    the host's launches, whose speed differed between processes (the same cell read 2.9 and 4.2 ms in two runs)."""
    refs = {("fp32", 1): 0.00284, ("fp32", 64): 0.0192, ("fp16", 1): 0.0062, ("fp16", 64): 0.0070}
    assert acceptance.launch_bound_shapes(refs) == {("fp32", 1), ("fp16", 1)}
    assert acceptance.launch_bound_shapes({("fp32", 1): 0.001, ("fp32", 64): 0.060}) == frozenset()  # compute-bound
    worker = {("fp32", 1): 0.00422, ("fp32", 64): 0.0192, ("fp16", 1): 0.0063, ("fp16", 64): 0.0090}
    checks = acceptance.fidelity_checks(worker, refs, section="timing fidelity (worker)",
                                        launch_bound=acceptance.launch_bound_shapes(refs))
    assert [(c.item, c.status) for c in checks] == [
        ("resnet50 eager fp16 b1", "PASS"), ("resnet50 eager fp16 b64", "FAIL"),
        ("resnet50 eager fp32 b1", "n/a"), ("resnet50 eager fp32 b64", "PASS")]
    assert "launch-bound" in checks[2].detail and checks[0].section == "timing fidelity (worker)"
