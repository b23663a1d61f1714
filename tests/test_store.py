import json
import multiprocessing
import os
import sqlite3
import sys

import pandas as pd
import pytest

from dnnbench.store import SCHEMA_VERSION, CellKey, ResultRecord, Store, StoreError
from dnnbench.store.values import decode

CONFIG = {"device": "cpu", "dtype": "float32", "batch_size": 1, "threads": 4}


def record(model="resnet18", metric="time", status="ok", values=None, run_id="", machine_id="m1",
           finished_at=2.0, **config):
    return ResultRecord(
        model=model, metric=metric, config={**CONFIG, **config}, status=status,
        values={"mean_ms": 12.5, "std_ms": 0.25} if values is None else values,
        error=None if status == "ok" else "boom", started_at=1.0, finished_at=finished_at,
        run_id=run_id, machine_id=machine_id,
    )


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "results.db") as s:
        s.register_machine("m1", {"cpu": "x86", "cores": 2})
        yield s


def test_cell_key_digest_is_canonical():
    a = CellKey("resnet18", "time", {"device": "cpu", "batch_size": 1})
    b = CellKey("resnet18", "time", {"batch_size": 1, "device": "cpu"})
    assert a == b and hash(a) == hash(b)
    assert a.digest == b.digest and len(a.digest) == 20
    assert a.digest != CellKey("resnet18", "memory", {"device": "cpu", "batch_size": 1}).digest
    assert a.digest != CellKey("resnet18", "time", {"device": "cpu", "batch_size": 2}).digest
    assert record().cell_key == CellKey("resnet18", "time", CONFIG)


def test_record_rejects_unknown_status():
    with pytest.raises(ValueError, match="unknown result status"):
        record(status="fine")


def test_create_and_reopen(tmp_path):
    path = tmp_path / "sub" / "results.db"
    with pytest.raises(StoreError, match="no results store"):
        Store(path, create=False)
    assert not path.exists()
    with Store(path) as s:
        s.register_machine("m1", {"cpu": "x86"})
        s.register_machine("m1", {"cpu": "arm"})  # idempotent, fingerprint updated
    with Store(path, create=False) as s:
        assert list(s.machines()) == ["m1"]
        assert s.machines()["m1"]["fingerprint"] == {"cpu": "arm"}
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(con.execute("SELECT key, value FROM meta")) == {"app": "dnnbench", "schema_version": "1"}
    con.close()


def test_empty_file_is_initialised(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreError, match="empty file"):
        Store(path, create=False)
    with Store(path) as s:
        assert s.machines() == {}


def assert_refused_untouched(path, match):
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match):
        Store(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (text TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()
    assert_refused_untouched(path, "not a dnnbench results store")


def test_foreign_meta_table_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('app', 'someone-else')")
    con.commit()
    con.close()
    assert_refused_untouched(path, "not a dnnbench results store")


@pytest.mark.parametrize("head", [b"", b"SQLite format 3\x00"], ids=["random", "sqlite-header-then-garbage"])
def test_random_bytes_refused_untouched(tmp_path, head):
    path = tmp_path / "junk.db"
    path.write_bytes(head + os.urandom(8192))
    assert_refused_untouched(path, "not a dnnbench results store")


def test_newer_schema_refused_untouched(tmp_path):
    path = tmp_path / "results.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    assert_refused_untouched(path, "newer dnnbench")


def test_put_get_round_trip(store):
    run_id = store.start_run("m1", ["dnnbench", "run"], {"metrics": ["time"]}, {"torch": "2.4"})
    rec = record(run_id=run_id, values={"mean_ms": 0.1 + 0.2, "runs": [1.5, 2.5], "pct": {"p50": 1.0}})
    store.put_result(rec)
    oom = record(model="vgg16", status="oom", values={}, run_id=run_id)
    store.put_result(oom)
    assert store.results() == [rec, oom]
    assert store.results(models=["vgg16"]) == [oom]
    assert store.results(metric="memory") == []
    assert store.results(run_id=run_id, machine_id="m1") == [rec, oom]
    store.finish_run(run_id, "finished")
    (run,) = store.runs()
    assert run["status"] == "finished" and run["argv"] == ["dnnbench", "run"] and run["finished_at"]


def test_unknown_machine_or_run_refused(store):
    with pytest.raises(StoreError, match="unknown machine or run"):
        store.put_result(record(machine_id="nowhere"))
    with pytest.raises(StoreError, match="unknown machine or run"):
        store.put_result(record(run_id="no-such-run"))
    with pytest.raises(StoreError, match="no run"):
        store.finish_run("no-such-run", "finished")
    assert store.results() == []


def test_upsert_keeps_one_row(store):
    store.put_result(record(status="timeout", values={}))
    remeasured = record(values={"mean_ms": 9.0}, **{"threads": 4})  # same cell, config given in another order
    store.put_result(remeasured)
    assert store.results() == [remeasured]
    assert store._con.execute("SELECT count(*) FROM results").fetchone()[0] == 1


def test_completed_cells_for_resume(store):
    store.register_machine("m2", {})
    ok, crashed = record(), record(model="vgg16", status="crash", values={})
    for rec in (ok, crashed, record(model="alexnet", machine_id="m2")):
        store.put_result(rec)
    assert store.completed_cells("m1") == {ok.cell_key.digest, crashed.cell_key.digest}
    assert store.completed_cells("m1", statuses=["ok", "oom"]) == {ok.cell_key.digest}
    assert store.completed_cells("m1", statuses=[]) == set()
    assert store.completed_cells("m3") == set()


def test_frame_columns(store):
    assert list(store.frame().columns) == [
        "machine_id", "run_id", "model", "metric", "status", "error", "started_at", "finished_at"]
    store.put_result(record(values={"mean_ms": 1.0, "pct": {"p50": 1.0, "p90": 2.0}}))
    store.put_result(record(model="vgg16", metric="memory", values={"peak_mb": 100}))
    df = store.frame()
    assert list(df.columns) == [
        "machine_id", "run_id", "model", "metric", "status", "error", "started_at", "finished_at",
        "config.batch_size", "config.device", "config.dtype", "config.threads",
        "value.mean_ms", "value.pct.p50", "value.pct.p90", "value.peak_mb"]
    assert df["value.pct.p90"].tolist()[0] == 2.0 and pd.isna(df["value.pct.p90"].tolist()[1])
    assert store.frame(metric="memory")["value.peak_mb"].tolist() == [100]


def fill(store):
    run_id = store.start_run("m1", ["run"], {}, {})
    store.put_result(record(run_id=run_id, values={"mean_ms": 1.25, "runs": [1, 2], "pct": {"p50": 1.0}}))
    store.put_result(record(model="vgg16", run_id=run_id, status="oom", values={}))
    store.put_result(record(model="alexnet", metric="memory", values={"peak_mb": 10}, run_id=run_id))
    store.finish_run(run_id, "interrupted")


def test_export_csv(store, tmp_path):
    fill(store)
    store.export(tmp_path / "out.csv")
    back = pd.read_csv(tmp_path / "out.csv")
    assert list(back.columns) == list(store.frame().columns)
    assert back["model"].tolist() == ["resnet18", "vgg16", "alexnet"]
    assert back["value.runs"].tolist()[0] == "[1,2]"
    assert back["value.mean_ms"].tolist()[0] == 1.25


def test_export_json_round_trip(store, tmp_path):
    fill(store)
    store.export(tmp_path / "out.json")
    with Store(tmp_path / "copy.db") as copy:
        assert copy.import_json(tmp_path / "out.json") == 1 + 1 + 3
        assert copy.results() == store.results()
        assert copy.runs() == store.runs()
        assert copy.machines() == store.machines()
        copy.export(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((tmp_path / "out.json").read_text())


def test_export_parquet(store, tmp_path):
    pytest.importorskip("pyarrow")
    fill(store)
    store.export(tmp_path / "out.parquet")
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert back["model"].tolist() == ["resnet18", "vgg16", "alexnet"]
    assert list(back.columns) == list(store.frame().columns)


def test_export_parquet_without_pyarrow(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with pytest.raises(StoreError, match="pip install pyarrow"):
        store.export(tmp_path / "out.parquet")


def test_export_unknown_format(store, tmp_path):
    with pytest.raises(StoreError, match="csv, parquet, json"):
        store.export(tmp_path / "out.xlsx")
    with pytest.raises(StoreError, match="csv, parquet, json"):
        store.export(tmp_path / "out.csv", fmt="xml")


def test_merge_overlapping_stores(tmp_path):
    a_path, b_path = tmp_path / "a.db", tmp_path / "b.db"
    with Store(a_path) as a:
        a.register_machine("m1", {})
        fill(a)
    with Store(b_path) as b:
        assert b.merge_from(a_path) == 1 + 1 + 3  # b now shares a's machine, run and results
        b.register_machine("m2", {})
        run_id = b.start_run("m2", ["run"], {}, {})
        b.put_result(record(machine_id="m2", run_id=run_id))
        b.put_result(record(model="vgg16", values={"mean_ms": 50.0}, finished_at=3.0))  # re-measured
    with Store(a_path) as a:
        assert a.merge_from(b_path) == 1 + 1 + 1  # machine m2, its run and its result
        assert a.merge_from(b_path) == 0
        assert len(a.results()) == 4 and len(a.runs()) == 2 and len(a.machines()) == 2
        (vgg,) = a.results(machine_id="m1", models=["vgg16"])
        assert vgg.status == "ok" and vgg.values == decode("time", {"mean_ms": 50.0})  # the newer measurement won
        with pytest.raises(StoreError, match="into itself"):
            a.merge_from(a_path)
        with pytest.raises(StoreError, match="no results store"):
            a.merge_from(tmp_path / "missing.db")


def _writer(path, worker, ready, n):
    ready.wait(30)  # so that both processes create the file at once
    with Store(path) as s:
        s.register_machine("shared", {"cores": 2})
        run_id = s.start_run("shared", ["run"], {}, {})
        ready.wait(30)
        for i in range(n):
            s.put_result(record(model=f"net{worker}-{i}", run_id=run_id, machine_id="shared"))
        s.finish_run(run_id, "finished")


def test_concurrent_writer_processes(tmp_path):
    path, n = tmp_path / "results.db", 200
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, ready, n), daemon=True) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        p.terminate()  # no-op unless it hangs
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(path, create=False) as s:
        assert len(s.results()) == 2 * n
        assert len(s.completed_cells("shared")) == 2 * n
        assert [r["status"] for r in s.runs()] == ["finished", "finished"]


def test_values_are_typed_and_a_newer_layout_is_refused_with_the_store_named(store, tmp_path):
    from dnnbench.store.values import TimeValue

    store.put_result(record(values={"median_s": 0.01, "stop_reason": "converged"}))
    (rec,) = store.results()
    assert isinstance(rec.values, TimeValue) and rec.values.latency_s == 0.01
    stored = json.loads(store._con.execute("SELECT values_json FROM results").fetchone()[0])
    assert stored == {"median_s": 0.01, "stop_reason": "converged", "layout": 1}  # a dict without layout is layout 0
    store.export(tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["results"][0]["values"] == stored
    with store._con:
        store._con.execute("UPDATE results SET values_json = ?",
                           (json.dumps({**stored, "layout": TimeValue.LAYOUT + 1}),))
    with pytest.raises(StoreError, match=r"newer dnnbench.*upgrade"):
        store.results()
