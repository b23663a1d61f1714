"""`dnnbench screen`: counted, screened by cheap rules, predicted from a calibration made here by an injected
timer, filtered by the limits on predicted figures, the best measured for real, and the Pareto front with each
figure marked measured or predicted; without a calibration it stops after complexity and says so. Also the
report's zoo-wide view and timm's published accuracy for ad hoc timm models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnnbench.analysis import Constraints, frames_from_records, performance, select_models
from dnnbench.analysis.zoo_info import zoo_row
from dnnbench.measure.operators import MODULE_CALL
from dnnbench.run.calibrate import calibrate, calibration_config
from dnnbench.screen import (
    ScreenedModel,
    cheap_violations,
    fastest_rate,
    mark_front,
    predicted_violations,
    rank_key,
    screen,
)
from dnnbench.zoo.timm_results import SOURCE, UNKNOWN

MACHINE = "feedfacecafe0002"
TINY = "python:dnnbench_prediction_models:known_layers"  # no published accuracy: "accuracy unknown"
SEEDS = ("resnet18", "mobilenetv2", "squeezenet1_1")
OUTSIDE = "torchvision:mobilenet_v3_small"  # not the paper's; torchvision publishes its top-1 (67.7%)
SRC = Path(__file__).resolve().parent.parent / "src"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}


def flops_timer(items, config):
    """10 ps per FLOP (100 GFLOP/s) plus 1 us per operator; module calls 2 us each."""
    return [1e-5 + 2e-6 * i.features["modules"] if i.kind == MODULE_CALL else 1e-6 + 1e-11 * i.features["flops"]
            for i in items]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    """A store with a calibration of MACHINE (not this machine) over the screened models' own operators, so
    that their predictions are lookups: resnet18 ~37 ms, mobilenetv2 ~7 ms, squeezenet1_1 ~8 ms at batch 1."""
    db = tmp_path_factory.mktemp("screen") / "store.sqlite"
    calibrate(db, calibration_config("quick", models=(*SEEDS, TINY, OUTSIDE), batch_sizes=(1,),
                                      operators=5000), timer=flops_timer,
              machine_id=MACHINE, fingerprint={"hostname": "calibrated-only"})
    return db


@pytest.fixture(scope="module", autouse=True)
def fit_once():
    """Every store of this module holds the same calibration: its regressors (about 20 s of fitting on this
    machine) are fitted once and reused by each screen."""
    import dnnbench.screen as screening

    fitted: dict = {}
    fit = screening._fit
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(screening, "_fit", lambda db, key: fitted.get(key) or fitted.setdefault(key, fit(db, key)))
        yield


def _copy(db: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "store.sqlite"
    shutil.copyfile(db, target)
    return target


def test_screen_predicts_filters_on_the_interval_and_keeps_accuracy_unknown_models(calibrated, tmp_path):
    db = _copy(calibrated, tmp_path)
    result = screen([*SEEDS, TINY], db, machine=MACHINE, constraints=Constraints(max_latency_ms=20), top=2,
                    measure=False, workers=0)
    by_id = {m.model: m for m in result.models}
    assert set(by_id) == {*SEEDS, TINY}  # none dropped
    assert result.calibration.machine_id == MACHINE and not result.stopped_after_complexity
    resnet = by_id["resnet18"]
    assert resnet.stage == "predicted" and not resnet.fits and "predicted latency at least" in resnet.why_not
    assert resnet.predicted_low_ms > 20
    for model in ("mobilenetv2", "squeezenet1_1", TINY):
        m = by_id[model]
        assert m.stage == "predicted" and m.fits and m.predicted_ms < 20 and m.latency_source == "predicted"
        assert m.predicted_memory_mb > 0 and m.macs > 0
    tiny = by_id[TINY]
    assert tiny.top1 is None and tiny.accuracy_source == UNKNOWN  # kept, marked
    assert by_id["mobilenetv2"].top1 > by_id["squeezenet1_1"].top1
    # ranked: fitting first, best published top-1 first, accuracy unknown last among the fitting
    assert [m.model for m in result.models] == ["mobilenetv2", "squeezenet1_1", TINY, "resnet18"]
    # the front (published top-1 against latency) holds only models that fit and have an accuracy
    front = result.front()
    assert front and all(m.fits and m.top1 is not None for m in front)
    if by_id["mobilenetv2"].predicted_ms < by_id["squeezenet1_1"].predicted_ms:  # faster and more accurate
        assert [m.model for m in front] == ["mobilenetv2"]
    # counted once: a second screen reuses the store's counts and predicts the same
    again = screen([*SEEDS, TINY], db, machine=MACHINE, constraints=Constraints(max_latency_ms=20), top=2,
                   measure=False, workers=0)
    assert [m.predicted_ms for m in again.models] == [m.predicted_ms for m in result.models]


def test_operations_alone_screen_a_model_out_before_prediction(calibrated, tmp_path):
    db = _copy(calibrated, tmp_path)
    result = screen(["resnet18", "mobilenetv2"], db, machine=MACHINE, constraints=Constraints(max_latency_ms=10),
                    measure=False, workers=0)
    by_id = {m.model: m for m in result.models}
    # resnet18: 1.8 G-MACs x 2 / (2 x 100 GFLOP/s, the fastest calibrated operator with the margin) = 18 ms
    assert by_id["resnet18"].stage == "screened out" and by_id["resnet18"].predicted_ms is None
    assert "operations alone take at least" in by_id["resnet18"].why_not
    assert by_id["mobilenetv2"].stage == "predicted"
    assert any("GFLOP/s" in rule for rule in result.rules)


def test_without_a_calibration_the_screen_stops_after_complexity_and_says_so(tmp_path):
    db = tmp_path / "bare.sqlite"
    result = screen(["resnet18", "squeezenet1_1", TINY], db, machine=MACHINE,
                    constraints=Constraints(max_latency_ms=30, max_memory_mb=20), workers=0)
    assert result.stopped_after_complexity and "stopped after complexity-based filtering" in result.message
    by_id = {m.model: m for m in result.models}
    assert by_id["resnet18"].stage == "screened out" and "weights alone" in by_id["resnet18"].why_not
    assert by_id["squeezenet1_1"].stage == by_id[TINY].stage == "not predicted"
    assert not result.fitting() and by_id[TINY].accuracy_source == UNKNOWN
    cli = subprocess.run([sys.executable, "-m", "dnnbench", "screen", "squeezenet1_1", TINY, "--db", str(db),
                          "--max-latency-ms", "30", "--jobs", "0", "--format", "json"], capture_output=True, text=True,
                         env=ENV, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "stopped after complexity-based filtering" in cli.stderr and "dnnbench calibrate" in cli.stderr
    rows = json.loads(cli.stdout)
    assert {r["model"]: r["stage"] for r in rows} == {"squeezenet1_1": "not predicted", TINY: "not predicted"}
    assert "2 models already counted" in cli.stderr  # the counts of the first screen were kept


def test_the_best_are_measured_here_and_the_front_marks_measured_and_predicted(calibrated, tmp_path):
    db = _copy(calibrated, tmp_path)
    result = screen([*SEEDS, TINY, OUTSIDE], db, machine=MACHINE, constraints=Constraints(max_latency_ms=20), top=1,
                    time_budget_s=0.2, workers=0, report_dir=tmp_path / "report")
    by_id = {m.model: m for m in result.models}
    best = by_id["mobilenetv2"]  # the best published top-1 of those predicted to fit
    assert best.stage == "measured" and best.measured_ms > 0 and best.latency_source == "measured"
    assert best.predicted_ms is not None and best.memory_source == "measured"
    assert by_id["squeezenet1_1"].stage == "predicted" and by_id["squeezenet1_1"].latency_source == "predicted"
    assert result.measured_on and result.measured_on != MACHINE
    frame = result.frame()
    assert set(frame.loc[frame["on_front"], "latency_source"]) <= {"measured", "predicted"}
    assert frame.set_index("model").at["mobilenetv2", "latency_source"] == "measured"
    page = result.report.read_text(encoding="utf-8")
    assert "Screen: the models that fit, measured and predicted" in page and 'id="fig-screen-front"' in page
    assert by_id[OUTSIDE].top1 == pytest.approx(67.668) and "torchvision" in by_id[OUTSIDE].accuracy_source
    assert "Zoo-wide view" in page and 'id="fig-zoo-top1-vs-gmacs"' in page  # OUTSIDE is not the paper's
    assert "have no published or measured top-1 (accuracy unknown)" in page


def test_limits_are_judged_at_the_favourable_end_of_the_interval():
    limits = Constraints(max_latency_ms=30, min_images_per_s=20, max_memory_mb=100)
    assert predicted_violations(0.029, 50 * 2**20, limits) == []  # low end 29 ms meets 30 ms: kept
    missed = predicted_violations(0.031, 150 * 2**20, limits)
    assert "predicted latency at least 31.0 ms > 30 ms" in missed[0] and "predicted memory 150 MB" in missed[-1]
    # the cheap rules: weights alone, a published top-1 under the floor, operations at the machine's fastest rate
    assert cheap_violations(4e9, 200 * 2**20, 70.0, Constraints(max_memory_mb=100, min_top1=75, max_latency_ms=30),
                            rate=1e11) == ["weights alone 200 MB > 100 MB", "published top-1 70.00% < 75%",
                                           "operations alone take at least 80.0 ms > 30 ms"]
    assert cheap_violations(4e9, 1e6, None, Constraints(min_top1=75), rate=None) == []  # unknown accuracy kept


def test_the_machines_fastest_rate_ignores_views_that_count_elements_in_no_time():
    from dnnbench.predict import CalibrationKey

    class Calibrated:
        def peak(self, *args):
            return {"peak_flops": 5e10}

        def calibration(self, *args):
            return [{"kind": "slice", "features": {"flops": 1e9}, "seconds": 1e-7},  # a view: 10 PFLOP/s "rate"
                    {"kind": "conv2d:pointwise", "features": {"flops": 1e9}, "seconds": 2e-2},
                    {"kind": "linear", "features": {"flops": 1e9}, "seconds": 1e-2}]

    rate, source = fastest_rate(Calibrated(), CalibrationKey("m"))
    assert rate == pytest.approx(2e11) and "convolution or matrix product" in source  # 2 x linear's 100 GFLOP/s


def test_the_front_is_over_models_that_fit_with_an_accuracy():
    def model(name, top1, ms, fits=True, measured=False):
        return ScreenedModel(name, name, "f", False, "measured" if measured else "predicted", top1=top1,
                             predicted_ms=ms, measured_ms=ms if measured else None, fits=fits)

    models = [model("fast", 70.0, 5.0, measured=True), model("slow-better", 80.0, 20.0),
              model("dominated", 65.0, 10.0), model("too-slow", 90.0, 50.0, fits=False),
              model("unknown", None, 1.0)]
    marked = {m.model: m for m in mark_front(models)}
    assert {n for n, m in marked.items() if m.on_front} == {"fast", "slow-better"}
    assert marked["fast"].latency_source == "measured" and marked["slow-better"].latency_source == "predicted"
    ranked = sorted(marked.values(), key=rank_key)
    assert [m.model for m in ranked] == ["slow-better", "fast", "dominated", "unknown", "too-slow"]


def test_an_adhoc_timm_model_gets_timms_published_accuracy_in_reports_and_select():
    from test_analysis import complexity_record, timed_records

    row = zoo_row("timm:volo_d5_512")
    assert row["reported_top1"] == pytest.approx(87.068) and row["reported_source"].startswith(SOURCE)
    assert np.isnan(zoo_row("timm:convnext_atto_rms")["reported_top1"])  # no published row: unknown, kept
    records = [complexity_record("timm:volo_d5_512", 296e6, 90e9)]
    records += timed_records({"timm:volo_d5_512": {1: (900.0, 1500.0)}}, "m-a", "cpu", 2)
    frames = frames_from_records(records)
    assert frames.accuracy["source"].iloc[0].startswith(SOURCE)
    chosen = select_models(performance(frames), Constraints(min_top1=85.0), machine_id="m-a").chosen
    assert chosen[0].model == "timm:volo_d5_512" and chosen[0].top1 == pytest.approx(87.068)
    assert chosen[0].accuracy_source == "reported"


def test_the_zoo_view_draws_a_thousand_models_with_the_papers_highlighted():
    from dnnbench.report import figures, interactive

    rng = np.random.default_rng(0)
    n = 1400
    models = pd.DataFrame({"model": [f"timm:m{i}" for i in range(n)], "name": [f"timm:m{i}" for i in range(n)],
                           "family": "timm", "in_paper": [i < 46 for i in range(n)],
                           "gmacs": rng.uniform(0.05, 50, n), "params": rng.uniform(1e6, 3e8, n),
                           "top1": np.where(np.arange(n) % 10 == 9, np.nan, rng.uniform(55, 90, n)),
                           "top5": np.nan, "accuracy_source": "reported"})
    models.loc[:45, "family"] = "ResNet"
    fig = interactive.zoo_view(models)
    grey = [t for t in fig.data if t.name == "other models"]
    assert len(grey) == 1 and len(grey[0].x) == int(models["top1"].notna().sum()) - int(
        models.loc[:45, "top1"].notna().sum())
    assert "the paper's" in fig.layout.title.text
    static = figures.zoo_view(models)
    assert static.axes[0].get_xscale() == "log"
