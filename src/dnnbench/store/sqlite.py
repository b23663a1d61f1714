"""SQLite results store: one file that runner processes append to, one committed cell at a time."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UsageError
from .records import ResultRecord, canonical_json
from .values import ValueLayoutError, decode, encode

SCHEMA_VERSION = 1
APP = "dnnbench"
RUN_STATUSES = ("running", "finished", "interrupted", "failed")
EXPORT_FORMATS = ("csv", "parquet", "json")
BUSY_TIMEOUT_S = 30.0
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
{_PEAKS_TABLE}
"""

# `:replace` is 1 for a re-measurement (it always wins) and 0 for a merge (the newer row wins).
_UPSERT_RESULT = """
INSERT INTO results (run_id, machine_id, model, metric, cell_key, config_json, status, values_json,
                     error, started_at, finished_at)
VALUES (:run_id, :machine_id, :model, :metric, :cell_key, :config_json, :status, :values_json,
        :error, :started_at, :finished_at)
ON CONFLICT (machine_id, cell_key) DO UPDATE SET
    run_id = excluded.run_id, model = excluded.model, metric = excluded.metric,
    config_json = excluded.config_json, status = excluded.status, values_json = excluded.values_json,
    error = excluded.error, started_at = excluded.started_at, finished_at = excluded.finished_at
WHERE :replace OR excluded.finished_at > results.finished_at
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


class Store:
    """A dnnbench results store in one SQLite file; safe for several writer processes at once."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._refuse_foreign_file(create)
        try:
            # autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction
            self._con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open results store {self.path}: {e}") from e
        try:
            self._con.execute("PRAGMA foreign_keys = ON")
            initialised = self._check_schema()
            if not initialised and not create:
                raise StoreError(f"{self.path} is an empty file, not a dnnbench results store")
            self._enable_wal()
            if not initialised:
                with self._write() as con:
                    if not self._check_schema():  # another process may have initialised it meanwhile
                        for statement in _SCHEMA.split(";"):
                            con.execute(statement)
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

    def _refuse_foreign_file(self, create: bool) -> None:
        """Looks at the raw header before SQLite ever touches the file."""
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a dnnbench results store")
        if not self.path.exists():
            if not create:
                raise StoreError(f"no results store at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        with open(self.path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a dnnbench results store (not an SQLite database); left untouched")

    def _enable_wal(self) -> None:
        # Changing the journal mode does not wait on the busy timeout: two processes creating the same
        # store at once make one of them fail with "database is locked" unless it retries.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                    return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    raise StoreError(f"cannot open results store {self.path}: {e}") from e
            if time.monotonic() > deadline:
                raise StoreError(f"cannot switch {self.path} to WAL journal mode; is another process holding it?")
            time.sleep(0.05)

    def _check_schema(self) -> bool:
        """True for a dnnbench store, False for an empty database, StoreError for anything else.

        Only reads, so that a refused file is left byte-identical.
        """
        try:
            objects = {name for (name,) in self._con.execute("SELECT name FROM sqlite_master")}
            meta = dict(self._con.execute("SELECT key, value FROM meta")) if "meta" in objects else {}
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a dnnbench results store ({e}); left untouched") from e
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

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so concurrent writers wait (busy_timeout) instead of
        # failing with "database is locked" when a read lock cannot be upgraded.
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except sqlite3.IntegrityError as e:
            self._con.execute("ROLLBACK")
            raise StoreError(f"inconsistent write to {self.path} ({e}): unknown machine or run?") from e
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        else:
            self._con.execute("COMMIT")

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
        with self._write() as con:
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?, ?, ?)",
                (run_id, machine_id, time.time(), json.dumps(list(argv)), canonical_json(config),
                 canonical_json(software)),
            )
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
        return self._con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'peaks'"
                                 ).fetchone() is not None

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

    # --- results ---------------------------------------------------------------------------------

    def put_result(self, record: ResultRecord) -> None:
        """Stores one cell in its own committed transaction; a re-measured cell replaces the old row."""
        with self._write() as con:
            con.execute(_UPSERT_RESULT, self._result_params(record, replace=True))

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
    ) -> list[ResultRecord]:
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
                self._con.execute(sql, params)
            ]
        except ValueLayoutError as e:
            raise StoreError(f"cannot read the results of {self.path}: {e}") from e

    def frame(self, **filters: Any) -> pd.DataFrame:
        """One row per result; config and values as `config.<k>` / `value.<k>[.<sub>]` columns."""
        return records_frame(self.results(**filters))

    # --- export, import, merge -------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The whole store as one JSON-able document (the `json` export format)."""
        with self._snapshot():
            return {
                "app": APP,
                "schema_version": SCHEMA_VERSION,
                "machines": self.machines(),
                "runs": self.runs(),
                "results": [_record_document(r) for r in self.results()],
                "peaks": self.peaks(),
            }

    def export(self, path: str | Path, fmt: str | None = None) -> None:
        path = Path(path)
        fmt = fmt or _SUFFIXES.get(path.suffix.lower())
        if fmt not in EXPORT_FORMATS:
            what = f"format {fmt!r}" if fmt else f"the file name {path.name!r}"
            raise StoreError(f"cannot export to {what}; accepted formats: {', '.join(EXPORT_FORMATS)}")
        if fmt == "json":
            path.write_text(json.dumps(self.document(), indent=1, sort_keys=True) + "\n")
        elif fmt == "csv":
            _tabular(self.frame()).to_csv(path, index=False)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise StoreError("Parquet export needs pyarrow: pip install pyarrow") from None
            _tabular(self.frame()).to_parquet(path, index=False)

    def import_json(self, path: str | Path) -> int:
        """Adds a `json` export to this store, as merge_from does; returns the number of rows added."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read dnnbench export {path}: {e}") from e
        return self._absorb(doc, str(path))

    def merge_from(self, other_path: str | Path) -> int:
        """Adds the machines, runs, results and peaks of another store; returns the number of rows added.

        A cell present in both keeps the more recently finished measurement.
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
            peaks = [self._peak_params(p["machine_id"], {**p["estimate"], **{k: p[k] for k in (
                "device", "precision", "threads", "peak_flops", "measured_at")}}, replace=False)
                     for p in doc.get("peaks") or ()]  # exports from before peaks have none
        except ValueLayoutError as e:
            raise StoreError(f"cannot read {source}: {e}") from e
        except (KeyError, TypeError, ValueError, AttributeError, StoreError) as e:
            raise StoreError(f"{source} is a malformed dnnbench export ({e!r})") from e
        with self._write() as con:
            before = self._row_count(con)
            con.executemany(_MERGE_MACHINE, machines)
            con.executemany(_MERGE_RUN, runs)
            con.executemany(_UPSERT_RESULT, results)
            if peaks:
                con.execute(_PEAKS_TABLE)
                con.executemany(_UPSERT_PEAK, peaks)
            return self._row_count(con) - before

    @staticmethod
    def _row_count(con: sqlite3.Connection) -> int:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return sum(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                   for table in ("machines", "runs", "results", "peaks") if table in tables)


def _record_document(r: ResultRecord) -> dict[str, Any]:
    """One result of the `json` export: the record's fields, its values as the store holds them."""
    return {**{name: getattr(r, name) for name in _RECORD_FIELDS}, "values": encode(r.values),
            "cell_key": r.cell_key.digest}


def records_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """One row per result; config and values as `config.<k>` / `value.<k>[.<sub>]` columns."""
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
    df = df.copy()
    for column in df.columns[df.dtypes == object]:
        values = df[column].map(lambda v: canonical_json(v) if isinstance(v, (dict, list, tuple)) else v)
        if len({type(v) for v in values if not pd.isna(v)}) > 1:
            values = values.map(lambda v: v if pd.isna(v) else str(v))
        df[column] = values
    return df
