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


def test_proc_stat_busy_columns(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 1000 50 5 6 7 40 3\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    monkeypatch.setattr(contention, "_PROC_STAT", str(stat))
    busy, method = contention.machine_busy_cpu_s()
    assert busy == pytest.approx((100 + 20 + 30 + 5 + 6 + 7) / os.sysconf("SC_CLK_TCK"))
    assert method.startswith("/proc/stat")


def test_falls_back_to_psutil_without_proc_stat(monkeypatch, tmp_path):
    monkeypatch.setattr(contention, "_PROC_STAT", str(tmp_path / "missing"))
    busy, method = contention.machine_busy_cpu_s()
    assert busy > 0 and "psutil" in method


def test_threshold_is_validated():
    with pytest.raises(ValueError):
        ContentionMonitor(threshold_cores=-0.1)
