"""Typed result values: every type round-trips exactly, and every values dict of a store written by release
0190a26 (tests/fixtures/store-v0.sqlite) decodes and re-encodes without losing a key or a figure."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pytest

from dnnbench.store import values as values_module
from dnnbench.store.values import (
    VALUE_TYPES,
    AccuracyValue,
    BackendInfo,
    ClassCount,
    ComplexityValue,
    ContentionInfo,
    EnergyValue,
    LatencyStats,
    MemoryValue,
    OfflinePoint,
    OfflineValue,
    OutputCheckInfo,
    PeakValue,
    RawValue,
    RuntimeInfo,
    ServerPoint,
    ServerValue,
    SetupInfo,
    TimeValue,
    ValueLayoutError,
    decode,
    encode,
)

FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.sqlite"


def fixture_rows() -> list[tuple[str, str, str, dict]]:
    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as con:
        rows = [(model, metric, status, json.loads(v)) for model, metric, status, v in
                con.execute("SELECT model, metric, status, values_json FROM results ORDER BY id")]
    return rows


def fixture_peaks() -> list[dict]:
    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as con:
        return [json.loads(e) for (e,) in con.execute("SELECT estimate_json FROM peaks")]


def json_round(value):
    """Through JSON text, as the store keeps it."""
    return decode(value.METRIC, json.loads(json.dumps(encode(value))))


# --- the fixture store ---------------------------------------------------------------------------------


def test_fixture_store_holds_every_kind_of_result():
    kinds = {(metric, status != "ok") for _, metric, status, _ in fixture_rows()}
    assert {("time", False), ("memory", False), ("complexity", False), ("accuracy", False),
            ("time", True), ("memory", True)} <= kinds
    assert fixture_peaks()


@pytest.mark.parametrize("index", range(len(fixture_rows())))
def test_every_stored_values_dict_reencodes_losslessly(index):
    model, metric, status, stored = fixture_rows()[index]
    value = decode(metric, stored)
    if not stored:
        assert value is None and encode(value) == {}
        return
    assert isinstance(value, VALUE_TYPES[metric])
    assert value.extra == {}, f"{model}/{metric}: unexpected extra {value.extra}"
    encoded = value.to_dict()
    # nothing lost, nothing added but the marker: the layout it was read as (0 is written as 1, the same keys)
    assert encoded == {**stored, "layout": 1}
    assert json.loads(json.dumps(encoded)) == encoded
    assert decode(metric, encoded) == value
    assert json_round(value) == value


@pytest.mark.parametrize("index", range(len(fixture_peaks())))
def test_every_stored_peak_estimate_reencodes_losslessly(index):
    stored = fixture_peaks()[index]
    value = PeakValue.from_dict(stored)
    assert value.extra == {}
    assert value.to_dict() == {**stored, "layout": PeakValue.LAYOUT}
    assert PeakValue.from_dict(value.to_dict()) == value
    assert value.kernels and value.kernels[0].rate and value.spec.notes
    assert value.contended is False


def test_backend_specific_keys_are_kept_in_extra():
    onnx = next(decode(m, v) for _, m, s, v in fixture_rows() if m == "time" and v and v["backend"]["name"] ==
                "onnxruntime")
    assert onnx.backend.extra["provider"] == "CPUExecutionProvider"
    assert onnx.backend.name == "onnxruntime" and onnx.backend.blocking is True
    assert "session_s" in onnx.setup.prepare


# --- hand-built values of every type -------------------------------------------------------------------


def sample_time() -> TimeValue:
    stats = LatencyStats(n=3, min=0.01, max=0.03, median=0.02, mean=0.02, std=0.01, p90=0.028, p99=0.0298,
                         cv=None, ci_level=0.95, ci_low=0.01, ci_high=0.03, ci_half_width_rel=0.5,
                         ci_method="order-statistics")
    return TimeValue(
        batch_size=2, samples_s=(0.01, 0.02, 0.03), stats=stats, stop_reason="time_budget", converged=False,
        warmup_iters=3, warmup_s=0.5, warmup_capped=False, first_call_s=0.2, timer="perf_counter_ns", timed_s=0.06,
        median_s=0.02, ms_per_image=10.0, images_per_s=100.0, build_s=1.0, cold_start_s=0.2,
        backend=BackendInfo(name="onnxruntime", options={"opset": 17, "io_binding": True}, executed_precision="fp16",
                            versions={"torch": "2.5"}, blocking=True, extra={"provider": "CUDAExecutionProvider"}),
        executed_precision="fp16",
        output_check=OutputCheckInfo(max_abs_error=0.1, relative_max_error=0.01, cosine_similarity=0.9999,
                                     top1_agreement=1.0, top5_agreement=0.95, precision="fp16", min_cosine=0.999,
                                     max_relative_error=0.02, passed=True),
        setup=SetupInfo(prepare={"export_s": 2.0, "session_s": 0.5}, prepare_s=2.5, bind_s=0.25,
                         first_inference_s=0.25),
        contention=ContentionInfo(wall_s=1.0, process_cpu_s=1.0, machine_busy_cpu_s=1.5, other_cpu_s=0.5,
                                  other_cores=0.5, threshold_cores=0.25, contended=True, method="/proc/stat"),
        runtime=RuntimeInfo(intra_op_threads=4, inter_op_threads=None, malloc_env={"MALLOC_ARENA_MAX": "2"}),
        extra={"future_field": [1, {"a": 2}]},
    )


def sample_memory_cuda() -> MemoryValue:
    return MemoryValue(max_allocated_bytes=1000, max_reserved_bytes=2000, nvml_process_bytes=None,
                       device_name="NVIDIA H200", baseline_rss_bytes=10, weight_bytes=400,
                       analytic=values_module.AnalyticMemory(total_peak_bytes=800, peak_op=None),
                       analytic_ratio=1.25, executed_precision=None, backend=BackendInfo(name="eager"))


def sample_memory_cpu() -> MemoryValue:
    return MemoryValue(baseline_rss_bytes=100, peak_rss_bytes=700, peak_above_baseline_bytes=600, method="VmHWM",
                       weight_bytes=300, analytic=values_module.AnalyticMemory(total_peak_bytes=300))


def sample_complexity() -> ComplexityValue:
    return ComplexityValue(model="resnet18", input_size=224, batch_size=2, mode="standard", dtype="float32",
                           params=10, trainable_params=10, param_bytes=40, buffers=0, buffer_bytes=0, macs=200,
                           conv_macs=150, matmul_macs=50, element_ops=4, activations=60, output_elements=80,
                           output_shape=(2, 1000), counter="flop_counter", flops=404)


def sample_accuracy() -> AccuracyValue:
    return AccuracyValue(
        preprocessing=values_module.PreprocessingInfo(mode="weights", input_size=224, mean=(0.485, 0.456, 0.406),
                                                      transform_input=None),
        weights=values_module.WeightsInfo(source="file", file="/w.safetensors", sha256="ab"),
        top1=75.0, top5=92.5, n=40, top1_correct=30, top5_correct=37, top1_ci=(60.0, 86.0), top5_ci=(80.0, 97.0),
        ci_method="wilson", ci_level=0.95, per_class=(ClassCount("n01440764", 40, 30, 37),), corrupt=0,
        corrupt_files=(), classes_seen=1, images_per_s=12.5, elapsed_s=3.2, warnings=("only 1 class",))


def sample_peak() -> PeakValue:
    kernel = values_module.KernelInfo(kernel="matmul", op="torch.mm", shape="8x8", dtype="float32", device="cpu",
                                      threads=1, work_per_call=1024.0, calls=3, seconds=0.3, best_s=0.1,
                                      median_s=0.1, timer="time.perf_counter", rate=10240.0, median_rate=10240.0)
    return PeakValue(device="cpu", precision="fp32", threads=1, peak_flops=10240.0, basis="measured matmul",
                     basis_detail="...", theoretical_flops=None, measured_flops=10240.0, spec=None,
                     kernels=(kernel,), bandwidth_bytes_per_s=None, bandwidth=None,
                     contention=ContentionInfo(contended=False, other_cores=0.0, wall_s=1.0), measured_at=1.0,
                     torch_version="2.5", device_name=None, unit="FLOP/s")


def sample_memory_cuda_nvml() -> MemoryValue:
    """An ONNX Runtime cell on CUDA: PyTorch's allocator saw only the input; NVML saw the session's arena."""
    return MemoryValue(max_allocated_bytes=600_000, max_reserved_bytes=2 << 20, nvml_process_bytes=900 << 20,
                       nvml_baseline_bytes=500 << 20, device_used_bytes=1000 << 20,
                       device_used_baseline_bytes=550 << 20, device_name="NVIDIA H200", method="...",
                       headline_kind="cuda_nvml_process_above_baseline",
                       backend=BackendInfo(name="onnxruntime", tf32=False), executed_precision="fp32")


def sample_energy() -> EnergyValue:
    return EnergyValue(batch_size=8, calls=40, seconds=3.2, joules=400.0, idle_watts=50.0, idle_seconds=1.0,
                       net_joules=240.0, joules_per_batch=6.0, joules_per_image=0.75, images_per_joule=1 / 0.75,
                       method="NVML nvmlDeviceGetTotalEnergyConsumption of NVIDIA H200 (whole board)",
                       sampling_interval_s=3.2, domains=("NVIDIA H200",), backend=BackendInfo(name="eager"),
                       executed_precision="fp16")


def sample_offline() -> OfflineValue:
    points = (OfflinePoint(streams=1, batch_size=1, threads_per_stream=2, images_per_s=100.0, samples=200, images=200,
                           duration_s=2.0, met_minimums=True),
              OfflinePoint(streams=2, batch_size=4, threads_per_stream=1, images_per_s=180.0, samples=90, images=360,
                           duration_s=2.0, met_minimums=True),
              OfflinePoint(streams=2, batch_size=8, threads_per_stream=1, error="MemoryError: out of memory"))
    return OfflineValue(concurrency="openvino-async-infer-queue", cores=2, points=points, best_images_per_s=180.0,
                        best_streams=2, best_batch_size=4, single_stream_images_per_s=100.0, min_duration_s=2.0,
                        min_samples=64, search="streams 1, 2", search_s=12.5, backend=BackendInfo(name="openvino"),
                        executed_precision="fp32")


def sample_server() -> ServerValue:
    points = (ServerPoint(target_rate=50.0, achieved_rate=49.0, count=200, completed=200, duration_s=4.1, p50_s=0.011,
                          p90_s=0.015, p99_s=0.03, mean_s=0.012, max_s=0.04, dropped=0, late=1, meets_bound=True),
              ServerPoint(target_rate=75.0, achieved_rate=70.0, count=200, completed=200, duration_s=2.9, p50_s=0.02,
                          p90_s=0.05, p99_s=0.09, mean_s=0.03, max_s=0.1, dropped=0, late=9, meets_bound=False))
    return ServerValue(concurrency="torch-threads", cores=2, streams=2, threads_per_stream=1, batch_size=1,
                       p99_bound_s=0.04, bound_source="4x single-stream median", single_stream_median_s=0.01,
                       points=points, knee_rate=50.0, seed=0, search="bracket, then bisection", search_s=20.0,
                       backend=BackendInfo(name="eager"), executed_precision="fp32")


def test_scenario_values_read_their_best_point_and_knee():
    offline, server = sample_offline(), sample_server()
    assert offline.best == offline.points[1] and offline.gain_over_single_stream == pytest.approx(1.8)
    assert server.knee == server.points[0] and server.at_rate(60.0) == server.points[1]
    assert server.at_rate(80.0) is None
    assert ServerValue(p99_bound_s=0.04).to_dict()["knee_rate"] is None  # no rate met the bound: an explicit null


SAMPLES = {"time": sample_time, "memory-cuda": sample_memory_cuda, "memory-cpu": sample_memory_cpu,
           "memory-cuda-nvml": sample_memory_cuda_nvml, "energy": sample_energy,
           "complexity": sample_complexity, "accuracy": sample_accuracy, "peak": sample_peak,
           "offline": sample_offline, "server": sample_server}


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_is_exact(name):
    value = SAMPLES[name]()
    assert type(value).from_dict(value.to_dict()) == value
    assert json_round(value) == value
    assert value.to_dict()["layout"] == type(value).LAYOUT


def test_every_registered_type_has_a_sample_and_a_layout():
    covered = {type(make()) for make in SAMPLES.values()}
    assert covered == set(VALUE_TYPES.values())
    assert all(VALUE_TYPES[metric].METRIC == metric and VALUE_TYPES[metric].LAYOUT >= 1 for metric in VALUE_TYPES)


def test_nulls_that_writers_store_stay_null():
    cuda = sample_memory_cuda().to_dict()
    assert cuda["nvml_process_bytes"] is None and cuda["executed_precision"] is None
    assert "peak_rss_bytes" not in cuda  # absent fields stay absent
    cpu = sample_memory_cpu().to_dict()
    assert "nvml_process_bytes" not in cpu and "executed_precision" not in cpu  # null only beside its writer's fields
    assert cpu["analytic_ratio"] is None
    assert MemoryValue.from_dict({"peak_mb": 3}).to_dict() == {"peak_mb": 3, "layout": 1}  # read as layout 0: kept
    runtime = sample_time().to_dict()["runtime"]
    assert runtime["inter_op_threads"] is None and runtime["cuda_alloc_conf"] is None


def test_unknown_keys_survive_at_every_level():
    stored = sample_time().to_dict()
    stored["backend"]["new_backend_key"] = {"x": [1, 2]}
    stored["stats"]["trimmed_mean"] = 0.02
    value = decode("time", stored)
    assert value.backend.extra["new_backend_key"] == {"x": (1, 2)}
    assert value.stats.extra == {"trimmed_mean": 0.02}
    assert value.to_dict() == stored


def test_layout_newer_than_this_code_is_refused():
    stored = {**sample_complexity().to_dict(), "layout": ComplexityValue.LAYOUT + 1}
    with pytest.raises(ValueLayoutError, match="newer dnnbench"):
        decode("complexity", stored)
    with pytest.raises(ValueLayoutError, match="layout"):
        decode("complexity", {"layout": "one", "params": 3})
    with pytest.raises(ValueLayoutError, match="JSON object"):
        decode("time", [1, 2])


def test_failed_cells_and_unknown_metrics():
    assert decode("time", {}) is None and decode("memory", None) is None and encode(None) == {}
    failed_accuracy = {"preprocessing": None, "weights": None}
    value = decode("accuracy", failed_accuracy)
    assert value.top1 is None and value.to_dict() == {**failed_accuracy, "layout": AccuracyValue.LAYOUT}
    raw = decode("power_trace", {"watts": [1.0, 2.0]})
    assert isinstance(raw, RawValue) and raw.to_dict() == {"watts": [1.0, 2.0]}


def test_reading_rules_live_on_the_values():
    assert sample_memory_cuda().headline() == (1000, "cuda_max_allocated")
    assert sample_memory_cpu().headline() == (600, "cpu_peak_rss_above_baseline")
    assert MemoryValue(weight_bytes=3).headline() == (None, "")
    # CUDA: the figure that sees every runtime (PyTorch's allocator alone saw 0.6 MB of an ONNX Runtime session)
    assert sample_memory_cuda_nvml().headline() == (400 << 20, "cuda_nvml_process_above_baseline")
    no_nvml = MemoryValue(max_allocated_bytes=5, nvml_process_bytes=None, device_used_bytes=30,
                          device_used_baseline_bytes=10)
    assert no_nvml.headline() == (20, "cuda_device_used_above_baseline")
    assert sample_memory_cpu().ratio_to_estimate() == 2.0
    t = sample_time()
    assert t.latency_s == 0.02 and t.contended and t.check_passed and t.sample_count == 3
    assert t.precision_executed("fp32") == "fp16" and TimeValue().precision_executed("bf16") == "bf16"
    assert t.setup_s == pytest.approx(3.0)
    assert TimeValue(first_call_s=0.4).setup_s == 0.4
    assert TimeValue(stats=LatencyStats(median=0.5)).latency_s == 0.5
    c = sample_complexity()
    assert c.per_image("macs") == 100 and c.per_image("params") == 10
    assert sample_accuracy().per_class[0].top1 == 75.0


def test_values_module_is_pure_standard_library():
    tree = ast.parse(Path(values_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= {"__future__", "math", "collections", "dataclasses", "typing"}


def test_analysis_interprets_values_without_measure_or_backends():
    """The rules readers need live on the values: analysis imports neither layer, not even inside a function."""
    folder = Path(values_module.__file__).parents[1] / "analysis"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [(node.module or "", node.level)]
            elif isinstance(node, ast.Import):
                names = [(alias.name, 0) for alias in node.names]
            else:
                continue
            for module, level in names:
                parts = module.split(".")
                top = parts[0] if level > 1 else (parts[1] if level == 0 and len(parts) > 1 else "")
                assert top not in ("measure", "backends"), f"{path.name} imports {'.' * level}{module}"
