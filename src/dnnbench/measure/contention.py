"""Was anyone else using the CPU while a cell was timed? A shared machine lies about latency.

For a timed block, ContentionMonitor records the wall time, the CPU time of this process (all
threads, user + system) and the CPU time the whole machine was busy. What the machine spent beyond
us is other processes' work (steal time included: other virtual machines on the host), expressed
in cores as ``other_cpu_s / wall_s``. A block is ``contended`` when others used more than
``threshold_cores`` (default 0.25) on average.

Granularity: /proc/stat counts in USER_HZ ticks (10 ms) per CPU, charged to whatever ran when the
scheduler tick fired, so ``other_cpu_s`` is uncertain by a few ticks per CPU. A 1 s block flags
contention at 250 ms of others' CPU, about 25 ticks, which is reliable; blocks shorter than about
0.2 s are noisy and are better judged over a whole run. Our own process time is exact
(``time.process_time()``), but child processes we started (data loader workers) count as others.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import psutil

DEFAULT_THRESHOLD_CORES = 0.25

_PROC_STAT = "/proc/stat"


@dataclass(frozen=True)
class ContentionReport:
    """CPU use around one timed block. Times in seconds, of CPU time unless named wall."""

    wall_s: float
    process_cpu_s: float  # this process, all threads, user + system
    machine_busy_cpu_s: float  # all CPUs: user + nice + system + irq + softirq + steal
    other_cpu_s: float  # max(0, machine_busy_cpu_s - process_cpu_s)
    other_cores: float  # other_cpu_s / wall_s: cores others kept busy on average
    threshold_cores: float
    contended: bool  # other_cores > threshold_cores
    method: str

    @classmethod
    def from_times(
        cls, wall_s: float, process_cpu_s: float, machine_busy_cpu_s: float, threshold_cores: float, method: str
    ) -> ContentionReport:
        other = max(0.0, machine_busy_cpu_s - process_cpu_s)
        other_cores = other / wall_s if wall_s > 0 else 0.0
        return cls(
            wall_s=wall_s,
            process_cpu_s=process_cpu_s,
            machine_busy_cpu_s=machine_busy_cpu_s,
            other_cpu_s=other,
            other_cores=other_cores,
            threshold_cores=threshold_cores,
            contended=other_cores > threshold_cores,
            method=method,
        )

    def to_dict(self) -> dict[str, float | bool | str]:
        return asdict(self)


class ContentionMonitor:
    """Context manager; after the block, ``report`` holds its ContentionReport."""

    def __init__(self, threshold_cores: float = DEFAULT_THRESHOLD_CORES) -> None:
        if not (0 <= threshold_cores < math.inf):
            raise ValueError(f"threshold_cores must be >= 0 and finite, got {threshold_cores!r}")
        self.threshold_cores = float(threshold_cores)
        self.report: ContentionReport | None = None

    def __enter__(self) -> ContentionMonitor:
        # Machine first on entry and last on exit: its window encloses ours, so the error leans
        # towards reporting contention rather than hiding it.
        self._busy0, self._source = machine_busy_cpu_s()
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        busy1, _ = machine_busy_cpu_s()
        method = f"process: time.process_time(); machine: {self._source}"
        self.report = ContentionReport.from_times(wall, cpu, busy1 - self._busy0, self.threshold_cores, method)
        return False


def machine_busy_cpu_s() -> tuple[float, str]:
    """CPU seconds all CPUs of the machine have been busy since boot, and where that came from."""
    try:
        with open(_PROC_STAT) as f:
            fields = f.readline().split()
    except OSError:  # macOS, Windows
        t = psutil.cpu_times()
        busy = sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        return busy, "psutil.cpu_times()"
    # "cpu user nice system idle iowait irq softirq steal guest guest_nice"; guest time is already
    # inside user and nice. Old kernels have fewer columns.
    user, nice, system, _idle, _iowait, irq, softirq, steal = ([int(v) for v in fields[1:9]] + [0] * 8)[:8]
    ticks = user + nice + system + irq + softirq + steal
    hz = os.sysconf("SC_CLK_TCK")
    return ticks / hz, f"/proc/stat (USER_HZ={hz} ticks)"
