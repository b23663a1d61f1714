"""Energy of inference: joules per batch and images per joule, from the hardware's own energy counters.

* NVIDIA GPU: NVML's total-energy counter of the device (`nvmlDeviceGetTotalEnergyConsumption`, millijoules
  since the driver loaded; Volta and newer). It counts the whole board, so the GPU must not be shared.
* CPU: RAPL's package counters (`/sys/class/powercap/intel-rapl:N/energy_uj`, microjoules; AMD Zen exposes
  the same files), summed over packages. A counter wraps at its `max_energy_range_uj`: a reading below the
  previous one adds that range. They count the whole package (every process on it), and need read access
  (root on recent kernels).

Both counters are read at the start and the end of a block of forward passes (the `sampling_interval_s`
stored is that block's length: the counters' own update period, about 1 ms for RAPL and up to 100 ms for
NVML, is far below it). Idle power is measured first, over `idle_s` seconds of sleep on the same counter,
and subtracted: `net_joules` = joules - idle watts x seconds is what running the model added.

Elsewhere (an Apple GPU, a CPU whose counters cannot be read, pynvml missing) `energy_meter` says why energy is
unavailable here, and the cell is stored as such.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

POWERCAP_ROOT = Path("/sys/class/powercap")
POWERCAP_ENV = "DNNBENCH_POWERCAP_ROOT"  # another powercap tree (tests; a container's bind mount)

DEFAULT_IDLE_S = 1.0
DEFAULT_MIN_SECONDS = 3.0  # the timed block: long against NVML's update period (~100 ms)
DEFAULT_MIN_CALLS = 10


class EnergyUnavailable(Exception):
    """No energy counter can be read here; the message says why."""


class EnergyMeter(Protocol):
    method: str
    domains: tuple[str, ...]

    def read_joules(self) -> float:
        """A cumulative counter, joules (its origin is arbitrary; only differences count)."""


# --------------------------------------------------------------------------------------------- RAPL


@dataclass(frozen=True)
class RaplDomain:
    name: str  # the zone's `name` file: package-0, ...
    energy_file: Path
    max_range_uj: int


def rapl_domains(root: Path | str | None = None) -> tuple[RaplDomain, ...]:
    """The package zones (intel-rapl:N, not their sub-zones) under a powercap tree whose counters this process
    can read; EnergyUnavailable saying why when there are none."""
    root = Path(root or os.environ.get(POWERCAP_ENV) or POWERCAP_ROOT)
    if not root.is_dir():
        raise EnergyUnavailable(f"no RAPL here: {root} does not exist (no powercap driver, or a container or VM that hides it)")
    zones = sorted(z for z in root.glob("intel-rapl:*") if z.name.count(":") == 1)
    if not zones:
        raise EnergyUnavailable(f"no RAPL here: {root} has no intel-rapl:N package zone (no RAPL driver, or a "
                                "virtual machine that does not expose it)")
    found, refused = [], []
    for zone in zones:
        energy = zone / "energy_uj"
        try:
            int(energy.read_text().strip())
            max_range = int((zone / "max_energy_range_uj").read_text().strip())
        except PermissionError:
            refused.append(str(energy))
            continue
        except (OSError, ValueError):
            continue
        name = (zone / "name").read_text().strip() if (zone / "name").is_file() else zone.name
        found.append(RaplDomain(name, energy, max_range))
    if not found:
        detail = f"{', '.join(refused)} not readable by this user (root only since Linux 5.10)" if refused else \
            "no zone had a readable energy counter"
        raise EnergyUnavailable(f"RAPL present but unreadable: {detail}")
    return tuple(found)


class RaplMeter:
    """The sum of RAPL's package counters, with each counter's wrap-around undone."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.zones = rapl_domains(root)
        self.domains = tuple(z.name for z in self.zones)
        self.method = "RAPL package energy (" + ", ".join(str(z.energy_file) for z in self.zones) + ")"
        self._last = [self._raw(z) for z in self.zones]
        self._total_uj = 0

    @staticmethod
    def _raw(zone: RaplDomain) -> int:
        return int(zone.energy_file.read_text().strip())

    def read_joules(self) -> float:
        for i, zone in enumerate(self.zones):
            now = self._raw(zone)
            self._total_uj += unwrap(self._last[i], now, zone.max_range_uj)
            self._last[i] = now
        return self._total_uj / 1e6


def unwrap(before: int, after: int, max_range: int) -> int:
    """The increase of a counter that wraps to 0 after `max_range` (one wrap at most between two readings)."""
    return after - before if after >= before else after + max_range - before


# --------------------------------------------------------------------------------------------- NVML


class NvmlMeter:
    """NVML's total-energy counter of one NVIDIA GPU (millijoules since the driver loaded)."""

    def __init__(self, uuid: str, device_name: str = "") -> None:
        try:
            import pynvml
        except ImportError:
            raise EnergyUnavailable("pynvml is not installed (pip install 'dnnbench[cuda]' or nvidia-ml-py)") from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:  # noqa: BLE001 - NVML's errors (NotSupported on pre-Volta, MIG) become the reason
            raise EnergyUnavailable(f"NVML cannot read the total energy of {device_name or uuid}: "
                                    f"{type(exc).__name__}: {exc}") from None
        self.domains = (device_name or uuid,)
        self.method = f"NVML nvmlDeviceGetTotalEnergyConsumption of {device_name or uuid} (whole board)"

    def read_joules(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3


def energy_meter(device: str) -> EnergyMeter:
    """The counter that sees `device`'s energy; EnergyUnavailable saying why there is none here."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return RaplMeter()
    if kind == "cuda":
        import torch

        index = int(device.partition(":")[2] or 0)
        props = torch.cuda.get_device_properties(index)
        return NvmlMeter(str(getattr(props, "uuid", "")), props.name)
    raise EnergyUnavailable(f"no energy counter dnnbench can read on a {kind} device (NVML on NVIDIA GPUs, RAPL "
                            "on CPUs)")


# ---------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class EnergyResult:
    """The energy of `calls` forward passes of `batch_size` images, idle power subtracted."""

    batch_size: int
    calls: int
    seconds: float
    joules: float  # the counter's increase over the block
    idle_watts: float
    idle_seconds: float
    net_joules: float  # joules - idle_watts x seconds: what running the model added
    joules_per_batch: float
    joules_per_image: float
    images_per_joule: float | None
    method: str
    sampling_interval_s: float  # the counters are read at the start and the end of the block
    domains: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "domains": list(self.domains)}


def idle_watts(meter: EnergyMeter, seconds: float = DEFAULT_IDLE_S, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """(watts, seconds) the counter shows while this process sleeps."""
    start_j, start_t = meter.read_joules(), clock()
    sleep(seconds)
    joules, elapsed = meter.read_joules() - start_j, clock() - start_t
    return (joules / elapsed if elapsed > 0 else 0.0), elapsed


def measure_energy(forward: Callable[[], object], batch_size: int, meter: EnergyMeter,
                   sync: Callable[[], None] = lambda: None, min_seconds: float = DEFAULT_MIN_SECONDS,
                   min_calls: int = DEFAULT_MIN_CALLS, idle_s: float = DEFAULT_IDLE_S, warmup_calls: int = 3,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.perf_counter) -> EnergyResult:
    """Idle power first (before any load warms the device up), then `warmup_calls` untimed calls, then `forward()`
    over at least `min_seconds` and `min_calls`, synchronised at the end."""
    sync()
    watts, idle_elapsed = idle_watts(meter, idle_s, sleep, clock)
    for _ in range(warmup_calls):
        forward()
    sync()
    calls = 0
    start_j, start_t = meter.read_joules(), clock()
    while calls < min_calls or clock() - start_t < min_seconds:
        forward()
        calls += 1
        if calls % 10 == 0:
            sync()  # keep the queue short: the clock then follows the device's work
    sync()
    seconds = clock() - start_t
    joules = meter.read_joules() - start_j
    net = joules - watts * seconds
    per_batch = net / calls
    return EnergyResult(batch_size=batch_size, calls=calls, seconds=seconds, joules=joules, idle_watts=watts,
                        idle_seconds=idle_elapsed, net_joules=net, joules_per_batch=per_batch,
                        joules_per_image=per_batch / batch_size,
                        images_per_joule=batch_size / per_batch if per_batch > 0 else None, method=meter.method,
                        sampling_interval_s=seconds, domains=tuple(meter.domains))
