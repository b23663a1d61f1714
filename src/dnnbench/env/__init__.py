"""Environment: identity of the machine, software and runtime settings a result was measured under."""

from dnnbench.env.fingerprint import (
    GpuInfo,
    MachineFingerprint,
    RuntimeSettings,
    SoftwareFingerprint,
    collect_machine,
    collect_runtime,
    collect_software,
    detect_allocator,
)
from dnnbench.env.peak import (
    KernelMeasurement,
    PeakEstimate,
    SpecPeak,
    estimate_peak,
    measure_bandwidth,
    measure_dense_kernels,
    theoretical_cpu_peak,
    theoretical_cuda_peak,
)

__all__ = [
    "GpuInfo",
    "KernelMeasurement",
    "MachineFingerprint",
    "PeakEstimate",
    "RuntimeSettings",
    "SoftwareFingerprint",
    "SpecPeak",
    "collect_machine",
    "collect_runtime",
    "collect_software",
    "detect_allocator",
    "estimate_peak",
    "measure_bandwidth",
    "measure_dense_kernels",
    "theoretical_cpu_peak",
    "theoretical_cuda_peak",
]
