"""Was anyone else using our CPUs while a cell was timed? A shared machine lies about latency.

For a timed block, ContentionMonitor records the wall time, the CPU time of this process (all
threads, user + system) and the CPU time the CPUs this process may run on (``os.sched_getaffinity``)
were busy. What those CPUs spent beyond us is other processes' work (steal time included: other
virtual machines on the host), expressed in cores as ``other_cores = other_cpu_s / wall_s``. Work on
CPUs we may not use is not counted: it takes no time slice from us.

Not all of our CPUs are ours to keep busy: a worker running ``threads`` threads on ``allowed_cpus``
CPUs leaves ``headroom_cores = allowed_cpus - threads`` idle, and others may use them without taking a
time slice from us. A block is ``contended`` when others used more than that headroom plus
``threshold_cores`` (default 0.25) on average. With as many threads as allowed CPUs (the usual case) this
is the old rule: others above 0.25 cores. ``threads`` defaults to PyTorch's intra-op thread count when
PyTorch is loaded (the worker sets it to the cell's threads before timing), else to every allowed CPU.
Shared caches, memory bandwidth and SMT siblings are not judged: a busy neighbour on another core can
still slow us without being counted here.

Granularity: /proc/stat counts in USER_HZ ticks (10 ms) per CPU, charged to whatever ran when the
scheduler tick fired, so ``other_cpu_s`` is uncertain by a few ticks per CPU. A 1 s block flags
contention at 250 ms of others' CPU, about 25 ticks, which is reliable; blocks shorter than about
0.2 s are noisy and are better judged over a whole run. Our own process time is exact
(``time.process_time()``), but child processes we started (data loader workers) count as others.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psutil

DEFAULT_THRESHOLD_CORES = 0.25

_PROC_STAT = "/proc/stat"


@dataclass(frozen=True)
class ContentionReport:
    """CPU use around one timed block. Times in seconds, of CPU time unless named wall."""

    wall_s: float
    process_cpu_s: float  # this process, all threads, user + system
    machine_busy_cpu_s: float  # the CPUs we may use: user + nice + system + irq + softirq + steal
    other_cpu_s: float  # max(0, machine_busy_cpu_s - process_cpu_s)
    other_cores: float  # other_cpu_s / wall_s: cores others kept busy on our CPUs, on average
    threshold_cores: float
    contended: bool  # other_cores > headroom_cores + threshold_cores
    method: str
    allowed_cpus: int = 0  # CPUs this process may run on (0: not known, judged as no headroom)
    threads: int = 0  # threads we run on them
    headroom_cores: float = 0.0  # max(0, allowed_cpus - threads): cores others may use for free

    @classmethod
    def from_times(
        cls, wall_s: float, process_cpu_s: float, machine_busy_cpu_s: float, threshold_cores: float, method: str,
        allowed_cpus: int = 0, threads: int = 0,
    ) -> ContentionReport:
        other = max(0.0, machine_busy_cpu_s - process_cpu_s)
        other_cores = other / wall_s if wall_s > 0 else 0.0
        headroom = float(max(0, allowed_cpus - threads)) if allowed_cpus and threads else 0.0
        return cls(
            wall_s=wall_s,
            process_cpu_s=process_cpu_s,
            machine_busy_cpu_s=machine_busy_cpu_s,
            other_cpu_s=other,
            other_cores=other_cores,
            threshold_cores=threshold_cores,
            contended=other_cores > headroom + threshold_cores,
            method=method,
            allowed_cpus=allowed_cpus,
            threads=threads,
            headroom_cores=headroom,
        )

    def to_dict(self) -> dict[str, float | bool | str]:
        return asdict(self)


class ContentionMonitor:
    """Context manager; after the block, ``report`` holds its ContentionReport.

    `threads`: how many threads the timed code runs (default: see the module docstring)."""

    def __init__(self, threshold_cores: float = DEFAULT_THRESHOLD_CORES, threads: int | None = None) -> None:
        if not (0 <= threshold_cores < math.inf):
            raise ValueError(f"threshold_cores must be >= 0 and finite, got {threshold_cores!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.threshold_cores = float(threshold_cores)
        self.threads = threads
        self.report: ContentionReport | None = None

    def __enter__(self) -> ContentionMonitor:
        self._cpus = allowed_cpus()
        self._threads = min(self.threads or running_threads(len(self._cpus)), len(self._cpus))
        # Our CPUs first on entry and last on exit: their window encloses ours, so the error leans
        # towards reporting contention rather than hiding it.
        self._busy0, self._source = cpus_busy_cpu_s(self._cpus)
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        busy1, _ = cpus_busy_cpu_s(self._cpus)
        method = f"process: time.process_time(); CPUs {cpu_list(self._cpus)}: {self._source}"
        self.report = ContentionReport.from_times(wall, cpu, busy1 - self._busy0, self.threshold_cores, method,
                                                  len(self._cpus), self._threads)
        return False


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS has no affinity call)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def running_threads(allowed: int) -> int:
    """Threads the timed code runs: PyTorch's intra-op count when PyTorch is loaded, else every allowed CPU."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None and hasattr(torch, "get_num_threads") else allowed
    return max(1, int(threads))


def cpu_list(cpus: Iterable[int]) -> str:
    """`0-3,6` for [0, 1, 2, 3, 6]."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _busy_ticks(fields: list[str]) -> int:
    # "cpuN user nice system idle iowait irq softirq steal guest guest_nice"; guest time is already
    # inside user and nice. Old kernels have fewer columns.
    user, nice, system, _idle, _iowait, irq, softirq, steal = ([int(v) for v in fields[1:9]] + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def cpus_busy_cpu_s(cpus: Iterable[int]) -> tuple[float, str]:
    """CPU seconds the given CPUs have been busy since boot, and where that came from."""
    wanted = {f"cpu{c}" for c in cpus}
    try:
        with open(_PROC_STAT) as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except OSError:  # macOS, Windows
        per_cpu = psutil.cpu_times(percpu=True)
        names = ("user", "nice", "system", "irq", "softirq", "steal")
        busy = sum(getattr(t, n, 0.0) for i, t in enumerate(per_cpu) if f"cpu{i}" in wanted for n in names)
        return busy, "psutil.cpu_times(percpu=True)"
    ticks = sum(_busy_ticks(fields) for fields in lines if fields[0] in wanted)
    hz = os.sysconf("SC_CLK_TCK")
    return ticks / hz, f"/proc/stat per CPU (USER_HZ={hz} ticks)"

