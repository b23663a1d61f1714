import pytest
import torch
import torchvision
from torch import nn

from dnnbench.measure.analytic_memory import (
    MemoryEstimate,
    _storage_key,
    estimate_inference_memory,
    track_forward,
)

F32 = 4  # bytes per float32 element


def small_chain(first_relu_inplace: bool = False) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=first_relu_inplace),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def meta(build):
    with torch.device("meta"):
        return build()


def test_storage_key_unique_on_meta_and_shared_by_views():
    a, b = torch.empty(3, 4, device="meta"), torch.empty(3, 4, device="meta")
    assert _storage_key(a) != _storage_key(b)
    assert _storage_key(a) == _storage_key(a.view(12)) == _storage_key(a[1:]) == _storage_key(a.t())


def test_small_chain_by_hand():
    e = estimate_inference_memory(meta(small_chain), (2, 3, 32, 32))
    conv1 = 2 * 8 * 32 * 32 * F32  # 65536, also the out-of-place ReLU's output
    conv2 = 2 * 16 * 16 * 16 * F32  # 32768 (stride 2)
    pool = 2 * 16 * F32  # 128
    fc = 2 * 10 * F32  # 80
    # Sequential holds only the current module's input: at each op, its input and output are live.
    # conv1: conv1 = 65536 | relu: conv1 + relu = 131072 | conv2: relu + conv2 = 98304
    # relu_: in place, 32768 | pool: conv2 + pool = 32896 | flatten: view | linear: pool + fc = 208
    assert e.peak_activation_bytes == 2 * conv1 == 131072
    assert e.peak_op == "aten.relu.default"
    assert e.peak_module == "1"
    assert e.input_bytes == 2 * 3 * 32 * 32 * F32
    assert e.output_bytes == fc
    assert e.weight_bytes == (8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 16 * 10 + 10) * F32
    assert e.buffer_bytes == 0
    assert e.total_peak_bytes == e.weight_bytes + e.input_bytes + e.peak_activation_bytes
    assert conv2 + pool < e.peak_activation_bytes
    d = e.to_dict()
    assert d["peak_activation_bytes"] == 131072 and "inference_mode" in d["method"]
    assert isinstance(e, MemoryEstimate)


def test_inplace_relu_adds_nothing_out_of_place_does():
    inplace = estimate_inference_memory(meta(lambda: small_chain(True)), (2, 3, 32, 32))
    conv1, conv2 = 2 * 8 * 32 * 32 * F32, 2 * 16 * 16 * 16 * F32
    # With relu_ the first ReLU reuses conv1's storage; peak moves to conv2: conv1 + conv2.
    assert inplace.peak_activation_bytes == conv1 + conv2 == 98304
    assert inplace.peak_op == "aten.conv2d.default"  # inference_mode: composites not decomposed
    out_of_place = estimate_inference_memory(meta(small_chain), (2, 3, 32, 32))
    assert out_of_place.peak_activation_bytes - inplace.peak_activation_bytes == conv2


class Block(nn.Module):
    def __init__(self, residual: bool):
        super().__init__()
        self.residual = residual
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if not self.residual:
            return self.conv2(self.relu(self.conv1(self.stem(x))))
        skip = self.stem(x)
        h = self.conv2(self.relu(self.conv1(skip)))
        h += skip
        return h


def test_residual_keeps_skip_alive():
    act = 2 * 8 * 32 * 32 * F32  # every activation here has this size: 65536
    plain = estimate_inference_memory(meta(lambda: Block(False)), (2, 3, 32, 32))
    res = estimate_inference_memory(meta(lambda: Block(True)), (2, 3, 32, 32))
    # plain: the stem output dies once conv1 has returned; at conv1 and at conv2 one input and
    # one output are live: 2 * act.
    assert plain.peak_activation_bytes == 2 * act
    # residual: skip is live until the end; at conv2: skip + conv1 + conv2 = 3 * act; += in place.
    assert res.peak_activation_bytes == 3 * act
    assert res.peak_activation_bytes - plain.peak_activation_bytes == act  # the skip tensor
    assert res.peak_module == "conv2"
    assert res.output_bytes == plain.output_bytes == act


class Views(nn.Module):
    def __init__(self, copy_at_end: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.copy_at_end = copy_at_end

    def forward(self, x):
        y = self.conv(x)
        v = y.view(2, -1).flatten()[: 2 * 8 * 32 * 32 // 2].view(2, 8, 16, 32).transpose(2, 3)
        return (y.flatten(1), v.contiguous() if self.copy_at_end else v, x.view(-1))


def test_views_not_double_counted():
    conv = 2 * 8 * 32 * 32 * F32
    e = estimate_inference_memory(meta(lambda: Views(False)), (2, 3, 32, 32))
    assert e.peak_activation_bytes == e.output_bytes == conv  # views of the input add nothing
    # A real copy of the non-contiguous half is new memory, so the tracker does see copies.
    c = estimate_inference_memory(meta(lambda: Views(True)), (2, 3, 32, 32))
    assert c.peak_activation_bytes == c.output_bytes == conv + conv // 2


def test_fp16_halves_weights_and_activations_and_leaves_model_alone():
    model = meta(lambda: torchvision.models.resnet18())
    f32 = estimate_inference_memory(model, (2, 3, 64, 64))
    f16 = estimate_inference_memory(model, (2, 3, 64, 64), torch.float16)
    assert f16.weight_bytes * 2 == f32.weight_bytes
    assert f16.peak_activation_bytes * 2 == f32.peak_activation_bytes
    assert f16.input_bytes * 2 == f32.input_bytes
    n_bn_int64 = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))  # num_batches_tracked
    assert (f16.buffer_bytes - 8 * n_bn_int64) * 2 == f32.buffer_bytes - 8 * n_bn_int64
    p = next(model.parameters())
    assert p.dtype == torch.float32 and p.device.type == "meta" and model.training


def test_peak_scales_linearly_with_batch():
    model = meta(lambda: torchvision.models.resnet18())
    one = estimate_inference_memory(model, (1, 3, 224, 224)).peak_activation_bytes
    for b in (8, 32):
        many = estimate_inference_memory(model, (b, 3, 224, 224)).peak_activation_bytes
        assert many / (b * one) == pytest.approx(1, rel=0.01)


def small_convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.mark.parametrize("build", [small_convnet, lambda: Block(True), torchvision.models.resnet18])
def test_meta_estimate_equals_real_cpu_tracking(build):
    torch.manual_seed(0)
    cpu_model = build()
    shape = (2, 3, 32, 32) if build is not torchvision.models.resnet18 else (1, 3, 64, 64)
    tracker, out = track_forward(cpu_model, torch.randn(shape))
    assert out.device.type == "cpu"
    from_meta = estimate_inference_memory(meta(build), shape)
    from_cpu_model = estimate_inference_memory(cpu_model, shape)  # meta copy of a real model
    assert tracker.peak > 0
    assert from_meta.peak_activation_bytes == from_cpu_model.peak_activation_bytes == tracker.peak
    assert from_meta.peak_op == tracker.peak_op
    assert from_meta.peak_module == tracker.peak_module
    assert next(cpu_model.parameters()).device.type == "cpu"


def test_resnet50_batch1_sanity():
    e = estimate_inference_memory(meta(torchvision.models.resnet50), (1, 3, 224, 224))
    # 25,557,032 float32 parameters.
    assert e.weight_bytes == 25_557_032 * F32
    assert 10e6 < e.peak_activation_bytes < 60e6
    # Peak in layer1.0's downsample BN: maxpool output (identity, 64x56x56) + bn3 output,
    # downsample conv output and its BN output (256x56x56 each) = 10,436,608 bytes.
    assert e.peak_activation_bytes == (64 + 3 * 256) * 56 * 56 * F32
    assert e.peak_module == "layer1.0.downsample.1"
    assert e.output_bytes == 1000 * F32
