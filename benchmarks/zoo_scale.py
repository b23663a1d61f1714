"""The whole zoo counted: `dnnbench profile 'timm:*' 'torchvision:*'` into a temporary store.

Prints the wall time, the peak memory of the whole process tree (the CLI and its workers, summed, sampled
from /proc every 0.2 s: getrusage(RUSAGE_CHILDREN) gives only the largest child), how many models were
counted, their share of those whose library builds them on the meta device, and every failure with its
reason. Then it shows resume: a second run into a fresh store is killed (SIGKILL to its process group, as
a crash would) once some models are counted, and run again; the rerun must count exactly the models the
killed run had not, and none of those it had.

Targets (issue 17): at most 10 minutes on a 2-core machine, peak under 4 GB, at least 99% counted.

    PYTHONPATH=src .venv/bin/python benchmarks/zoo_scale.py                       # the whole zoo, then resume
    PYTHONPATH=src .venv/bin/python benchmarks/zoo_scale.py --patterns 'timm:resnet*' --resume-patterns 'timm:resnet*'
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil


class TreeMemory(threading.Thread):
    """Peak of the summed resident memory of a process and all its descendants."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self.stop = pid, every_s, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self.stop.wait(self.every_s)


def profile_command(patterns: list[str], db: Path, out: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "dnnbench", "profile", *patterns, "--db", str(db)]
    return cmd + (["--format", "csv", "--output", str(out)] if out else ["--format", "csv", "--output", os.devnull])


def _children_cpu() -> float:
    """CPU seconds of every finished descendant (the CLI and, through it, its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rows(db: Path) -> list[tuple[str, str, str, str]]:
    """(model, status, error, run_id) of every complexity cell in the store."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT model, status, coalesce(error, ''), coalesce(run_id, '') FROM results "
                           "WHERE metric = 'complexity'").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def full_run(patterns: list[str], db: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started, cpu_before, load_before = time.perf_counter(), _children_cpu(), os.getloadavg()[0]
    proc = subprocess.Popen(profile_command(patterns, db, db.with_suffix(".csv")), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    memory = TreeMemory(proc.pid)
    memory.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - started
    cpu, load = _children_cpu() - cpu_before, os.getloadavg()
    memory.stop.set()
    memory.join()
    cells = rows(db)
    status = Counter(s for _, s, _, _ in cells)
    builds = len(cells) - status["unsupported"]
    counted = status["ok"]
    print(f"dnnbench profile {' '.join(patterns)}: exit {proc.returncode}")
    print(f"  wall time        {wall:8.1f} s  (target <= 600 s)")
    print(f"  CPU time         {cpu:8.1f} s  of the process tree ({cpu / wall:.2f} cores busy on average; the "
          f"machine's load average {load_before:.1f} at the start, {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end)")
    print(f"  peak memory      {memory.peak / 2**30:8.2f} GiB for the process tree (target < 4 GB)")
    print(f"  models           {len(cells):8d}  ({', '.join(f'{k} {v}' for k, v in sorted(status.items()))})")
    print(f"  build on meta    {builds:8d}")
    print(f"  counted          {counted:8d}  = {100 * counted / max(builds, 1):.2f}% of those that build (target >= 99%)")
    failures = sorted((m, s, e) for m, s, e, _ in cells if s != "ok")
    if failures:
        print("  failures:")
        for model, s, error in failures:
            print(f"    {model} ({s}): {error[:220]}")
    if proc.returncode not in (0,):
        print(stderr[-2000:])


def resume_run(patterns: list[str], db: Path, kill_after: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(profile_command(patterns, db), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and sum(s == "ok" for _, s, _, _ in rows(db)) < kill_after:
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, without a chance to clean up
    proc.wait()
    before = rows(db)
    counted_before = {m for m, s, _, _ in before if s == "ok"}
    killed_runs = {r for _, _, _, r in before}
    started = time.perf_counter()
    again = subprocess.run(profile_command(patterns, db), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = rows(db)
    recounted = {m for m, s, _, r in after if m in counted_before and r not in killed_runs}
    new = {m for m, s, _, r in after if r not in killed_runs}
    skipped_line = next((line for line in again.stderr.splitlines() if "already counted" in line), "")
    print(f"resume: {' '.join(patterns)} killed (SIGKILL) after {len(counted_before)} models counted")
    print(f"  rerun exit {again.returncode} in {wall:.1f} s: {skipped_line.strip()}")
    print(f"  counted by the rerun {len(new)}, of them already counted before the kill: {len(recounted)} (must be 0)")
    print(f"  in the store now: {sum(s == 'ok' for _, s, _, _ in after)} counted of {len(after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", nargs="+", default=["timm:*", "torchvision:*"])
    parser.add_argument("--resume-patterns", nargs="+", default=["timm:resnet*", "torchvision:*"],
                        help="what the killed-and-resumed run counts (smaller than the zoo: the mechanism is the same)")
    parser.add_argument("--kill-after", type=int, default=40, help="models counted before the kill")
    parser.add_argument("--skip-full", action="store_true", help="only the resume demonstration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo_scale_") as tmp:
        if not args.skip_full:
            full_run(args.patterns, Path(tmp) / "zoo.sqlite")
        resume_run(args.resume_patterns, Path(tmp) / "resume.sqlite", args.kill_after)


if __name__ == "__main__":
    main()
