import json
import os
import subprocess
import sys
import time

import pytest

from dnnbench.measure import contention
from dnnbench.measure.contention import ContentionMonitor, ContentionReport

BLOCK_S = 1.5


def burn(seconds):
    """Busy-loop in this process until it has used `seconds` of CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def burn_wall(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_busy_loop_is_our_cpu_time():
    with ContentionMonitor() as m:
        burn(0.3)
    r = m.report
    assert r.process_cpu_s >= 0.3
    assert r.process_cpu_s <= r.wall_s + 0.01  # one thread cannot use more CPU than wall time
    assert r.machine_busy_cpu_s >= r.process_cpu_s - 0.1  # the machine's count includes ours (10 ms ticks)
    assert r.other_cpu_s == max(0.0, r.machine_busy_cpu_s - r.process_cpu_s)
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_a_competing_process_is_reported_as_contention():
    with ContentionMonitor() as quiet:
        burn_wall(BLOCK_S)

    competitor = subprocess.Popen(
        [sys.executable, "-c", "print('ready', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert competitor.stdout.readline().strip() == "ready"
        with ContentionMonitor() as loud:
            burn_wall(BLOCK_S)
    finally:
        competitor.kill()
        competitor.wait()

    assert loud.report.other_cpu_s > 0
    assert loud.report.other_cores > quiet.report.other_cores
    if (os.cpu_count() or 1) >= 2:
        assert loud.report.contended


def test_report_arithmetic():
    r = ContentionReport.from_times(2.0, 1.5, 2.5, 0.25, "m")
    assert r.other_cpu_s == pytest.approx(1.0) and r.other_cores == pytest.approx(0.5) and r.contended
    r = ContentionReport.from_times(2.0, 1.5, 1.49, 0.25, "m")  # tick rounding: never negative
    assert r.other_cpu_s == 0.0 and r.other_cores == 0.0 and not r.contended
    assert ContentionReport.from_times(0.0, 0.0, 0.0, 0.25, "m").other_cores == 0.0


def test_proc_stat_busy_columns_of_the_cpus_asked_for(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 1000 50 5 6 7 40 3\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 10 20 30 40 50 60 70 80\n"
                    "intr 1 2 3\n")
    monkeypatch.setattr(contention, "_PROC_STAT", str(stat))
    busy, method = contention.cpus_busy_cpu_s([1])
    assert busy == pytest.approx((10 + 20 + 30 + 60 + 70 + 80) / os.sysconf("SC_CLK_TCK"))
    assert contention.cpus_busy_cpu_s([0, 1])[0] == pytest.approx((1 + 2 + 3 + 6 + 7 + 8 + 270) / os.sysconf("SC_CLK_TCK"))
    assert method.startswith("/proc/stat per CPU")


def test_falls_back_to_psutil_without_proc_stat(monkeypatch, tmp_path):
    monkeypatch.setattr(contention, "_PROC_STAT", str(tmp_path / "missing"))
    busy, method = contention.cpus_busy_cpu_s(contention.allowed_cpus())
    assert busy > 0 and "psutil" in method


def test_headroom_left_by_fewer_threads_than_cpus_is_not_contention():
    # 4 allowed CPUs, 1 thread: others may keep 3 cores busy before they take a time slice from us
    free = ContentionReport.from_times(1.0, 1.0, 3.2, 0.25, "m", allowed_cpus=4, threads=1)
    assert free.headroom_cores == 3.0 and free.other_cores == pytest.approx(2.2) and not free.contended
    assert ContentionReport.from_times(1.0, 1.0, 4.3, 0.25, "m", allowed_cpus=4, threads=1).contended
    assert ContentionReport.from_times(1.0, 1.0, 1.3, 0.25, "m", allowed_cpus=4, threads=4).contended
    assert contention.cpu_list([0, 1, 2, 3, 6, 8, 9]) == "0-3,6,8-9"


_PINNED_WORKER = """
import json, os, sys, time
from dnnbench.measure.contention import ContentionMonitor
os.sched_setaffinity(0, {int(sys.argv[1])})
with ContentionMonitor() as monitor:
    end = time.perf_counter() + float(sys.argv[2])
    while time.perf_counter() < end:
        pass
print(json.dumps(monitor.report.to_dict()))
"""

_PINNED_HOG = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
print("ready", flush=True)
while True:
    pass
"""


def _pinned_block(worker_cpu, hog_cpu=None):
    """A worker pinned to `worker_cpu` times a busy block, while a busy process pinned to `hog_cpu` runs."""
    hog = None
    if hog_cpu is not None:
        hog = subprocess.Popen([sys.executable, "-c", _PINNED_HOG, str(hog_cpu)], stdout=subprocess.PIPE, text=True)
    try:
        assert hog is None or hog.stdout.readline().strip() == "ready"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run([sys.executable, "-c", _PINNED_WORKER, str(worker_cpu), str(BLOCK_S)], env=env,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(contention.allowed_cpus()) < 2,
                    reason="needs CPU affinity and at least 2 CPUs")
def test_only_a_busy_process_on_the_workers_cpus_is_contention():
    """Judged on the flag only, never on time: a hog on the worker's CPU always contends; a hog on
    another CPU does not (the old whole-machine rule flagged it: one core > 0.25 of the machine). Other
    load on a shared machine only adds contention: the second case needs the worker's CPU otherwise
    quiet, and is skipped when a block with no hog at all is already contended there."""
    mine, other = contention.allowed_cpus()[:2]
    same = _pinned_block(mine, mine)
    assert same["allowed_cpus"] == 1 and same["threads"] == 1 and same["contended"]
    for _ in range(3):
        if not _pinned_block(mine)["contended"]:
            break
    else:
        pytest.skip(f"CPU {mine} is kept busy by other work here: a hog elsewhere cannot be told apart")
    elsewhere = [_pinned_block(mine, other)["contended"] for _ in range(3)]
    assert not all(elsewhere)


def test_threshold_is_validated():
    with pytest.raises(ValueError):
        ContentionMonitor(threshold_cores=-0.1)
