"""The CUDA path, checked on a CPU: the provider options a session is built with, the dtype bound to it, the
precision a tf32 cell is matched with, the order of warm-up and peak reset, the clock every backend is timed by,
the CUDA spec peak against datasheet figures, and accuracy in exact fp32. Nothing here needs a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from dnnbench.analysis.efficiency import cell_precision, match_peak
from dnnbench.backends import runtime_backends
from dnnbench.backends.base import Backend
from dnnbench.backends.runtime_backends import (
    OnnxRuntimeBackend,
    OnnxRuntimeOptions,
    TensorRTBackend,
    TensorRTOptions,
)
from dnnbench.devices import fp32_math
from dnnbench.env.peak import (
    CUDA_DATASHEETS,
    DATASHEET,
    KernelMeasurement,
    SpecPeak,
    combine,
    cuda_datasheet,
    cuda_spec,
    theoretical_cuda_peak,
)
from dnnbench.measure.latency import WarmupPolicy, measure_latency
from dnnbench.measure.stats import StoppingRule
from dnnbench.run import worker as worker_module
from dnnbench.run.config import build_sweep_config

CUDA0 = torch.device("cuda:0")


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()


@pytest.fixture
def no_stream(monkeypatch):
    """PyTorch's CUDA stream pointer and synchronisation, which a CPU has not: recorded instead."""
    calls: list[str] = []
    monkeypatch.setattr(runtime_backends, "torch_stream_pointer", lambda device: 0xABC)
    monkeypatch.setattr(runtime_backends, "synchronize_stream", lambda device: calls.append("sync"))
    return calls


# --- TensorRT fp16, fp32 without TF32 -----------------------------------------------------------------------


def test_tensorrt_fp16_builds_an_fp16_engine_from_the_fp32_graph_and_binds_fp32(tmp_path, monkeypatch, no_stream):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path))
    built = {}
    real_session = ort.InferenceSession

    class TensorRTSessionOnCpu:
        """The session TensorRT would build, run by the CPU provider: the graph and the feed are the real ones."""

        def __init__(self, path, options, providers):
            built["providers"] = providers
            self._session = real_session(path, options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["TensorrtExecutionProvider", "CUDAExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(ort, "InferenceSession", TensorRTSessionOnCpu)
    backend = TensorRTBackend(CUDA0, "fp16", 1, TensorRTOptions(io_binding=False))
    model, x = tiny_model(), torch.randn(2, 3, 8, 8)
    expected = model(x).detach()
    backend.prepare(model, x, key="tiny-8")
    name, trt = built["providers"][0]
    assert name == "TensorrtExecutionProvider" and trt["trt_fp16_enable"] is True
    assert backend.session.get_inputs()[0].type == "tensor(float)"  # TensorRT lowers the fp32 graph itself
    forward = backend.bind(x)  # runs the engine build: an fp16 feed to the fp32 graph is refused by ORT
    forward()
    torch.testing.assert_close(backend.outputs(x), expected, rtol=1e-4, atol=1e-5)
    assert backend.executed_precision == "fp16"
    recorded = backend.describe()
    assert recorded["provider_options"][0][1]["trt_fp16_enable"] is True and recorded["graph_precision"] == "fp32"
    assert "user_compute_stream" not in recorded["provider_options"][0][1]  # an address, not a setting
    assert "nvidia_tf32_override" in recorded  # TensorRT's TF32 switch, as the worker set it


def test_tensorrt_int8_gets_a_symmetric_qdq_graph_calibrated_on_the_cells_images(tmp_path, monkeypatch, no_stream):
    """TensorRT's explicit quantization: the graph it is given (run here by the CPU provider, which executes the
    same Q/DQ nodes) has signed int8 activations and weights with zero points 0, fp32 biases, int8 on in the
    provider options with fp16 for the rest, and it agrees with eager fp32 within the int8 bounds."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime.quantization")
    from onnx import numpy_helper

    from dnnbench.backends import check_input, compare
    from dnnbench.backends.quantization import synthetic_calibration

    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    built = {}
    real_session = ort.InferenceSession

    class TensorRTSessionOnCpu:
        def __init__(self, path, sess_options=None, providers=None, **kwargs):
            if providers and providers[0][0] == "TensorrtExecutionProvider":  # not the quantizer's own sessions
                built["providers"], built["path"] = providers, path
            self._session = real_session(path, sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["TensorrtExecutionProvider", "CUDAExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(ort, "InferenceSession", TensorRTSessionOnCpu)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16),
                                torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    x = check_input(32, torch.device("cpu"), batch_size=8)
    with torch.inference_mode():
        reference = model(x)
    backend = TensorRTBackend(CUDA0, "int8", None, TensorRTOptions(io_binding=False))
    assert backend.unsupported_reason() is None
    backend.calibrate_with(synthetic_calibration(32, 8))
    backend.prepare(model, x[:1], key="tiny-int8-32")
    name, trt = built["providers"][0]
    assert name == "TensorrtExecutionProvider" and trt["trt_int8_enable"] is True and trt["trt_fp16_enable"] is True
    assert trt["trt_engine_cache_path"].endswith("int8") and "trt_int8_calibration_table_name" not in trt
    assert "-int8-qdq-" in built["path"]  # a file named by the graph's digest
    graph = onnx.load(built["path"]).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and backend.quantized_nodes == len(quantize)
    for node in quantize:  # signed, symmetric: zero point 0 of type int8 everywhere
        zero_point = initializers[node.input[2]]
        assert zero_point.dtype.name == "int8" and not zero_point.any()
    assert all(initializers[n.input[2]].dtype.name == "float32" for n in graph.node
               if n.op_type == "Conv" and len(n.input) > 2)  # biases stay fp32
    with torch.inference_mode():
        check = compare(backend.outputs(x), reference, "int8")
    assert check.passed and check.relative_l2_error > 0, check
    settings = backend.quantization_settings()
    assert settings["activations"] == "int8" and settings["extra_options"]["ActivationSymmetric"] is True
    assert "bf16" in TensorRTBackend(CUDA0, "bf16", None).unsupported_reason()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    assert "6.1" in TensorRTBackend(CUDA0, "int8", None).unsupported_reason()


def test_int8_is_searched_on_a_gpu_only_where_tensorrt_runs(monkeypatch):
    from dnnbench.backends import precision_unavailable_reason, search_precisions

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(TensorRTBackend, "unavailable_reason", classmethod(lambda cls, device: None))
    assert search_precisions(CUDA0) == ("fp32", "fp16", "bf16", "int8")
    monkeypatch.setattr(TensorRTBackend, "unavailable_reason", classmethod(lambda cls, device: "no TensorRT provider"))
    assert "int8" not in search_precisions(CUDA0)
    assert "TensorRT" in precision_unavailable_reason("int8", CUDA0) and "no TensorRT provider" in \
        precision_unavailable_reason("int8", CUDA0)


@pytest.mark.parametrize("tf32", [False, True])
def test_fp32_is_fp32_in_onnxruntime_cuda_and_tensorrt_unless_the_cell_is_tf32(tmp_path, monkeypatch, no_stream, tf32):
    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path))
    ((name, cuda),) = OnnxRuntimeBackend(CUDA0, "fp32", None, OnnxRuntimeOptions(), tf32=tf32)._providers()
    assert name == "CUDAExecutionProvider" and cuda["use_tf32"] == int(tf32)  # ORT's default is use_tf32=1
    assert cuda["user_compute_stream"] == str(0xABC)  # PyTorch's stream: one clock, ordered input
    (_, trt), (_, fallback) = TensorRTBackend(CUDA0, "fp32", None, tf32=tf32)._providers()
    assert trt["trt_fp16_enable"] is False and fallback["use_tf32"] == int(tf32)
    assert trt["trt_engine_cache_path"].endswith("tf32" if tf32 else "fp32")  # engines with and without TF32 apart
    (_, fp16), _ = TensorRTBackend(CUDA0, "fp16", None)._providers()
    assert fp16["trt_fp16_enable"] is True and fp16["trt_engine_cache_path"].endswith("fp16")
    assert Backend.describe(OnnxRuntimeBackend(CUDA0, "fp32", None, tf32=tf32))["tf32"] is tf32  # recorded


def test_tensorrt_and_cublas_tf32_are_switched_off_by_the_environment_of_a_cuda_worker():
    environ: dict[str, str] = {}
    worker_module.tf32_environment("cuda:0", False, environ)
    assert environ == {"NVIDIA_TF32_OVERRIDE": "0"}
    for device, tf32 in (("cuda:0", True), ("cpu", False)):
        untouched: dict[str, str] = {}
        worker_module.tf32_environment(device, tf32, untouched)
        assert untouched == {}


def test_onnxruntime_reads_a_bound_input_only_after_pytorchs_stream_finished_it(no_stream):
    events = no_stream

    class Binding:
        def bind_input(self, *args):
            events.append(("bind_input", args[4]))

        def bind_output(self, *args):
            events.append("bind_output")

    class Session:
        def io_binding(self):
            return Binding()

        def get_outputs(self):
            return [type("Output", (), {"name": "logits"})()]

        def run_with_iobinding(self, binding):
            events.append("run")

    backend = OnnxRuntimeBackend(CUDA0, "fp16", None)
    backend.session, backend.input_name = Session(), "input"
    forward = backend.bind(torch.randn(1, 3, 4, 4))
    forward()
    assert events[0] == "sync" and events[1][0] == "bind_input" and events[-1] == "run"
    assert backend._keep_alive.dtype == torch.float16  # the graph's dtype, kept alive under the raw pointer


# --- one clock for every backend; the memory peak after warm-up -----------------------------------------------


def test_latency_calls_on_warm_after_warmup_and_before_the_first_timed_call():
    calls = []
    seen_at_warm = []
    result = measure_latency(lambda: calls.append(1), 1, "cpu", StoppingRule(time_budget_s=0.05, min_samples=3),
                             WarmupPolicy(min_iters=4, min_seconds=0.0), on_warm=lambda: seen_at_warm.append(len(calls)))
    assert seen_at_warm == [result.warmup_iters]  # once, when every warm-up call (and cuDNN's autotuning) is done
    assert len(calls) == result.warmup_iters + len(result.samples_s)


def test_every_backend_on_cuda_is_timed_by_cuda_events_and_its_peak_is_reset_after_warmup(monkeypatch):
    from dnnbench.measure import latency as latency_module
    from dnnbench.measure import memory as memory_module

    events: list[object] = []

    class Peak:
        def __init__(self, device, baseline=None):
            events.append(("peak", str(device)))

        def __enter__(self):
            events.append("enter")
            return self

        def __exit__(self, *exc):
            events.append("exit")
            return False

        def reset(self):
            events.append("reset")

        def result(self):
            return "cuda-memory"

    def fake_latency(forward, batch_size, device, rule, warmup, *, on_warm=None):
        events.append(("clock", str(device)))
        events.append("warm-up")
        on_warm()
        events.append("timed")
        return "latency"

    monkeypatch.setattr(memory_module, "CudaPeak", Peak)
    monkeypatch.setattr(latency_module, "measure_latency", fake_latency)
    measurer = object.__new__(worker_module._Measurer)
    measurer.device = CUDA0
    measurer.config = build_sweep_config(device="cpu", measure_peak=False)
    for blocking in (False, True):  # PyTorch and ONNX Runtime alike
        events.clear()
        measured = measurer.measure(lambda: None, 1, 0, blocking=blocking)
        assert ("clock", "cuda:0") in events
        assert events.index("warm-up") < events.index("reset") < events.index("timed") < events.index("exit")
        assert measured.memory == "cuda-memory"


# --- the precision a tf32 cell is matched with ------------------------------------------------------------


def test_a_tf32_cell_is_matched_with_the_tf32_peak_even_with_fp32_executed():
    assert cell_precision("fp32", "cuda:0", True, "fp32") == "tf32"
    assert cell_precision("fp32", "cuda:0", False, "fp32") == "fp32"
    assert cell_precision("fp16", "cuda:0", True, "fp16") == "fp16"
    assert cell_precision("fp32", "cpu", True, "fp32") == "fp32"
    table = {("m", "cuda:0", "fp32"): {0: {"peak_flops": 67e12}}, ("m", "cuda:0", "tf32"): {0: {"peak_flops": 494.7e12}}}
    assert match_peak(table, "m", "cuda:0", cell_precision("fp32", "cuda:0", True, "fp32"), None)["peak_flops"] == 494.7e12


# --- the CUDA spec peak ----------------------------------------------------------------------------------

# (name PyTorch reports, compute capability, SMs, the clocks the datasheet's fp32 and tensor figures use (MHz),
# datasheet product, its fp32 and fp16 figures). H100/H200 rate fp32 at the 1980 MHz maximum boost and the tensor
# cores at 1830 MHz.
DEVICES = [
    ("NVIDIA A100-SXM4-80GB", (8, 0), 108, 1410, 1410, "A100", 19.5e12, 312e12),
    ("NVIDIA H100 80GB HBM3", (9, 0), 132, 1980, 1830, "H100 SXM", 67e12, 989.4e12),
    ("NVIDIA H200", (9, 0), 132, 1980, 1830, "H200 SXM", 67e12, 989.4e12),
    ("NVIDIA L4", (8, 9), 58, 2040, 2040, "L4", 30.3e12, 121e12),
    ("NVIDIA GeForce RTX 4090", (8, 9), 128, 2520, 2520, "GeForce RTX 4090", 82.6e12, 165.2e12),
    ("Orin", (8, 7), 16, 1300, 1300, "Jetson AGX Orin 64GB", 5.3e12, 42.5e12),
]


@pytest.mark.parametrize("name,cc,sms,fp32_mhz,tensor_mhz,product,fp32,fp16", DEVICES)
def test_cuda_spec_peak_is_the_datasheet_figure_and_the_formula_agrees_at_the_datasheets_clocks(
        name, cc, sms, fp32_mhz, tensor_mhz, product, fp32, fp16):
    assert cuda_datasheet(name, sms).product == product
    nvml_max_clock = tensor_mhz * 1.08  # NVML's maximum SM clock is above the boost clock datasheets use
    for precision, figure in (("fp32", fp32), ("fp16", fp16)):
        spec = cuda_spec(name, cc, sms, nvml_max_clock, precision, "NVML max SM clock")
        assert spec.flops == figure and spec.clock_source == DATASHEET and product in spec.describe()
    # the SM x FLOP/cycle x clock table reproduces every datasheet at its clocks (GeForce: fp32 accumulation runs
    # at half the table's tensor rate)
    assert math.isclose(theoretical_cuda_peak(cc, sms, fp32_mhz, "fp32").flops, fp32, rel_tol=0.015)
    half_rate = 0.5 if "GeForce" in name else 1.0
    assert math.isclose(half_rate * theoretical_cuda_peak(cc, sms, tensor_mhz, "fp16").flops, fp16, rel_tol=0.015)


def test_h200_peak_is_not_nvmls_max_clock_figure_and_unknown_devices_get_a_labelled_formula():
    h200 = cuda_spec("NVIDIA H200", (9, 0), 132, 1980, "fp16", "NVML max SM clock")
    formula = theoretical_cuda_peak((9, 0), 132, 1980, "fp16").flops
    assert h200.flops == 989.4e12 and formula > 1060e12  # the 1070 against the datasheet's 989
    fallback = cuda_spec("NVIDIA H200 NVL", (9, 0), 132, 1785, "fp16", "NVML max SM clock")
    assert fallback.clock_source == "NVML max SM clock" and any("no datasheet figure" in n for n in fallback.notes)
    assert cuda_datasheet("NVIDIA H100 PCIe").product == "H100 PCIe"
    assert cuda_datasheet("NVIDIA L40S") is None and cuda_datasheet("Orin", 8) is None
    assert {row.product for row in CUDA_DATASHEETS} >= {"A100", "H100 SXM", "H200 SXM", "L4", "GeForce RTX 4090",
                                                         "Jetson AGX Orin 64GB"}


def _kernel(kind: str, rate: float) -> KernelMeasurement:
    return KernelMeasurement(kernel=kind, op=kind, shape="s", dtype="float16", device="cuda:0", threads=0,
                             work_per_call=rate, calls=1, seconds=1.0, best_s=1.0, median_s=1.0, timer="cuda_events")


def test_a_winograd_convolution_never_raises_a_gpu_peak_and_nothing_raises_a_datasheet():
    sheet = cuda_spec("NVIDIA H200", (9, 0), 132, 1980, "fp16", "NVML max SM clock")
    assert combine(sheet, [_kernel("conv3x3", 1200e12), _kernel("matmul", 1000e12)])[:2] == (989.4e12, "spec")
    formula = theoretical_cuda_peak((9, 0), 132, 1500, "fp16")
    assert combine(formula, [_kernel("conv3x3", 2 * formula.flops)])[:2] == (formula.flops, "spec")
    assert combine(formula, [_kernel("matmul", 2 * formula.flops)])[1] == "measured matmul"
    cpu = SpecPeak("fp32", 1e11, 4, "core", 32, 1000, "cpufreq", "row", "fma")
    assert combine(cpu, [_kernel("conv3x3", 2e11)])[1] == "measured conv3x3"  # CPUs as before


# --- accuracy in exact fp32 -------------------------------------------------------------------------------


def test_fp32_math_switches_cudnns_tf32_default_off_and_restores_it():
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's own default
    try:
        with fp32_math(tf32=False):
            assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def test_accuracy_predicts_with_tf32_off(monkeypatch):
    from dnnbench.measure import accuracy

    seen = {}

    class Loaded:
        model, weights = tiny_model(), None

    def predict(*args, **kwargs):
        seen["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        raise RuntimeError("stop here")

    monkeypatch.setattr(accuracy, "input_plan", lambda *a, **k: replace_plan())
    monkeypatch.setattr(accuracy, "load_model", lambda *a, **k: Loaded())
    monkeypatch.setattr(accuracy, "_predict", predict)
    torch.backends.cudnn.allow_tf32 = True
    split = type("Split", (), {"subset": lambda self, limit: self, "__len__": lambda self: 1})()
    spec = type("Spec", (), {"id": "tiny"})()
    result = accuracy.evaluate(spec, split, accuracy.EvalSettings(device="cpu", workers=0), config={})
    assert "stop here" in result.error and seen == {"cudnn_tf32": False}


def replace_plan():
    return type("Plan", (), {"transform_input": None})()


def test_describe_records_tf32_for_torch_backends_too():
    from dnnbench.backends import make_backend

    assert make_backend("eager", "cpu", "fp32", 1, tf32=True).describe()["tf32"] is True
    assert make_backend("eager", "cpu", "fp32", 1).describe()["tf32"] is False
