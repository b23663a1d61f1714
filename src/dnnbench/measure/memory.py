"""Memory a model really uses while it runs: this process's resident set on the CPU, the caching
allocator's peaks and the driver's figure on a CUDA device.

Every number is a total of the whole process (or device), not a difference, unless its name says
``above_baseline``. Sizes are bytes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

import psutil
import torch

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"

METHOD_VMHWM = "VmHWM of /proc/self/status, reset at the start of the block via /proc/self/clear_refs"
METHOD_MAXRSS = (
    "getrusage ru_maxrss: the peak of the whole process lifetime, as the peak could not be reset "
    "(so an upper bound on the block's peak)"
)
METHOD_CUDA = ("torch.cuda.max_memory_allocated / max_memory_reserved, reset after warm-up (cuDNN's autotuning "
               "workspaces left out)")

# After a reset the peak must equal the current RSS; this much slack covers pages another thread
# freed between the reset and the read.
_RESET_SLACK_BYTES = 4 << 20


def current_rss_bytes() -> int:
    """Resident set size of this process now: every page of it in RAM (anonymous memory such as
    tensors and the Python heap, plus mapped files such as the torch libraries), not swapped-out pages."""
    return psutil.Process().memory_info().rss


class PeakRSS:
    """Context manager: the peak resident set of THIS process (all threads) during the block.

    ``peak_bytes`` is the highest RSS of the whole process within the block (not an increase over
    ``start_bytes``, the RSS when the block began). RSS counts every resident page: the interpreter,
    loaded libraries, model weights, activations, and memory the allocators (glibc malloc, PyTorch's
    CPU allocator, oneDNN) keep after freeing. Memory freed inside the block still counts if it was
    resident at the peak. Child processes do not count.

    On Linux, writing "5" to /proc/self/clear_refs resets the kernel's peak (VmHWM) to the current
    RSS, and VmHWM is read at exit. Where that is not possible, ``method`` says so and the peak is
    getrusage's ru_maxrss, the peak since the process started.
    """

    def __init__(self) -> None:
        self.start_bytes = 0
        self.peak_bytes = 0
        self.method = ""
        self._reset = False

    def __enter__(self) -> PeakRSS:
        self._reset = _reset_peak()
        self.method = METHOD_VMHWM if self._reset else METHOD_MAXRSS
        self.start_bytes = current_rss_bytes()
        return self

    def __exit__(self, *exc) -> bool:
        peak = _read_status()["VmHWM"] if self._reset else _maxrss_bytes()
        # The kernel's RSS counters are per-CPU approximations that each interface sums a little
        # differently (~100 kB apart); the peak is never below what we saw at either end.
        self.peak_bytes = max(peak, self.start_bytes, current_rss_bytes())
        return False

    def result(self, baseline_rss_bytes: int | None = None) -> CpuMemory:
        """The block's CpuMemory; without a baseline, the RSS at the start of the block stands in for it."""
        return CpuMemory.from_peak(self.start_bytes if baseline_rss_bytes is None else baseline_rss_bytes, self)


def _read_status() -> dict[str, int]:
    """The kB fields of /proc/self/status that this module needs, in bytes."""
    out = {}
    with open(_STATUS) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        status = _read_status()
    except (OSError, ValueError, IndexError):
        return False
    # Some sandboxes accept the write and ignore it: trust the reset only if the peak is now the RSS.
    return status.get("VmHWM", sys.maxsize) <= status.get("VmRSS", 0) + _RESET_SLACK_BYTES


def _maxrss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set is also a lifetime peak
        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


@dataclass(frozen=True)
class CpuMemory:
    """CPU memory of one benchmark cell.

    baseline_rss_bytes: RSS before the model was built (interpreter, torch and libraries loaded).
    peak_rss_bytes: the peak RSS of the process while the cell ran (see PeakRSS).
    peak_above_baseline_bytes: peak - baseline: what building and running the model added at the
      peak (weights, activations, allocator caches, lazily loaded kernels). Not clamped: it is
      negative only if memory held at the baseline was released before the cell.
    """

    baseline_rss_bytes: int
    peak_rss_bytes: int
    peak_above_baseline_bytes: int
    method: str

    @classmethod
    def from_peak(cls, baseline_rss_bytes: int, peak: PeakRSS) -> CpuMemory:
        return cls(baseline_rss_bytes, peak.peak_bytes, peak.peak_bytes - baseline_rss_bytes, peak.method)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class CudaPeak:
    """Context manager: peak GPU memory of one CUDA device during the block.

    At enter: synchronize and reset PyTorch's peak counters; `reset()` (called by the latency measurement
    once warm-up is over) resets them again, so that the peak is the steady state's and not that of cuDNN's
    autotuning, which tries algorithms with large workspaces at the first calls of every shape; at exit:
    synchronize and read.

    - ``max_allocated_bytes``: the peak of memory in live tensors of PyTorch's caching allocator on
      that device (weights, input, activations, and the cuDNN/cuBLAS workspaces PyTorch allocates
      through it), rounded up to the allocator's block sizes. Includes tensors that existed before
      the block; excludes the allocator's cached free blocks and the CUDA context.
    - ``max_reserved_bytes``: the peak of memory the caching allocator held from the driver:
      allocated tensors plus cached free blocks and fragmentation. Excludes the CUDA context and
      memory that libraries allocate outside PyTorch.
    - ``nvml_process_bytes``: the driver's (NVML's, nvidia-smi's) figure for this process on that
      device at the end of the block, not a peak: CUDA context and loaded kernels (hundreds of MB),
      everything the allocator still reserves, and library allocations outside PyTorch. None when
      pynvml is missing or fails, or when NVML does not list this PID (inside a container NVML
      shows host PIDs); ``method`` says why.
    """

    def __init__(self, device: torch.device | str | int | None = None, baseline: CudaBaseline | None = None) -> None:
        self.device = torch.device("cuda" if device is None else device)
        self.baseline = baseline or CudaBaseline()
        self.max_allocated_bytes = 0
        self.max_reserved_bytes = 0
        self.nvml_process_bytes: int | None = None
        self.device_used_bytes: int | None = None
        self.device_name = ""
        self.method = ""

    def _index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def __enter__(self) -> CudaPeak:
        self.reset()
        return self

    def reset(self) -> None:
        """Start the peak afresh from what is allocated now; blocks PyTorch cached but no longer uses (the
        autotuning workspaces) go back to the driver, so that NVML's figure at the end leaves them out too."""
        index = self._index()
        torch.cuda.synchronize(index)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(index)

    def __exit__(self, *exc) -> bool:
        index = self._index()
        torch.cuda.synchronize(index)
        self.max_allocated_bytes = torch.cuda.max_memory_allocated(index)
        self.max_reserved_bytes = torch.cuda.max_memory_reserved(index)
        self.nvml_process_bytes, nvml_note = _nvml_process_bytes(index)
        self.device_used_bytes = _device_used_bytes(index)
        self.device_name = torch.cuda.get_device_name(index)
        self.method = f"{METHOD_CUDA}; {nvml_note}; {METHOD_DEVICE_USED}"
        return False

    def result(self) -> CudaMemory:
        return CudaMemory.from_peak(self)


@dataclass(frozen=True)
class CudaMemory:
    """GPU memory of one benchmark cell; the fields are explained in CudaPeak."""

    max_allocated_bytes: int
    max_reserved_bytes: int
    nvml_process_bytes: int | None
    device_name: str
    nvml_baseline_bytes: int | None = None  # NVML's figure for this process before the model was built
    device_used_bytes: int | None = None  # cudaMemGetInfo: total - free at the end of the block (every process)
    device_used_baseline_bytes: int | None = None  # the same before the model was built
    method: str = ""

    @classmethod
    def from_peak(cls, peak: CudaPeak) -> CudaMemory:
        return cls(peak.max_allocated_bytes, peak.max_reserved_bytes, peak.nvml_process_bytes, peak.device_name,
                   peak.baseline.nvml_process_bytes, peak.device_used_bytes, peak.baseline.device_used_bytes,
                   peak.method)

    def to_dict(self) -> dict[str, int | str | None]:
        return asdict(self)


METHOD_DEVICE_USED = "device used: torch.cuda.mem_get_info (cudaMemGetInfo total - free) at the end of the block"


@dataclass(frozen=True)
class CudaBaseline:
    """The device memory of this process (NVML) and of the whole device (cudaMemGetInfo) before the model is
    built, with the CUDA context already created: what the memory cells' figures are taken above."""

    nvml_process_bytes: int | None = None
    device_used_bytes: int | None = None


def cuda_baseline(device: torch.device | str | int) -> CudaBaseline:
    """Create the CUDA context on `device` (if it is not yet), then read the baseline. Never raises on NVML."""
    index = torch.device(device).index
    index = index if index is not None else torch.cuda.current_device()
    torch.cuda.init()
    torch.cuda.synchronize(index)
    return CudaBaseline(_nvml_process_bytes(index)[0], _device_used_bytes(index))


def _device_used_bytes(device_index: int) -> int | None:
    try:
        free, total = torch.cuda.mem_get_info(device_index)
    except RuntimeError:
        return None
    return int(total - free)


def _nvml_process_bytes(device_index: int) -> tuple[int | None, str]:
    """This process's used memory on the device per NVML, and a note on how it was got. Never raises."""
    try:
        import pynvml
    except ImportError:
        return None, "nvml: unavailable (pynvml not installed: pip install 'dnnbench[cuda]' or nvidia-ml-py)"
    try:
        # NVML numbers devices differently from CUDA (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER): match by UUID.
        uuid = str(torch.cuda.get_device_properties(device_index).uuid)
        uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
            pid = os.getpid()
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory), "nvml: this process's used memory at the end of the block"
            return None, f"nvml: PID {pid} not listed on this device (in a container NVML shows host PIDs)"
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # noqa: BLE001 - an optional cross-check must never break a benchmark
        return None, f"nvml: failed ({type(e).__name__}: {e})"
