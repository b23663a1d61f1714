"""Networks of known layers for the prediction tests, built as python:dnnbench_prediction_models:NAME."""

import torch
from torch import nn


def known_layers() -> nn.Module:
    """One operator per layer, of the kinds listed in test_predict.KNOWN_KINDS."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def with_unusual_kinds() -> nn.Module:
    """Known layers and two operator kinds `known_layers` has not: GELU and Hardswish."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


class _Residual(nn.Module):
    """A stem, a residual block (conv-bn-relu, conv-bn, + identity, relu), a convolution read twice (sigmoid(s) * s),
    pooling, flatten, linear: what OpenVINO's fusion rules absorb is known operator by operator
    (test_predict_openvino.RESIDUAL_RULES)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + x)
        s = self.shared(y)
        return self.fc(torch.flatten(self.pool(torch.sigmoid(s) * s), 1))


def residual() -> nn.Module:
    return _Residual()


class _Digamma(nn.Module):
    def forward(self, x):
        return torch.digamma(x)


def with_digamma() -> nn.Module:
    """A convolution, then digamma: an operator OpenVINO's PyTorch frontend has no conversion rule for."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), _Digamma())
