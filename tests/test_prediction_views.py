"""Predictions where a person reads results: the report's predicted-vs-measured section, `select` on a machine
that was only calibrated, and calibrations carried by export, import and merge. Calibrations come from the known
timer of test_predict (each operator kind a known cost), so the predictions are exact where a shape was
calibrated and the measured cells are written by hand with known errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dnnbench.analysis.prediction import kendall_tau, prediction_accuracy
from dnnbench.cli import options as cli_options
from dnnbench.cli.app import app
from dnnbench.predict.frames import predicted_vs_measured
from dnnbench.predict.predictor import VALIDATION_BAND
from dnnbench.report import ReportOptions, build_report
from dnnbench.store import ResultRecord, Store, calibrations_path
from dnnbench.zoo import get
from test_analysis import fill_store, time_values
from test_predict import COST_S, KNOWN, KNOWN_KINDS, MACHINE, MODULE_CALL_S, UNUSUAL, calibrated_store

runner = CliRunner()
EXPECTED_S = sum(COST_S[k] * n for k, n in KNOWN_KINDS.items()) + 10 * MODULE_CALL_S  # any batch: costs are per kind
FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.sqlite"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_options.console, "width", 200)
    monkeypatch.setattr(cli_options.err_console, "width", 200)


def measured(model: str, batch: int, seconds: float, threads: int = 1, input_size: int | None = None,
             t: float = 5.0) -> ResultRecord:
    config = {"device": "cpu", "dtype": "fp32", "batch_size": batch, "input_size": input_size or get(model).input_size,
              "threads": threads, "backend": "eager"}
    return ResultRecord(get(model).id, "time", config, "ok", time_values(batch, seconds * 1e3), None, t, t, "",
                        MACHINE)


def add_results(db: Path, records: list[ResultRecord]) -> None:
    with Store(db) as store:
        run = store.start_run(MACHINE, ["dnnbench", "run"], {}, {"torch_version": "2.4.0"})
        for record in records:
            record.run_id = run
            store.put_result(record)
        store.finish_run(run, "finished")


@pytest.fixture(scope="module")
def checked_store(tmp_path_factory) -> Path:
    """Calibrated on the known timer; KNOWN measured 5% slower than predicted at batch 1 and 25% at batch 8, a
    cell at 2 threads (another configuration: not compared), and UNUSUAL, whose kinds were never calibrated."""
    db = calibrated_store(tmp_path_factory.mktemp("checked"), (KNOWN,))
    add_results(db, [measured(KNOWN, 1, EXPECTED_S * 1.05), measured(KNOWN, 8, EXPECTED_S * 1.25),
                     measured(KNOWN, 1, EXPECTED_S * 3, threads=2), measured(UNUSUAL, 1, 1e-3, input_size=32)])
    return db


def test_predicted_beside_measured_per_configuration(checked_store):
    rows = predicted_vs_measured(checked_store)
    assert list(zip(rows["model"], rows["batch_size"])) == [(get(KNOWN).id, 1), (get(KNOWN).id, 8),
                                                             (get(UNUSUAL).id, 1)]
    assert set(rows["threads"]) == {1}  # the 2-thread cell has no calibration to be compared with
    known = rows[rows["model"] == get(KNOWN).id]
    assert known["latency_ms"].tolist() == pytest.approx([EXPECTED_S * 1e3] * 2, rel=1e-9)
    assert known["measured_ms"].tolist() == pytest.approx([EXPECTED_S * 1.05e3, EXPECTED_S * 1.25e3])
    assert known["error"].tolist() == pytest.approx([1 / 1.05 - 1, 1 / 1.25 - 1])
    [unusual] = rows[rows["model"] == get(UNUSUAL).id].itertuples()
    assert math.isnan(unusual.latency_ms) and "gelu, hardswish" in unusual.note  # named, not guessed


def test_accuracy_figures_per_batch_size(checked_store):
    summary = prediction_accuracy(predicted_vs_measured(checked_store)).set_index("batch_size")
    assert summary.loc[1, ["models", "within_10", "within_15", "not_predicted"]].tolist() == [1, 1.0, 1.0, 1]
    assert summary.loc[8, ["models", "within_10", "within_15"]].tolist() == [1, 0.0, 0.0]
    assert summary.loc[8, "median_abs_error"] == pytest.approx(0.2)
    assert math.isnan(summary.loc[1, "kendall_tau"])  # one model has no order
    assert kendall_tau(pd.Series([1.0, 2.0, 3.0]), pd.Series([1.0, 3.0, 2.0])) == pytest.approx(1 / 3)


def test_report_shows_predicted_vs_measured_only_where_calibrated(checked_store, tmp_path):
    result = build_report(checked_store, tmp_path / "report", ReportOptions(formats=("png",)))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Predicted vs measured latency" in page and "fig-predicted-vs-measured-" in page
    assert "gelu, hardswish" in page  # the model that could not be predicted is named
    assert any("predicted-vs-measured" in p.name for p in result.images)
    plain = fill_store(tmp_path / "plain.sqlite")  # measured cells, no calibration: no section at all
    build_report(plain, tmp_path / "plain", ReportOptions(formats=()))
    assert "Predicted vs measured" not in (tmp_path / "plain" / "index.html").read_text()


def select(db: Path, *args: str) -> tuple[int, list[dict]]:
    result = runner.invoke(app, ["select", "--db", str(db), "--machine", MACHINE, "--format", "json", *args],
                           catch_exceptions=False)
    text = result.output
    return result.exit_code, json.loads(text[:text.rindex("]") + 1]) if text.lstrip().startswith("[") else text


def test_select_on_a_calibrated_only_machine_answers_from_predictions(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    code, rows = select(db, "--models", f"{KNOWN},{UNUSUAL}")
    assert code == 0, rows
    [known] = [r for r in rows if r["fits"]]
    assert known["latency_source"] == "predicted" and known["latency_ms"] == pytest.approx(EXPECTED_S * 1e3)
    # every shape calibrated: only the model-level band (no measured model here: the validation's)
    assert known["latency_low_ms"] == pytest.approx(EXPECTED_S * VALIDATION_BAND[0] * 1e3)
    assert known["latency_high_ms"] == pytest.approx(EXPECTED_S * VALIDATION_BAND[1] * 1e3)
    [unusual] = [r for r in rows if not r["fits"]]
    assert "not predicted" in unusual["why_not"] and "gelu, hardswish" in unusual["why_not"]
    # a latency limit is judged at the interval's upper end, not at the prediction
    high = EXPECTED_S * VALIDATION_BAND[1] * 1e3
    assert select(db, "--models", KNOWN, "--max-latency-ms", str(high * 1.01))[0] == 0
    code, rows = select(db, "--models", KNOWN, "--max-latency-ms", str(high * 0.99))
    assert code == 1 and "latency" in rows[0]["why_not"] and "predicted" in rows[0]["why_not"]
    # batch 2 was not calibrated: fitted from two timings per kind, an open interval, which meets no latency limit
    code, rows = select(db, "--models", KNOWN, "-b", "2", "--max-latency-ms", str(EXPECTED_S * 10e3))
    assert code == 1 and "open interval" in rows[0]["why_not"]
    code, rows = select(db, "--models", KNOWN, "-b", "2")
    assert code == 0 and rows[0]["latency_source"] == "predicted" and rows[0]["latency_high_ms"] is None


def test_select_keeps_measured_rows_measured(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    add_results(db, [measured(KNOWN, 1, EXPECTED_S * 2)])
    code, rows = select(db, "--models", KNOWN)  # nothing predicted: the columns of before
    assert code == 0 and "latency_source" not in rows[0]
    assert rows[0]["latency_ms"] == pytest.approx(EXPECTED_S * 2e3)
    code, rows = select(db, "--models", f"{KNOWN},{UNUSUAL}")
    assert code == 0 and [r["latency_source"] for r in rows] == ["measured", "predicted"]
    assert rows[0]["latency_ms"] == pytest.approx(EXPECTED_S * 2e3)  # the measurement, not the prediction
    table = runner.invoke(app, ["select", "--db", str(db), "--machine", MACHINE, "--models", f"{KNOWN},{UNUSUAL}",
                                "-b", "8"], catch_exceptions=False)
    assert table.exit_code == 0 and "predicted" in table.output and "5-95% ms" in table.output


def calibration_of(db: Path) -> list[dict]:
    with Store(db, create=False) as store:
        return store.calibration_rows()


def test_export_import_and_merge_carry_calibrations(tmp_path):
    db = calibrated_store(tmp_path, (KNOWN,))
    rows = calibration_of(db)
    assert rows and {r["machine_id"] for r in rows} == {MACHINE}
    with Store(db, create=False) as store:
        store.export(tmp_path / "all.json")
        store.export(tmp_path / "results.csv")
    assert json.loads((tmp_path / "all.json").read_text())["calibrations"] == rows
    table = pd.read_csv(calibrations_path(tmp_path / "results.csv"))
    assert len(table) == len(rows) and {"machine_id", "kind", "seconds", "feature.flops"} <= set(table.columns)
    with Store(tmp_path / "imported.sqlite") as fresh:
        fresh.import_json(tmp_path / "all.json")
    assert calibration_of(tmp_path / "imported.sqlite") == rows

    # an older calibration of the same configuration is replaced whole by the newer one; never the reverse
    older = tmp_path / "older.sqlite"
    with Store(older) as store:
        store.register_machine(MACHINE, {"hostname": "calibrated-only"})
        store.put_calibration(MACHINE, "cpu", "eager", "fp32", 1, [
            {"kind": "relu", "op": "aten.relu.default", "signature": "old", "features": {}, "seconds": 1.0,
             "measured_at": 1.0}])
        store.put_calibration(MACHINE, "cpu", "eager", "fp32", 4, [
            {"kind": "relu", "op": "aten.relu.default", "signature": "other", "features": {}, "seconds": 1.0,
             "measured_at": 1.0}])
    result = runner.invoke(app, ["merge", str(older), str(db)], catch_exceptions=False)
    assert result.exit_code == 0 and "1 of 1 calibration(s) taken" in result.output
    merged = calibration_of(older)
    assert [r for r in merged if r["threads"] == 1] == rows
    assert [r["signature"] for r in merged if r["threads"] == 4] == ["other"]  # another configuration: kept
    with Store(db) as store:
        store.merge_from(older)  # the same calibration back: nothing changes; the other configuration comes along
    assert [r for r in calibration_of(db) if r["threads"] == 1] == rows
    assert [r["signature"] for r in calibration_of(db) if r["threads"] == 4] == ["other"]


def test_old_stores_without_calibrations_export_and_merge(tmp_path):
    old = tmp_path / "old.sqlite"  # a copy: opening a store for writing adds the newer tables
    shutil.copyfile(FIXTURE, old)
    with Store(old, create=False) as store:
        store.export(tmp_path / "old.json")
        store.export(tmp_path / "old.csv")
    assert "calibrations" not in json.loads((tmp_path / "old.json").read_text())
    assert not calibrations_path(tmp_path / "old.csv").exists()
    db = calibrated_store(tmp_path, (KNOWN,))
    rows = calibration_of(db)
    with Store(db) as store:
        assert store.merge_from(old) > 0
    assert calibration_of(db) == rows
