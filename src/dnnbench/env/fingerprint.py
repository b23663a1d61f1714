"""Identity of the machine, software and runtime settings a benchmark result was measured under.

Every probe is cheap (well under 0.5 s once torch is imported) and fails soft: a probe that raises
yields None for its field, so collecting a fingerprint never aborts a benchmark.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

GIB = 1024**3

# x86 and Arm features that decide which inference kernels (fp16/bf16/int8 paths) a library picks.
RELEVANT_CPU_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile",
    "neon", "asimd", "asimdhp", "asimddp", "sve", "i8mm", "bf16",
})

# /proc/cpuinfo on Arm gives only the "CPU implementer" code, no vendor string.
_ARM_IMPLEMENTERS = {
    "0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x48": "HiSilicon", "0x4e": "NVIDIA",
    "0x50": "AppliedMicro", "0x51": "Qualcomm", "0x53": "Samsung", "0x61": "Apple", "0xc0": "Ampere",
}

_ALLOCATOR_LIBS = (("tcmalloc", "libtcmalloc"), ("jemalloc", "libjemalloc"), ("mimalloc", "libmimalloc"))
_MALLOC_ENV_PREFIXES = ("MALLOC_", "TCMALLOC_", "MIMALLOC_", "JEMALLOC_")
_MALLOC_ENV_NAMES = frozenset({"LD_PRELOAD", "GLIBC_TUNABLES", "_RJEM_MALLOC_CONF"})


def _probe(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception:
        return None


def _run(cmd: list[str], timeout: float, cwd: str | None = None) -> str | None:
    """stdout of `cmd`, or None if it is missing, fails or outlives `timeout`."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _dist(*names: str) -> str | None:
    """Installed version of the first distribution found among `names` (without importing it)."""
    for name in names:
        try:
            return _dist_version(name)
        except PackageNotFoundError:
            continue
    return None


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------- machine


@dataclass(frozen=True)
class GpuInfo(_Serialisable):
    index: int
    name: str
    total_memory_bytes: int
    compute_capability: str | None  # "8.6"
    multiprocessor_count: int | None
    uuid: str | None


@dataclass(frozen=True)
class MachineFingerprint(_Serialisable):
    hostname: str | None
    os: str | None
    kernel: str | None
    arch: str | None
    cpu_model: str | None
    cpu_vendor: str | None
    cpu_cores_logical: int | None
    cpu_cores_physical: int | None
    cpu_affinity_count: int | None
    cpu_flags: tuple[str, ...] | None
    cpu_max_mhz: float | None
    memory_total_bytes: int | None
    gpus: tuple[GpuInfo, ...] | None
    cuda_driver_version: str | None

    @property
    def machine_id(self) -> str:
        """First 16 hex chars of a sha256 over the stable hardware identity.

        Library versions, driver, OS and settings are deliberately left out: they change on every
        upgrade while the box stays the same, and results from one box must stay groupable across
        upgrades. They are recorded in SoftwareFingerprint/RuntimeSettings so a comparison can
        still control for them. Memory is rounded to GiB because the kernel's reported total
        drifts by a few MB between boots/kernel versions.
        """
        identity = [
            self.hostname,
            self.cpu_model,
            self.cpu_cores_logical,
            round(self.memory_total_bytes / GIB) if self.memory_total_bytes else None,
            [[g.name, g.total_memory_bytes] for g in self.gpus or ()],
        ]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"machine_id": self.machine_id, **super().to_dict()}


def _read(path: str) -> str:
    return Path(path).read_text(errors="replace")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo text (all cores share model and flags)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def _os_name() -> str:
    system = platform.system()
    if system == "Linux":
        try:
            return platform.freedesktop_os_release()["PRETTY_NAME"]
        except (OSError, KeyError, AttributeError):
            return "Linux"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return f"{system} {platform.release()}"


def _cpu_model(info: dict[str, str]) -> str | None:
    # Arm boards often lack "model name"; the board name is the next most telling identity.
    for key in ("model name", "Model", "Hardware"):
        if info.get(key):
            return info[key]
    tree = _probe(lambda: _read("/proc/device-tree/model").strip("\x00\n "))
    return tree or platform.processor() or platform.machine() or None


def _cpu_vendor(info: dict[str, str]) -> str | None:
    if "vendor_id" in info:
        return info["vendor_id"]
    code = info.get("CPU implementer")
    return _ARM_IMPLEMENTERS.get(code.lower(), code) if code else None


def _cpu_flags(info: dict[str, str]) -> tuple[str, ...] | None:
    raw = info.get("flags") or info.get("Features")
    return tuple(sorted(RELEVANT_CPU_FLAGS.intersection(raw.split()))) if raw is not None else None


def _cpu_max_mhz() -> float | None:
    # Max over cores: big.LITTLE boards (Jetson, phones) have clusters with different ceilings.
    khz = [int(p.read_text()) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")]
    if khz:
        return max(khz) / 1000
    import psutil

    freq = psutil.cpu_freq()
    return float(freq.max) if freq and freq.max else None  # VMs report max=0.0


def _gpus() -> tuple[GpuInfo, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(GpuInfo(
            index=i,
            name=p.name,
            total_memory_bytes=int(p.total_memory),
            compute_capability=f"{p.major}.{p.minor}",
            multiprocessor_count=getattr(p, "multi_processor_count", None),
            uuid=_probe(lambda p=p: str(p.uuid)),
        ))
    return tuple(gpus)


def _cuda_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else v
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    # Reading the kernel module's banner costs nothing, unlike starting nvidia-smi.
    m = _probe(lambda: re.search(r"Kernel Module\s+(\S+)", _read("/proc/driver/nvidia/version")))
    if m:
        return m.group(1)
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=5)
        if out:
            return out.splitlines()[0].strip()
    return None


def collect_machine() -> MachineFingerprint:
    import psutil

    info = _probe(lambda: parse_cpuinfo(_read("/proc/cpuinfo"))) or {}
    gpus = _probe(_gpus)
    return MachineFingerprint(
        hostname=_probe(socket.gethostname) or _probe(platform.node),
        os=_probe(_os_name),
        kernel=_probe(platform.release) or None,
        arch=_probe(platform.machine) or None,
        cpu_model=_probe(lambda: _cpu_model(info)),
        cpu_vendor=_probe(lambda: _cpu_vendor(info)),
        cpu_cores_logical=_probe(os.cpu_count),
        cpu_cores_physical=_probe(lambda: psutil.cpu_count(logical=False)),
        cpu_affinity_count=_probe(lambda: len(os.sched_getaffinity(0))),
        cpu_flags=_probe(lambda: _cpu_flags(info)),
        cpu_max_mhz=_probe(_cpu_max_mhz),
        memory_total_bytes=_probe(lambda: int(psutil.virtual_memory().total)),
        gpus=gpus,
        # Only worth a probe (and possibly a subprocess) when there is an NVIDIA GPU to drive.
        cuda_driver_version=_probe(_cuda_driver_version) if gpus else None,
    )


# -------------------------------------------------------------------------------------- software


@dataclass(frozen=True)
class SoftwareFingerprint(_Serialisable):
    python_version: str | None
    python_implementation: str | None
    torch_version: str | None
    torchvision_version: str | None
    timm_version: str | None
    numpy_version: str | None
    onnxruntime_version: str | None
    openvino_version: str | None
    torch_cuda_version: str | None
    cudnn_version: int | None
    torch_mkl: bool | None
    torch_mkldnn: bool | None
    torch_openmp: bool | None
    dnnbench_version: str | None
    git_revision: str | None
    git_dirty: bool | None


def git_state(source_dir: Path, tracked_file: str = "__init__.py") -> tuple[str | None, bool | None]:
    """(HEAD, dirty) of the git checkout holding `source_dir`; (None, None) if it is not one."""
    source_dir = source_dir.resolve()
    if not any((d / ".git").exists() for d in (source_dir, *source_dir.parents)):
        return None, None
    cwd = str(source_dir)
    # An installed copy inside someone else's repository (a venv in a project) is not our source.
    if _run(["git", "ls-files", "--error-unmatch", tracked_file], timeout=2, cwd=cwd) is None:
        return None, None
    rev = _run(["git", "rev-parse", "HEAD"], timeout=2, cwd=cwd)
    # --no-optional-locks: never take index.lock from under a concurrent git command.
    status = _run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                  timeout=2, cwd=cwd)
    return rev, (bool(status) if status is not None else None)


def collect_software() -> SoftwareFingerprint:
    import torch

    import dnnbench

    rev, dirty = _probe(lambda: git_state(Path(dnnbench.__file__).parent)) or (None, None)
    return SoftwareFingerprint(
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        torch_version=_dist("torch"),
        torchvision_version=_dist("torchvision"),
        timm_version=_dist("timm"),
        numpy_version=_dist("numpy"),
        onnxruntime_version=_dist("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                                  "onnxruntime-directml"),
        openvino_version=_dist("openvino"),
        torch_cuda_version=_probe(lambda: torch.version.cuda),
        cudnn_version=_probe(torch.backends.cudnn.version),
        torch_mkl=_probe(torch.backends.mkl.is_available),
        torch_mkldnn=_probe(torch.backends.mkldnn.is_available),
        torch_openmp=_probe(torch.backends.openmp.is_available),
        dnnbench_version=_probe(lambda: dnnbench.__version__),
        git_revision=rev,
        git_dirty=dirty,
    )


# --------------------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class RuntimeSettings(_Serialisable):
    intra_op_threads: int | None
    inter_op_threads: int | None
    omp_num_threads: str | None
    mkl_num_threads: str | None
    matmul_allow_tf32: bool | None
    cudnn_allow_tf32: bool | None
    cudnn_benchmark: bool | None
    cudnn_deterministic: bool | None
    float32_matmul_precision: str | None
    allocator: str | None
    malloc_env: dict[str, str] | None
    cuda_alloc_conf: str | None


def detect_allocator(maps_text: str, ld_preload: str = "", default: str = "glibc") -> str:
    """Malloc implementation in use, from /proc/<pid>/maps text and LD_PRELOAD.

    A preloaded library wins (it interposes malloc); otherwise one mapped into the process is
    assumed to have been linked in to replace malloc.
    """
    preloaded = [Path(p).name for p in re.split(r"[\s:]+", ld_preload) if p]
    fields = (line.split(maxsplit=5) for line in maps_text.splitlines())
    mapped = [Path(f[5]).name for f in fields if len(f) == 6]
    for libs in (preloaded, mapped):
        for name, prefix in _ALLOCATOR_LIBS:
            if any(lib.startswith(prefix) for lib in libs):
                return name
    return default


def _default_allocator() -> str:
    if platform.system() != "Linux":
        return "system"
    libc = _probe(lambda: os.confstr("CS_GNU_LIBC_VERSION"))
    return "glibc" if libc and libc.startswith("glibc") else "system"  # musl has no such confstr


def malloc_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables that tune or replace the allocator."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in sorted(environ.items())
            if k in _MALLOC_ENV_NAMES or k.startswith(_MALLOC_ENV_PREFIXES)}


def collect_runtime() -> RuntimeSettings:
    import torch

    maps = _probe(lambda: _read("/proc/self/maps")) or ""
    return RuntimeSettings(
        intra_op_threads=_probe(torch.get_num_threads),
        inter_op_threads=_probe(torch.get_num_interop_threads),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        mkl_num_threads=os.environ.get("MKL_NUM_THREADS"),
        matmul_allow_tf32=_probe(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        cudnn_allow_tf32=_probe(lambda: bool(torch.backends.cudnn.allow_tf32)),
        cudnn_benchmark=_probe(lambda: bool(torch.backends.cudnn.benchmark)),
        cudnn_deterministic=_probe(lambda: bool(torch.backends.cudnn.deterministic)),
        float32_matmul_precision=_probe(torch.get_float32_matmul_precision),
        allocator=_probe(lambda: detect_allocator(maps, os.environ.get("LD_PRELOAD", ""),
                                                  _default_allocator())),
        malloc_env=_probe(malloc_env),
        # torch >= 2.9 also reads the device-neutral PYTORCH_ALLOC_CONF.
        cuda_alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF"),
    )
