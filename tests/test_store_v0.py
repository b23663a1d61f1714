"""A results store written by release 0190a26 (before typed result values) still gives the same answers.

tests/fixtures/store-v0.sqlite was made by tests/fixtures/make_store_v0.sh with that release, and
tests/fixtures/golden-v0/ holds that release's answers on it. Each test runs today's CLI, as a user would,
on a copy of the store and compares.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from report_tables import report_files, report_tables

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
FIXTURE = TESTS / "fixtures" / "store-v0.sqlite"
GOLDEN = TESTS / "fixtures" / "golden-v0"
MACHINE_A, MACHINE_B = "d5a0b2f6e2eb9f06", "6c8dda130bf22dcb"


@pytest.fixture
def store(tmp_path) -> Path:
    copy = tmp_path / "store-v0.sqlite"
    shutil.copyfile(FIXTURE, copy)
    return copy


def dnnbench(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dnnbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def same(new, old, where="") -> None:
    """Equal content: floats equal (NaN equals NaN), containers element by element."""
    if isinstance(old, float) or isinstance(new, float):
        assert isinstance(new, (int, float)) and isinstance(old, (int, float)), f"{where}: {new!r} != {old!r}"
        assert new == old or (math.isnan(new) and math.isnan(old)), f"{where}: {new!r} != {old!r}"
    elif isinstance(old, dict):
        assert isinstance(new, dict) and new.keys() == old.keys(), f"{where}: keys {sorted(new)} != {sorted(old)}"
        for key in old:
            same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: {len(new)} items != {len(old)}"
        for i, (n, o) in enumerate(zip(new, old)):
            same(n, o, f"{where}[{i}]")
    else:
        assert new == old, f"{where}: {new!r} != {old!r}"


def test_select(store):
    result = dnnbench("select", "--machine", MACHINE_B, "--format", "json", "--db", str(store))
    assert result.returncode == 0, result.stderr
    same(json.loads(result.stdout), json.loads((GOLDEN / "select-a.json").read_text()))


def test_select_with_a_latency_ceiling_that_nothing_meets(store):
    result = dnnbench("select", "--machine", MACHINE_B, "--format", "json", "--max-latency-ms", "5", "--top", "10",
                      "--db", str(store))
    assert result.returncode == 1, result.stderr
    rows, end = json.JSONDecoder().raw_decode(result.stdout)  # then the sentence saying nothing fits
    same(rows, json.loads((GOLDEN / "select-a-latency5.json").read_text()))
    assert "no model meets" in result.stdout[end:]


def test_compare(store):
    result = dnnbench("compare", "--machine", MACHINE_B, "--machine", MACHINE_A, "--format", "json",
                      "--db", str(store))
    assert result.returncode == 0, result.stderr
    same(json.loads(result.stdout), json.loads((GOLDEN / "compare.json").read_text()))


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_csv(store, tmp_path):
    result = dnnbench("export", str(tmp_path / "out.csv"), "--db", str(store))
    assert result.returncode == 0, result.stderr
    new, old = csv_rows((tmp_path / "out.csv").read_text()), csv_rows((GOLDEN / "export.csv").read_text())
    assert list(new[0]) == list(old[0])  # the same columns, in the same order
    for i, (n, o) in enumerate(zip(new, old, strict=True)):
        for column in o:
            if n[column] != o[column]:  # the same figure may be spelt 1 or 1.0
                same(float(n[column]), float(o[column]), f"row {i} {column}")


def test_export_json(store, tmp_path):
    """The same document; the one addition is the layout number of each values dict (how a newer dnnbench
    tells this layout from a later one when the export is imported). A value read back keeps the layout it
    was written with (0 is written as 1, the same keys), so an old store does not export under layout 2's
    meanings (trials, first inference at each shape)."""
    result = dnnbench("export", str(tmp_path / "out.json"), "--db", str(store))
    assert result.returncode == 0, result.stderr
    new, old = json.loads((tmp_path / "out.json").read_text()), json.loads((GOLDEN / "export.json").read_text())
    for result_doc in new["results"]:
        if result_doc["values"]:
            assert result_doc["values"].pop("layout") == 1
    same(new, old)


def test_report(store, tmp_path):
    result = dnnbench("report", "-o", str(tmp_path / "report"), "--images", "png", "--db", str(store), timeout=600)
    assert result.returncode == 0, result.stderr
    golden = json.loads((GOLDEN / "report.json").read_text())
    assert report_files(tmp_path / "report") == golden["files"]
    new, old = report_tables(tmp_path / "report" / "index.html"), golden["tables"]
    assert len(new) == len(old)
    # One deliberate change (issue 12, "best with confidence"): the release's eager fp32 cells here stopped
    # on their 0.3 s time budget, unconverged, so they are no longer the baseline of a speed-up, and a
    # workload whose every deployment is unconverged gets no `best` row. Everything else reads the same.
    for new_table, old_table in zip(new, old):
        if "Best deployment" in old_table[0]:
            assert new_table[0][-2:] == ["Excluded", "Tie / why"] and len(new_table) == len(old_table)
            assert all(row[-2].endswith("eager fp32 unconverged") for row in new_table[1:])
        elif new_table != old_table:
            dropped = [row for row in old_table if row not in new_table]
            assert all(row in old_table for row in new_table)
            assert dropped and all(row[3].endswith(" best") and row[1] == "MobileNetV2" and row[4] == "2"
                                   for row in dropped)


def fixture_sweep() -> list[str]:
    script = (TESTS / "fixtures" / "make_store_v0.sh").read_text()
    start = script.index("sweep=(") + len("sweep=(")
    return shlex.split(script[start:script.index(")", start)].replace("\\\n", " "))


def this_machine_id() -> str:
    result = subprocess.run([sys.executable, "-c", "from dnnbench.env import collect_machine; "
                             "print(collect_machine().machine_id)"], env={**os.environ, "PYTHONPATH": str(SRC)},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_resume_finds_every_cell_of_the_old_release(store):
    """The fixture's sweep, run again on machine A's cells, measures nothing: every cell key (a digest of the
    cell's config) computed today is the one the old release stored. Machine A's rows are given this machine's
    id first, so that the test means the same on any machine."""
    here = this_machine_id()
    if here != MACHINE_A:
        with sqlite3.connect(store) as con:
            for table in ("machines", "runs", "results", "peaks"):
                con.execute(f"UPDATE {table} SET machine_id = ? WHERE machine_id = ?", (here, MACHINE_A))
    result = dnnbench(*fixture_sweep(), "--db", str(store), cwd=TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "27 cells planned, 27 already in the store" in " ".join(result.stdout.split())


def test_the_fixture_is_still_as_that_release_wrote_it():
    """Opening the fixture itself for writing (any command without a copy) would migrate it and so test a
    newer store: its tables must stay the five of release 0190a26."""
    import sqlite3

    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "machines", "runs", "results", "peaks"}
