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

__all__ = [
    "GpuInfo",
    "MachineFingerprint",
    "RuntimeSettings",
    "SoftwareFingerprint",
    "collect_machine",
    "collect_runtime",
    "collect_software",
    "detect_allocator",
]
