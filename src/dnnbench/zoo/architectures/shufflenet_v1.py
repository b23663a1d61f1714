"""ShuffleNet v1 for ImageNet, written from the paper.

Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices", CVPR 2018 (arXiv:1707.01083).  No maintained
library ships this network and no pretrained weights exist, so the benchmark
builds it here with random weights to measure parameters, operations, time and
memory.  The benchmarked configuration is ``ShuffleNet 1x, g = 8``
(:func:`shufflenet_v1_g8`).

From the paper (Table 1, section 3):

* conv1: 3x3 convolution, stride 2, 24 output channels, then BN and ReLU;
  3x3 max pooling, stride 2 (224 -> 112 -> 56).
* Stages 2, 3 and 4 with 4, 8 and 4 ShuffleNet units; output channels per
  number of groups ``g`` at 1x: g=1 (144, 288, 576), g=2 (200, 400, 800),
  g=3 (240, 480, 960), g=4 (272, 544, 1088), g=8 (384, 768, 1536).
  "ShuffleNet s x" multiplies these by ``s``.
* ShuffleNet unit (Fig. 2b/2c): 1x1 group convolution to a bottleneck of one
  quarter of the unit's output channels + BN + ReLU, channel shuffle, 3x3
  depthwise convolution + BN (no ReLU after the depthwise convolution), 1x1
  group convolution + BN.  Stride-1 units add the identity shortcut and apply
  ReLU.  The first unit of every stage has stride 2: the shortcut is a 3x3
  average pooling with stride 2, the branch produces ``out - in`` channels and
  the two are concatenated, then ReLU.
* "We do not apply group convolution on the first pointwise layer [of stage 2]
  because the number of input channels is relatively small": the first 1x1
  convolution of the first unit of stage 2 (24 input channels) is dense.
* Global average pooling and a fully connected layer to ``num_classes``.
* Channel shuffle: reshape ``(n, g, c/g, h, w)``, transpose the two channel
  axes, flatten back.

Not from the paper (our choices, where the paper is silent):

* Padding: 1 for every 3x3 convolution/pooling, so spatial sizes follow
  Table 1 exactly (224, 112, 56, 28, 14, 7).  The average pooling keeps
  PyTorch's default ``count_include_pad=True``.
* Concatenation order in stride-2 units: shortcut first, then branch.
* The channel shuffle is applied with ``g`` groups in every unit, including
  the first unit of stage 2 whose first 1x1 convolution is dense (there the
  shuffle is a fixed relabelling of channels; it costs a copy but no
  parameters or multiply-adds).  For ``g = 1`` the shuffle is the identity
  and is skipped.
* conv1 has 24 channels at 1x for every ``g`` (Table 1).  For other width
  multipliers we read "scaling the number of filters in ShuffleNet 1x by s
  times" as covering conv1 too: ``24 * s`` rounded to the nearest multiple of
  ``g`` (ties up, at least ``g``).  With this reading 0.5x costs 37.6-40.5M
  multiply-adds for g = 1..8 (Table 2: 38 MFLOPs) and 0.25x 11.0-12.4M
  (Table 2: 13); keeping conv1 at 24 would give 42.7-44.3M and 17.5-19.0M.
* Convolutions followed by BN have no bias; the fully connected layer has one.
* Weight initialisation (the paper gives none): Kaiming normal
  (``fan_out``, ReLU gain) for convolutions, BN weight 1 and bias 0,
  fully connected weight normal(0, 0.01) and bias 0.  All of it uses
  ``torch.nn.init`` so it runs on the ``meta`` device.
* Width scaling: the scaled channel count ``c * s`` of each stage is rounded
  to the nearest multiple of ``4 * g`` (ties round up, never below ``4 * g``)
  so that the bottleneck ``c / 4`` is an integer divisible by ``g``, and
  ``out - in`` of every stride-2 unit is divisible by ``g`` too (conv1's
  width is a multiple of ``g``, see above).  All 1x configurations (and
  0.5x/0.25x for g = 1, 3, 8) are already multiples of ``4 * g`` and are
  unchanged; e.g. 0.5x g = 4 gives (144, 272, 544) instead of 136 for stage 2.
  A width multiplier so small that a stage would not grow its channel count
  raises ``ValueError``.

Multiply-accumulates of convolutions plus the fully connected layer at
224x224 for 1x, g = 8: 138,365,952 (the paper's Table 1 lists 137M for
g = 8, which matches the count without the fully connected layer,
136,829,952; the paper's Table 2 gives 140 MFLOPs for "1x").
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "STAGE_OUT_CHANNELS",
    "STAGE_REPEATS",
    "ChannelShuffle",
    "ShuffleNetUnit",
    "ShuffleNetV1",
    "channel_shuffle",
    "shufflenet_v1",
    "shufflenet_v1_g3",
    "shufflenet_v1_g8",
]

#: Output channels of stages 2, 3, 4 at 1x, per number of groups (Table 1).
STAGE_OUT_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
#: Number of ShuffleNet units in stages 2, 3, 4 (Table 1).
STAGE_REPEATS: tuple[int, int, int] = (4, 8, 4)
#: Output channels of conv1 at 1x (Table 1, same for every g).
STEM_CHANNELS = 24


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel shuffle of section 3.1.

    Input channels are read as ``groups`` consecutive blocks of ``c / groups``
    channels; output channel ``j`` is input channel
    ``(j % groups) * (c // groups) + j // groups``, i.e. the output takes the
    first channel of every group, then the second of every group, and so on.
    ``channel_shuffle(channel_shuffle(x, g), c // g)`` recovers ``x``.
    """
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by {groups} groups")
    x = x.reshape(n, groups, c // groups, h, w)
    x = x.transpose(1, 2)
    return x.reshape(n, c, h, w)


class ChannelShuffle(nn.Module):
    """Module wrapper of :func:`channel_shuffle` (visible in module trees and hooks)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleNetUnit(nn.Module):
    """ShuffleNet unit, Fig. 2(b) (stride 1) and Fig. 2(c) (stride 2).

    ``out_channels`` is the unit's output width (after the concatenation for
    stride 2); the bottleneck width is ``out_channels // 4``.
    ``first_conv_groups`` is the number of groups of the first 1x1
    convolution (``groups`` except for the first unit of stage 2, where it is 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int,
        first_conv_groups: int | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(
                f"a stride-1 unit needs in_channels == out_channels, got {in_channels} and {out_channels}"
            )
        if first_conv_groups is None:
            first_conv_groups = groups
        mid = out_channels // 4
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        if branch_out <= 0:
            raise ValueError(
                f"a stride-2 unit must grow the channel count, got {in_channels} -> {out_channels}"
            )
        for name, value, div in (
            ("out_channels", out_channels, 4),
            ("bottleneck channels", mid, groups),
            ("bottleneck channels", mid, first_conv_groups),
            ("in_channels", in_channels, first_conv_groups),
            ("branch output channels", branch_out, groups),
        ):
            if value % div:
                raise ValueError(f"{name} ({value}) must be divisible by {div}")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.stride = stride

        self.gconv1 = nn.Conv2d(in_channels, mid, 1, groups=first_conv_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.dwconv = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.gconv2 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.shortcut = (
            nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        )
        self.relu_out = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.gconv1(x)))
        out = self.shuffle(out)
        out = self.bn2(self.dwconv(out))
        out = self.bn3(self.gconv2(out))
        if self.stride == 2:
            out = torch.cat((self.shortcut(x), out), dim=1)
        else:
            out = out + x
        return self.relu_out(out)


def _scaled_channels(channels: int, width_mult: float, divisor: int) -> int:
    """``channels * width_mult`` rounded to the nearest multiple of ``divisor``
    (ties up), at least ``divisor``."""
    scaled = channels * width_mult
    return max(divisor, int(scaled / divisor + 0.5) * divisor)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 ("ShuffleNet s x" with ``g`` groups) for 224x224 inputs."""

    def __init__(self, groups: int = 8, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        if isinstance(groups, bool) or groups not in STAGE_OUT_CHANNELS:
            raise ValueError(
                f"ShuffleNet v1 groups must be one of {sorted(STAGE_OUT_CHANNELS)} (Table 1), got {groups!r}"
            )
        if not width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult!r}")
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")

        self.groups = groups
        self.width_mult = width_mult
        self.num_classes = int(num_classes)
        divisor = 4 * groups
        self.stage_out_channels = tuple(
            _scaled_channels(c, width_mult, divisor) for c in STAGE_OUT_CHANNELS[groups]
        )

        # conv1 is scaled too ("scaling the number of filters in ShuffleNet 1x by s
        # times"), rounded to a multiple of g so that out - in of stage 2's first unit
        # stays divisible by g; 24 at 1x for every g.
        self.stem_channels = _scaled_channels(STEM_CHANNELS, width_mult, groups)
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, self.stem_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(self.stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        in_channels = self.stem_channels
        stages = []
        for stage_index, (out_channels, repeats) in enumerate(
            zip(self.stage_out_channels, STAGE_REPEATS)
        ):
            if out_channels <= in_channels:
                raise ValueError(
                    f"width_mult={width_mult} gives stage {stage_index + 2} {out_channels} output "
                    f"channels, not more than its {in_channels} input channels"
                )
            units = [
                ShuffleNetUnit(
                    in_channels,
                    out_channels,
                    groups,
                    stride=2,
                    # paper: no group convolution on the first pointwise layer of stage 2
                    first_conv_groups=1 if stage_index == 0 else groups,
                )
            ]
            units += [
                ShuffleNetUnit(out_channels, out_channels, groups, stride=1)
                for _ in range(repeats - 1)
            ]
            stages.append(nn.Sequential(*units))
            in_channels = out_channels
        self.stage2, self.stage3, self.stage4 = stages

        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, self.num_classes)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage2(x)
        x = self.stage3(x)
        return self.stage4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.globalpool(x), 1)
        return self.fc(x)


def shufflenet_v1(groups: int = 8, width_mult: float = 1.0, num_classes: int = 1000) -> ShuffleNetV1:
    """ShuffleNet v1 with any Table 1 group count and width multiplier."""
    return ShuffleNetV1(groups=groups, width_mult=width_mult, num_classes=num_classes)


def shufflenet_v1_g8(num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet 1x, g = 8 (the configuration benchmarked)."""
    return ShuffleNetV1(groups=8, num_classes=num_classes, **kwargs)


def shufflenet_v1_g3(num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet 1x, g = 3 (the paper's other main variant)."""
    return ShuffleNetV1(groups=3, num_classes=num_classes, **kwargs)
