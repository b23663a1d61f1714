"""Trials in fresh processes, intervals that respect autocorrelation and between-process variance, resume
between trials, and how intervals are shown (never a "95% CI" where there were too few samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from dnnbench.cli.render import run_summary_table
from dnnbench.measure.latency import WarmupPolicy, measure_latency
from dnnbench.measure.stats import StoppingRule, median_ci, trials_interval, within_trial_ci
from dnnbench.run.config import build_sweep_config
from dnnbench.run.executor import Executor, Placed
from dnnbench.run.plan import plan
from dnnbench.run.runner import run_sweep
from dnnbench.run.trials import add_trial
from dnnbench.run.worker import record
from dnnbench.store import ResultRecord, Store
from dnnbench.store.values import ContentionInfo, LatencyStats, TimeValue, decode
from dnnbench.zoo import resolve_models

TRUE_MEDIAN = 0.010  # seconds: exp(AR(1)) noise has median exactly exp(0) = 1 times this


def ar1_timer(seed: int, phi: float, sd: float = 0.05):
    """A forward pass whose duration follows log-AR(1) drift, on a fake clock that only it advances."""
    rng = np.random.default_rng(seed)
    state = {"now": 0, "x": rng.normal(0, sd)}
    innovation = sd * math.sqrt(1 - phi**2)

    def forward() -> None:
        state["x"] = phi * state["x"] + rng.normal(0, innovation)
        state["now"] += int(TRUE_MEDIAN * math.exp(state["x"]) * 1e9)

    return forward, (lambda: state["now"])


def test_within_trial_interval_covers_under_drift_where_the_naive_one_does_not():
    """400 timed forwards with lag-1 autocorrelation 0.9, through measure_latency and a fake clock: the
    batch-medians interval covers the true median in most of 100 runs, the order-statistics one does not."""
    covered = {"batch medians": 0, "order statistics": 0}
    runs = 100
    for seed in range(runs):
        forward, clock = ar1_timer(seed, phi=0.9)
        result = measure_latency(forward, 1, "cpu", StoppingRule(ci_target=1e-9, max_samples=400, time_budget_s=math.inf),
                                 WarmupPolicy(min_iters=1, min_seconds=0.0), clock_ns=clock)
        assert len(result.samples_s) == 400
        s = result.stats
        covered["batch medians"] += s.within_ci_low <= TRUE_MEDIAN <= s.within_ci_high
        covered["order statistics"] += s.ci_low <= TRUE_MEDIAN <= s.ci_high
    assert covered["batch medians"] >= 0.85 * runs, covered
    assert covered["order statistics"] <= 0.6 * runs, covered


def test_trials_interval_holds_the_between_process_spread():
    """Each trial (process) has its own offset, as fresh processes do (allocation, placement): the interval
    over 5 trial medians covers the true median in most repetitions; one process's own interval does not."""
    rng = np.random.default_rng(7)
    reps, covered_trials, covered_one = 200, 0, 0
    for _ in range(reps):
        medians, first = [], None
        for _ in range(5):
            offset = rng.normal(0, 0.05)  # between-process: 5 %
            samples = TRUE_MEDIAN * np.exp(offset + rng.normal(0, 0.01, 200))
            medians.append(float(np.median(samples)))
            first = first or within_trial_ci(samples)
        interval = trials_interval(medians)
        covered_trials += interval.low <= TRUE_MEDIAN <= interval.high
        covered_one += first[0] <= TRUE_MEDIAN <= first[1]
    assert covered_trials >= 0.9 * reps
    assert covered_one <= 0.3 * reps


def test_too_few_samples_give_a_range_named_as_such():
    low, high, method = within_trial_ci([0.03, 0.01, 0.02])
    assert (low, high, method) == (0.01, 0.03, "range (n = 3)")
    assert trials_interval([0.02]).method == "range (n = 1)"
    assert median_ci([0.01, 0.02, 0.03])[2].startswith("min-max")


# --- plan and resume ----------------------------------------------------------------------------------


def sweep(repeats: int, **extra):
    return build_sweep_config(device="cpu", batch_sizes="1,8", threads="1", measure_peak=False, repeats=repeats,
                              **extra)


def specs():
    return resolve_models(["python:dnnbench_test_models:tiny", "python:dnnbench_test_models:raising"])


def test_trials_are_interleaved_round_robin():
    jobs = plan(specs(), sweep(3))
    order = [(j.trial, j.model.rsplit(":", 1)[-1]) for j in jobs]
    assert order == [(1, "tiny"), (1, "raising"), (2, "tiny"), (2, "raising"), (3, "tiny"), (3, "raising")]
    # later trials time only; memory and complexity ride with the first
    assert {c.metric for j in jobs if j.trial > 1 for c in j.cells} == {"time"}
    assert {c.metric for j in jobs if j.trial == 1 for c in j.cells} == {"time", "memory", "complexity"}
    # the cell key does not depend on repeats: a sweep with more trials resumes a sweep with fewer
    assert {c.digest for c in plan(specs(), sweep(1))[0].cells} == {c.digest for c in jobs[0].cells}


class FakeExecutor(Executor):
    """Measures nothing: every time cell gets a trial whose median is 10 ms + 1 ms per trial; stops (as a
    Ctrl-C would) at the first job of trial `stop_at`."""

    name = "local"

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at
        self.ran: list[tuple[int, str]] = []

    def run_jobs(self, jobs, on_record, on_job_started, on_job_done) -> None:
        for placed in jobs:
            job = placed.job
            if self.stop_at is not None and job.trial >= self.stop_at:
                raise KeyboardInterrupt
            on_job_started(placed, "")
            self.ran.append((job.trial, job.model.rsplit(":", 1)[-1]))
            for cell in job.cells:
                on_record(placed, self.measure(placed, cell))
            on_job_done(placed, "")

    def measure(self, placed: Placed, cell) -> ResultRecord:
        if cell.metric != "time":
            return record(cell, "error", error="not measured by the fake executor")
        median = 0.010 + 0.001 * placed.job.trial
        samples = tuple(median * (1 + 0.01 * (i % 5 - 2)) for i in range(40))
        lo, hi, method = within_trial_ci(samples)
        return record(cell, "ok", TimeValue(
            batch_size=cell.batch_size, samples_s=samples, median_s=median, timed_s=sum(samples),
            stats=LatencyStats(n=40, median=median, within_ci_low=lo, within_ci_high=hi, within_ci_method=method),
            stop_reason="converged", converged=True, contention=ContentionInfo(contended=False)))

    def cancel(self) -> None:
        pass


def time_values(db) -> list[TimeValue]:
    with Store(db) as store:
        return [r.values for r in store.results(metric="time") if r.status == "ok"]


def test_a_sweep_stopped_after_two_of_three_trials_resumes_with_the_third(tmp_path):
    db = tmp_path / "r.sqlite"
    model = resolve_models(["python:dnnbench_test_models:tiny"])
    first = FakeExecutor(stop_at=3)
    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        run_sweep(model, sweep(3), store, first)
    assert first.ran == [(1, "tiny"), (2, "tiny")]
    assert [v.trial_count for v in time_values(db)] == [2, 2]

    again = FakeExecutor()
    with Store(db) as store:
        summary = run_sweep(model, sweep(3), store, again)
    assert again.ran == [(3, "tiny")]  # only the missing trial
    values = time_values(db)
    assert [v.trial_count for v in values] == [3, 3]
    v = values[0]
    assert [t.median_s for t in v.trials] == pytest.approx([0.011, 0.012, 0.013])
    assert v.median_s == pytest.approx(0.012)  # the median over trial medians
    low, high, method = v.ci
    assert method == "t over trial medians (k = 3)" and low < 0.011 and high > 0.013
    assert v.between_trial_cv == pytest.approx(0.001 / 0.012, rel=1e-6)
    assert v.within_trial_rel is not None and v.within_trial_rel < v.ci_half_width_rel
    assert v.sustained_images_per_s == pytest.approx(120 / sum(t.timed_s for t in v.trials))
    assert sum(1 for r in summary.records if r.metric == "time") == 2  # each cell once, as it now stands

    done = FakeExecutor()
    with Store(db) as store:
        run_sweep(model, sweep(3), store, done)
    assert done.ran == []  # every cell has its 3 trials


def test_a_trial_folds_into_a_layout_0_cell():
    old = decode("time", {"batch_size": 1, "median_s": 0.02, "samples_s": [0.02] * 30, "timed_s": 0.6,
                          "stats": {"n": 30, "median": 0.02, "ci_low": 0.019, "ci_high": 0.021,
                                    "ci_method": "order-statistics"}})
    new = decode("time", {"batch_size": 1, "median_s": 0.03, "samples_s": [0.03] * 30, "timed_s": 0.9,
                          "stats": {"n": 30, "median": 0.03, "within_ci_low": 0.029, "within_ci_high": 0.031,
                                    "within_ci_method": "batch medians (b = 5)"}})
    merged = add_trial(old, new)
    assert merged.trial_count == 2 and merged.median_s == pytest.approx(0.025)
    assert merged.to_dict()["layout"] == 2 and decode("time", merged.to_dict()) == merged


# --- how intervals are shown --------------------------------------------------------------------------


LAYOUT_0_CELL = {  # what release 0190a26 wrote for a 3-sample cell: its "95% CI" was the min-max range
    "batch_size": 1, "samples_s": [0.0101, 0.0100, 0.0105], "median_s": 0.0101, "ms_per_image": 10.1,
    "images_per_s": 99.0, "stop_reason": "time_budget", "converged": False, "timed_s": 0.0306,
    "stats": {"n": 3, "min": 0.0100, "max": 0.0105, "median": 0.0101, "mean": 0.0102, "std": 0.0003,
              "p90": 0.0104, "p99": 0.0105, "cv": 0.03, "ci_level": 0.95, "ci_low": 0.0100, "ci_high": 0.0105,
              "ci_half_width_rel": 0.0248, "ci_method": "min-max (n too small for the requested level)"}}


def rendered(records) -> str:
    console = Console(record=True, width=400)
    console.print(run_summary_table(records))
    return console.export_text()


def test_a_layout_0_three_sample_cell_decodes_and_renders_as_a_range():
    value = decode("time", LAYOUT_0_CELL)
    assert isinstance(value, TimeValue) and value.trial_count == 1 and value.median_s == 0.0101
    assert value.ci == (0.0100, 0.0105, "range (n = 3)") and value.ci_is_range
    cell = ResultRecord("m", "time", {"backend": "eager", "dtype": "fp32", "threads": 1, "batch_size": 1}, "ok",
                        LAYOUT_0_CELL, None, 0.0, 0.0)
    text = rendered([cell])
    row = next(line for line in text.splitlines() if line.startswith("│ m "))
    assert "range (n = 3)" in row


def test_a_new_three_sample_cell_renders_as_a_range():
    samples = [0.0101, 0.0100, 0.0105]
    lo, hi, method = within_trial_ci(samples)
    value = add_trial(None, TimeValue(batch_size=1, samples_s=tuple(samples), median_s=0.0101, timed_s=0.0306,
                                      stats=LatencyStats(n=3, median=0.0101, within_ci_low=lo, within_ci_high=hi,
                                                         within_ci_method=method)))
    cell = ResultRecord("m", "time", {"backend": "eager", "dtype": "fp32", "threads": 1, "batch_size": 1}, "ok",
                        value, None, 0.0, 0.0)
    row = next(line for line in rendered([cell]).splitlines() if line.startswith("│ m "))
    assert "range (n = 3)" in row and "±" in row


@pytest.mark.parametrize("killed", [2, 3])
def test_a_trial_killed_midway_never_replaces_the_good_ones(tmp_path, monkeypatch, killed):
    """Three trials in real worker processes; one is killed with SIGKILL. The cell keeps the two good trials
    (not the crash), the crash is kept in the history, and the run's summary shows the cell as ok."""
    monkeypatch.setenv("DNNBENCH_TEST_KILL_AT", str(killed))
    (tmp_path / "trials").mkdir()
    monkeypatch.setenv("DNNBENCH_TEST_TRIAL_DIR", str(tmp_path / "trials"))
    db = tmp_path / "r.sqlite"
    config = build_sweep_config(device="cpu", batch_sizes="1", threads="1", metrics="time", measure_peak=False,
                                repeats=3, time_budget_s=0.2, warmup_iters=2)
    with Store(db) as store:
        summary = run_sweep(resolve_models(["python:dnnbench_test_models:killed_in_trial"]), config, store)
        history = store.history()
    assert len(list((tmp_path / "trials").iterdir())) == 3  # three worker processes ran
    (value,) = time_values(db)
    assert value.trial_count == 2 and value.interval.trials == 2
    assert [r.status for r in summary.records] == ["ok"]
    assert [h.status for h in history] == ["crash"] and "SIGKILL" in history[0].error


def _cell(model: str, machine: str, trial_medians: list[float], within: float = 0.004) -> ResultRecord:
    """A time cell with one TimeValue per trial folded as the runner folds them (within: relative half-width)."""
    value = None
    for median in trial_medians:
        trial = TimeValue(batch_size=1, median_s=median, timed_s=1.0, stop_reason="converged", converged=True,
                          stats=LatencyStats(n=40, median=median, within_ci_low=median * (1 - within),
                                             within_ci_high=median * (1 + within),
                                             within_ci_method="batch medians (b = 5)"),
                          contention=ContentionInfo(contended=False))
        value = add_trial(value, trial)
    return ResultRecord(model=model, metric="time", status="ok", values=value, machine_id=machine, error=None,
                        started_at=1.0, finished_at=2.0,
                        config={"device": "cpu", "dtype": "fp32", "batch_size": 1, "threads": 1, "backend": "eager",
                                "input_size": 224})


def test_a_single_trial_cell_carries_the_machines_pooled_between_process_spread():
    """Two probe cells with 3 trials on machine m1: a single-trial cell on m1 gets median * exp(+-t(4) * sqrt(s^2 +
    w^2)), s^2 the pooled variance of log trial medians; on m2, with no multi-trial cell, it stays a within-process
    interval and says so."""
    from scipy.stats import t

    from dnnbench.analysis import frames_from_records

    probes = [[0.010, 0.011, 0.0105], [0.100, 0.094, 0.097]]
    records = [_cell("resnet18", "m1", probes[0]), _cell("vgg16", "m1", probes[1]),
               _cell("alexnet", "m1", [0.020]), _cell("alexnet", "m2", [0.020])]
    time = frames_from_records(records).time.set_index(["machine_id", "model"])
    logs = [np.log(p) for p in probes]
    pooled = math.sqrt(sum(((x - x.mean()) ** 2).sum() for x in logs) / 4)
    half = t.ppf(0.975, 4) * math.sqrt(pooled**2 + (0.004 / 1.959963984540054) ** 2)
    single = time.loc[("m1", "alexnet")]
    assert single.latency_low_ms == pytest.approx(20 * math.exp(-half))
    assert single.latency_high_ms == pytest.approx(20 * math.exp(half))
    assert single.ci_method == "one trial + between-process sd pooled from 2 cells (df = 4)"
    alone = time.loc[("m2", "alexnet")]
    assert alone.ci_method == "batch medians (b = 5), within one process"
    assert alone.latency_high_ms == pytest.approx(20 * 1.004)
    probe = time.loc[("m1", "resnet18")]  # a cell with trials keeps its own t-interval over trial medians
    assert probe.ci_method == "t over trial medians (k = 3)"
