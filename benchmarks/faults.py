"""Faults and bad inputs against the `dnnbench` command, as a demanding user would try them; prints the counts.

Every case runs `python -m dnnbench ...` in a subprocess, with the fault injected for real: a tmpfs that fills,
a read-only bind mount, another process holding the store's write lock, a worker and a runner killed with
SIGKILL, a byte of a cell changed to 0xff, damaged pages, paths under regular files, hostile flag values.
Mounts need root; without it those cases are reported as skipped.

Each case ends as one of:
  clear     exit 2 and one `error:` line, no traceback (a bad input), or success where the store must still
            read (a read-only store, a salvage export)
  traceback a Python traceback reached the user
  unclear   some other exit or several lines of error
  ignored   a bad flag accepted: exit 0, or work done
  data loss an ok cell lost, changed or half-written output left behind

    .venv/bin/python benchmarks/faults.py            # the whole matrix (a few minutes)
    .venv/bin/python benchmarks/faults.py -k lock    # only the cases whose name holds `lock`

Exit status 1 when anything is a traceback, a data loss or an ignored flag (the targets are 0, 0 and 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dnnbench.store import ResultRecord, Store  # noqa: E402 - this checkout's sources, put on the path above

TINY = "python:dnnbench_test_models:tiny"
FAST = ["--device", "cpu", "--threads", "1", "--input-size", "32", "--time-budget", "0.2", "--min-samples", "3",
        "--warmup-iters", "1", "--warmup-s", "0", "--no-peak"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), "COLUMNS": "100000",
       "HF_HUB_OFFLINE": "1", "DNNBENCH_LOCK_TIMEOUT_S": "3"}


@dataclass
class Outcome:
    name: str
    kind: str  # bad input | flag | read | data
    verdict: str  # clear | traceback | unclear | ignored | data loss | skipped
    detail: str


class Skip(Exception):
    pass


def dnnbench(*args: object, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnnbench", *map(str, args)], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def classify(proc: subprocess.CompletedProcess, expect_ok: bool = False) -> tuple[str, str]:
    text = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    detail = errors[0][:160] if errors else (text.strip().splitlines() or [""])[-1][:160]
    if "Traceback" in text:
        return "traceback", detail
    if expect_ok:
        return ("clear" if proc.returncode == 0 else "unclear"), f"exit {proc.returncode}: {detail}"
    if proc.returncode == 2 and len(errors) == 1:
        return "clear", detail
    if proc.returncode == 0:
        return "ignored", f"exit 0: {detail}"
    return "unclear", f"exit {proc.returncode}: {detail}"


def run(*args: object) -> subprocess.CompletedProcess:
    return dnnbench("run", *args)


# --- places ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(*args: object) -> Iterator[None]:
    done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Skip(f"mount {' '.join(map(str, args))}: {done.stderr.strip()} (needs root)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(args[-1])], check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    with mounted("-t", "tmpfs", "-o", f"size={size}", "tmpfs", path):
        yield path


@contextlib.contextmanager
def readonly(source: Path, view: Path) -> Iterator[Path]:
    view.mkdir(parents=True, exist_ok=True)
    with mounted("--bind", source, view):
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise Skip(f"remount read-only: {done.stderr.strip()}")
        yield view


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


@contextlib.contextmanager
def lock_held(db: Path) -> Iterator[subprocess.Popen]:
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        holder.stdout.readline()
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(30)


def synthetic_store(db: Path, n: int = 3, **values: object) -> None:
    with Store(db) as store:
        store.register_machine("m1", {"cpu": "x86"})
        run_id = store.start_run("m1", ["run"], {}, {})
        for i in range(n):
            store.put_result(ResultRecord("resnet18", "time", {"device": "cpu", "batch_size": i + 1}, "ok",
                                          {"median_s": 0.01 * (i + 1), **values}, None, 1.0, 2.0, run_id, "m1"))
        store.finish_run(run_id, "finished")


def ok_cells(db: Path) -> dict[str, tuple]:
    with Store(db, create=False) as store:
        return {r.cell_key.digest: (r.values, r.finished_at) for r in store.results() if r.status == "ok"}


def lost(before: dict[str, tuple], db: Path) -> list[str]:
    after = ok_cells(db)
    return [d for d, cell in before.items() if d not in after or after[d][1] < cell[1]]


# --- the matrix ------------------------------------------------------------------------------------------------


class Matrix:
    def __init__(self, work: Path, pattern: str | None) -> None:
        self.work, self.pattern, self.outcomes = work, pattern, []
        self._good: Path | None = None

    def good_store(self) -> Path:
        """A real store: a tiny model measured at batch sizes 1 and 2 (made once, copied by the cases)."""
        if self._good is None:
            self._good = self.work / "good.sqlite"
            proc = run(TINY, "--batch-sizes", "1,2", *FAST, "--db", self._good)
            if proc.returncode != 0:
                raise SystemExit(f"cannot make the reference store: {proc.stderr.strip()[-500:]}")
        return self._good

    def copy_of_good(self, folder: Path, name: str = "r.sqlite") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.good_store(), folder / name)
        return folder / name

    def case(self, name: str, kind: str) -> Callable:
        def register(body: Callable[[Path], tuple[str, str]]) -> None:
            if self.pattern and self.pattern not in name:
                return
            folder = Path(tempfile.mkdtemp(prefix="case-", dir=self.work))
            started = time.perf_counter()
            try:
                verdict, detail = body(folder)
            except Skip as e:
                verdict, detail = "skipped", str(e)
            outcome = Outcome(name, kind, verdict, detail)
            self.outcomes.append(outcome)
            print(f"{verdict:>9}  {kind:<9} {name:<44} {time.perf_counter() - started:5.1f} s  {detail}", flush=True)
        return register


def build(m: Matrix) -> None:
    bad, flag, read, data = "bad input", "flag", "read", "data"

    # --- paths that are not stores -------------------------------------------------------------------------
    for command in ("run", "export", "report", "select"):
        @m.case(f"{command} --db under a regular file", bad)
        def _(w: Path, command: str = command) -> tuple[str, str]:
            (w / "somefile.txt").write_text("notes")
            db = w / "somefile.txt" / "x.sqlite"
            args = {"run": [TINY, "--metrics", "complexity", "--no-peak"], "export": [w / "out.csv"],
                    "report": ["-o", w / "report"], "select": []}[command]
            return classify(dnnbench(command, *args, "--db", db))

    for label, content in (("a text file", b"my notes"), ("random bytes", os.urandom(9000)),
                           ("an SQLite header and garbage", b"SQLite format 3\x00" + os.urandom(9000)),
                           ("an empty file", b"")):
        @m.case(f"export --db {label}", bad)
        def _(w: Path, content: bytes = content) -> tuple[str, str]:
            (w / "x.sqlite").write_bytes(content)
            verdict = classify(dnnbench("export", w / "out.csv", "--db", w / "x.sqlite"))
            changed = (w / "x.sqlite").read_bytes() != content
            return ("data loss", "the file was changed") if changed else verdict

    @m.case("export --db a folder", bad)
    def _(w: Path) -> tuple[str, str]:
        return classify(dnnbench("export", w / "out.csv", "--db", w))

    @m.case("export --db a missing store", bad)
    def _(w: Path) -> tuple[str, str]:
        return classify(dnnbench("export", w / "out.csv", "--db", w / "none.sqlite"))

    @m.case("merge from a text file", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "notes.sqlite").write_text("notes")
        return classify(dnnbench("merge", m.copy_of_good(w), w / "notes.sqlite"))

    @m.case("models --suite-file a binary file", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "suites.toml").write_bytes(b"\xff\xfe\x00garbage" + os.urandom(200))
        return classify(dnnbench("models", "--suite-file", w / "suites.toml", "--suite", "x"))

    @m.case("accuracy --data a binary file", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "val.csv").write_bytes(b"\xff\xfe" + os.urandom(500))
        return classify(dnnbench("accuracy", TINY, "--data", w / "val.csv", "--workers", "0", "--db", w / "r.sqlite"))

    # --- output places -------------------------------------------------------------------------------------
    @m.case("export into a missing folder", bad)
    def _(w: Path) -> tuple[str, str]:
        return classify(dnnbench("export", w / "missing" / "out.csv", "--db", m.copy_of_good(w)))

    @m.case("export onto a folder", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "out.csv").mkdir()
        return classify(dnnbench("export", w / "out.csv", "--db", m.copy_of_good(w)))

    @m.case("report -o an existing file", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "report").write_text("mine")
        return classify(dnnbench("report", "--db", m.copy_of_good(w), "-o", w / "report"))

    @m.case("report -o under a regular file", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "file").write_text("mine")
        return classify(dnnbench("report", "--db", m.copy_of_good(w), "-o", w / "file" / "report"))

    @m.case("export into a read-only folder", bad)
    def _(w: Path) -> tuple[str, str]:
        db = m.copy_of_good(w / "db")
        (w / "out").mkdir()
        with readonly(w / "out", w / "ro"):
            return classify(dnnbench("export", w / "ro" / "out.csv", "--db", db))

    @m.case("report into a read-only folder", bad)
    def _(w: Path) -> tuple[str, str]:
        db = m.copy_of_good(w / "db")
        (w / "out").mkdir()
        with readonly(w / "out", w / "ro"):
            return classify(dnnbench("report", "--db", db, "-o", w / "ro" / "report", "--images", "none"))

    for fmt in ("csv", "json", "parquet"):
        @m.case(f"export .{fmt} onto a full disk", bad)
        def _(w: Path, fmt: str = fmt) -> tuple[str, str]:
            db = m.copy_of_good(w / "db")
            with tmpfs(w / "disk"):
                fill(w / "disk")
                verdict = classify(dnnbench("export", w / "disk" / f"out.{fmt}", "--db", db))
                left = [p.name for p in (w / "disk").iterdir() if p.name != "filler"]
                return ("data loss", f"left behind: {left}") if left else verdict

    @m.case("report onto a full disk keeps the old report", bad)
    def _(w: Path) -> tuple[str, str]:
        db = m.copy_of_good(w / "db")
        with tmpfs(w / "disk", size="16m"):
            first = dnnbench("report", "--db", db, "-o", w / "disk" / "report", "--images", "none")
            if first.returncode != 0:
                return classify(first)
            old = {p.name: p.read_bytes() for p in (w / "disk" / "report").iterdir()}
            fill(w / "disk")
            verdict = classify(dnnbench("report", "--db", db, "-o", w / "disk" / "report"))
            now = {p.name: p.read_bytes() for p in (w / "disk" / "report").iterdir()}
            return ("data loss", "the old report changed") if now != old else verdict

    # --- stores in trouble ---------------------------------------------------------------------------------
    @m.case("run on a store in a read-only folder", bad)
    def _(w: Path) -> tuple[str, str]:
        m.copy_of_good(w / "db")
        with readonly(w / "db", w / "ro"):
            return classify(run(TINY, "--metrics", "complexity", "--no-peak", "--db", w / "ro" / "r.sqlite"))

    for command in ("export", "report", "select"):
        @m.case(f"{command} reads a store in a read-only folder", read)
        def _(w: Path, command: str = command) -> tuple[str, str]:
            m.copy_of_good(w / "db")
            args = {"export": [w / "out.csv"], "report": ["-o", w / "report", "--images", "none"],
                    "select": []}[command]
            with readonly(w / "db", w / "ro"):
                return classify(dnnbench(command, *args, "--db", w / "ro" / "r.sqlite"), expect_ok=True)

    @m.case("run into a new store in a read-only folder", bad)
    def _(w: Path) -> tuple[str, str]:
        (w / "empty").mkdir()
        with readonly(w / "empty", w / "ro"):
            return classify(run(TINY, "--metrics", "complexity", "--no-peak", "--db", w / "ro" / "new.sqlite"))

    @m.case("export reads a good store on a full disk", read)
    def _(w: Path) -> tuple[str, str]:
        with tmpfs(w / "disk"):
            m.copy_of_good(w / "disk")
            fill(w / "disk")
            return classify(dnnbench("export", w / "out.csv", "--db", w / "disk" / "r.sqlite"), expect_ok=True)

    @m.case("run onto a full disk keeps the committed cells", data)
    def _(w: Path) -> tuple[str, str]:
        with tmpfs(w / "disk", size="2m"):
            db = m.copy_of_good(w / "disk")
            before = ok_cells(db)
            fill(w / "disk")
            verdict = classify(run(TINY, "--batch-sizes", "1,2,4,8", *FAST, "--db", db))
            (w / "disk" / "filler").unlink()
            gone = lost(before, db)
            return ("data loss", f"{len(gone)} ok cells lost") if gone else verdict

    @m.case("run on a store whose write lock is held", bad)
    def _(w: Path) -> tuple[str, str]:
        db = m.copy_of_good(w)
        with lock_held(db) as holder:
            proc = run(TINY, "--metrics", "complexity", "--no-peak", "--db", db)
        verdict, detail = classify(proc)
        if verdict == "clear" and (f"pid {holder.pid}" not in proc.stderr or "waiting" not in proc.stderr):
            return "unclear", f"does not wait visibly or name pid {holder.pid}: {detail}"
        return verdict, detail

    @m.case("export of a store with damaged pages", bad)
    def _(w: Path) -> tuple[str, str]:
        db = w / "r.sqlite"
        synthetic_store(db, n=200, samples_s=[0.01] * 50)
        raw = bytearray(db.read_bytes())
        raw[4 * 4096:len(raw) - 4096] = os.urandom(len(raw) - 5 * 4096)
        db.write_bytes(bytes(raw))
        return classify(dnnbench("export", w / "out.csv", "--db", db))

    def damaged(w: Path) -> Path:
        db = m.copy_of_good(w)
        with sqlite3.connect(db) as con:  # one byte of one cell's values becomes 0xff
            (cell_id, values), = con.execute("SELECT id, values_json FROM results ORDER BY id DESC LIMIT 1")
            raw = values.encode()
            con.execute("UPDATE results SET values_json = CAST(? AS TEXT) WHERE id = ?",
                        (raw[:5] + b"\xff" + raw[6:], cell_id))
        con.close()
        return db

    for command in ("export", "report", "select"):
        @m.case(f"{command} of a store with one 0xff byte", bad)
        def _(w: Path, command: str = command) -> tuple[str, str]:
            args = {"export": [w / "out.csv"], "report": ["-o", w / "report"], "select": []}[command]
            return classify(dnnbench(command, *args, "--db", damaged(w)))

    @m.case("export --salvage of a store with one 0xff byte", read)
    def _(w: Path) -> tuple[str, str]:
        verdict, detail = classify(dnnbench("export", w / "out.csv", "--salvage", "--db", damaged(w)), expect_ok=True)
        return verdict, detail

    # --- flags the worker takes: validated before any work ------------------------------------------------
    for args in (["--interop-threads", "0"], ["--interop-threads", "-1"], ["--memory-limit-mb", "0"],
                 ["--memory-limit-mb", "-5"], ["--memory-limit-mb", "1"], ["--warmup-iters", "0"],
                 ["--threads", "0"], ["--cell-timeout", "0"], ["--min-samples", "0"], ["--ci-target", "-1"]):
        @m.case(f"run {' '.join(args)}", flag)
        def _(w: Path, args: list[str] = args) -> tuple[str, str]:
            db = w / "r.sqlite"
            proc = run(TINY, "--metrics", "time", "--batch-sizes", "1", *FAST, *args, "--db", db)
            verdict, detail = classify(proc)
            if verdict == "clear" and db.exists():
                with contextlib.suppress(Exception), Store(db, create=False) as store:
                    if store.results():
                        return "ignored", f"exit 2, but cells were measured: {detail}"
            return verdict, detail

    # --- data loss -----------------------------------------------------------------------------------------
    @m.case("run --force with the worker SIGKILLed mid-job", data)
    def _(w: Path) -> tuple[str, str]:
        db = w / "r.sqlite"
        args = ["python:dnnbench_test_models:killed_on_rerun", "--batch-sizes", "1,2,4", *FAST, "--db", db]
        first = run(*args)
        if first.returncode != 0:
            return classify(first, expect_ok=True)
        before = ok_cells(db)
        proc = dnnbench("run", *args, "--force", env={"DNNBENCH_TEST_SIGKILL": "1"})
        gone = lost(before, db)
        if gone:
            return "data loss", f"{len(gone)} of {len(before)} ok cells replaced by failures"
        if "Traceback" in proc.stdout + proc.stderr:
            return "traceback", proc.stderr.strip().splitlines()[-1][:160]
        with Store(db, create=False) as store:
            kept = [h.status for h in store.history()]
        return "clear", f"all {len(before)} ok cells kept; history: {', '.join(kept) or 'none'}"

    @m.case("merge a newer failure over an older ok", data)
    def _(w: Path) -> tuple[str, str]:
        good, bad_db = m.copy_of_good(w, "good.sqlite"), m.copy_of_good(w, "bad.sqlite")
        before = ok_cells(good)
        with contextlib.closing(sqlite3.connect(bad_db)) as con, con:
            con.execute("UPDATE results SET status = 'crash', values_json = '{}', error = 'boom', "
                        "finished_at = finished_at + 1000")
        proc = dnnbench("merge", good, bad_db)
        gone = lost(before, good)
        return ("data loss", f"{len(gone)} ok cells became failures") if gone else classify(proc, expect_ok=True)

    @m.case("runner SIGKILLed: cells kept, run marked", data)
    def _(w: Path) -> tuple[str, str]:
        db = w / "r.sqlite"
        names = f"{TINY},python:dnnbench_test_models:sleeping"
        runner = subprocess.Popen([sys.executable, "-m", "dnnbench", "run", "--models", names, "--batch-sizes", "1",
                                   *FAST, "--db", str(db)], env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
        deadline = time.time() + 180
        while time.time() < deadline:
            with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
                if con.execute("SELECT count(*) FROM results").fetchone()[0] >= 3:
                    break
            time.sleep(0.3)
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        before = ok_cells(db)
        with Store(db, create=False) as store:
            statuses = [r["status"] for r in store.runs()]
        if statuses != ["interrupted"]:
            return "unclear", f"the killed run is {statuses}, not interrupted"
        gone = lost(before, db)
        if gone:
            return "data loss", f"{len(gone)} cells lost"
        return "clear", f"run marked interrupted; {len(before)} cells kept"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", dest="pattern", help="only the cases whose name holds this text")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dnnbench-faults-"))
    matrix = Matrix(work, args.pattern)
    try:
        build(matrix)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    outcomes = matrix.outcomes
    counts = Counter(o.verdict for o in outcomes)
    tried = [o for o in outcomes if o.verdict != "skipped"]
    inputs = [o for o in tried if o.kind in ("bad input", "flag")]
    print()
    print(f"cases tried: {len(tried)} ({len(outcomes) - len(tried)} skipped)")
    print(f"bad inputs tried: {len(inputs)}; clear errors: {sum(o.verdict == 'clear' for o in inputs)}")
    print(f"stores that must still read: {sum(o.kind == 'read' for o in tried)}; read: "
          f"{sum(o.kind == 'read' and o.verdict == 'clear' for o in tried)}")
    print(f"tracebacks: {counts['traceback']}; unclear: {counts['unclear']}; data-loss cases: {counts['data loss']}; "
          f"silently ignored flags: {counts['ignored']}")
    return 1 if counts["traceback"] or counts["data loss"] or counts["ignored"] else 0


if __name__ == "__main__":
    sys.exit(main())
