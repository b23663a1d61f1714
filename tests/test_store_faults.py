"""Faults of the store's storage, injected for real: a worker and a runner killed with SIGKILL, a disk that fills
(a 1 MiB tmpfs), a read-only folder (a read-only bind mount), a write lock held by another process, one byte of
a cell changed to 0xff, damaged pages. Each ends in one line naming the file, the cause and the next step
(exit 2), with nothing good lost and nothing half-written."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dnnbench.files import OutputError, atomic_file
from dnnbench.store import ResultRecord, Store, StoreError

TESTS = Path(__file__).resolve().parent
FAST_ARGS = ["--device", "cpu", "--threads", "1", "--input-size", "32", "--time-budget", "0.3", "--min-samples", "3",
             "--warmup-iters", "1", "--warmup-s", "0", "--no-peak"]
CONFIG = {"device": "cpu", "batch_size": 1}


def record(model="resnet18", status="ok", values=None, finished_at=2.0, machine_id="m1", run_id="", **config):
    return ResultRecord(model, "time", {**CONFIG, **config}, status,
                        {"median_s": 0.01} if values is None else values, None if status == "ok" else "boom",
                        finished_at - 1.0, finished_at, run_id, machine_id)


def dnnbench(*args, env=None, timeout=300, **kwargs):
    """`python -m dnnbench ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]),
           "COLUMNS": "100000", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dnnbench", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, **kwargs)


def assert_clear_error(proc, *needles):
    """Exit 2, no traceback, and the error is one line that says each of `needles`."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def mount(*args):
    return subprocess.run(["mount", *map(str, args)], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def tmpfs(path, size="1m"):
    path.mkdir(parents=True, exist_ok=True)
    done = mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", path)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def readonly_view(source, view):
    """`view` shows `source` through a read-only bind mount: writes fail with EROFS, even for root."""
    view.mkdir(parents=True, exist_ok=True)
    done = mount("--bind", source, view)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {done.stderr.strip()}")
    try:
        remounted = mount("-o", "remount,bind,ro", view)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)


def fill_disk(folder):
    """Writes zeros into `folder` until the disk is full; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    return filler


def small_store(path, n=3, **values):
    with Store(path) as store:
        store.register_machine("m1", {"cpu": "x86"})
        run_id = store.start_run("m1", ["run"], {}, {})
        for i in range(n):
            store.put_result(record(batch_size=i + 1, run_id=run_id, values={"median_s": 0.01 * (i + 1), **values}))
        store.finish_run(run_id, "finished")


# --- never lose a good cell ----------------------------------------------------------------------------


def test_a_killed_worker_during_force_keeps_every_ok_cell(tmp_path):
    """`run --force` on a complete store; the worker is SIGKILLed at batch size 2: the cells it did not finish
    keep their old ok measurement, and the crash is kept as history beside them."""
    db = tmp_path / "r.sqlite"
    args = ["run", "python:dnnbench_test_models:killed_on_rerun", "--batch-sizes", "1,2,4", *FAST_ARGS, "--db", db]
    first = dnnbench(*args)
    assert first.returncode == 0, first.stderr
    with Store(db, create=False) as store:
        before = {r.cell_key.digest: r for r in store.results()}
    assert len(before) == 7 and {r.status for r in before.values()} == {"ok"}
    again = dnnbench(*args, "--force", env={"DNNBENCH_TEST_SIGKILL": "1"})
    assert "Traceback" not in again.stderr
    with Store(db, create=False) as store:
        after = {r.cell_key.digest: r for r in store.results()}
        history = store.history()
    assert after.keys() == before.keys()
    assert {r.status for r in after.values()} == {"ok"}  # nothing good lost
    crashed = [h for h in history if h.status == "crash"]
    assert crashed and all("SIGKILL" in h.error for h in crashed)
    assert all(h.status != "ok" for h in history)
    for h in history:  # the cells the failed re-measurement touched hold their old values
        digest = h.cell_key.digest
        assert after[digest].values == before[digest].values
        assert after[digest].finished_at == before[digest].finished_at
    remeasured = [d for d in after if after[d].finished_at > before[d].finished_at]
    assert remeasured  # batch size 1 was measured again before the kill: a newer ok replaces an ok


def test_merge_keeps_an_ok_cell_over_a_newer_failure(tmp_path):
    good, bad = tmp_path / "good.sqlite", tmp_path / "bad.sqlite"
    with Store(good) as store:
        store.register_machine("m1", {})
        store.put_result(record(values={"median_s": 0.5}, finished_at=2.0))
        store.put_result(record(model="vgg16", values={"median_s": 0.7}, finished_at=2.0))
    with Store(bad) as store:
        store.register_machine("m1", {})
        store.put_result(record(status="crash", values={}, finished_at=5.0))  # newer, but a failure
        store.put_result(record(model="vgg16", values={"median_s": 0.9}, finished_at=6.0))  # newer and ok
    merged = dnnbench("merge", good, bad)
    assert merged.returncode == 0, merged.stderr
    with Store(good, create=False) as store:
        cells = {r.model: r for r in store.results()}
        assert cells["resnet18"].status == "ok" and cells["resnet18"].values.median_s == 0.5
        assert cells["vgg16"].values.median_s == 0.9  # ok over ok: the newer one
        assert [(h.model, h.status) for h in store.history()] == [("resnet18", "crash")]
    with Store(bad) as store:  # the other way round: the ok replaces the failure, which is kept as history
        store.merge_from(good)
        assert store.results(models=["resnet18"])[0].values.median_s == 0.5
        assert [(h.model, h.status) for h in store.history()] == [("resnet18", "crash")]
        store.merge_from(good)
        assert len(store.history()) == 1  # merging twice adds nothing


def test_history_travels_through_json_exports(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        store.register_machine("m1", {})
        store.put_result(record(values={"median_s": 0.5}))
        store.put_result(record(status="timeout", values={}, finished_at=3.0))
        assert store.results()[0].status == "ok"
        store.export(tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text())
    assert [h["status"] for h in doc["history"]] == ["timeout"]
    with Store(tmp_path / "b.sqlite") as copy:
        copy.import_json(tmp_path / "a.json")
        assert [h.status for h in copy.history()] == ["timeout"] and copy.results()[0].status == "ok"


def test_re_measurements_keep_ok_cells_and_every_failure(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.register_machine("m1", {})
        store.put_result(record(values={"median_s": 0.5}, finished_at=2.0))
        store.put_result(record(status="crash", values={}, finished_at=3.0))  # a failed re-measurement
        store.put_result(record(status="skipped", values={}, finished_at=4.0))
        (cell,) = store.results()
        assert cell.status == "ok" and cell.values.median_s == 0.5
        store.put_result(record(values={"median_s": 0.4}, finished_at=5.0))  # a newer ok replaces an ok
        assert store.results()[0].values.median_s == 0.4
        store.put_result(record(model="vgg16", status="timeout", values={}, finished_at=2.0))
        store.put_result(record(model="vgg16", status="crash", values={}, finished_at=3.0))  # failure over failure
        assert store.results(models=["vgg16"])[0].status == "crash"
        assert [(h.model, h.status) for h in store.history()] == [("vgg16", "timeout"), ("resnet18", "crash"),
                                                                  ("resnet18", "skipped")]  # by finish time


# --- a process that died -------------------------------------------------------------------------------


def test_a_sigkilled_run_is_marked_interrupted_when_the_store_is_next_opened(tmp_path):
    db = tmp_path / "r.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    names = ",".join(f"python:dnnbench_test_models:{n}" for n in ("tiny", "sleeping"))
    runner = subprocess.Popen([sys.executable, "-m", "dnnbench", "run", "--models", names, "--batch-sizes", "1",
                               *FAST_ARGS, "--db", str(db)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            with contextlib.suppress(sqlite3.Error):
                with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
                    if con.execute("SELECT count(*) FROM results").fetchone()[0] >= 3:
                        break
            time.sleep(0.3)
        with Store(db, create=False) as store:  # alive: left running
            assert [r["status"] for r in store.runs()] == ["running"]
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    with Store(db, create=False) as store:
        (run,) = store.runs()
        last_cell = max(r.finished_at for r in store.results())
    assert run["status"] == "interrupted" and run["finished_at"] == last_cell


def test_a_run_of_a_dead_process_or_an_earlier_boot_is_interrupted_on_open(tmp_path):
    db = tmp_path / "r.sqlite"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Store(db) as store:
        store.register_machine("m1", {})
        dead, rebooted, alive = (store.start_run("m1", ["run"], {}, {}) for _ in range(3))
        store.put_result(record(run_id=dead, finished_at=7.0))
        store._con.execute("UPDATE run_processes SET pid = ? WHERE run_id = ?", (gone.pid, dead))
        store._con.execute("UPDATE run_processes SET boot_id = 'an-earlier-boot' WHERE run_id = ?", (rebooted,))
    with Store(db) as store:
        runs = {r["run_id"]: r for r in store.runs()}
    assert runs[dead]["status"] == runs[rebooted]["status"] == "interrupted"
    assert runs[dead]["finished_at"] == 7.0  # its last cell
    assert runs[alive]["status"] == "running"  # this process: still alive


# --- a disk that fills ---------------------------------------------------------------------------------


def test_a_full_disk_keeps_committed_cells_and_says_where_they_are(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        db = disk / "r.sqlite"
        store = Store(db)
        store.register_machine("m1", {})
        filler = fill_disk(disk)
        kept = 0
        with pytest.raises(StoreError) as error:
            for i in range(10_000):
                store.put_result(record(batch_size=i, values={"samples_s": [0.01] * 200}))
                kept += 1
        message = str(error.value)
        assert "disk is full" in message and "r.sqlite-wal" in message and "\n" not in message
        assert "free some space" in message
        store.close()
        # a good store on a full disk is read, not called foreign; exports onto the full disk fail whole
        with Store(db, create=False) as reopened:
            assert len(reopened.results()) == kept
            with pytest.raises(OutputError, match="disk is full"):
                reopened.export(disk / "out.json")
        assert sorted(p.name for p in disk.iterdir() if not p.name.startswith("r.sqlite")) == ["filler"]
        filler.unlink()
        with Store(db) as reopened:
            assert len(reopened.results()) == kept
        assert not Path(f"{db}-wal").exists()  # folded back into the store once there was room


def test_a_good_store_on_a_full_disk_reads(tmp_path):
    small_store(tmp_path / "r.sqlite")
    with tmpfs(tmp_path / "disk") as disk:
        (disk / "r.sqlite").write_bytes((tmp_path / "r.sqlite").read_bytes())
        fill_disk(disk)
        with Store(disk / "r.sqlite", create=False) as store:  # SQLite cannot create its -shm file here
            assert store.readonly and len(store.results()) == 3
            with pytest.raises(StoreError, match="disk is full") as error:
                store.register_machine("m2", {})
            assert "free some space" in str(error.value)
        exported = dnnbench("export", tmp_path / "out.csv", "--db", disk / "r.sqlite")
        assert exported.returncode == 0, exported.stderr


def test_export_and_report_onto_a_full_disk_leave_the_old_files(tmp_path):
    db = tmp_path / "r.sqlite"
    small_store(db)
    with tmpfs(tmp_path / "disk", size="16m") as disk:  # a report inlines plotly: about 5 MB
        (disk / "out.csv").write_text("the previous export\n")
        first = dnnbench("report", "--db", db, "-o", disk / "report", "--images", "none")
        assert first.returncode == 0, first.stderr
        old_report = {p.name: p.read_bytes() for p in (disk / "report").iterdir()}
        filler = fill_disk(disk)
        export = dnnbench("export", disk / "out.csv", "--db", db)
        assert_clear_error(export, str(disk / "out.csv"), "disk is full")
        assert (disk / "out.csv").read_text() == "the previous export\n"
        report = dnnbench("report", "--db", db, "-o", disk / "report", "--images", "png")
        assert_clear_error(report, "disk is full")
        assert {p.name: p.read_bytes() for p in (disk / "report").iterdir()} == old_report
        leftovers = [p.name for p in disk.iterdir() if p.name not in ("out.csv", "report", "filler")]
        assert leftovers == []
        filler.unlink()


# --- read-only folders ---------------------------------------------------------------------------------


def test_a_store_in_a_read_only_folder_is_read_and_refuses_writes(tmp_path):
    source = tmp_path / "rw"
    source.mkdir()
    small_store(source / "r.sqlite")
    with readonly_view(source, tmp_path / "ro") as ro:
        db = ro / "r.sqlite"
        with Store(db, create=False) as store:
            assert store.readonly and len(store.results()) == 3
            with pytest.raises(StoreError, match="read-only filesystem") as error:
                store.register_machine("m2", {})
            assert "copy it to a writable folder" in str(error.value)
        exported = dnnbench("export", tmp_path / "out.csv", "--db", db)
        assert exported.returncode == 0, exported.stderr
        assert len(pd.read_csv(tmp_path / "out.csv")) == 3
        assert_clear_error(dnnbench("export", ro / "out.csv", "--db", db), str(ro / "out.csv"), "read-only")
        assert_clear_error(dnnbench("run", "python:dnnbench_test_models:tiny", "--metrics", "complexity",
                                    "--no-peak", "--db", db), str(db), "read-only", "--db")
        assert_clear_error(dnnbench("run", "python:dnnbench_test_models:tiny", "--metrics", "complexity",
                                    "--no-peak", "--db", ro / "new.sqlite"), "read-only")
        assert_clear_error(dnnbench("report", "--db", db, "-o", ro / "report"), "read-only")
        assert sorted(p.name for p in source.iterdir()) == ["r.sqlite"]


def test_a_read_only_store_with_cells_still_in_its_wal_file_is_read(tmp_path):
    source = tmp_path / "rw"
    source.mkdir()
    db = source / "r.sqlite"
    small_store(db)
    with Store(db) as writer:  # open: its last cell lives in r.sqlite-wal until it closes
        writer.put_result(record(model="vgg16"))
        assert Path(f"{db}-wal").stat().st_size > 0
        with readonly_view(source, tmp_path / "ro") as ro:
            with Store(ro / "r.sqlite", create=False) as reader:
                assert len(reader.results()) == 4


# --- a held lock ---------------------------------------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(db):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_a_held_write_lock_is_waited_for_then_named(tmp_path):
    db = tmp_path / "r.sqlite"
    small_store(db)
    with lock_held(db) as holder:
        waits = []
        with Store(db, busy_timeout_s=3) as store:
            store.on_wait = waits.append
            assert len(store.results()) == 3  # readers are not blocked
            with pytest.raises(StoreError, match="is locked") as error:
                store.put_result(record(model="vgg16"))
        assert f"pid {holder.pid} (" in str(error.value) and "-c" in str(error.value)
        assert len(waits) == 1 and "waiting up to 3 s" in waits[0] and f"pid {holder.pid}" in waits[0]
        run = dnnbench("run", "python:dnnbench_test_models:tiny", "--metrics", "complexity", "--no-peak", "--db", db,
                       env={"DNNBENCH_LOCK_TIMEOUT_S": "3"})
        assert_clear_error(run, str(db), "is locked", f"pid {holder.pid}")
        assert f"waiting up to 3 s for the results store {db}" in run.stderr
    with Store(db) as store:  # the holder is gone: writes go through
        store.put_result(record(model="vgg16"))


# --- damaged bytes -------------------------------------------------------------------------------------


def damage_one_cell(db):
    """One byte of one cell's values changed to 0xff, right in the file (the store closed: no -wal)."""
    small_store(db)
    with Store(db) as store:
        store.put_result(record(model="vgg16", values={"note": "damage-me"}))
    raw = bytearray(db.read_bytes())
    at = raw.index(b"damage-me")
    raw[at] = 0xFF
    db.write_bytes(bytes(raw))


def test_one_damaged_byte_costs_one_cell(tmp_path):
    db = tmp_path / "r.sqlite"
    damage_one_cell(db)
    with Store(db, create=False) as store:
        with pytest.raises(StoreError, match="damaged cell") as error:
            store.results()
        assert "vgg16/time (values_json)" in str(error.value) and "--salvage" in str(error.value)
        assert len(store.results(models=["resnet18"])) == 3  # the other cells read
        assert store.damaged_cells() == ["row 4 vgg16/time (values_json)"]
        assert store.export(tmp_path / "out.csv", salvage=True) == ["row 4 vgg16/time (values_json)"]
    assert pd.read_csv(tmp_path / "out.csv")["model"].tolist() == ["resnet18"] * 3
    assert_clear_error(dnnbench("export", tmp_path / "all.json", "--db", db), str(db), "damaged", "--salvage")
    assert not (tmp_path / "all.json").exists()
    salvaged = dnnbench("export", tmp_path / "all.json", "--salvage", "--db", db)
    assert salvaged.returncode == 0, salvaged.stderr
    assert "left out, damaged: row 4 vgg16/time" in salvaged.stderr
    assert len(json.loads((tmp_path / "all.json").read_text())["results"]) == 3
    assert_clear_error(dnnbench("report", "--db", db, "-o", tmp_path / "report"), "damaged")


def test_damaged_pages_are_one_line(tmp_path):
    db = tmp_path / "r.sqlite"
    small_store(db, n=200, samples_s=[0.01] * 50)
    raw = bytearray(db.read_bytes())
    page = 4096
    assert len(raw) > 8 * page
    raw[4 * page:len(raw) - page] = os.urandom(len(raw) - 5 * page)  # the results' pages, not the schema's
    db.write_bytes(bytes(raw))
    assert_clear_error(dnnbench("export", tmp_path / "out.csv", "--db", db), str(db), "damaged", ".recover")
    assert not (tmp_path / "out.csv").exists()


# --- paths ---------------------------------------------------------------------------------------------


def test_a_store_path_under_a_regular_file(tmp_path):
    (tmp_path / "somefile.txt").write_text("notes")
    db = tmp_path / "somefile.txt" / "x.sqlite"
    with pytest.raises(StoreError, match="somefile.txt is a file, not a folder"):
        Store(db)
    assert_clear_error(dnnbench("export", tmp_path / "out.csv", "--db", db), "is a file, not a folder")
    assert_clear_error(dnnbench("export", db, "--db", tmp_path / "none.sqlite"), "no results store")
    assert (tmp_path / "somefile.txt").read_text() == "notes"


def test_exports_into_missing_folders_are_one_line(tmp_path):
    db = tmp_path / "r.sqlite"
    small_store(db)
    with Store(db, create=False) as store:
        with pytest.raises(OutputError, match="does not exist"):
            store.export(tmp_path / "missing" / "out.csv")
        (tmp_path / "taken.csv").mkdir()
        with pytest.raises(OutputError, match="is a folder"):
            store.export(tmp_path / "taken.csv")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "x.json") as tmp:  # a failing writer: nothing left
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite", "taken.csv"]


def test_exports_onto_a_pipe_or_through_a_link_leave_them_what_they_are(tmp_path):
    """Writing whole-or-nothing renames a temporary file into place; onto a FIFO (like /dev/null or a pipe)
    that rename would replace the special file with a regular one, and onto a link it would replace the link."""
    import stat
    import threading

    with Store(tmp_path / "r.sqlite") as store:
        store.register_machine("m1", {})
        store.put_result(record(values={"median_s": 0.5}))
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        received = {}
        reader = threading.Thread(target=lambda: received.setdefault("text", fifo.read_text()))
        reader.start()
        store.export(fifo, "json")
        reader.join(30)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and '"median_s": 0.5' in received["text"]
        (tmp_path / "real.csv").write_text("old")
        (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
        store.export(tmp_path / "link.csv")
    assert (tmp_path / "link.csv").is_symlink() and "median_s" in (tmp_path / "real.csv").read_text()
