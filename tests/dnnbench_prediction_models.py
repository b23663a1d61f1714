"""Networks of known layers for the prediction tests, built as python:dnnbench_prediction_models:NAME."""

from torch import nn


def known_layers() -> nn.Module:
    """One operator per layer, of the kinds listed in test_predict.KNOWN_KINDS."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def with_unusual_kinds() -> nn.Module:
    """Known layers and two operator kinds `known_layers` has not: GELU and Hardswish."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))
