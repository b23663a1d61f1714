"""Known-answer tests: networks small enough that every parameter and MAC is counted here by hand."""

import pytest
import torch
from torch import nn

from dnnbench.errors import InputSizeError
from dnnbench.measure.complexity import complexity, count_model


class HandNet(nn.Module):
    """1x3x16x16 input; the comments give each layer's count."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # out 8x16x16 = 2048; MACs 2048 * 3*3*3 = 55296; params 8*27 + 8 = 224
        self.bn = nn.BatchNorm2d(8)  # params 16; buffers 8 + 8 + 1
        self.relu = nn.ReLU()
        # out 16x8x8 = 1024; MACs 1024 * (8/4)*9 = 18432; params 16*2*9 = 288
        self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # out 1024; MACs 1024 * 1*9 = 9216; params 16*9 + 16 = 160
        self.pool = nn.MaxPool2d(2)  # out 16x4x4 = 256
        self.gap = nn.AdaptiveAvgPool2d(1)  # in 256, out 16
        self.fc = nn.Linear(16, 10)  # MACs 16*10 = 160; params 170

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.pool(self.depthwise(self.grouped(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


CONV_MACS = 55296 + 18432 + 9216
LINEAR_MACS = 160
PARAMS = 224 + 16 + 288 + 160 + 170
# extended mode: BN 2 ops x 2048, ReLU 1 x 2048, max pool 4 inputs x 256 outputs, global average pool 256 inputs
ELEMENT_OPS = 2 * 2048 + 2048 + 4 * 256 + 256


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_hand_counted_network(device):
    with torch.device(device):
        net = HandNet()
    result = count_model(net, input_size=16, batch_size=1)
    assert result.params == PARAMS
    assert result.trainable_params == PARAMS
    assert result.param_bytes == PARAMS * 4
    assert result.buffers == 17 and result.buffer_bytes == 16 * 4 + 8  # num_batches_tracked is int64
    assert result.conv_macs == CONV_MACS
    assert result.matmul_macs == LINEAR_MACS
    assert result.macs == CONV_MACS + LINEAR_MACS
    assert result.flops == 2 * (CONV_MACS + LINEAR_MACS)
    assert result.element_ops == 0
    assert result.output_shape == (1, 10)
    # activations: outputs of conv and linear layers
    assert result.activations == 2048 + 1024 + 1024 + 10


def test_per_layer_breakdown_adds_up_and_names_layers():
    result = count_model(HandNet().to("meta"), input_size=16)
    by_path = {layer.path: layer for layer in result.layers}
    assert by_path["conv"].macs == 55296 and by_path["conv"].params == 224
    assert by_path["grouped"].macs == 18432 and by_path["grouped"].params == 288
    assert by_path["depthwise"].macs == 9216 and by_path["depthwise"].output_shape == (1, 16, 8, 8)
    assert by_path["fc"].macs == 160 and by_path["fc"].type == "Linear"
    assert by_path["bn"].params == 16 and by_path["bn"].macs == 0
    assert sum(layer.macs for layer in result.layers) == result.macs
    assert sum(layer.params for layer in result.layers) == result.params


def test_batch_scales_operations_not_parameters():
    one = count_model(HandNet().to("meta"), input_size=16, batch_size=1)
    eight = count_model(HandNet().to("meta"), input_size=16, batch_size=8)
    assert eight.macs == 8 * one.macs and eight.params == one.params
    assert eight.macs_per_image == one.macs


def test_counting_modes():
    net = HandNet().to("meta")
    conv_only = count_model(net, 16, mode="conv-only")
    extended = count_model(net, 16, mode="extended")
    assert conv_only.macs == CONV_MACS  # convolutions only: the linear layer is left out
    assert extended.macs == CONV_MACS + LINEAR_MACS
    assert extended.element_ops == ELEMENT_OPS
    assert extended.flops == 2 * (CONV_MACS + LINEAR_MACS) + ELEMENT_OPS
    with pytest.raises(ValueError, match="modes: standard, extended, conv-only, bianco2018"):
        count_model(net, 16, mode="fvcore")


def test_paper_is_an_old_name_for_conv_only_and_says_so():
    with pytest.warns(FutureWarning, match="now called 'conv-only'.*bianco2018"):
        old = count_model(HandNet().to("meta"), 16, mode="paper")
    assert old.mode == "conv-only" and old.macs == CONV_MACS


# bianco2018 on HandNet, by hand: k_h x k_w x C_in x C_out per output position, groups ignored
# conv 9*3*8 * 256 = 55296 (+ bias 8*256 = 2048); grouped 9*8*16 * 64 = 73728 (no bias);
# depthwise 9*16*16 * 64 = 147456 (+ bias 16*64 = 1024); the linear layer is not a Conv2d
BIANCO_MACS = 55296 + 73728 + 147456
BIANCO_BIAS = 2048 + 1024


def test_bianco2018_ignores_groups_counts_bias_and_halves_only_resnets():
    net = HandNet().to("meta")
    result = count_model(net, 16, mode="bianco2018")
    assert (result.macs, result.element_ops) == (BIANCO_MACS, BIANCO_BIAS)
    assert result.flops == 2 * BIANCO_MACS + BIANCO_BIAS and not result.halved
    assert sum(layer.macs for layer in result.layers) == BIANCO_MACS
    assert result.conv_macs == CONV_MACS  # the true count stays beside it
    resnet = count_model(net, 16, mode="bianco2018", name="resnet_hand")
    assert resnet.halved and resnet.flops == (2 * BIANCO_MACS + BIANCO_BIAS) / 2


def _companion_hook_flops(model, size):
    """The 2018 companion code's counter, transcribed: CeLuigi/models-comparison.pytorch,
    pretrainedmodels/utils.py `conv_flops_counter_hook` at 62142a9 (before caaf76b added `/= groups`),
    with scripts/compute_computational_complexity.py's `/ 2` left to the caller."""
    total = [0]

    def hook(conv, inputs, output):
        positions = inputs[0].shape[0] * output.shape[2] * output.shape[3]
        flops = 2 * conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels * conv.out_channels * positions
        total[0] += flops + (conv.out_channels * positions if conv.bias is not None else 0)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.inference_mode():
        model(torch.empty(1, 3, size, size, device="meta"))
    return total[0]


def test_bianco2018_reproduces_the_companion_codes_mobilenetv2_and_resnet50_figures():
    """The 2018 companion code's operation figures, per image at 224 x 224:

    - MobileNetV2: 11,095,719,936 FLOPs = 11.1 G (groups ignored: each depthwise 3x3 counted as a full
      convolution), against 299,494,272 = 0.299 G MACs in conv-only mode (issue 12 quotes 11.1 G vs 0.299 G);
    - ResNet-50: 8,174,272,512 before the resnet halving, 4,087,136,256 = 4.09 G after it (no grouped
      convolutions, no conv bias: the halving makes it equal to the true convolution MACs).

    Both are the companion code's `conv_flops_counter_hook` rule (transcribed in `_companion_hook_flops`)
    applied to torchvision's architectures, which are the companion code's for these two models; the
    companion code itself needs CUDA and its own package, so the figures are checked against the
    transcription on the same meta model and against the numbers above.
    """
    from dnnbench.zoo import build_model, get

    mobilenet = complexity("MobileNetV2", mode="bianco2018")
    assert mobilenet.flops == 11_095_719_936 and not mobilenet.halved
    assert mobilenet.flops == _companion_hook_flops(build_model(get("MobileNetV2"), "meta"), 224)
    assert complexity("MobileNetV2", mode="conv-only").macs == 299_494_272  # what the same convolutions cost
    resnet = complexity("ResNet-50", mode="bianco2018")
    assert resnet.flops == 4_087_136_256 and resnet.halved
    assert 2 * resnet.flops == _companion_hook_flops(build_model(get("ResNet-50"), "meta"), 224)


def test_extended_mode_counts_residual_additions_and_inplace_activations():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1, bias=False)  # out 3x8x8 = 192; MACs 192 * 3 = 576
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.act(x + self.conv(x))  # add: 192 ops, ReLU: 192 ops

    result = count_model(Residual().to("meta"), 8, mode="extended")
    assert result.macs == 576
    assert result.element_ops == 192 + 192


def test_matrix_products_outside_modules_are_counted():
    class Attention(nn.Module):
        def forward(self, x):
            tokens = x.flatten(2).transpose(1, 2)  # (1, 16, 3)
            scores = tokens @ tokens.transpose(1, 2)  # bmm: 16*16*3 MACs
            return scores @ tokens  # bmm: 16*3*16 MACs

    result = count_model(Attention(), 4)
    assert result.matmul_macs == 2 * 16 * 16 * 3
    assert result.conv_macs == 0
    assert count_model(Attention(), 4, mode="conv-only").macs == 0


def test_frozen_and_shared_parameters():
    net = HandNet()
    net.fc.requires_grad_(False)
    result = count_model(net, 16)
    assert result.params == PARAMS and result.trainable_params == PARAMS - 170

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a  # one module called twice: its parameters count once, its MACs twice

        def forward(self, x):
            return self.b(self.a(x.flatten(1)[:, :4]))

    shared = count_model(Shared(), 2)
    assert shared.params == 20
    assert shared.matmul_macs == 2 * 16


def test_dtype_sets_weight_bytes():
    net = HandNet().to("meta").to(torch.float16)
    result = count_model(net, 16, dtype=torch.float16)
    assert result.param_bytes == PARAMS * 2
    assert result.dtype == "float16"
    assert result.macs == CONV_MACS + LINEAR_MACS


def test_zoo_model_on_meta_matches_published_resnet50_figures():
    result = complexity("ResNet-50")
    assert result.params == 25_557_032  # torchvision's ResNet50_Weights meta num_params
    assert result.macs == 4_089_184_256  # torchvision's meta: 4.09 GFLOPS, which are MACs
    assert result.input_size == 224 and result.model == "resnet50"


def test_input_too_small_names_model_and_smallest_size():
    with pytest.raises(InputSizeError,
                       match=r"inceptionv3 cannot run on a 32x32 input; the smallest input size that works is 75"):
        complexity("inceptionv3", input_size=32)


def test_nonpositive_sizes_are_refused():
    with pytest.raises(InputSizeError):
        complexity("resnet18", batch_size=0)
