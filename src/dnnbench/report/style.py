"""One look for every figure: family colours, axis titles with units, number formats."""

from __future__ import annotations

from typing import Iterable

# Tableau-like colours, one per family of the 2018 study; other families (timm, custom, ...) get the rest.
FAMILY_COLORS = {
    "AlexNet": "#7f7f7f", "DenseNet": "#1f77b4", "DPN": "#aec7e8", "Inception": "#ff7f0e", "MobileNet": "#2ca02c",
    "NASNet": "#98df8a", "ResNet": "#d62728", "ResNeXt": "#ff9896", "SENet": "#9467bd", "ShuffleNet": "#c5b0d5",
    "SqueezeNet": "#8c564b", "VGG": "#e377c2", "Xception": "#17becf",
}
SPARE_COLORS = ("#bcbd22", "#dbdb8d", "#c49c94", "#f7b6d2", "#9edae5", "#393b79", "#637939", "#8c6d31",
                "#843c39", "#7b4173")

AXIS = {
    "gmacs": "Operations per image [G-MACs] (FLOPs = 2 x MACs)",
    "params_m": "Parameters [millions]",
    "top1": "Top-1 accuracy [%] (ImageNet-1k val)",
    "top5": "Top-5 accuracy [%] (ImageNet-1k val)",
    "accuracy_density": "Accuracy density [top-1 % per million parameters]",
    "images_per_s": "Throughput [images/s]",
    "ms_per_image": "Time per image [ms] (median batch time / batch size)",
    "latency_ms": "Latency [ms per batch] (median)",
    "memory_mb": "Memory [MB = 2^20 bytes]",
    "batch_size": "Batch size",
    "gflops_per_s": "Achieved GFLOP/s (2 x MACs x images/s)",
    "speed_ratio": "Speed ratio (images/s on A / images/s on B)",
    "arithmetic_intensity": "Arithmetic intensity [FLOP/byte] (2 x MACs / weights + activations bytes)",
    "fraction_of_peak": "Fraction of peak [%] (achieved GFLOP/s / peak GFLOP/s)",
}


def family_colors(families: Iterable[str]) -> dict[str, str]:
    """A colour for each family; stable across figures of one report (unknown families in sorted order)."""
    colors, spare = {}, iter(SPARE_COLORS * 10)
    for family in sorted(set(families)):
        colors[family] = FAMILY_COLORS.get(family) or next(spare)
    return colors


def fmt_number(value: float | None, digits: int = 3) -> str:
    """Short human number: 3 significant digits, no scientific notation for everyday magnitudes."""
    if value is None or value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"
