"""Sweeps end to end: isolated workers, failures recorded as results, resume, interruption."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnnbench import zoo
from dnnbench.run.config import build_sweep_config
from dnnbench.run.plan import plan
from dnnbench.run.runner import run_sweep
from dnnbench.store import Store

TESTS = Path(__file__).resolve().parent
SRC = Path(zoo.__file__).resolve().parents[2]  # the dnnbench under test, not another one installed
FAST = dict(device="cpu", batch_sizes=(1, 2), threads=(1,), input_size=32, time_budget_s=0.3, min_samples=3,
            warmup_iters=1, warmup_s=0.0, measure_peak=False)
FAST_ARGS = ["--device", "cpu", "--threads", "1", "--input-size", "32", "--time-budget", "0.3", "--min-samples", "3",
             "--warmup-iters", "1", "--warmup-s", "0", "--no-peak"]


def model(name):
    return zoo.get(f"python:dnnbench_test_models:{name}")


def by_cell(records):
    return {(r.model.rsplit(":", 1)[-1], r.metric, r.config.get("batch_size")): r for r in records}


def test_plan_orders_batch_sizes_and_keys_cells_by_what_they_measure():
    config = build_sweep_config(batch_sizes=(8, 1, 2), threads=(1, 2))
    jobs = plan([zoo.get("resnet18")], config)
    assert [j.threads for j in jobs] == [1, 2]
    assert jobs[0].batch_sizes == (1, 2, 8)
    assert [c.metric for c in jobs[0].cells][:3] == ["complexity", "time", "memory"]
    assert not any(c.metric == "complexity" for c in jobs[1].cells)  # counted once per model
    digests = [c.digest for j in jobs for c in j.cells]
    assert len(digests) == len(set(digests)) == 1 + 2 * 3 * 2
    # the budget decides precision, not what is measured: the same cells
    again = plan([zoo.get("resnet18")], build_sweep_config(batch_sizes=(1, 2, 8), threads=(1, 2), time_budget_s=99))
    assert [c.digest for j in again for c in j.cells] == digests


def test_failures_are_results_and_the_sweep_goes_on(tmp_path):
    specs = [model(n) for n in ("tiny", "raising", "segfaulting", "aborting", "hungry", "sleeping")]
    config = build_sweep_config(**{**FAST, "batch_sizes": (1, 2, 4)}, memory_limit_mb=800, cell_timeout_s=20)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(specs, config, store)
        stored = by_cell(store.results())
    cells = by_cell(summary.records)
    assert stored.keys() == cells.keys()
    # cells a dead worker never reached are not written: the next run measures them
    assert len(cells) == 6 * (1 + 3 * 2) - 2 * (1 + 2 + 2)

    def statuses(name, metric):
        return [cells[name, metric, b].status if (name, metric, b) in cells else None for b in (1, 2, 4)]

    for metric in ("time", "memory"):
        assert statuses("tiny", metric) == ["ok"] * 3
        assert statuses("raising", metric) == ["error"] * 3
        assert statuses("segfaulting", metric) == ["ok", "crash", None]
        assert statuses("aborting", metric) == ["crash", None, None]
        assert statuses("hungry", metric) == ["ok", "ok", "oom"]
        assert statuses("sleeping", metric) == ["timeout", None, None]
    assert "this model always fails" in cells["raising", "time", 1].error
    assert "SIGSEGV" in cells["segfaulting", "time", 2].error
    assert "SIGABRT" in cells["aborting", "time", 1].error
    assert "out of memory at batch size 4" in cells["hungry", "time", 4].error
    assert "timeout" in cells["sleeping", "time", 1].error
    assert cells["tiny", "complexity", 1].values.macs == 8 * 8 * 8 * 27 + 80


def test_time_and_memory_values_say_how_they_were_measured(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep([model("tiny")], build_sweep_config(**{**FAST, "measure_peak": True}), store)
        cells = by_cell(store.results())
        frame = store.frame(metric="time")
        peaks = store.peaks(summary.machine_id)
    timing = cells["tiny", "time", 2].values
    assert timing.timer == "perf_counter_ns"
    assert len(timing.samples_s) >= 3 and min(timing.samples_s) > 0
    assert timing.stop_reason in ("converged", "time_budget", "max_samples")
    assert timing.stats.ci_low <= timing.stats.median <= timing.stats.ci_high
    assert timing.images_per_s == pytest.approx(2 / timing.stats.median)
    assert timing.build_s > 0 and timing.cold_start_s > 0
    assert timing.runtime.intra_op_threads == 1
    assert None not in (timing.contention.process_cpu_s, timing.contention.other_cpu_s, timing.contention.contended)
    assert timing.extra == {} and timing.backend.name == "eager"
    memory = cells["tiny", "memory", 2].values
    assert memory.analytic.total_peak_bytes > memory.weight_bytes == (8 * 27 + 8 + 90) * 4
    assert memory.peak_rss_bytes > 0 and memory.analytic_ratio > 0 and memory.extra == {}
    assert len(frame) == 2 and "value.stats.median" in frame.columns
    # the sweep measured the CPU's fp32 peak at its thread count, once, for its %-of-peak figures
    assert [(p["device"], p["precision"], p["threads"]) for p in peaks] == [("cpu", "fp32", 1)]
    assert peaks[0]["estimate"]["peak_flops"] > 0


# this checkout's sources first: the venv's editable install may point at another one
CHECKOUT_PATH = os.pathsep.join((str(SRC), str(TESTS)))


def run_cli(*args, db, timeout=300, **kwargs):
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH, "COLUMNS": "200"}
    # a shell without job control starts background commands with SIGINT ignored, and Python keeps an ignored
    # SIGINT ignored: the runner gets Ctrl-C's default, as in a terminal, wherever the tests themselves run
    return subprocess.Popen([sys.executable, "-m", "dnnbench", "run", *args, "--db", str(db)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def count_results(db):
    try:
        with sqlite3.connect(db, timeout=10) as con:
            return con.execute("select count(*) from results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    db = tmp_path / "r.sqlite"
    names = ",".join(f"python:dnnbench_test_models:{n}" for n in ("tiny", "hungry", "raising"))
    args = ["--models", names, "--batch-sizes", "1,2", *FAST_ARGS]
    runner = run_cli(*args, db=db, start_new_session=True)
    deadline = time.time() + 120
    while count_results(db) < 4 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its worker, mid-sweep
    runner.wait()
    partial = count_results(db)
    assert 4 <= partial < 15
    second = run_cli(*args, db=db)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"{partial} already in the store" in " ".join(out.split())
    with Store(db) as store:
        records = store.results()
    keys = [r.cell_key.digest for r in records]
    assert len(keys) == len(set(keys)) == 3 * (1 + 2 * 2)
    third = run_cli(*args, db=db)  # everything done: nothing measured again
    out, _ = third.communicate(timeout=300)
    assert "measured now: nothing new" in " ".join(out.split())
    assert count_results(db) == 15


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_keeps_finished_cells_and_stops_the_worker(tmp_path, signum, code):
    db = tmp_path / "r.sqlite"
    names = ",".join(f"python:dnnbench_test_models:{n}" for n in ("tiny", "sleeping"))
    runner = run_cli("--models", names, "--batch-sizes", "1", *FAST_ARGS, db=db)
    deadline = time.time() + 120
    while count_results(db) < 4 and time.time() < deadline:  # tiny's 3 cells, sleeping's complexity, then it sleeps
        time.sleep(0.2)
    time.sleep(3)
    runner.send_signal(signum)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == code
    assert "finished cells are kept" in err
    assert "Traceback" not in err
    with Store(db) as store:
        records = store.results()
        assert {r.status for r in records} == {"ok"} and len(records) == 4
        assert not any(r.model.endswith("sleeping") and r.metric == "time" for r in records)
        assert store.runs()[0]["status"] == "interrupted"
    # this runner's workers only (they carry its pid): other sweeps may be running on the machine
    leftover = subprocess.run(["pgrep", "-f", f"dnnbench.run.worker .*--parent {runner.pid} "], capture_output=True,
                              text=True).stdout
    assert not leftover.strip()


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda", "resnet18"], "no CUDA device"),
    (["--batch-sizes", "1,0", "resnet18"], "must be positive"),
    (["--batch-sizes", "1,x", "resnet18"], "positive integers separated by commas"),
    (["--time-budget", "0", "resnet18"], "time budget must be positive"),
    (["--metrics", "time,speed", "resnet18"], "metrics: time, memory, complexity"),
    # the worker's flags too: refused here, not crashed on in every worker (issue 18)
    (["--interop-threads", "0", "resnet18"], "--interop-threads"),
    (["--interop-threads", "-1", "resnet18"], "--interop-threads"),
    (["--memory-limit-mb", "0", "resnet18"], "at least 256 MB"),
    (["--memory-limit-mb", "-5", "resnet18"], "at least 256 MB"),
    (["--memory-limit-mb", "1", "resnet18"], "cannot even import PyTorch"),
    (["--warmup-iters", "0", "resnet18"], "warm-up needs at least one"),
])
def test_bad_run_arguments_fail_before_any_work(tmp_path, args, message):
    if "cuda" in args and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    db = tmp_path / "r.sqlite"
    proc = run_cli(*args, db=db)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert message in " ".join(err.split())
    assert not db.exists()


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "notes.sqlite"
    db.write_bytes(b"my notes, not a database")
    proc = run_cli("resnet18", "--metrics", "complexity", db=db)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert db.read_bytes() == b"my notes, not a database"


def test_python_api_and_export_round_trip(tmp_path):
    import json

    from dnnbench.run import benchmark

    db = tmp_path / "api.sqlite"
    summary = benchmark(["python:dnnbench_test_models:tiny"], db=db, **{**FAST, "batch_sizes": (1,)})
    frame = summary.frame()
    assert set(frame["metric"]) == {"complexity", "time", "memory"}
    assert frame.loc[frame.metric == "time", "value.stats.median"].iloc[0] > 0
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
    for suffix in ("csv", "json", "parquet"):
        out = tmp_path / f"export.{suffix}"
        subprocess.run([sys.executable, "-m", "dnnbench", "export", str(out), "--db", str(db)], check=True, env=env)
        assert out.stat().st_size > 0
    doc = json.loads((tmp_path / "export.json").read_text())
    assert len(doc["results"]) == 3 and len(doc["machines"]) == 1
    imported = tmp_path / "imported.sqlite"
    with Store(imported) as store:
        store.import_json(tmp_path / "export.json")
        assert sorted(r.cell_key.digest for r in store.results()) == sorted(r.cell_key.digest for r in summary.records)


@pytest.mark.gpu
def test_cuda_sweep_times_with_events_and_reports_allocator_memory(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with Store(tmp_path / "gpu.sqlite") as store:
        run_sweep([zoo.get("resnet18")], build_sweep_config(device="cuda:0", batch_sizes=(1, 8), time_budget_s=1.0), store)
        cells = {(r.metric, r.config["batch_size"]): r for r in store.results() if r.metric != "complexity"}
    assert all(r.status == "ok" for r in cells.values())
    assert cells["time", 8].values.timer == "cuda_events"
    assert cells["time", 8].values.stats.median > cells["time", 1].values.stats.median * 0.5
    memory = cells["memory", 8].values
    assert memory.max_reserved_bytes >= memory.max_allocated_bytes > memory.weight_bytes
