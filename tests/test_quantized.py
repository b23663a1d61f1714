"""Quantized int8 deployments: planned where the CPU has int8 arithmetic, calibrated (synthetic or a folder of
images), checked against eager fp32 on held-out images before they are timed (a broken layer is rejected),
evaluated for accuracy through the very call that is timed, and marked as quantized in the analysis."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dnnbench import zoo
from dnnbench.analysis import frames_from_records, performance
from dnnbench.analysis.best import best_deployments
from dnnbench.analysis.select import Constraints, select_models
from dnnbench.backends import (
    as_tensor,
    available_backends,
    check_input,
    compare,
    make_backend,
    precision_unavailable_reason,
    search_precisions,
)
from dnnbench.backends.output_check import CHECK_SEED, TOLERANCES, check_images
from dnnbench.backends.quantization import (
    CALIBRATION_SEED,
    DIRECTORY,
    SYNTHETIC,
    directory_calibration,
    synthetic_calibration,
)
from dnnbench.devices import torch_dtype
from dnnbench.errors import UsageError
from dnnbench.run.config import build_sweep_config
from dnnbench.run.plan import plan
from dnnbench.store import ResultRecord
from dnnbench_accuracy_models import CLASSES, draw

CPU = torch.device("cpu")
INT8_HERE = [b for b in ("openvino", "onnxruntime")
             if available_backends(CPU)[b] is None and make_backend(b, CPU, "int8", 1).unsupported_reason() is None]
needs_int8 = pytest.mark.skipif(not INT8_HERE, reason="no int8 backend runs on this machine (see dnnbench backends)")
INPUT = 64
SAMPLES = 16

pytestmark = pytest.mark.usefixtures("one_thread")


class SmallNet(nn.Module):
    """Three convolutions with batch norm, a pool and a 100-way head: small, but its logits depend on the input
    as a real classifier's do (the check images give different logits)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Linear(64, 100)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def small():
    """The small network (seeded), and eager fp32 logits of the held-out check images at batch 8."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    x = check_input(INPUT, CPU, batch_size=8)
    with torch.inference_mode():
        return model, x, as_tensor(model(x))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path / "cache"))  # ONNX exports stay in this test's folder


def quantized(backend: str, model: nn.Module, calibration=None):
    import copy

    deployed = make_backend(backend, CPU, "int8", 1)
    deployed.calibrate_with(calibration or synthetic_calibration(INPUT, SAMPLES))
    deployed.prepare(copy.deepcopy(model), check_input(INPUT, CPU, batch_size=1), key=f"test-small-{INPUT}")
    return deployed


# --- planning --------------------------------------------------------------------------------------------------


def test_int8_is_searched_only_where_the_cpu_has_int8_dot_products_and_refused_elsewhere_with_the_reason():
    assert "int8" in search_precisions("cpu", ("avx2", "avx512_vnni"))
    assert "int8" in search_precisions("cpu", ("amx_int8", "amx_bf16"))
    assert "int8" not in search_precisions("cpu", ("avx2", "fma"))
    assert "dot-product" in precision_unavailable_reason("int8", "cpu", ("avx2",))
    assert precision_unavailable_reason("int8", "cpu", ("avx_vnni",)) is None
    # the backends that do not quantize say which do; PyTorch never casts to int8
    reason = make_backend("eager", CPU, "int8", 1).unsupported_reason()
    assert "onnxruntime" in reason and "openvino" in reason
    with pytest.raises(UsageError, match="quantized precision"):
        torch_dtype("int8")


def test_int8_cells_carry_their_calibration_in_the_key_and_a_bad_folder_is_refused_up_front(tmp_path):
    spec = zoo.get("resnet18")
    config = build_sweep_config(batch_sizes=(1,), threads=(1,), backends=("eager", "openvino"),
                                precisions=("fp32", "int8"), metrics=("time",), measure_peak=False)
    keys = {(c.key.config_dict["backend"], c.key.config_dict["dtype"]): c.key.config_dict for job in plan([spec], config)
            for c in job.cells}
    assert keys["openvino", "int8"]["calibration"] == {"method": SYNTHETIC, "source": None, "samples": 32}
    assert "calibration" not in keys["openvino", "fp32"]  # fp32 keys as before
    with pytest.raises(UsageError, match="layout"):
        build_sweep_config(precisions=("int8",), backends=("openvino",), calibration_data=tmp_path)


# --- the check -------------------------------------------------------------------------------------------------


@needs_int8
@pytest.mark.parametrize("backend", INT8_HERE)
def test_a_small_network_quantized_on_generated_images_passes_the_check_on_held_out_images(small, backend):
    model, x, reference = small
    deployed = quantized(backend, model)
    with torch.inference_mode():
        check = compare(deployed.outputs(x), reference, "int8")
    assert deployed.executed_precision == "int8"
    assert check.passed, check
    assert 0 < check.relative_l2_error  # it really is quantized: not bit-identical to fp32
    described = deployed.describe()["quantization"]
    assert (described["calibration_method"], described["calibration_samples"]) == (SYNTHETIC, SAMPLES)
    assert deployed.setup.steps["quantize_s"] > 0  # a set-up phase of its own
    # held out: the calibration images are not the check images
    calibration = synthetic_calibration(INPUT, SAMPLES).images
    assert CALIBRATION_SEED != CHECK_SEED
    assert not any(torch.equal(c, image) for c in calibration for image in check_images(INPUT))


@needs_int8
@pytest.mark.skipif("onnxruntime" not in INT8_HERE, reason="ONNX Runtime int8 does not run here")
def test_a_quantized_model_with_one_layer_broken_after_quantization_is_rejected(small):
    import onnx
    from onnx import numpy_helper

    model, x, reference = small
    deployed = quantized("onnxruntime", model)
    graph = onnx.load_model_from_string(deployed.quantize_graph(deployed.onnx_path))  # the graph the session runs
    initializers = {i.name: i for i in graph.graph.initializer}
    # the weight scales of the second convolution's DequantizeLinear, doubled: one layer computes twice its output
    weight_scales = [node.input[1] for node in graph.graph.node if node.op_type == "DequantizeLinear"
                     and initializers.get(node.input[0]) is not None and initializers[node.input[0]].data_type == 3]
    scale = initializers[weight_scales[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, scale.name))
    deployed.open_session(graph.SerializeToString())
    with torch.inference_mode():
        check = compare(deployed.outputs(x), reference, "int8")
    assert not check.passed and check.relative_l2_error > TOLERANCES["int8"][0]


# --- calibration from a folder ---------------------------------------------------------------------------------


def write_imagenet_folder(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    """Class folders of generated JPEGs (data.imagenet's first layout)."""
    rng = np.random.default_rng(seed)
    for k, (synset, _, _) in enumerate(CLASSES):
        (root / synset).mkdir(parents=True)
        for j in range(per_class):
            draw(k, rng).save(root / synset / f"img_{j}.JPEG", quality=90)
    return root


@needs_int8
def test_calibration_reads_an_imagenet_folder_with_the_models_preprocessing_and_quantizes(small, tmp_path):
    from torchvision import transforms as T

    root = write_imagenet_folder(tmp_path / "calibration")
    spec = zoo.get("python:dnnbench_accuracy_models:shape_net")  # the default ImageNet preprocessing
    calibration = directory_calibration(root, spec, INPUT, samples=6)
    assert calibration.images.shape == (6, 3, INPUT, INPUT) and calibration.method == DIRECTORY
    assert calibration.source == str(root.resolve()) and calibration.samples == 6
    # one image per class (the subset spreads over the classes), decoded as torchvision's classic recipe would
    reference = T.Compose([T.Resize(INPUT * 256 // 224), T.CenterCrop(INPUT), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    from PIL import Image

    files = sorted(root.rglob("*.JPEG"))
    expected = [reference(Image.open(f).convert("RGB")) for f in files]
    assert all(any(torch.allclose(image, e, atol=2e-2) for e in expected) for image in calibration.images)
    model, x, reference_logits = small
    deployed = quantized(INT8_HERE[0], model, calibration)
    with torch.inference_mode():
        assert compare(deployed.outputs(x), reference_logits, "int8").passed
    assert deployed.describe()["quantization"]["calibration_source"] == str(root.resolve())


# --- accuracy of the int8 deployment ---------------------------------------------------------------------------


@needs_int8
def test_accuracy_of_an_int8_deployment_equals_the_independently_computed_one(tmp_path):
    from PIL import Image
    from safetensors.torch import save_file
    from torchvision import transforms as T

    from dnnbench.data.classes import synset_to_index
    from dnnbench.measure.accuracy import evaluate_accuracy
    from dnnbench_accuracy_models import shape_net

    backend = INT8_HERE[0]
    torch.manual_seed(1)
    net = shape_net().eval()  # untrained: some right, most wrong, all through the int8 deployment
    weights = tmp_path / "net.safetensors"
    save_file(net.state_dict(), weights)
    root = write_imagenet_folder(tmp_path / "val", per_class=3, seed=1)
    calibration_root = write_imagenet_folder(tmp_path / "calibration", per_class=2, seed=2)
    name = "python:dnnbench_accuracy_models:shape_net"
    result = evaluate_accuracy(name, root, weights=weights, backend=backend, dtype="int8",
                               calibration_data=calibration_root, calibration_samples=8, batch_size=4, workers=0)
    assert result.status == "ok", result.error
    assert result.config["backend"] == backend and result.config["dtype"] == "int8"
    assert result.config["calibration"]["method"] == DIRECTORY

    # independently: the same quantized deployment, fed by torchvision's recipe, counted here
    deployed = make_backend(backend, CPU, "int8", None)
    deployed.calibrate_with(directory_calibration(calibration_root, zoo.get(name), 224, samples=8))
    deployed.prepare(net, check_input(224, CPU, batch_size=1), key="independent")
    recipe = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    files = sorted(root.rglob("*.JPEG"))
    images = torch.stack([recipe(Image.open(f).convert("RGB")) for f in files])
    labels = torch.tensor([synset_to_index()[f.parent.name] for f in files])
    with torch.inference_mode():
        logits = torch.cat([as_tensor(deployed.bind(images[i:i + 4])()) for i in range(0, len(images), 4)])
    correct = int((logits.argmax(1) == labels).sum())
    assert (result.n, result.top1_correct) == (len(files), correct)
    eager = evaluate_accuracy(name, root, weights=weights, batch_size=4, workers=0)
    assert eager.status == "ok" and "backend" not in eager.config  # eager keys as before


# --- the analysis marks quantized cells ------------------------------------------------------------------------


def _record(model, metric, config, values):
    now = time.time()
    return ResultRecord(model=model, metric=metric, config=config, status="ok", values=values, error=None,
                        started_at=now, finished_at=now, machine_id="m1")


def _timed(model, backend, dtype, latency_s):
    config = {"device": "cpu", "dtype": dtype, "batch_size": 1, "input_size": 224, "threads": 1, "backend": backend}
    values = {"median_s": latency_s, "stats": {"median": latency_s, "n": 10}, "converged": True,
              "contention": {"contended": False}, "images_per_s": 1 / latency_s, "ms_per_image": latency_s * 1e3,
              "executed_precision": dtype, "output_check": {"passed": True, "relative_l2_error": 0.05},
              "stop_reason": "converged"}
    return _record(model, "time", config, values)


def _accuracy(model, backend, dtype, top1):
    config = {"weights": "w", "preprocessing": "weights", "dataset": {"sha256": "d"}, "limit": None,
              "device": "cpu", "dtype": dtype}
    if backend != "eager":
        config["backend"] = backend
    return _record(model, "accuracy", config, {"top1": top1, "top5": 90.0, "n": 100})


def test_best_and_select_mark_int8_as_quantized_with_the_drop_or_accuracy_not_measured():
    timed = [_timed("resnet50", "eager", "fp32", 0.100), _timed("resnet50", "openvino", "int8", 0.020),
             _timed("mobilenetv2", "eager", "fp32", 0.050), _timed("mobilenetv2", "onnxruntime", "int8", 0.010)]
    accuracy = [_accuracy("resnet50", "eager", "fp32", 76.1), _accuracy("resnet50", "openvino", "int8", 75.6)]
    frames = frames_from_records(timed + accuracy)
    best = best_deployments(frames.time, accuracy=frames.accuracy).set_index("model")
    assert best.loc["resnet50", "dtype"] == "int8"
    assert best.loc["resnet50", "accuracy_drop"] == pytest.approx(0.5)
    assert "int8 quantized: top-1 75.60%, 0.50 points below eager fp32 (76.10%)" == best.loc["resnet50", "quantization"]
    assert best.loc["mobilenetv2", "quantization"] == "int8 quantized: accuracy not measured"
    perf = performance(frames)
    assert perf.loc[perf["dtype"] == "fp32", "quantization"].eq("").all()
    # the int8 deployment's own top-1 decides a top-1 constraint; where it was not measured it cannot pass one
    chosen = select_models(perf, Constraints(min_top1=70.0), top=None, machine_id="m1")
    by_model = {c.model: c for c in chosen.chosen}
    assert by_model["resnet50"].top1 == pytest.approx(75.6) and by_model["resnet50"].quantization
    rejected = {r.candidate.model: r for r in chosen.rejected}
    assert "mobilenetv2" not in by_model or not by_model["mobilenetv2"].quantization
    fast = select_models(perf, Constraints(max_latency_ms=15.0), top=None, machine_id="m1")
    assert {c.model: c.quantization for c in fast.chosen}["mobilenetv2"] == "int8 quantized: accuracy not measured"
    assert rejected.get("mobilenetv2") is None or "accuracy not measured" in rejected["mobilenetv2"].describe()


# --- the sweep ---------------------------------------------------------------------------------------------------


@needs_int8
def test_a_sweep_quantizes_once_times_checked_int8_cells_and_records_why_other_backends_do_not(tmp_path, monkeypatch):
    from dnnbench.run.runner import run_sweep
    from dnnbench.store import Store

    tests = Path(__file__).resolve().parent  # the workers import this checkout and the test models
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(tests.parent / "src"), str(tests))))
    spec = zoo.get("python:dnnbench_test_models:tiny")
    config = build_sweep_config(device="cpu", batch_sizes=(1, 2), threads=(1,), input_size=32, time_budget_s=0.2,
                                min_samples=3, warmup_iters=1, warmup_s=0.0, metrics=("time", "memory"),
                                backends=(*INT8_HERE, "eager"), precisions=("int8",), measure_peak=False,
                                calibration_samples=8)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep([spec], config, store)
    cells = {(r.config["backend"], r.metric, r.config["batch_size"]): r for r in summary.records}
    for backend in INT8_HERE:
        timed = cells[backend, "time", 2]
        assert timed.status == "ok", timed.error
        values = timed.values
        assert values.executed_precision == "int8" and values.output_check.passed
        assert values.output_check.batch_size == 2  # checked at its own shape, before it was timed
        assert {"calibration_data_s", "quantize_s"} <= set(values.setup.prepare)
        quantization = values.backend.extra["quantization"]
        assert (quantization["calibration_method"], quantization["calibration_samples"]) == (SYNTHETIC, 8)
        assert timed.config["calibration"] == {"method": SYNTHETIC, "source": None, "samples": 8}
        memory = cells[backend, "memory", 1].values
        assert memory.weight_bytes == sum(p.numel() for p in zoo.build_model(spec, "cpu").parameters())  # 1 B each
    eager = cells["eager", "time", 1]
    assert eager.status == "unsupported" and "openvino" in eager.error
