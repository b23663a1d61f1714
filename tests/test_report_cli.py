"""`dnnbench report`, `select`, `compare` and `merge` on stores the tests fill by hand."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from dnnbench.cli import options as cli_options
from dnnbench.cli.app import app
from dnnbench.store import ResultRecord, Store
from test_analysis import CPU_A, GPU_B, MACHINES, accuracy_record, all_records, fill_store, timed_records

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fill_store(tmp_path_factory.mktemp("cli") / "results.sqlite")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich wraps at 80 columns when not on a terminal; messages are checked whole."""
    monkeypatch.setattr(cli_options.console, "width", 200)
    monkeypatch.setattr(cli_options.err_console, "width", 200)


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


# --- report --------------------------------------------------------------------------------------------


def test_report_command(db, tmp_path):
    out = tmp_path / "report"
    result = invoke("report", "--db", db, "-o", str(out), "--images", "none", "--fps", "10,100",
                    "--memory-mb", "64")
    assert result.exit_code == 0, result.output
    assert "interactive figures, 0 images" in result.output
    page = (out / "index.html").read_text()
    assert "&ge; 100 images/s" in page and "&le; 64 MB" in page
    assert not list(out.glob("*.png"))


def test_report_bad_input(db, tmp_path):
    result = runner.invoke(app, ["report", "--db", db, "-o", str(tmp_path), "--images", "gif"])
    assert result.exit_code == 2 and "unknown image format gif" in result.output
    result = runner.invoke(app, ["report", "--db", str(tmp_path / "none.sqlite"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no results store" in result.output
    assert not (tmp_path / "none.sqlite").exists() and not (tmp_path / "r").exists()
    Store(tmp_path / "empty.sqlite").close()
    result = runner.invoke(app, ["report", "--db", str(tmp_path / "empty.sqlite"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "holds no results" in result.output
    result = runner.invoke(app, ["report", "--db", db, "-o", str(tmp_path / "r"), "--machine", "gamma"])
    assert result.exit_code == 2 and "no machine matches 'gamma'" in result.output


# --- select --------------------------------------------------------------------------------------------


def test_select_ranks_and_explains(db):
    result = invoke("select", "--db", db, "--machine", "alpha", "--max-latency-ms", "33", "--max-memory-mb", "250",
                    "--top", "3")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("MobileNetV2") < out.index("ResNet18") < out.index("SqueezeNet1_1")
    assert "latency 50.0 > 33.0 ms (+17.0 ms, +52%)" in out  # ResNet50, the best excluded model
    assert "memory 600 > 250 MB" in out  # VGG16


def test_select_json_and_no_fit(db):
    result = invoke("select", "--db", db, "--machine", "m-a", "--min-top1", "70", "--format", "json", "--top", "2")
    rows = json.loads(result.output)
    fits = [r["model"] for r in rows if r["fits"]]
    assert fits == ["resnet50", "mobilenetv2"]
    assert rows[0]["accuracy_source"] == "measured" and rows[0]["top1"] == 80.0
    excluded = {r["model"]: r["why_not"] for r in rows if not r["fits"]}
    assert "top-1 58.2 < 70.0 %" in excluded["squeezenet1_1"]
    result = runner.invoke(app, ["select", "--db", db, "--machine", "beta", "--max-latency-ms", "0.1"])
    assert result.exit_code == 1 and "no model meets" in result.output


def test_select_machine_choice(db, tmp_path):
    result = runner.invoke(app, ["select", "--db", db])
    assert result.exit_code == 2 and "choose one with --machine" in result.output and "alpha" in result.output
    one = fill_store(tmp_path / "one.sqlite", machines={"m-a": CPU_A})
    result = runner.invoke(app, ["select", "--db", one, "--max-latency-ms", "33"])  # one machine: no --machine
    assert result.exit_code == 0 and "alpha" in result.output
    result = runner.invoke(app, ["select", "--db", db, "--machine", "alpha", "--batch-size", "64"])
    assert result.exit_code == 2 and "batch sizes measured: 1, 2" in result.output


# --- compare -------------------------------------------------------------------------------------------


def test_compare_same_config(db):
    result = invoke("compare", "--db", db, "--machine", "alpha", "--machine", "beta", "--format", "json")
    rows = {r["model"]: r for r in json.loads(result.output)}
    assert set(rows) == {"resnet18", "mobilenetv2"}
    assert rows["resnet18"]["speed_ratio"] == pytest.approx(0.5)
    assert rows["mobilenetv2"]["memory_ratio"] == pytest.approx(50 / 40)
    table = invoke("compare", "--db", db).output  # two machines in the store: both implied
    assert "0.5x" in table and "0.4x" in table and "geometric mean" in table


def test_compare_different_devices(db, tmp_path):
    cuda_only = [r for r in all_records() if not (r.machine_id == "m-b" and r.config.get("device") == "cpu")]
    store = fill_store(tmp_path / "s.sqlite", cuda_only)
    result = runner.invoke(app, ["compare", "--db", store, "-m", "beta", "-m", "alpha"])
    assert result.exit_code == 2 and "device: cuda:0 on A vs cpu on B" in result.output
    assert "--ignore device" in result.output
    result = invoke("compare", "--db", store, "-m", "beta", "-m", "alpha", "--ignore", "device,threads,tf32", "-b", "1",
                    "--format", "json")
    rows = {r["model"]: r for r in json.loads(result.output)}
    assert rows["resnet50"]["speed_ratio"] == pytest.approx(50 / 4)
    result = runner.invoke(app, ["compare", "--db", store, "-m", "beta", "-m", "t4"])
    assert result.exit_code == 2 and "same machine" in result.output


# --- merge ---------------------------------------------------------------------------------------------


def test_merge_overlapping_stores_without_duplicates(tmp_path):
    a = fill_store(tmp_path / "a.sqlite", machines={"m-a": CPU_A})
    b = tmp_path / "b.sqlite"
    with Store(b) as store:  # B holds a copy of A's runs, one cell measured again later, and machine m-b
        store.merge_from(a)
        remeasured = timed_records({"resnet18": {1: (25, 100)}}, "m-a", "cpu", 2, t=50.0)[0]
        store.put_result(remeasured)
        store.register_machine("m-b", GPU_B)
        for record in timed_records({"resnet18": {1: (2, 60)}}, "m-b", "cuda:0", None):
            store.put_result(record)
        store.put_result(accuracy_record("resnet18", 69.8, 89.1, "m-b"))
    target = tmp_path / "merged.sqlite"
    result = invoke("merge", str(target), a, str(b))
    assert result.exit_code == 0, result.output
    with Store(target) as merged:
        records = merged.results()
        assert len({(r.machine_id, r.cell_key.digest) for r in records}) == len(records)  # no duplicate cell
        with Store(a) as first:
            assert len(records) == len(first.results()) + 3  # B adds m-b's two cells and an accuracy
        resnet18 = [r for r in records if r.machine_id == "m-a" and r.model == "resnet18" and r.metric == "time"
                    and r.config["batch_size"] == 1]
        assert len(resnet18) == 1 and resnet18[0].values.median_s == pytest.approx(0.025)  # the newer one
        assert set(merged.machines()) == {"m-a", "m-b"}
    again = invoke("merge", str(target), str(b))
    assert "0 new results" in again.output
    count = sqlite3.connect(target).execute("SELECT count(*) FROM results").fetchone()[0]
    assert count == len(records)


def test_merge_bad_input(tmp_path):
    result = runner.invoke(app, ["merge", str(tmp_path / "t.sqlite"), str(tmp_path / "missing.sqlite")])
    assert result.exit_code == 2 and "no results store" in result.output
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["merge", str(tmp_path / "t.sqlite"), str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "not a dnnbench results store" in result.output


def test_records_layout_matches_the_store_round_trip(db):
    # the hand-written records survive the store unchanged (the figures above rely on that layout)
    with Store(db, create=False) as store:
        stored = {(r.machine_id, r.model, r.metric, r.cell_key.digest): r.values for r in store.results()}
    for record in all_records():
        assert stored[(record.machine_id, record.model, record.metric, record.cell_key.digest)] == record.values
    assert set(MACHINES) == {mid for mid, *_ in stored}
    assert isinstance(all_records()[0], ResultRecord)
