"""What `dnnbench` prints where no terminal reads it (a CI log, a pipe), and what its exit code says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnbench.cli.app import app
from test_analysis import fill_store

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
FAST_ARGS = ["--device", "cpu", "--threads", "1", "--input-size", "32", "--time-budget", "0.3", "--min-samples", "3",
             "--warmup-iters", "1", "--warmup-s", "0", "--no-peak", "--batch-sizes", "1"]
RUN_HEADERS = ["model", "deployment", "threads", "batch", "status", "median ms", "interval", "trials", "between %",
               "within ±%", "ms/image", "images/s", "sustained img/s", "stop", "set-up s", "check", "peak MB",
               "estimate MB", "note"]


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
    header = header_line(result.stdout)  # the 19 columns side by side, each header whole, on one line
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


# --- outputs that cannot be written: one line, exit 2 ----------------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fill_store(tmp_path_factory.mktemp("outputs") / "results.sqlite")


def one_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("name", ["x.csv", "x.json", "x.parquet"])
def test_export_into_a_missing_folder(db, tmp_path, name):
    line = one_error(CliRunner().invoke(app, ["export", str(tmp_path / "missing" / name), "--db", db]))
    assert "missing" in line and "does not exist" in line
    assert not (tmp_path / "missing").exists()


def test_export_and_report_under_a_file_or_onto_a_folder(db, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert "file" in one_error(CliRunner().invoke(app, ["export", str(tmp_path / "file" / "x.json"), "--db", db]))
    assert "is a folder" in one_error(CliRunner().invoke(app, ["export", str(tmp_path), "--db", db, "--format",
                                                                   "json"]))
    line = one_error(CliRunner().invoke(app, ["report", "--db", db, "-o", str(tmp_path / "file" / "report"),
                                              "--images", "none"]))
    assert "file" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_export_and_report_into_a_read_only_folder(db, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert "Permission denied" in one_error(CliRunner().invoke(app, ["export", str(folder / "x.csv"), "--db", db]))
        assert "Permission denied" in one_error(CliRunner().invoke(app, ["report", "--db", db, "-o",
                                                                        str(folder / "r"), "--images", "none"]))
    finally:
        folder.chmod(0o700)
