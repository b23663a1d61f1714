"""The Python API does what `dnnbench run` does, from a plain script, with the same checks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dnnbench
from dnnbench import zoo
from dnnbench.errors import UsageError
from dnnbench.run import benchmark, build_sweep_config
from dnnbench.run.plan import plan
from dnnbench.run.runner import pending_jobs
from dnnbench.run.worker import record
from dnnbench.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SRC = Path(dnnbench.__file__).resolve().parents[1]
FAST = dict(device="cpu", threads=(1,), input_size=32, time_budget_s=0.2, min_samples=3, warmup_iters=1, warmup_s=0.0,
            measure_peak=False)
TINY = "python:dnnbench_test_models:Tiny"


def readme_python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_readme_python_example_runs_as_a_script_twice_with_the_same_frame(tmp_path):
    """Saved as a file and run (workers must not re-import the script), then run again on the same store:
    the second run measures nothing and its frame has the same rows and columns."""
    script = tmp_path / "example.py"
    # the test's own lines, after the user's: what the frame held
    script.write_text(readme_python_block() + "\nimport json\nframe = summary.frame()\n"
                      "json.dump({'columns': list(frame.columns), 'rows': sorted(frame['model'] + '/' + frame['metric']"
                      " + '/' + frame['config.batch_size'].astype(str)), 'now': int(frame['measured_now'].sum())},"
                      " open('frame.json', 'w'))\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    frames = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "bootstrapping phase" not in proc.stderr and "Traceback" not in proc.stderr
        frames.append(json.loads((tmp_path / "frame.json").read_text()))
    first, second = frames
    assert first["columns"] == second["columns"] and first["rows"] == second["rows"]
    assert len(first["rows"]) == 2 * (1 + 2 * 2) and first["now"] == 10 and second["now"] == 0
    with Store(tmp_path / "results" / "mine.sqlite") as store:
        assert {r.status for r in store.results()} == {"ok"}


def test_benchmark_best_times_every_backend_available_here(tmp_path):
    summary = benchmark([TINY], db=tmp_path / "r.sqlite", backends="best", precisions="fp32", batch_sizes=(1,),
                        metrics="time", **FAST)
    frame = summary.frame()
    backends = set(frame["config.backend"])
    assert {"eager", "torchscript"} <= backends and len(backends) >= 3
    assert set(frame["status"]) <= {"ok", "unsupported", "unavailable"}
    assert (frame.loc[frame["config.backend"] == "eager", "status"] == "ok").all()


@pytest.mark.parametrize("setting, message", [
    ({"interop_threads": 0}, "--interop-threads"),
    ({"interop_threads": -1}, "--interop-threads"),
    ({"memory_limit_mb": 0}, "at least 256 MB"),
    ({"memory_limit_mb": -5}, "at least 256 MB"),
    ({"memory_limit_mb": 1}, "cannot even import PyTorch"),
    ({"warmup_iters": 0}, "warm-up needs at least one"),
    ({"time_budget_s": 0}, "time budget must be positive"),
    ({"ci_target": 1.0}, "--ci-target"),
    ({"precisions": "fp32,fp8"}, "unknown precision 'fp8'"),
    ({"backends": "onnx"}, "did you mean onnxruntime"),
    ({"batch_sizes": "1,0"}, "must be positive"),
    ({"executor": "slurm"}, "unknown executor"),
    ({"address": "127.0.0.1:1"}, "--executor ray"),
    ({"bogus_setting": 1}, "no setting 'bogus_setting'"),
])
def test_the_api_refuses_what_the_cli_refuses_before_the_store_is_touched(tmp_path, setting, message):
    db = tmp_path / "r.sqlite"
    with pytest.raises(UsageError, match=re.escape(message)):
        benchmark([TINY], db=db, **{**FAST, **setting})
    assert not db.exists()


def test_the_builder_speaks_the_cli_vocabulary():
    config = build_sweep_config(batch_sizes="8,1,2", threads="1,2", metrics="time", precisions="float32,bf16",
                                backend_options=["compile.mode=max-autotune"], backends="eager,compile")
    assert config.scope.batch_sizes == (8, 1, 2) and config.scope.threads == (1, 2)
    assert config.scope.precisions == ("fp32", "bf16") and config.scope.backends == ("eager", "compile")
    assert config.scope.options_for("compile").mode == "max-autotune"
    assert not config.scope.best_search and config.resume.force is False
    assert build_sweep_config(backends="best").scope.best_search
    # one default each: the measuring layer's
    from dnnbench.measure.latency import WarmupPolicy
    from dnnbench.measure.stats import StoppingRule

    assert build_sweep_config().stopping == StoppingRule() and build_sweep_config().warmup == WarmupPolicy()


def _job_cells(config):
    (job,) = plan([zoo.get(TINY)], config)
    return job, {(c.metric, c.batch_size): c for c in job.cells}


def _put(store, cell, status):
    result = record(cell, status, error=None if status == "ok" else "test")
    result.machine_id = "m"
    store.put_result(result)


@pytest.mark.parametrize("status", ["crash", "timeout", "oom", "error", "skipped", "lost", "unavailable",
                                    "unsupported"])
def test_retry_failed_measures_every_non_ok_cell_again(tmp_path, status):
    config = build_sweep_config(batch_sizes=(1, 2), metrics="time", **FAST)
    job, cells = _job_cells(config)
    with Store(tmp_path / "r.sqlite") as store:
        store.register_machine("m", {})
        _put(store, cells["time", 1], "ok")
        _put(store, cells["time", 2], status)
        plain = pending_jobs(store, "m", [job], config.resume)
        retry = pending_jobs(store, "m", [job], build_sweep_config(batch_sizes=(1, 2), metrics="time",
                                                                   retry_failed=True, **FAST).resume)
    assert [c.batch_size for j in retry for c in j.cells] == [2]
    # a plain re-run: a skipped cell whose cause (an oom at a smaller batch size) is gone is measured again too
    assert [c.batch_size for j in plain for c in j.cells] == ([2] if status == "skipped" else [])


def test_a_skipped_cell_stays_done_while_a_smaller_batch_size_is_oom(tmp_path):
    config = build_sweep_config(batch_sizes=(1, 2, 4), metrics="time", **FAST)
    job, cells = _job_cells(config)
    with Store(tmp_path / "r.sqlite") as store:
        store.register_machine("m", {})
        _put(store, cells["time", 1], "ok")
        _put(store, cells["time", 2], "oom")
        _put(store, cells["time", 4], "skipped")
        assert pending_jobs(store, "m", [job], config.resume) == []
        _put(store, cells["time", 2], "ok")  # measured again (e.g. --retry-failed with more memory): cause gone
        assert [c.batch_size for j in pending_jobs(store, "m", [job], config.resume) for c in j.cells] == [4]


def test_a_crash_leaves_larger_batch_sizes_unwritten_and_retry_failed_measures_the_crash_again(tmp_path):
    db = tmp_path / "r.sqlite"
    settings = dict(batch_sizes=(1, 2, 4), metrics="time", **FAST)
    first = benchmark(["python:dnnbench_test_models:segfaulting"], db=db, **settings)
    statuses = {r.config["batch_size"]: r.status for r in first.records}
    assert statuses == {1: "ok", 2: "crash"}  # batch 4 was never attempted: no result claims it was
    with Store(db) as store:
        crashed = {r.config["batch_size"]: r.finished_at for r in store.results()}
    assert set(crashed) == {1, 2}
    again = benchmark(["python:dnnbench_test_models:segfaulting"], db=db, retry_failed=True, **settings)
    assert {r.config["batch_size"]: r.status for r in again.records} == {2: "crash"}
    with Store(db) as store:
        after = {r.config["batch_size"]: r.finished_at for r in store.results()}
    assert after[1] == crashed[1] and after[2] > crashed[2]
    frame = again.frame()  # every cell asked for that the store has, with what this call measured
    assert sorted(zip(frame["config.batch_size"], frame["measured_now"])) == [(1, False), (2, True)]
