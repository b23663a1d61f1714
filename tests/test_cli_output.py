"""What `dnnbench` prints where no terminal reads it (a CI log, a pipe), and what its exit code says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
FAST_ARGS = ["--device", "cpu", "--threads", "1", "--input-size", "32", "--time-budget", "0.3", "--min-samples", "3",
             "--warmup-iters", "1", "--warmup-s", "0", "--no-peak", "--batch-sizes", "1"]
RUN_HEADERS = ["model", "deployment", "threads", "batch", "status", "median ms", "±CI %", "ms/image", "images/s",
               "stop", "set-up s", "check", "peak MB", "estimate MB", "note"]


def dnnbench(*args: str, columns: str | None = None) -> subprocess.CompletedProcess:
    """The command with stdout and stderr as pipes, as in a CI log; COLUMNS only when given."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS)])
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "dnnbench", *args], capture_output=True, text=True, env=env,
                          timeout=600, encoding="utf-8")


def header_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "deployment" in line and "estimate MB" in line)


def test_run_summary_in_a_pipe_keeps_every_column_whole(tmp_path):
    result = dnnbench("run", "python:dnnbench_test_models:tiny", "python:dnnbench_test_models:raising", *FAST_ARGS,
                      "--db", str(tmp_path / "r.sqlite"))
    assert result.returncode == 0, result.stderr  # one model measured: a success
    assert "…" not in result.stdout
    header = header_line(result.stdout)  # the 15 columns side by side, each header whole, on one line
    positions = [header.index(h) for h in RUN_HEADERS]
    assert positions == sorted(positions)
    row = next(line for line in result.stdout.splitlines() if "dnnbench_test_models:tiny" in line and " ok " in line)
    assert "converged" in row or "time_budget" in row or "max_samples" in row
    # COLUMNS still decides where the user sets it; cells fold then, never end in an ellipsis
    narrow = dnnbench("run", "python:dnnbench_test_models:tiny", *FAST_ARGS, "--db", str(tmp_path / "r.sqlite"),
                      columns="100")
    assert narrow.returncode == 0, narrow.stderr
    assert "…" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100


def test_run_exits_1_when_no_cell_succeeded(tmp_path):
    # the model fails on every forward (its parameters could still be counted: --metrics leaves that out)
    result = dnnbench("run", "python:dnnbench_test_models:raising", *FAST_ARGS, "--metrics", "time,memory",
                      "--db", str(tmp_path / "r.sqlite"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no cell of the 2 planned was measured" in errors[0]
    assert "Traceback" not in result.stderr
