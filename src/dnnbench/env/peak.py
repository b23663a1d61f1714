"""Peak arithmetic rate of a device per precision: what an achieved GFLOP/s is a fraction of.

Two estimates are made and both are kept:

* **spec** (theoretical): cores x FLOP per cycle per core x clock. On a CPU, FLOP per cycle comes from a
  small table (`CPU_CORES`, vendor / family / model / flags -> FMA units and datapath width) and the precision's
  instruction path (`avx512_bf16` dot products, AMX tiles, VNNI, ...); the clock is the maximum frequency the
  kernel reports (cpufreq, else `lscpu`), else the `cpu MHz` of /proc/cpuinfo, which in a VM is the nominal
  clock and misses turbo. On a CUDA device: streaming multiprocessors x FLOP per cycle per SM of the compute
  capability (`CUDA_FLOP_PER_CYCLE_PER_SM`) x the maximum SM clock (NVML) is only the labelled fallback: the
  figure is NVIDIA's datasheet one (`CUDA_DATASHEETS`, dense, keyed by the device's name), because datasheets
  use the boost clock and NVML's maximum SM clock is higher (1070 against 989 TFLOP/s fp16 on an H100 SXM).
* **measured**: the best rate of two short dense kernels through PyTorch on the device itself, a square
  matrix product (`torch.mm`: MKL or oneDNN on a CPU, cuBLAS on a GPU) and a 3x3 convolution
  (`conv2d`, channels-last: oneDNN or cuDNN), each the best of several calls over about `seconds` / 2. Their
  shapes grow from small ones until one call takes a noticeable share of the budget, so a slow path (fp16 on a
  CPU without fp16 arithmetic) is measured on a smaller shape instead of stalling.

`peak_flops`, the number efficiencies are divided by, is the spec estimate, raised to the measured rate when a
kernel beats it (the spec's clock was too low, e.g. turbo hidden by a VM), and the measured rate alone where no
spec is known (`basis` says which). A datasheet figure is never raised, and on a GPU the 3x3 convolution never
raises the peak: cuDNN may serve it with Winograd, which does fewer FLOPs than counted. A short copy
(`measure_bandwidth`) gives the memory bandwidth that draws the slanted roof of the roofline figure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..devices import PEAK_PRECISIONS as PRECISIONS
from ..devices import normalise_device, parse_precision, torch_dtype
from ..errors import UsageError

CPU_MEASURED = ("fp32", "bf16", "fp16")  # precisions with a PyTorch dense kernel to time on a CPU
CUDA_MEASURED = ("fp32", "tf32", "bf16", "fp16")

DEFAULT_SECONDS = 2.0  # per precision: half for the matrix product, half for the convolution
DEFAULT_MATMUL_N = 2048  # CPU; CUDA uses 8192
DEFAULT_CONV_SHAPE = (4, 256, 56, 56, 256)  # batch, in channels, height, width, out channels (ResNet stage 2)
CUDA_MATMUL_N = 8192
CUDA_CONV_SHAPE = (32, 256, 56, 56, 256)
BANDWIDTH_MIB = 128  # per buffer of the copy: beyond the last-level cache of most CPUs
MHZ = 1e6


def normalise_precision(name: str) -> str:
    return parse_precision(name, PRECISIONS)


def unit(precision: str) -> str:
    return "OP/s" if precision == "int8" else "FLOP/s"


# ------------------------------------------------------------------------------------------ CPU table


@dataclass(frozen=True)
class CpuCore:
    """One row of the CPU table: which cores it covers and their floating-point pipes.

    fp32 FLOP per cycle per core = fma_units x (datapath_bits / 32) lanes x 2 (a fused multiply-add is 2 FLOPs;
    cores without FMA that issue one add and one multiply per cycle count as one unit).
    """

    name: str
    vendor: str | None  # /proc/cpuinfo vendor_id; None: any
    family: int | None  # "cpu family"; None: any
    models: tuple[tuple[int, int], ...] | None  # inclusive ranges of "model"; None: any
    flags: frozenset[str]  # all of them present
    fma_units: int
    datapath_bits: int
    from_flags_only: bool = False  # a generic row: nothing but the flags is known about the core
    note: str = ""

    @property
    def fp32_flop_per_cycle(self) -> int:
        return self.fma_units * (self.datapath_bits // 32) * 2

    def matches(self, vendor: str | None, family: int | None, model: int | None, flags: frozenset[str]) -> bool:
        if self.vendor is not None and vendor != self.vendor:
            return False
        if self.family is not None and family != self.family:
            return False
        if self.models is not None and (model is None or not any(lo <= model <= hi for lo, hi in self.models)):
            return False
        return self.flags <= flags


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


AMD, INTEL = "AuthenticAMD", "GenuineIntel"

# First match wins. Sources: AMD and Intel optimisation manuals, Agner Fog's microarchitecture tables.
CPU_CORES: tuple[CpuCore, ...] = (
    CpuCore("AMD Zen 5", AMD, 0x1A, None, _f("avx512f"), 2, 512,
            note="Zen 5 desktop/server cores have 512-bit FMA datapaths; mobile Zen 5 runs AVX-512 on 256-bit "
                 "ones (half this figure)"),
    CpuCore("AMD Zen 5 (no AVX-512)", AMD, 0x1A, None, _f("avx2", "fma"), 2, 256),
    CpuCore("AMD Zen 4", AMD, 0x19, None, _f("avx512f"), 2, 256,
            note="Zen 4 executes 512-bit instructions on 256-bit datapaths"),
    CpuCore("AMD Zen 3", AMD, 0x19, None, _f("avx2", "fma"), 2, 256),
    CpuCore("AMD Zen 2", AMD, 0x17, ((0x30, 0xFF),), _f("avx2", "fma"), 2, 256),
    CpuCore("AMD Zen / Zen+", AMD, 0x17, ((0x00, 0x2F),), _f("avx2", "fma"), 2, 128,
            note="Zen 1 splits 256-bit instructions into two 128-bit halves"),
    CpuCore("Intel AVX-512 core", INTEL, 6, None, _f("avx512f"), 2, 512,
            note="assumes two 512-bit FMA units (Xeon Gold/Platinum, Sapphire Rapids); Xeon Silver/Bronze and some "
                 "client cores have one (half this figure), and AVX-512 code runs below the maximum clock"),
    CpuCore("Intel AVX2 core", INTEL, 6, None, _f("avx2", "fma"), 2, 256,
            note="Haswell and later: two 256-bit FMA units"),
    CpuCore("Intel AVX core", INTEL, 6, None, _f("avx"), 1, 256,
            note="Sandy/Ivy Bridge: one 256-bit add and one 256-bit multiply per cycle, no FMA"),
    # generic rows, conservative: one unit of the widest vector the flags show
    CpuCore("x86 with AVX-512 (unknown core)", None, None, None, _f("avx512f"), 1, 512, True),
    CpuCore("x86 with AVX2+FMA (unknown core)", None, None, None, _f("avx2", "fma"), 1, 256, True),
    CpuCore("x86 with AVX (unknown core)", None, None, None, _f("avx"), 1, 128, True),
    CpuCore("Arm with SVE (unknown core)", None, None, None, _f("sve"), 1, 128, True,
            note="SVE vector length not read; assumed 128 bits"),
    CpuCore("Arm with NEON (unknown core)", None, None, None, _f("asimd"), 1, 128, True),
    CpuCore("x86 with SSE2 (unknown core)", None, None, None, _f("sse2"), 1, 128, True,
            note="separate add and multiply counted as one unit"),
    CpuCore("unknown CPU", None, None, None, _f(), 1, 64, True, note="scalar double-issue assumed"),
)

# Per precision: (flag that enables the fast path, FLOP/cycle/core as a multiple of fp32, or a fixed
# FLOP/cycle/core for matrix engines, description). First present flag wins; none: the fallback.
_AMX = "fixed"
PRECISION_PATHS: dict[str, tuple[tuple[str, str, float, str], ...]] = {
    "fp32": (),
    "bf16": (("amx_bf16", _AMX, 1024, "AMX BF16 tiles: 1024 FLOP/cycle/core"),
             ("avx512_bf16", "x", 2, "AVX512_BF16 dot products (vdpbf16ps): 2x the fp32 rate"),
             ("bf16", "x", 2, "Arm BF16 dot products (bfdot): 2x the fp32 rate")),
    "fp16": (("amx_fp16", _AMX, 1024, "AMX FP16 tiles: 1024 FLOP/cycle/core"),
             ("avx512_fp16", "x", 2, "AVX512_FP16 arithmetic: 2x the fp32 rate"),
             ("asimdhp", "x", 2, "Arm half-precision arithmetic: 2x the fp32 rate")),
    "int8": (("amx_int8", _AMX, 2048, "AMX INT8 tiles: 2048 OP/cycle/core"),
             ("avx512_vnni", "x", 4, "AVX512_VNNI (vpdpbusd): 4x the fp32 rate"),
             ("avx_vnni", "x", 4, "AVX-VNNI (vpdpbusd): 4x the fp32 rate"),
             ("asimddp", "x", 4, "Arm dot product (sdot): 4x the fp32 rate"),
             ("avx2", "x", 2, "AVX2 without VNNI (vpmaddubsw + vpmaddwd): about 2x the fp32 rate")),
}
_PRECISION_FALLBACK = {
    "fp32": "fp32 FMA",
    "bf16": "no bf16 arithmetic: bf16 is converted and computed at the fp32 rate at best",
    "fp16": "no fp16 arithmetic: fp16 is converted and computed at the fp32 rate at best",
    "int8": "no int8 dot-product instructions: the fp32 rate assumed",
}


@dataclass(frozen=True)
class SpecPeak:
    """The theoretical estimate and every input it was computed from."""

    precision: str
    flops: float | None  # FLOP/s (int8: OP/s) of `units` cores or SMs at `clock_mhz`; None: not known
    units: int  # CPU cores, or CUDA streaming multiprocessors
    unit_kind: str  # "core" or "SM"
    flop_per_cycle_per_unit: float | None
    clock_mhz: float | None
    clock_source: str
    core: str  # the table row used (CPU), or the compute capability (CUDA)
    path: str  # the instruction path of this precision
    from_flags_only: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "notes": list(self.notes)}

    def describe(self) -> str:
        if self.flops is None:
            return f"no spec estimate ({'; '.join(self.notes) or self.core})"
        if self.clock_source == DATASHEET:
            return f"{self.core}: {self.flops / 1e12:,.1f} T{unit(self.precision)}, dense"
        per = f"{self.flop_per_cycle_per_unit:g} {unit(self.precision)[:-2]}/cycle/{self.unit_kind}"
        text = (f"{self.units} {self.unit_kind}{'s' if self.units != 1 else ''} x {per} x {self.clock_mhz:.0f} MHz "
                f"({self.core}; clock from {self.clock_source})")
        return text + ("; estimated from flags only" if self.from_flags_only else "")


def cpu_core(vendor: str | None, family: int | None, model: int | None, flags: Iterable[str]) -> CpuCore:
    flags = frozenset(flags)
    return next(row for row in CPU_CORES if row.matches(vendor, family, model, flags))


def theoretical_cpu_peak(flags: Iterable[str], vendor: str | None, cpu_family: int | None, cpu_model: int | None,
                         cores: int, mhz: float | None, precision: str = "fp32",
                         clock_source: str = "given") -> SpecPeak:
    """cores x FLOP/cycle/core x clock for `precision`, from the CPU's identity and flags (pure)."""
    precision = normalise_precision(precision)
    if precision == "tf32":
        raise UsageError("tf32 is a CUDA tensor-core precision; a CPU computes fp32")
    flags = frozenset(flags)
    row = cpu_core(vendor, cpu_family, cpu_model, flags)
    per_cycle: float = row.fp32_flop_per_cycle
    path = _PRECISION_FALLBACK[precision]
    for flag, kind, amount, description in PRECISION_PATHS[precision]:
        if flag in flags:
            per_cycle = amount if kind == _AMX else per_cycle * amount
            path = description
            break
    notes = tuple(n for n in (row.note,) if n)
    if not mhz or mhz <= 0:
        return SpecPeak(precision, None, cores, "core", per_cycle, None, clock_source, row.name, path,
                        row.from_flags_only, notes + ("no clock frequency known",))
    return SpecPeak(precision, cores * per_cycle * mhz * MHZ, cores, "core", per_cycle, float(mhz), clock_source,
                    row.name, path, row.from_flags_only, notes)


# ----------------------------------------------------------------------------------------- CUDA table

# Dense FLOP per cycle per SM (fp16/bf16/tf32: tensor cores, fp32 accumulation; fp32: CUDA cores).
# Sources: NVIDIA architecture whitepapers (V100, T4, A100, GA102, Ada, H100, B200). Compute capabilities not
# listed get no spec estimate: their peak is the measured one.
CUDA_FLOP_PER_CYCLE_PER_SM: dict[tuple[int, int], dict[str, int]] = {
    (6, 0): {"fp32": 128, "fp16": 256},  # P100: fp16 as half2 at 2x
    (7, 0): {"fp32": 128, "fp16": 1024},  # V100: 8 tensor cores x 64 FMA
    (7, 5): {"fp32": 128, "fp16": 1024},  # T4, RTX 20
    (8, 0): {"fp32": 128, "fp16": 2048, "bf16": 2048, "tf32": 1024},  # A100
    (8, 6): {"fp32": 256, "fp16": 1024, "bf16": 1024, "tf32": 512},  # A10, A40, RTX 30 (GeForce: half with fp32 acc.)
    (8, 7): {"fp32": 256, "fp16": 2048, "bf16": 2048, "tf32": 1024},  # Jetson Orin (A100-class tensor cores)
    (8, 9): {"fp32": 256, "fp16": 1024, "bf16": 1024, "tf32": 512},  # L4, L40S, RTX 40 (GeForce: idem)
    (9, 0): {"fp32": 256, "fp16": 4096, "bf16": 4096, "tf32": 2048},  # H100, H200
    (10, 0): {"fp32": 256, "fp16": 8192, "bf16": 8192, "tf32": 4096},  # B200
}
_CUDA_NOTES = {(8, 6): "GeForce cards run fp16/bf16 tensor cores with fp32 accumulation at half this rate",
               (8, 9): "GeForce cards run fp16/bf16 tensor cores with fp32 accumulation at half this rate"}


@dataclass(frozen=True)
class CudaDatasheet:
    """NVIDIA's rated dense peaks of one product, FLOP/s (int8: OP/s), by precision."""

    product: str
    pattern: str  # a regular expression searched in the lower-cased device name PyTorch reports
    flops: Mapping[str, float]
    source: str
    sm_count: int | None = None  # variants sharing a name (Jetson modules) are told apart by their SMs
    note: str = ""


T = 1e12
# Dense figures: datasheets print tensor-core rates "with sparsity", twice the dense ones; those are halved here.
CUDA_DATASHEETS: tuple[CudaDatasheet, ...] = (
    CudaDatasheet("A100", r"a100", {"fp32": 19.5 * T, "tf32": 156 * T, "bf16": 312 * T, "fp16": 312 * T,
                                    "int8": 624 * T}, "NVIDIA A100 Tensor Core GPU datasheet (SXM4 and PCIe alike)"),
    CudaDatasheet("H100 PCIe", r"h100.*pcie", {"fp32": 51 * T, "tf32": 378 * T, "bf16": 756 * T, "fp16": 756 * T,
                                               "int8": 1513 * T}, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    CudaDatasheet("H100 SXM", r"h100(?!.*(pcie|nvl))", {"fp32": 67 * T, "tf32": 494.7 * T, "bf16": 989.4 * T,
                                                        "fp16": 989.4 * T, "int8": 1979 * T},
                  "NVIDIA H100 Tensor Core GPU datasheet (SXM)"),
    CudaDatasheet("H200 SXM", r"h200(?!.*nvl)", {"fp32": 67 * T, "tf32": 494.7 * T, "bf16": 989.4 * T,
                                                 "fp16": 989.4 * T, "int8": 1979 * T},
                  "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    CudaDatasheet("L4", r"\bl4\b", {"fp32": 30.3 * T, "tf32": 60 * T, "bf16": 121 * T, "fp16": 121 * T,
                                    "int8": 242.5 * T}, "NVIDIA L4 Tensor Core GPU datasheet"),
    CudaDatasheet("GeForce RTX 4090", r"rtx 4090(?!.*laptop)", {"fp32": 82.6 * T, "tf32": 82.6 * T,
                                                               "bf16": 165.2 * T, "fp16": 165.2 * T,
                                                               "int8": 660.6 * T},
                  "NVIDIA Ada GPU architecture whitepaper, GeForce RTX 4090",
                  note="fp16/bf16 with fp32 accumulation, as PyTorch and cuDNN run them (fp16 accumulation: 330.3)"),
    CudaDatasheet("Jetson AGX Orin 64GB", r"orin", {"fp32": 5.3 * T, "tf32": 21.25 * T, "bf16": 42.5 * T,
                                                    "fp16": 42.5 * T, "int8": 85 * T},
                  "NVIDIA Jetson AGX Orin series technical brief (GPU only, no DLA)", sm_count=16,
                  note="fp16/bf16/tf32 derived from the int8 tensor figure by Ampere's ratios (1/2, 1/2, 1/4)"),
)


def cuda_datasheet(device_name: str, sm_count: int | None = None) -> CudaDatasheet | None:
    """The datasheet row of a device, by the name PyTorch reports (and its SM count where a name is shared)."""
    name = device_name.lower()
    for row in CUDA_DATASHEETS:
        if re.search(row.pattern, name) and (row.sm_count is None or row.sm_count == sm_count):
            return row
    return None


def cuda_spec(device_name: str, compute_capability: str | tuple[int, int], sm_count: int, clock_mhz: float | None,
              precision: str = "fp32", clock_source: str = "given") -> SpecPeak:
    """The spec peak of a CUDA device (pure): its datasheet figure; the SM x clock formula only where the device
    has no datasheet row (or the row no figure at this precision), labelled as such."""
    precision = normalise_precision(precision)
    row = cuda_datasheet(device_name, sm_count)
    if row is not None and precision in row.flops:
        path = "CUDA cores (FMA)" if precision == "fp32" else f"tensor cores ({precision}, dense)"
        notes = tuple(n for n in (row.note,) if n)
        return SpecPeak(precision, row.flops[precision], sm_count, "SM", None, None, DATASHEET,
                        f"{device_name}: {row.product} datasheet ({row.source})", path, False, notes)
    spec = theoretical_cuda_peak(compute_capability, sm_count, clock_mhz, precision, clock_source)
    why = (f"no datasheet figure for {device_name or 'this device'}: SMs x FLOP/cycle/SM x the {clock_source}, "
           "a maximum clock above the boost clock datasheets use (an upper bound)")
    return dataclasses.replace(spec, core=f"{device_name}, {spec.core}", notes=spec.notes + (why,))


DATASHEET = "datasheet"


def theoretical_cuda_peak(compute_capability: str | tuple[int, int], sm_count: int, clock_mhz: float | None,
                          precision: str = "fp32", clock_source: str = "given") -> SpecPeak:
    """SMs x FLOP/cycle/SM x SM clock for `precision` (pure)."""
    precision = normalise_precision(precision)
    cc = (tuple(int(p) for p in str(compute_capability).split(".")[:2]) if not isinstance(compute_capability, tuple)
          else compute_capability)
    label = f"compute capability {cc[0]}.{cc[1]}"
    table = CUDA_FLOP_PER_CYCLE_PER_SM.get(cc)  # type: ignore[arg-type]
    notes = tuple(n for n in (_CUDA_NOTES.get(cc),) if n)  # type: ignore[arg-type]
    per_cycle = table.get(precision) if table else None
    if table is None:
        notes += (f"{label} is not in the table",)
    elif per_cycle is None:
        notes += (f"no {precision} rate for {label}",)
    path = "CUDA cores (FMA)" if precision == "fp32" else f"tensor cores ({precision}, dense, fp32 accumulation)"
    if per_cycle is None or not clock_mhz:
        return SpecPeak(precision, None, sm_count, "SM", per_cycle, clock_mhz, clock_source, label, path, False,
                        notes + (() if clock_mhz else ("no SM clock known",)))
    return SpecPeak(precision, sm_count * per_cycle * clock_mhz * MHZ, sm_count, "SM", per_cycle, float(clock_mhz),
                    clock_source, label, path, False, notes)


# ------------------------------------------------------------------------------------- this machine


@dataclass(frozen=True)
class CpuInfo:
    vendor: str | None
    family: int | None
    model: int | None
    model_name: str | None
    flags: frozenset[str]
    physical_cores: int  # available to this process
    threads_per_core: int
    clock_mhz: float | None
    clock_source: str


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).strip(), 0) if text is not None else None
    except ValueError:
        return None


def parse_cpuinfo_all(text: str) -> tuple[dict[str, str], list[float]]:
    """(first value of each key, every `cpu MHz` value) of /proc/cpuinfo text."""
    info: dict[str, str] = {}
    mhz: list[float] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        info.setdefault(key, value)
        if key == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
    return info, mhz


def cpu_clock(max_khz: Sequence[int] = (), lscpu_text: str = "", cpuinfo_mhz: Sequence[float] = ()
              ) -> tuple[float | None, str]:
    """The clock of the spec estimate and where it came from: the kernel's maximum frequency (cpufreq), else
    `lscpu`'s CPU max MHz, else the highest `cpu MHz` of /proc/cpuinfo (current or nominal: misses turbo)."""
    if max_khz:
        return max(max_khz) / 1000, "cpufreq cpuinfo_max_freq"
    m = re.search(r"^CPU max MHz:\s*([\d.]+)", lscpu_text, re.MULTILINE)
    if m and float(m.group(1)) > 0:
        return float(m.group(1)), "lscpu CPU max MHz"
    if cpuinfo_mhz:
        return max(cpuinfo_mhz), "/proc/cpuinfo cpu MHz, which misses turbo"
    return None, "unknown"


def collect_cpu_info() -> CpuInfo:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    info, mhz = parse_cpuinfo_all(text)
    khz = []
    for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            khz.append(int(p.read_text()))
        except (OSError, ValueError):
            pass
    lscpu = ""
    if not khz:
        try:
            done = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "LC_ALL": "C"})
            lscpu = done.stdout if done.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            pass
    clock, source = cpu_clock(khz, lscpu, mhz)
    siblings, cores = _int(info.get("siblings")), _int(info.get("cpu cores"))
    per_core = max(1, siblings // cores) if siblings and cores else 1
    m = re.search(r"^Thread\(s\) per core:\s*(\d+)", lscpu, re.MULTILINE)
    if m:
        per_core = max(1, int(m.group(1)))
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    vendor = info.get("vendor_id")
    if vendor is None and info.get("CPU implementer"):
        vendor = f"Arm implementer {info['CPU implementer']}"
    raw_flags = info.get("flags") or info.get("Features") or ""
    return CpuInfo(vendor=vendor, family=_int(info.get("cpu family")), model=_int(info.get("model")),
                   model_name=info.get("model name") or info.get("Model"), flags=frozenset(raw_flags.split()),
                   physical_cores=max(1, available // per_core), threads_per_core=per_core, clock_mhz=clock,
                   clock_source=source)


def cpu_spec_peak(precision: str, threads: int, cpu: CpuInfo | None = None) -> SpecPeak:
    """The spec estimate of this CPU with `threads` intra-op threads (one per physical core at most: SMT
    siblings share their core's FMA units)."""
    cpu = cpu or collect_cpu_info()
    cores = max(1, min(int(threads), cpu.physical_cores))
    return theoretical_cpu_peak(cpu.flags, cpu.vendor, cpu.family, cpu.model, cores, cpu.clock_mhz, precision,
                                cpu.clock_source)


def _cuda_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else 0


def _cuda_max_sm_clock_mhz(index: int) -> tuple[float | None, str]:
    import torch

    props = torch.cuda.get_device_properties(index)
    rate = getattr(props, "clock_rate", None)  # kHz, where this PyTorch exposes it
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            uuid = str(getattr(props, "uuid", "") or "")
            handle = (pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
                      if uuid else pynvml.nvmlDeviceGetHandleByIndex(index))
            return float(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)), "NVML max SM clock"
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    if rate:
        return rate / 1000, "torch device properties clock_rate"
    try:
        done = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=clocks.max.sm",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
        if done.returncode == 0 and done.stdout.strip():
            return float(done.stdout.split()[0]), "nvidia-smi clocks.max.sm"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return None, "unknown"


def cuda_spec_peak(device: str, precision: str) -> SpecPeak:
    import torch

    index = _cuda_index(device)
    props = torch.cuda.get_device_properties(index)
    clock, source = _cuda_max_sm_clock_mhz(index)
    return cuda_spec(props.name, (props.major, props.minor), int(props.multi_processor_count), clock, precision,
                     source)


# -------------------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class KernelMeasurement:
    """One timed kernel: the best and the median rate over `calls` calls of one shape."""

    kernel: str  # "matmul", "conv3x3" or "copy"
    op: str  # what was called
    shape: str
    dtype: str
    device: str
    threads: int
    work_per_call: float  # FLOPs (bytes moved for "copy")
    calls: int
    seconds: float  # timed seconds in all
    best_s: float
    median_s: float
    timer: str

    @property
    def rate(self) -> float:
        """Best FLOP/s (bytes/s for "copy")."""
        return self.work_per_call / self.best_s

    @property
    def median_rate(self) -> float:
        return self.work_per_call / self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rate": self.rate, "median_rate": self.median_rate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KernelMeasurement:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


class _Threads:
    """Sets PyTorch's intra-op threads for a block and restores them after (CPU only)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def __enter__(self) -> int:
        import torch

        self.before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        return torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)


class _Tf32:
    """TF32 on for `tf32`, off for `fp32`, for matmuls and cuDNN; restored after."""

    def __init__(self, precision: str, cuda: bool) -> None:
        self.precision, self.cuda = precision, cuda

    def __enter__(self) -> None:
        import torch

        self.before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if self.cuda and self.precision in ("fp32", "tf32"):
            on = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = on
            torch.backends.cudnn.allow_tf32 = on

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.before


def _timer(device: str) -> tuple[Callable[[Callable[[], Any]], float], str]:
    """A function timing one call in seconds, synchronised with the device."""
    import torch

    if device.startswith("cuda"):
        def timed(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return timed, "CUDA events"

    def timed_cpu(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return timed_cpu, "time.perf_counter"


def _measure(kernel: str, op: str, device: str, dtype: str, threads: int, ladder: Sequence[tuple[Any, float]],
             make: Callable[[Any], Callable[[], Any]], describe: Callable[[Any], str], budget_s: float,
             min_calls: int = 3) -> KernelMeasurement:
    """Grow the shape along `ladder` ((shape, work) pairs) while the next call would take at most a quarter
    of the budget, then time calls of that shape until the budget is spent (at least `min_calls`)."""
    timed, timer = _timer(device)
    shape, work = ladder[0]
    fn = make(shape)
    timed(fn)  # first call of a shape: allocation, kernel selection, lazy initialisation
    times = [timed(fn)]
    best_rate = work / times[0]  # over every shape so far: one call slowed down by another process misleads
    for next_shape, next_work in ladder[1:]:
        if next_work / best_rate > budget_s / 4:
            times.append(timed(fn))  # one more look
            best_rate = max(best_rate, work / times[-1])
            if next_work / best_rate > budget_s / 4:
                break
        shape, work = next_shape, next_work
        fn = make(shape)
        timed(fn)
        times = [timed(fn)]
        best_rate = max(best_rate, work / times[0])
    started = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - started < budget_s and len(times) < 1000):
        times.append(timed(fn))
    return KernelMeasurement(kernel, op, describe(shape), dtype, device, threads, float(work), len(times),
                             float(sum(times)), float(min(times)), float(statistics.median(times)), timer)


def _generator(device: str):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(0)
    return g


def _matmul(device: str, precision: str, threads: int, budget_s: float, n_max: int) -> KernelMeasurement:
    import torch

    dtype = torch_dtype(precision)
    g = _generator(device)
    sizes = sorted({n for n in (128, 256, 512, 1024, 2048, 4096, 8192) if n_max / 8 <= n < n_max} | {n_max})

    def make(n: int) -> Callable[[], Any]:
        a = torch.empty(n, n, device=device, dtype=dtype).uniform_(-1, 1, generator=g)
        b = torch.empty(n, n, device=device, dtype=dtype).uniform_(-1, 1, generator=g)
        out = torch.empty(n, n, device=device, dtype=dtype)

        def call() -> None:
            with torch.inference_mode():
                torch.mm(a, b, out=out)

        return call

    return _measure("matmul", "torch.mm", device, precision, threads, [(n, 2.0 * n**3) for n in sizes], make,
                    lambda n: f"{n}x{n} @ {n}x{n}", budget_s)


def _conv(device: str, precision: str, threads: int, budget_s: float,
          shape: tuple[int, int, int, int, int]) -> KernelMeasurement:
    import torch
    import torch.nn.functional as F

    dtype = torch_dtype(precision)
    g = _generator(device)
    batch, cin, h, w, cout = shape
    ladder_shapes = list(dict.fromkeys([(1, min(cin, 64), h, w, min(cout, 64)), (1, cin, h, w, cout), shape]))

    def work(s: tuple[int, int, int, int, int]) -> float:
        b, ci, hh, ww, co = s
        return 2.0 * b * co * hh * ww * ci * 9  # stride 1, padding 1: output as large as the input

    def make(s: tuple[int, int, int, int, int]) -> Callable[[], Any]:
        b, ci, hh, ww, co = s
        x = torch.empty(b, ci, hh, ww, device=device, dtype=dtype).uniform_(-1, 1, generator=g)
        k = torch.empty(co, ci, 3, 3, device=device, dtype=dtype).uniform_(-1, 1, generator=g)
        x, k = x.contiguous(memory_format=torch.channels_last), k.contiguous(memory_format=torch.channels_last)

        def call() -> None:
            with torch.inference_mode():
                F.conv2d(x, k, padding=1)

        return call

    return _measure("conv3x3", "torch.nn.functional.conv2d (channels_last, padding 1)", device, precision, threads,
                    [(s, work(s)) for s in ladder_shapes], make,
                    lambda s: f"{s[0]}x{s[1]}x{s[2]}x{s[3]} -> {s[4]} channels, 3x3", budget_s)


def resolve_threads(device: str, threads: int | None) -> int:
    if not device.startswith("cpu"):
        return 0
    if threads is None:
        import torch

        return torch.get_num_threads()
    if int(threads) < 1:
        raise UsageError(f"threads must be at least 1, not {threads}")
    return int(threads)


def _check_device(device: str) -> str:
    device = normalise_device(device)
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r}: PyTorch sees no CUDA device on this machine")
        if _cuda_index(device) >= torch.cuda.device_count():
            raise UsageError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise UsageError(f"peak estimates exist for cpu and cuda devices, not {device!r}")


def measure_dense_kernels(device: str = "cpu", precision: str = "fp32", threads: int | None = None,
                          seconds: float = DEFAULT_SECONDS, matmul_n: int | None = None,
                          conv_shape: tuple[int, int, int, int, int] | None = None) -> tuple[KernelMeasurement, ...]:
    """Time a square matrix product and a 3x3 convolution in `precision` on `device` (about `seconds` in all,
    plus the first calls); () for a precision without a PyTorch dense kernel there (int8)."""
    device, precision = _check_device(device), normalise_precision(precision)
    measured = CPU_MEASURED if device == "cpu" else CUDA_MEASURED
    if precision not in measured:
        return ()
    cuda = device.startswith("cuda")
    n = matmul_n or (CUDA_MATMUL_N if cuda else DEFAULT_MATMUL_N)
    shape = conv_shape or (CUDA_CONV_SHAPE if cuda else DEFAULT_CONV_SHAPE)
    with _Threads(threads if not cuda else None) as used, _Tf32(precision, cuda):
        used = 0 if cuda else used
        kernels = (_matmul(device, precision, used, seconds / 2, n), _conv(device, precision, used, seconds / 2, shape))
        if cuda:
            import torch

            torch.cuda.empty_cache()
    return kernels


def measure_bandwidth(device: str = "cpu", threads: int | None = None, seconds: float = 0.5,
                      mib: int = BANDWIDTH_MIB) -> KernelMeasurement:
    """A STREAM-like copy of a `mib` MiB buffer: bytes read + written per second (best call)."""
    import torch

    device = _check_device(device)
    cuda = device.startswith("cuda")
    n = max(1, mib * 2**20 // 4)
    with _Threads(threads if not cuda else None) as used:
        src = torch.empty(n, device=device, dtype=torch.float32).uniform_(-1, 1, generator=_generator(device))
        dst = torch.empty_like(src)
        ladder = [(n, 2.0 * 4 * n)]
        result = _measure("copy", "Tensor.copy_", device, "fp32", 0 if cuda else used, ladder,
                          lambda _, src=src, dst=dst: (lambda: dst.copy_(src)), lambda m: f"{m * 4 / 2**20:.0f} MiB",
                          seconds)
        del src, dst
        if cuda:
            torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class PeakEstimate:
    """The peak of one device at one precision and thread count, with everything it was derived from.

    peak_flops = the spec estimate, raised to the best measured kernel's rate when that is higher; the measured
    rate alone where there is no spec; None when there is neither.
    """

    device: str
    precision: str
    threads: int  # CPU: intra-op threads measured with; other devices: 0
    peak_flops: float | None
    basis: str  # "spec", "measured matmul", "measured conv3x3" or "none"
    basis_detail: str
    theoretical_flops: float | None
    measured_flops: float | None
    spec: SpecPeak | None
    kernels: tuple[KernelMeasurement, ...] = ()
    bandwidth_bytes_per_s: float | None = None
    bandwidth: KernelMeasurement | None = None
    contention: Mapping[str, Any] | None = None
    measured_at: float = field(default_factory=time.time)
    torch_version: str | None = None
    device_name: str | None = None

    @property
    def unit(self) -> str:
        return unit(self.precision)

    @property
    def measured_fraction_of_spec(self) -> float | None:
        if self.measured_flops and self.theoretical_flops:
            return self.measured_flops / self.theoretical_flops
        return None

    @property
    def contended(self) -> bool:
        return bool((self.contention or {}).get("contended", False))

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "precision": self.precision, "threads": self.threads,
            "peak_flops": self.peak_flops, "basis": self.basis, "basis_detail": self.basis_detail,
            "theoretical_flops": self.theoretical_flops, "measured_flops": self.measured_flops,
            "spec": self.spec.to_dict() if self.spec else None, "kernels": [k.to_dict() for k in self.kernels],
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "bandwidth": self.bandwidth.to_dict() if self.bandwidth else None,
            "contention": dict(self.contention) if self.contention else None, "measured_at": self.measured_at,
            "torch_version": self.torch_version, "device_name": self.device_name, "unit": self.unit,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PeakEstimate:
        spec = d.get("spec")
        return cls(
            device=d["device"], precision=d["precision"], threads=int(d.get("threads") or 0),
            peak_flops=d.get("peak_flops"), basis=d.get("basis", ""), basis_detail=d.get("basis_detail", ""),
            theoretical_flops=d.get("theoretical_flops"), measured_flops=d.get("measured_flops"),
            spec=SpecPeak(**{**spec, "notes": tuple(spec.get("notes") or ())}) if spec else None,
            kernels=tuple(KernelMeasurement.from_dict(k) for k in d.get("kernels") or ()),
            bandwidth_bytes_per_s=d.get("bandwidth_bytes_per_s"),
            bandwidth=KernelMeasurement.from_dict(d["bandwidth"]) if d.get("bandwidth") else None,
            contention=d.get("contention"), measured_at=float(d.get("measured_at") or 0.0),
            torch_version=d.get("torch_version"), device_name=d.get("device_name"),
        )


def combine(spec: SpecPeak | None, kernels: Sequence[KernelMeasurement]) -> tuple[float | None, str, str]:
    """(peak_flops, basis, basis_detail) from a spec estimate and measured kernels (pure)."""
    theoretical = spec.flops if spec else None
    best = max(kernels, key=lambda k: k.rate, default=None)
    g = 1e9
    u = unit(spec.precision) if spec else "FLOP/s"
    if best is None and theoretical is None:
        return None, "none", "no spec estimate and no kernel measured"
    if best is None:
        return theoretical, "spec", f"spec {theoretical / g:,.1f} G{u}: {spec.describe()}; no kernel measured"
    measured = best.rate
    if theoretical is None:
        return measured, f"measured {best.kernel}", (f"measured {best.kernel} {measured / g:,.1f} G{u} ({best.shape}); "
                                                      f"{spec.describe() if spec else 'no spec estimate'}")
    if measured > theoretical and not _may_raise(spec, best):
        return theoretical, "spec", (f"spec {theoretical / g:,.1f} G{u} ({spec.describe()}); measured {best.kernel} "
                                     f"{measured / g:,.1f} G{u} ({best.shape}) is above it but does not raise it: "
                                     + ("a datasheet figure is the device's rating" if spec.clock_source == DATASHEET
                                        else "cuDNN may serve a 3x3 convolution with Winograd (fewer FLOPs than "
                                             "counted)"))
    if measured > theoretical:
        detail = (f"measured {best.kernel} {measured / g:,.1f} G{u} ({best.shape}) beats the spec "
                  f"{theoretical / g:,.1f} G{u} ({spec.describe()})")
        if spec and spec.flop_per_cycle_per_unit and spec.unit_kind == "core":
            implied = measured / (spec.units * spec.flop_per_cycle_per_unit) / MHZ
            detail += f"; it implies a sustained clock of about {implied:,.0f} MHz"
        return measured, f"measured {best.kernel}", detail
    return theoretical, "spec", (f"spec {theoretical / g:,.1f} G{u} ({spec.describe()}); best measured kernel "
                                 f"{best.kernel} {measured / g:,.1f} G{u} = {measured / theoretical:.0%} of it")


def _may_raise(spec: SpecPeak, kernel: KernelMeasurement) -> bool:
    """Whether a kernel measured above the spec raises the peak: never above a datasheet figure, and on a GPU
    never by the 3x3 convolution."""
    if spec.clock_source == DATASHEET:
        return False
    return not (spec.unit_kind == "SM" and kernel.kernel == "conv3x3")


def estimate_peak(device: str = "cpu", precision: str = "fp32", threads: int | None = None,
                  seconds: float = DEFAULT_SECONDS, measure: bool = True, bandwidth: bool = True,
                  cpu: CpuInfo | None = None, matmul_n: int | None = None,
                  conv_shape: tuple[int, int, int, int, int] | None = None,
                  bandwidth_mib: int = BANDWIDTH_MIB) -> PeakEstimate:
    """Spec estimate and (unless `measure` is False) measured kernels and copy bandwidth, combined."""
    import torch

    from ..measure.contention import ContentionMonitor

    device, precision = _check_device(device), normalise_precision(precision)
    used = resolve_threads(device, threads)
    if device == "cpu":
        if precision == "tf32":
            raise UsageError("tf32 is a CUDA tensor-core precision; a CPU computes fp32")
        cpu = cpu or collect_cpu_info()
        spec: SpecPeak | None = cpu_spec_peak(precision, used, cpu)
        name = cpu.model_name
    else:
        spec = cuda_spec_peak(device, precision)
        name = torch.cuda.get_device_name(_cuda_index(device))
    kernels: tuple[KernelMeasurement, ...] = ()
    copy = None
    contention = None
    if measure:
        with ContentionMonitor(threads=used or None) as monitor:  # the threads the kernels will run
            kernels = measure_dense_kernels(device, precision, used or None, seconds, matmul_n, conv_shape)
            if bandwidth:
                copy = measure_bandwidth(device, used or None, min(0.3, seconds / 4), bandwidth_mib)
        report = monitor.report
        contention = ({"contended": report.contended, "other_cores": report.other_cores, "wall_s": report.wall_s}
                      if report else None)
    peak, basis, detail = combine(spec, kernels)
    measured = max((k.rate for k in kernels), default=None)
    return PeakEstimate(device=device, precision=precision, threads=used, peak_flops=peak, basis=basis,
                        basis_detail=detail, theoretical_flops=spec.flops if spec else None, measured_flops=measured,
                        spec=spec, kernels=kernels, bandwidth_bytes_per_s=copy.rate if copy else None,
                        bandwidth=copy, contention=contention, measured_at=time.time(),
                        torch_version=torch.__version__, device_name=name)


def fmt_rate(value: float | None, precision: str = "fp32") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value / 1e9:,.1f} G{unit(precision)}"
