"""SQLite results store: one file that runner processes append to, one committed cell at a time."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..files import atomic_file
from .processes import ProcessIdentity, describe_holders
from .records import ResultRecord, canonical_json
from .values import ValueLayoutError, decode, encode

if TYPE_CHECKING:  # pandas is imported where a frame is made: the CLI's light commands start without it
    import pandas as pd

SCHEMA_VERSION = 1
APP = "dnnbench"
RUN_STATUSES = ("running", "finished", "interrupted", "failed")
EXPORT_FORMATS = ("csv", "parquet", "json")
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's lock; DNNBENCH_LOCK_TIMEOUT_S overrides it
LOCK_TIMEOUT_ENV = "DNNBENCH_LOCK_TIMEOUT_S"
QUIET_WAIT_S = 2.0  # a lock held longer than this is waited for with a message on stderr
FRAME_COLUMNS = ("machine_id", "run_id", "model", "metric", "status", "error", "started_at", "finished_at")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
_RECORD_FIELDS = tuple(f.name for f in fields(ResultRecord))

# Peak FLOP/s of a machine's device per precision and thread count (dnnbench.env.peak), added after schema 1
# without changing its version: older stores get the table on their first peak, readers tolerate its absence, and
# older dnnbench versions ignore it.
_PEAKS_TABLE = """CREATE TABLE IF NOT EXISTS peaks (
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    device TEXT NOT NULL,
    precision TEXT NOT NULL,
    threads INTEGER NOT NULL,
    peak_flops REAL,
    estimate_json TEXT NOT NULL,
    measured_at REAL NOT NULL,
    PRIMARY KEY (machine_id, device, precision, threads)
)"""

# Failed measurements of a cell that did not become (or stopped being) its result: a failure never replaces an
# ok cell, and a failure replaced by a later measurement is kept here. Added after schema 1 like `peaks`.
_HISTORY_TABLE = """CREATE TABLE IF NOT EXISTS result_history (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(run_id),
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    model TEXT NOT NULL,
    metric TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    values_json TEXT NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    UNIQUE (machine_id, cell_key, status, started_at, finished_at)
)"""

# The process that runs a run, so that a run whose process died (SIGKILL, power loss) is marked `interrupted`
# when the store is next opened. A table beside `runs` rather than new columns, so that older dnnbench versions
# (which insert 8 values into `runs`) still write the store.
_RUN_PROCESSES_TABLE = """CREATE TABLE IF NOT EXISTS run_processes (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
    hostname TEXT NOT NULL,
    boot_id TEXT,
    pid INTEGER NOT NULL,
    pid_started TEXT
)"""

# Operator micro-benchmarks of a machine and configuration (`dnnbench calibrate`): one row per operator shape, its
# features (dnnbench.measure.operators.FEATURES) and its measured median time. A calibration is replaced whole.
# Added after schema 1 like `peaks`.
_CALIBRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS calibrations (
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    device TEXT NOT NULL,
    backend TEXT NOT NULL,
    precision TEXT NOT NULL,
    threads INTEGER NOT NULL,
    kind TEXT NOT NULL,
    op TEXT NOT NULL,
    signature TEXT NOT NULL,
    features_json TEXT NOT NULL,
    seconds REAL NOT NULL,
    weight REAL NOT NULL,
    measured_at REAL NOT NULL,
    PRIMARY KEY (machine_id, device, backend, precision, threads, signature)
)"""

# Tables added after schema 1, created when a store is opened for writing; readers tolerate their absence.
_ADDED_TABLES = {"peaks": _PEAKS_TABLE, "result_history": _HISTORY_TABLE, "run_processes": _RUN_PROCESSES_TABLE,
                 "calibrations": _CALIBRATIONS_TABLE}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('app', '{APP}'), ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS machines (
    machine_id TEXT PRIMARY KEY,
    fingerprint_json TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    argv_json TEXT NOT NULL,
    config_json TEXT NOT NULL,
    software_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(run_id),
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    model TEXT NOT NULL,
    metric TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    values_json TEXT NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    UNIQUE (machine_id, cell_key)
);
CREATE INDEX IF NOT EXISTS results_machine_metric_model ON results (machine_id, metric, model);
CREATE INDEX IF NOT EXISTS results_metric_model ON results (metric, model);
CREATE INDEX IF NOT EXISTS results_run ON results (run_id);
CREATE INDEX IF NOT EXISTS runs_machine ON runs (machine_id);
{_PEAKS_TABLE};
{_HISTORY_TABLE};
{_RUN_PROCESSES_TABLE}
"""

# Which measurement of a cell stays its result is decided in Store._keep; the loser, if a failure, goes to history.
_UPSERT_RESULT = """
INSERT INTO results (run_id, machine_id, model, metric, cell_key, config_json, status, values_json,
                     error, started_at, finished_at)
VALUES (:run_id, :machine_id, :model, :metric, :cell_key, :config_json, :status, :values_json,
        :error, :started_at, :finished_at)
ON CONFLICT (machine_id, cell_key) DO UPDATE SET
    run_id = excluded.run_id, model = excluded.model, metric = excluded.metric,
    config_json = excluded.config_json, status = excluded.status, values_json = excluded.values_json,
    error = excluded.error, started_at = excluded.started_at, finished_at = excluded.finished_at
"""

_RESULT_COLUMNS = ("run_id, machine_id, model, metric, cell_key, config_json, status, values_json, error, started_at, "
                   "finished_at")
_INSERT_HISTORY = f"""
INSERT OR IGNORE INTO result_history ({_RESULT_COLUMNS})
VALUES (:run_id, :machine_id, :model, :metric, :cell_key, :config_json, :status, :values_json,
        :error, :started_at, :finished_at)
"""
_HISTORY_FROM_RESULTS = f"""
INSERT OR IGNORE INTO result_history ({_RESULT_COLUMNS})
SELECT {_RESULT_COLUMNS} FROM results WHERE machine_id = :machine_id AND cell_key = :cell_key
"""

_MERGE_MACHINE = """
INSERT INTO machines VALUES (?, ?, ?, ?)
ON CONFLICT (machine_id) DO UPDATE SET
    fingerprint_json = CASE WHEN excluded.last_seen > last_seen
                            THEN excluded.fingerprint_json ELSE fingerprint_json END,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)
"""

_MERGE_RUN = """
INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, status = excluded.status
WHERE runs.finished_at IS NULL AND excluded.finished_at IS NOT NULL
"""


# `:replace` is 1 for a re-measurement (it always wins) and 0 for a merge (the newer estimate wins).
_UPSERT_PEAK = """
INSERT INTO peaks (machine_id, device, precision, threads, peak_flops, estimate_json, measured_at)
VALUES (:machine_id, :device, :precision, :threads, :peak_flops, :estimate_json, :measured_at)
ON CONFLICT (machine_id, device, precision, threads) DO UPDATE SET
    peak_flops = excluded.peak_flops, estimate_json = excluded.estimate_json, measured_at = excluded.measured_at
WHERE :replace OR excluded.measured_at > peaks.measured_at
"""


class StoreError(UsageError):
    """A problem with a results store, worded for the user."""


class _Damaged(bytes):
    """Text of a cell that is not valid UTF-8 (a damaged byte in the file): kept raw, reported by cell."""


def _decode_text(raw: bytes) -> str | _Damaged:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Damaged(raw)


def _errorname(error: sqlite3.Error) -> str:
    return getattr(error, "sqlite_errorname", "") or ""


def _is_busy(error: sqlite3.Error) -> bool:
    return _errorname(error).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error)


def _say_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _lock_timeout(seconds: float | None) -> float:
    if seconds is not None:
        return float(seconds)
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if text is None:
        return BUSY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise StoreError(f"{LOCK_TIMEOUT_ENV}={text!r} is not a number of seconds >= 0; unset it or fix it")
    return value


class Store:
    """A dnnbench results store in one SQLite file; safe for several writer processes at once.

    A store that cannot be written (a read-only file, folder or filesystem) is opened read-only: everything
    reads, and a write says why it cannot. `on_wait` is told when a write waits for another process's lock.
    """

    def __init__(self, path: str | Path, create: bool = True, busy_timeout_s: float | None = None) -> None:
        self.path = Path(path)
        self.busy_timeout_s = _lock_timeout(busy_timeout_s)
        self.on_wait: Callable[[str], None] = _say_on_stderr
        self.readonly_reason = self._refuse_foreign_file(create)
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._open(create)
        except StoreError:
            if self.readonly_reason is not None or not existed or not self._disk_full():
                raise
            # a good store on a full disk: SQLite cannot create its -shm file to write, but the store still reads
            self.readonly_reason = f"the disk holding {self.path.parent} is full"
            self._open(create)

    def _open(self, create: bool) -> None:
        self._con = self._connect()
        try:
            self._con.text_factory = _decode_text
            self._con.execute("PRAGMA foreign_keys = ON")
            initialised = self._check_schema()
            if not initialised and not create:
                raise StoreError(f"{self.path} is an empty file, not a dnnbench results store")
            if self.readonly_reason is not None:
                if not initialised:
                    raise StoreError(f"cannot create a results store in {self.path}: {self.readonly_reason}; "
                                     "choose another --db")
                return
            self._enable_wal()
            if not initialised:
                with self._write() as con:
                    if not self._check_schema():  # another process may have initialised it meanwhile
                        for statement in _SCHEMA.split(";"):
                            con.execute(statement)
            self._add_tables()
            self._mark_dead_runs()
        except sqlite3.Error as e:
            self._con.close()
            raise self._explain(e) from e
        except BaseException:
            self._con.close()
            raise

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def readonly(self) -> bool:
        return self.readonly_reason is not None

    def _refuse_foreign_file(self, create: bool) -> str | None:
        """Looks at the raw header before SQLite ever touches the file. Returns why the store can only be
        read (a read-only file, folder or filesystem), or None when it can be written."""
        ancestor = next((p for p in self.path.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise StoreError(f"cannot use {self.path} as a results store: {ancestor} is a file, not a folder; "
                             "choose another --db")
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a dnnbench results store")
        if not self.path.exists():
            if not create:
                raise StoreError(f"no results store at {self.path}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder {self.path.parent} for the results store: "
                                 f"{e.strerror}; choose another --db") from e
            reason = self._readonly_reason()
            if reason is not None:
                raise StoreError(f"cannot create the results store {self.path}: {reason}; choose another --db")
            return None
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise StoreError(f"cannot read the results store {self.path}: {e.strerror}; check its permissions") from e
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a dnnbench results store (not an SQLite database); left untouched")
        return self._readonly_reason()

    def _readonly_reason(self) -> str | None:
        folder = self.path.parent
        try:
            readonly_fs = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            readonly_fs = False
        if readonly_fs:
            return f"{folder} is on a read-only filesystem"
        if self.path.exists() and not os.access(self.path, os.W_OK):
            return f"the file {self.path} is read-only"
        if not os.access(folder, os.W_OK | os.X_OK):  # SQLite writes its -wal and -shm files beside the store
            return f"the folder {folder} is read-only"
        return None

    def _connect(self) -> sqlite3.Connection:
        quiet = min(QUIET_WAIT_S, self.busy_timeout_s)
        try:
            if self.readonly_reason is None:
                # autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction
                return sqlite3.connect(self.path, timeout=quiet, isolation_level=None)
            return self._connect_readonly(quiet)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open results store {self.path}: {e}") from e

    def _connect_readonly(self, quiet: float) -> sqlite3.Connection:
        """mode=ro reads a store in WAL mode while its -shm and -wal files exist; without them (a store closed
        cleanly, its cells all in the file) SQLite cannot create them here (a read-only or full disk), and
        immutable=1 reads the file."""
        uri = self.path.absolute().as_uri()
        con = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=quiet, isolation_level=None)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.DatabaseError as e:
            con.close()
            if not _errorname(e).startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR")):  # IOERR: no room for -shm
                raise
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"cannot read the results store {self.path}: {self.readonly_reason}, and some of its "
                             f"cells are still in {wal.name}, which SQLite cannot open here; copy {self.path.name} "
                             f"and {wal.name} to a writable folder and pass --db COPY")
        return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=quiet, isolation_level=None)

    def _enable_wal(self) -> None:
        # Changing the journal mode does not wait on the busy timeout: two processes creating the same
        # store at once make one of them fail with "database is locked" unless it retries.
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                if self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                    return
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise self._explain(e) from e
            if time.monotonic() > deadline:
                raise self._locked_error()
            time.sleep(0.05)

    def _add_tables(self) -> None:
        """The tables added after schema 1 (a store written by an older dnnbench gets them now)."""
        present = {name for (name,) in self._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if set(_ADDED_TABLES) - present:
            with self._write() as con:
                for statement in _ADDED_TABLES.values():
                    con.execute(statement)

    def _has_table(self, name: str) -> bool:
        return self._con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
                                 ).fetchone() is not None

    def _mark_dead_runs(self) -> None:
        """A `running` run whose process is gone (killed, or the machine rebooted) becomes `interrupted`, finished
        when its last cell was."""
        rows = self._con.execute(
            "SELECT p.run_id, p.hostname, p.boot_id, p.pid, p.pid_started FROM run_processes p "
            "JOIN runs r USING (run_id) WHERE r.status = 'running'").fetchall()
        dead = [run_id for run_id, *identity in rows if ProcessIdentity(*identity).is_gone()]
        if not dead:
            return
        with self._write() as con:
            for run_id in dead:
                con.execute("UPDATE runs SET status = 'interrupted', finished_at = coalesce("
                            "(SELECT max(finished_at) FROM results WHERE run_id = ?), started_at) "
                            "WHERE run_id = ? AND status = 'running'", (run_id, run_id))

    def _check_schema(self) -> bool:
        """True for a dnnbench store, False for an empty database, StoreError for anything else.

        Only reads, so that a refused file is left byte-identical.
        """
        try:
            objects = {name for (name,) in self._con.execute("SELECT name FROM sqlite_master")}
            meta = dict(self._con.execute("SELECT key, value FROM meta")) if "meta" in objects else {}
        except sqlite3.DatabaseError as e:
            if _errorname(e) == "SQLITE_NOTADB":
                raise StoreError(f"{self.path} is not a dnnbench results store ({e}); left untouched") from e
            if _errorname(e).startswith("SQLITE_CORRUPT"):
                raise StoreError(f"{self.path} is damaged or not a dnnbench results store ({e}); left untouched. "
                                 f"If it is a store, recover what SQLite can read: sqlite3 {self.path} .recover "
                                 "| sqlite3 recovered.sqlite, then use --db recovered.sqlite") from e
            raise self._explain(e) from e
        if not objects:
            return False
        if meta.get("app") != APP:
            raise StoreError(f"{self.path} is an SQLite database but not a dnnbench results store; left untouched")
        try:
            version = int(meta["schema_version"])
        except (KeyError, ValueError):
            raise StoreError(f"{self.path} has no valid dnnbench schema version; left untouched") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer dnnbench (store schema {version}; this version reads "
                f"up to {SCHEMA_VERSION}). Upgrade dnnbench to use it; the file was left untouched."
            )
        return True

    # --- errors ----------------------------------------------------------------------------------

    def _explain(self, error: sqlite3.Error) -> StoreError:
        """An SQLite error as one line naming the store, the cause and what to do next."""
        name, text, path = _errorname(error), str(error), self.path
        if _is_busy(error):
            return self._locked_error()
        if name.startswith("SQLITE_FULL") or "disk is full" in text or self._disk_full():
            return self._full_error(text)
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            why = self.readonly_reason or self._readonly_reason() or "SQLite was refused write access"
            return StoreError(f"cannot write to the results store {path}: {why} ({text}); it can still be read "
                              "(report, select, export); to add to it, copy it to a writable folder and pass "
                              "--db COPY")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return StoreError(f"the results store {path} is damaged ({text}); recover what SQLite can read: "
                              f"sqlite3 {path} .recover | sqlite3 recovered.sqlite, then use --db "
                              "recovered.sqlite")
        return StoreError(f"cannot use the results store {path}: {text}; check that it and its folder "
                          f"{path.parent} can be read and written")

    def _full_error(self, cause: str) -> StoreError:
        path = self.path
        return StoreError(
            f"cannot write to the results store {path}: the disk is full ({cause}). Every cell committed so far is "
            f"safe in {path.name} and its {path.name}-wal file; free some space on the disk holding {path.parent}, "
            f"then run any dnnbench command on the store (e.g. `dnnbench export results.csv --db {path}`): it folds "
            "the -wal file back into the store")

    def _disk_full(self) -> bool:
        try:
            return shutil.disk_usage(self.path.parent).free < 64 * 1024
        except OSError:
            return False

    def _locked_error(self) -> StoreError:
        return StoreError(f"the results store {self.path} is locked: another process has held its write lock for "
                          f"more than {self.busy_timeout_s:.0f} s (the file is open in "
                          f"{describe_holders(self.path)}); wait for it to finish (or stop it), then run again "
                          f"(the wait: {LOCK_TIMEOUT_ENV})")

    def _damaged_error(self) -> StoreError:
        damaged = self.damaged_cells()
        listing = "; ".join(damaged[:3]) + (f"; and {len(damaged) - 3} more" if len(damaged) > 3 else "")
        return StoreError(f"the results store {self.path} has {len(damaged) or 'a'} damaged cell(s) (text that is "
                          f"not UTF-8: {listing or 'outside the results table'}); `dnnbench export OUT --salvage "
                          f"--db {self.path}` exports every other cell and lists the damaged ones")

    # --- transactions ----------------------------------------------------------------------------

    def _begin(self) -> None:
        """BEGIN IMMEDIATE takes the write lock up front, so concurrent writers wait instead of failing when a
        read lock cannot be upgraded. A short wait is silent; a longer one says who holds the lock."""
        try:
            self._con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if not _is_busy(e) or self.busy_timeout_s <= QUIET_WAIT_S:
                raise
        self.on_wait(f"waiting up to {self.busy_timeout_s:.0f} s for the results store {self.path}: another process "
                     f"holds its write lock (the file is open in {describe_holders(self.path)})")
        self._con.execute(f"PRAGMA busy_timeout = {int((self.busy_timeout_s - QUIET_WAIT_S) * 1000)}")
        try:
            self._con.execute("BEGIN IMMEDIATE")
        finally:
            self._con.execute(f"PRAGMA busy_timeout = {int(QUIET_WAIT_S * 1000)}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly_reason is not None:
            if self.readonly_reason.endswith(" is full"):
                raise self._full_error(self.readonly_reason)
            raise StoreError(f"cannot write to the results store {self.path}: {self.readonly_reason}; it can still "
                             "be read (report, select, export); to add to it, copy it to a writable folder and "
                             "pass --db COPY")
        self._begin()
        try:
            yield self._con
            self._con.execute("COMMIT")
        except sqlite3.IntegrityError as e:
            self._rollback()
            raise StoreError(f"inconsistent write to {self.path} ({e}): unknown machine or run?") from e
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._con.in_transaction:  # SQLite may have rolled back already (a full disk)
            try:
                self._con.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        self._con.execute("BEGIN")
        try:
            yield self._con
        finally:
            self._con.execute("COMMIT")

    # --- machines and runs -----------------------------------------------------------------------

    def register_machine(self, machine_id: str, fingerprint: Mapping[str, Any]) -> None:
        now = time.time()
        with self._write() as con:
            con.execute(
                "INSERT INTO machines VALUES (?, ?, ?, ?) ON CONFLICT (machine_id) DO UPDATE SET "
                "fingerprint_json = excluded.fingerprint_json, last_seen = excluded.last_seen",
                (machine_id, canonical_json(fingerprint), now, now),
            )

    def machines(self) -> dict[str, dict[str, Any]]:
        """machine_id -> {"fingerprint": {...}, "first_seen": t, "last_seen": t}."""
        rows = self._con.execute("SELECT * FROM machines ORDER BY machine_id")
        return {
            mid: {"fingerprint": json.loads(fp), "first_seen": first, "last_seen": last}
            for mid, fp, first, last in rows
        }

    def start_run(
        self, machine_id: str, argv: list[str], config: Mapping[str, Any], software: Mapping[str, Any]
    ) -> str:
        run_id = uuid.uuid4().hex
        me = ProcessIdentity.current()
        with self._write() as con:
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?, ?, ?)",
                (run_id, machine_id, time.time(), json.dumps(list(argv)), canonical_json(config),
                 canonical_json(software)),
            )
            con.execute("INSERT INTO run_processes VALUES (?, ?, ?, ?, ?)",
                        (run_id, me.hostname, me.boot_id, me.pid, me.started))
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        with self._write() as con:
            cur = con.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, time.time(), run_id)
            )
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {self.path}")

    def runs(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs" + (" WHERE machine_id = ?" if machine_id else "") + " ORDER BY started_at, run_id"
        return [
            {"run_id": rid, "machine_id": mid, "started_at": start, "finished_at": end, "status": status,
             "argv": json.loads(argv), "config": json.loads(config), "software": json.loads(software)}
            for rid, mid, start, end, status, argv, config, software in
            self._con.execute(sql, (machine_id,) if machine_id else ())
        ]

    # --- peaks -----------------------------------------------------------------------------------

    def _has_peaks(self) -> bool:
        return self._has_table("peaks")

    @staticmethod
    def _peak_params(machine_id: str, estimate: Mapping[str, Any], replace: bool) -> dict[str, Any]:
        """`estimate` is a PeakEstimate.to_dict(): device, precision, threads, peak_flops, measured_at and the rest."""
        try:
            threads = int(estimate.get("threads") or 0)
            return {"machine_id": machine_id, "device": str(estimate["device"]),
                    "precision": str(estimate["precision"]), "threads": threads,
                    "peak_flops": None if estimate.get("peak_flops") is None else float(estimate["peak_flops"]),
                    "estimate_json": canonical_json({**estimate, "threads": threads}),
                    "measured_at": float(estimate.get("measured_at") or time.time()), "replace": int(replace)}
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"malformed peak estimate for machine {machine_id!r}: {e!r}") from e

    def put_peak(self, machine_id: str, estimate: Mapping[str, Any]) -> None:
        """Stores the peak estimate of one (device, precision, threads) of a registered machine; a new estimate
        replaces the old one."""
        params = self._peak_params(machine_id, estimate, replace=True)
        with self._write() as con:
            con.execute(_PEAKS_TABLE)
            con.execute(_UPSERT_PEAK, params)

    def peaks(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        """[{"machine_id", "device", "precision", "threads", "peak_flops", "measured_at", "estimate": {...}}]."""
        if not self._has_peaks():
            return []
        sql = ("SELECT machine_id, device, precision, threads, peak_flops, measured_at, estimate_json FROM peaks"
               + (" WHERE machine_id = ?" if machine_id else "") + " ORDER BY machine_id, device, precision, threads")
        return [{"machine_id": mid, "device": device, "precision": precision, "threads": threads,
                 "peak_flops": peak, "measured_at": at, "estimate": json.loads(estimate)}
                for mid, device, precision, threads, peak, at, estimate in
                self._con.execute(sql, (machine_id,) if machine_id else ())]

    def peak(self, machine_id: str, device: str, precision: str, threads: int | None) -> dict[str, Any] | None:
        """The stored peak of exactly this (machine, device, precision, threads), or None (threads None: 0)."""
        return next((p for p in self.peaks(machine_id) if p["device"] == device and p["precision"] == precision
                     and p["threads"] == int(threads or 0)), None)

    # --- calibrations ----------------------------------------------------------------------------

    def put_calibration(self, machine_id: str, device: str, backend: str, precision: str, threads: int,
                        rows: Iterable[Mapping[str, Any]]) -> int:
        """Replaces the calibration of (machine, device, backend, precision, threads) by `rows`, each with kind,
        op, signature, features (a dict), seconds and weight (how often the shape occurs in the models sampled).
        Returns the number of rows kept."""
        key = (machine_id, device, backend, precision, int(threads))
        try:
            values = [(*key, str(r["kind"]), str(r["op"]), str(r["signature"]), canonical_json(dict(r["features"])),
                       float(r["seconds"]), float(r.get("weight", 1.0)), float(r.get("measured_at") or time.time()))
                      for r in rows]
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"malformed calibration row for machine {machine_id!r}: {e!r}") from e
        with self._write() as con:
            con.execute(_CALIBRATIONS_TABLE)
            con.execute("DELETE FROM calibrations WHERE machine_id = ? AND device = ? AND backend = ? "
                        "AND precision = ? AND threads = ?", key)
            con.executemany("INSERT OR REPLACE INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    def calibration(self, machine_id: str, device: str, backend: str, precision: str, threads: int
                    ) -> list[dict[str, Any]]:
        """The rows of one calibration ([] if there is none): kind, op, signature, features, seconds, weight,
        measured_at."""
        if not self._has_table("calibrations"):
            return []
        sql = ("SELECT kind, op, signature, features_json, seconds, weight, measured_at FROM calibrations WHERE "
               "machine_id = ? AND device = ? AND backend = ? AND precision = ? AND threads = ? ORDER BY kind, signature")
        return [{"kind": kind, "op": op, "signature": sig, "features": json.loads(features), "seconds": seconds,
                 "weight": weight, "measured_at": at}
                for kind, op, sig, features, seconds, weight, at in
                self._con.execute(sql, (machine_id, device, backend, precision, int(threads)))]

    def calibration_rows(self) -> list[dict[str, Any]]:
        """Every calibration row of the store with its configuration (the `json` export's `calibrations`):
        machine_id, device, backend, precision, threads and the fields `calibration` gives."""
        if not self._has_table("calibrations"):
            return []
        sql = ("SELECT machine_id, device, backend, precision, threads, kind, op, signature, features_json, seconds, "
               "weight, measured_at FROM calibrations ORDER BY machine_id, device, backend, precision, threads, kind, "
               "signature")
        return [{"machine_id": mid, "device": device, "backend": backend, "precision": precision, "threads": threads,
                 "kind": kind, "op": op, "signature": sig, "features": json.loads(features), "seconds": seconds,
                 "weight": weight, "measured_at": at}
                for mid, device, backend, precision, threads, kind, op, sig, features, seconds, weight, at in
                self._con.execute(sql)]

    def calibrations(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        """One summary per stored calibration: machine_id, device, backend, precision, threads, rows, kinds,
        measured_at (the latest row's)."""
        if not self._has_table("calibrations"):
            return []
        sql = ("SELECT machine_id, device, backend, precision, threads, COUNT(*), COUNT(DISTINCT kind), "
               "MAX(measured_at) FROM calibrations" + (" WHERE machine_id = ?" if machine_id else "")
               + " GROUP BY machine_id, device, backend, precision, threads ORDER BY machine_id, device, backend, "
               "precision, threads")
        return [{"machine_id": mid, "device": device, "backend": backend, "precision": precision, "threads": threads,
                 "rows": rows, "kinds": kinds, "measured_at": at}
                for mid, device, backend, precision, threads, rows, kinds, at in
                self._con.execute(sql, (machine_id,) if machine_id else ())]

    # --- results ---------------------------------------------------------------------------------

    def put_result(self, record: ResultRecord) -> None:
        """Stores one cell in its own committed transaction. A re-measured cell replaces the old row unless the
        old one is ok and the new one is not: that failure is kept in the history (`history`) instead."""
        with self._write() as con:
            self._keep(con, self._result_params(record, replace=True))

    @staticmethod
    def _keep(con: sqlite3.Connection, params: Mapping[str, Any]) -> None:
        """Which measurement stays the cell's result: ok beats a failure; then a re-measurement (`replace`)
        beats the old row, and in a merge the more recently finished one wins. A failure that loses, or that
        is replaced, is kept in result_history: nothing measured is ever dropped for a failure."""
        current = con.execute("SELECT status, started_at, finished_at FROM results "
                              "WHERE machine_id = :machine_id AND cell_key = :cell_key", params).fetchone()
        if current is None:
            con.execute(_UPSERT_RESULT, params)
            return
        status, _, finished_at = current
        new_ok, old_ok = params["status"] == "ok", status == "ok"
        if params["replace"]:
            wins = new_ok or not old_ok
        else:
            wins = (new_ok, params["finished_at"]) > (old_ok, finished_at)
        if wins:
            if not old_ok:
                con.execute(_HISTORY_FROM_RESULTS, params)
            con.execute(_UPSERT_RESULT, params)
        elif not new_ok and (params["status"], params["started_at"], params["finished_at"]) != current:
            con.execute(_INSERT_HISTORY, params)

    def _result_params(self, record: ResultRecord, replace: bool) -> dict[str, Any]:
        try:
            values_json = json.dumps(encode(record.values), sort_keys=True)
        except (TypeError, ValueError, AttributeError) as e:  # not a typed value, or not JSON-able
            raise StoreError(f"values of {record.model}/{record.metric} are not JSON-serialisable: {e}") from e
        return {
            "run_id": record.run_id or None, "machine_id": record.machine_id, "model": record.model,
            "metric": record.metric, "cell_key": record.cell_key.digest,
            "config_json": canonical_json(record.config), "status": record.status,
            "values_json": values_json, "error": record.error, "started_at": record.started_at,
            "finished_at": record.finished_at, "replace": int(replace),
        }

    def completed_cells(self, machine_id: str, statuses: Iterable[str] | None = None) -> set[str]:
        """Digests of the cells already stored for this machine (optionally only with these statuses)."""
        sql, params = "SELECT cell_key FROM results WHERE machine_id = ?", [machine_id]
        if statuses is not None:
            statuses = list(statuses)
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            params += statuses
        return {key for (key,) in self._con.execute(sql, params)}

    def results(
        self,
        machine_id: str | None = None,
        metric: str | None = None,
        models: Iterable[str] | None = None,
        run_id: str | None = None,
        salvage: bool = False,
    ) -> list[ResultRecord]:
        """The stored cells. A cell whose text is damaged (not UTF-8) is a StoreError naming it, or with
        `salvage` left out (`damaged_cells` lists them)."""
        clauses, params = [], []
        for column, value in (("machine_id", machine_id), ("metric", metric), ("run_id", run_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if models is not None:
            models = [models] if isinstance(models, str) else list(models)
            clauses.append(f"model IN ({', '.join('?' * len(models))})")
            params += models
        sql = (
            "SELECT model, metric, config_json, status, values_json, error, started_at, finished_at, run_id, "
            "machine_id FROM results" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id"
        )
        try:
            return [
                ResultRecord(model, metric, json.loads(config), status, decode(metric, json.loads(values)), error,
                             start, end, rid or "", mid)
                for model, metric, config, status, values, error, start, end, rid, mid in
                self._readable(self._con.execute(sql, params), salvage)
            ]
        except ValueLayoutError as e:
            raise StoreError(f"cannot read the results of {self.path}: {e}") from e

    def _readable(self, rows: Iterable[tuple], salvage: bool) -> Iterator[tuple]:
        for row in rows:
            if any(isinstance(value, _Damaged) for value in row):
                if salvage:
                    continue
                raise self._damaged_error()
            yield row

    def history(self, machine_id: str | None = None) -> list[ResultRecord]:
        """Failed measurements kept beside the cells' results (oldest first): failures of a re-measurement
        of an ok cell, and failures a later measurement replaced."""
        if not self._has_table("result_history"):  # a store from before the history, opened read-only
            return []
        sql = ("SELECT model, metric, config_json, status, values_json, error, started_at, finished_at, run_id, "
               "machine_id FROM result_history" + (" WHERE machine_id = ?" if machine_id else "")
               + " ORDER BY finished_at, id")
        return [
            ResultRecord(model, metric, json.loads(config), status, json.loads(values), error, start, end,
                         rid or "", mid)
            for model, metric, config, status, values, error, start, end, rid, mid in
            self._readable(self._con.execute(sql, (machine_id,) if machine_id else ()), salvage=True)
        ]

    def damaged_cells(self) -> list[str]:
        """The cells whose stored text is not valid UTF-8 (a damaged byte in the file), one line each."""
        columns = ("model", "metric", "config_json", "status", "values_json", "error", "run_id", "machine_id")
        damaged = []
        for cell_id, *row in self._con.execute(f"SELECT id, {', '.join(columns)} FROM results ORDER BY id"):
            bad = [column for column, value in zip(columns, row) if isinstance(value, _Damaged)]
            if bad:
                model, metric = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in row[:2])
                damaged.append(f"row {cell_id} {model}/{metric} ({', '.join(bad)})")
        return damaged

    def frame(self, **filters: Any) -> pd.DataFrame:
        """One row per result; config and values as `config.<k>` / `value.<k>[.<sub>]` columns."""
        return records_frame(self.results(**filters))

    # --- export, import, merge -------------------------------------------------------------------

    def document(self, salvage: bool = False) -> dict[str, Any]:
        """The whole store as one JSON-able document (the `json` export format). `history` is there only when
        the store has failed measurements beside its results."""
        with self._snapshot():
            doc = {
                "app": APP,
                "schema_version": SCHEMA_VERSION,
                "machines": self.machines(),
                "runs": self.runs(),
                "results": [_record_document(r) for r in self.results(salvage=salvage)],
                "peaks": self.peaks(),
            }
            calibrations = self.calibration_rows()
            if calibrations:  # like `history`: absent where there is none, so older readers see nothing new
                doc["calibrations"] = calibrations
            history = self.history()
            if history:
                doc["history"] = [_record_document(r) for r in history]
            return doc

    def export(self, path: str | Path, fmt: str | None = None, salvage: bool = False) -> list[str]:
        """Writes the store to `path` (whole, or not at all: a temporary file renamed into place). With `salvage`,
        cells with damaged text are left out; returns them (`damaged_cells`)."""
        path = Path(path)
        fmt = fmt or _SUFFIXES.get(path.suffix.lower())
        if fmt not in EXPORT_FORMATS:
            what = f"format {fmt!r}" if fmt else f"the file name {path.name!r}"
            raise StoreError(f"cannot export to {what}; accepted formats: {', '.join(EXPORT_FORMATS)}")
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise StoreError("Parquet export needs pyarrow: pip install pyarrow") from None
        calibrations = None
        if fmt == "json":
            text = json.dumps(self.document(salvage=salvage), indent=1, sort_keys=True) + "\n"
        else:
            table = _tabular(self.frame(salvage=salvage))
            calibrations = self.calibration_frame()
        # a table format holds one table: the calibrations go beside it (calibrations_path), written first so that
        # the results file, once in place, never points at a missing one
        if calibrations is not None and len(calibrations):
            with atomic_file(calibrations_path(path)) as tmp:
                _write_table(_tabular(calibrations), tmp, fmt)
        with atomic_file(path) as tmp:
            if fmt == "json":
                tmp.write_text(text)
            else:
                _write_table(table, tmp, fmt)
        return self.damaged_cells() if salvage else []

    def calibration_frame(self) -> pd.DataFrame:
        """One row per calibration row: the configuration, kind, op, signature, seconds, weight, measured_at and
        the operator's features as `feature.<name>` columns."""
        import pandas as pd

        rows = [{**{k: v for k, v in r.items() if k != "features"}, **_flatten(r["features"], "feature.")}
                for r in self.calibration_rows()]
        return pd.DataFrame(rows)

    def import_json(self, path: str | Path) -> int:
        """Adds a `json` export to this store, as merge_from does; returns the number of rows added."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read dnnbench export {path}: {e}") from e
        return self._absorb(doc, str(path))

    def merge_from(self, other_path: str | Path) -> int:
        """Adds the machines, runs, results, peaks and calibrations of another store; returns the number of rows
        added (a calibration taken counts its rows).

        A cell present in both keeps an ok measurement over a failure, then the more recently finished one;
        the failure that loses is kept in the history. A calibration of the same machine and configuration is
        replaced whole by the newer one.
        """
        if Path(other_path).resolve() == self.path.resolve():
            raise StoreError(f"cannot merge {self.path} into itself")
        with Store(other_path, create=False) as other:
            doc = other.document()
        return self._absorb(doc, str(other_path))

    def _absorb(self, doc: Any, source: str) -> int:
        if not isinstance(doc, dict) or doc.get("app") != APP:
            raise StoreError(f"{source} is not a dnnbench export")
        if not isinstance(doc.get("schema_version"), int) or doc["schema_version"] > SCHEMA_VERSION:
            raise StoreError(f"{source} has store schema {doc.get('schema_version')!r}; "
                             f"this dnnbench reads up to {SCHEMA_VERSION}")
        try:  # parse everything before writing anything
            machines = [(mid, canonical_json(m["fingerprint"]), m["first_seen"], m["last_seen"])
                        for mid, m in doc["machines"].items()]
            runs = [(r["run_id"], r["machine_id"], r["started_at"], r["finished_at"], r["status"],
                     json.dumps(r["argv"]), canonical_json(r["config"]), canonical_json(r["software"]))
                    for r in doc["runs"]]
            results = [self._result_params(ResultRecord(**{k: r[k] for k in _RECORD_FIELDS}), replace=False)
                       for r in doc["results"]]
            history = [self._result_params(ResultRecord(**{k: r[k] for k in _RECORD_FIELDS}), replace=False)
                       for r in doc.get("history") or ()]  # exports from before the history have none
            peaks = [self._peak_params(p["machine_id"], {**p["estimate"], **{k: p[k] for k in (
                "device", "precision", "threads", "peak_flops", "measured_at")}}, replace=False)
                     for p in doc.get("peaks") or ()]  # exports from before peaks have none
            calibrations = _calibration_groups(doc.get("calibrations") or ())  # nor from before calibrations
        except ValueLayoutError as e:
            raise StoreError(f"cannot read {source}: {e}") from e
        except (KeyError, TypeError, ValueError, AttributeError, StoreError) as e:
            raise StoreError(f"{source} is a malformed dnnbench export ({e!r})") from e
        with self._write() as con:
            before = self._row_count(con)
            con.executemany(_MERGE_MACHINE, machines)
            con.executemany(_MERGE_RUN, runs)
            for params in results:
                self._keep(con, params)
            con.executemany(_INSERT_HISTORY, [params for params in history if con.execute(
                "SELECT 1 FROM results WHERE machine_id = :machine_id AND cell_key = :cell_key AND status = :status "
                "AND started_at = :started_at AND finished_at = :finished_at", params).fetchone() is None])
            if peaks:
                con.execute(_PEAKS_TABLE)
                con.executemany(_UPSERT_PEAK, peaks)
            taken = self._absorb_calibrations(con, calibrations)
            return self._row_count(con) - before + taken

    @staticmethod
    def _absorb_calibrations(con: sqlite3.Connection, groups: dict[tuple, list[tuple]]) -> int:
        """Each incoming calibration replaces this store's calibration of the same machine and configuration
        whole when it is newer (its latest row), as `calibrate` does; returns the rows taken."""
        if not groups:
            return 0
        con.execute(_CALIBRATIONS_TABLE)
        taken = 0
        for key, values in groups.items():
            (mine,) = con.execute("SELECT MAX(measured_at) FROM calibrations WHERE machine_id = ? AND device = ? "
                                  "AND backend = ? AND precision = ? AND threads = ?", key).fetchone()
            if mine is not None and mine >= max(v[-1] for v in values):
                continue
            con.execute("DELETE FROM calibrations WHERE machine_id = ? AND device = ? AND backend = ? "
                        "AND precision = ? AND threads = ?", key)
            con.executemany("INSERT OR REPLACE INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            taken += len(values)
        return taken

    @staticmethod
    def _row_count(con: sqlite3.Connection) -> int:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return sum(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                   for table in ("machines", "runs", "results", "peaks") if table in tables)


def calibrations_path(path: str | Path) -> Path:
    """Where a CSV or Parquet export puts the store's calibrations: beside it, `NAME.calibrations.SUFFIX`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.calibrations{path.suffix}")


def _write_table(table: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)


def _calibration_groups(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, list[tuple]]:
    """The `calibrations` of an export as table rows, by (machine, device, backend, precision, threads)."""
    groups: dict[tuple, list[tuple]] = {}
    for r in rows:
        key = (str(r["machine_id"]), str(r["device"]), str(r["backend"]), str(r["precision"]), int(r["threads"]))
        groups.setdefault(key, []).append(
            (*key, str(r["kind"]), str(r["op"]), str(r["signature"]), canonical_json(dict(r["features"])),
             float(r["seconds"]), float(r.get("weight", 1.0)), float(r["measured_at"])))
    return groups


def _record_document(r: ResultRecord) -> dict[str, Any]:
    """One result of the `json` export: the record's fields, its values as the store holds them."""
    return {**{name: getattr(r, name) for name in _RECORD_FIELDS}, "values": encode(r.values),
            "cell_key": r.cell_key.digest}


def _translate_errors(cls: type[Store]) -> type[Store]:
    """Every public method of the store turns an SQLite error into a StoreError worded for the user."""

    def translating(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as e:
                raise self._explain(e) from e
            except (UnicodeDecodeError, json.JSONDecodeError) as e:  # damaged text outside the cells' results
                raise StoreError(f"the results store {self.path} holds damaged text ({e}); recover what SQLite "
                                 f"can read: sqlite3 {self.path} .recover | sqlite3 recovered.sqlite") from e

        return wrapper

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and callable(member):
            setattr(cls, name, translating(member))
    return cls


_translate_errors(Store)


def records_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """One row per result; config and values as `config.<k>` / `value.<k>[.<sub>]` columns."""
    import pandas as pd

    rows = []
    for r in records:
        row = {column: getattr(r, column) for column in FRAME_COLUMNS}
        row.update(_flatten(r.config, "config."))
        # the layout number says how the store reads a values dict; it is no measurement: not a column
        row.update(_flatten({k: v for k, v in encode(r.values).items() if k != "layout"}, "value."))
        rows.append(row)
    extra = {column for row in rows for column in row} - set(FRAME_COLUMNS)
    ordered = sorted(extra, key=lambda c: (not c.startswith("config."), c))
    return pd.DataFrame(rows, columns=[*FRAME_COLUMNS, *ordered])


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update({f"{prefix}{key}.{sub}": v for sub, v in value.items()})
        else:
            out[f"{prefix}{key}"] = value
    return out


def _tabular(df: pd.DataFrame) -> pd.DataFrame:
    """Containers become JSON text, and mixed-type columns text, which CSV and Parquet can hold."""
    import pandas as pd

    df = df.copy()
    for column in [c for c in df.columns if pd.api.types.is_object_dtype(df[c].dtype)]:
        values = df[column].map(lambda v: canonical_json(v) if isinstance(v, (dict, list, tuple)) else v)
        if len({type(v) for v in values if not pd.isna(v)}) > 1:
            values = values.map(lambda v: v if pd.isna(v) else str(v))
        df[column] = values
    return df
