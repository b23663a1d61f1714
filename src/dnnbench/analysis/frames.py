"""Tidy frames, one per index (complexity, time, memory, energy, accuracy), read from the results store.

Every measured row is keyed by machine, model and config; failed cells stay in the frames with their
status and error (their values are NaN), so that tables can show them and plots can leave them out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..store import ResultRecord, Store
from ..store.values import MEMORY_KINDS as MEMORY_KINDS  # re-exported by dnnbench.analysis
from ..store.values import AccuracyValue, ComplexityValue, EnergyValue, MemoryValue, TimeValue
from .efficiency import peaks_frame
from .intervals import PooledSpread, latency_interval_s, pooled_spread
from .machines import Machine, build_machines, default_machine, resolve_machine
from .zoo_info import zoo_frame

# What identifies a timed cell besides machine and model; `setup` is all of it except batch and input size.
CONFIG_COLUMNS = ("device", "dtype", "batch_size", "threads", "backend", "input_size", "tf32")
KEY_COLUMNS = ("machine_id", "machine", "model", "name", "family", "setup", *CONFIG_COLUMNS)

COMPLEXITY_VALUES = ("params", "param_bytes", "macs", "flops", "activations")
TIME_COLUMNS = ("latency_ms", "ms_per_image", "images_per_s", "sustained_images_per_s", "ci_half_width_rel",
                "latency_low_ms", "latency_high_ms", "ci_method", "trials", "between_trial_cv", "within_trial_rel",
                "samples", "stop_reason", "contended", "executed_precision", "output_check_passed", "output_cosine",
                "output_rel_error", "setup_s", "converged")
MEMORY_COLUMNS = ("memory_bytes", "memory_kind", "peak_rss_bytes", "max_reserved_bytes", "nvml_process_bytes",
                  "analytic_peak_bytes", "weight_bytes")
ENERGY_COLUMNS = ("joules_per_image", "images_per_joule", "joules_per_batch", "idle_watts", "energy_method")
ACCURACY_COLUMNS = ("machine_id", "machine", "model", "name", "family", "accuracy_source", "top1", "top5", "images",
                    "weights", "preprocessing", "accuracy_config", "source", "status", "error", "finished_at",
                    "backend", "dtype", "evaluation")


@dataclass
class BenchmarkFrames:
    """Everything the analysis needs, read once from a store (or built from records in tests)."""

    machines: list[Machine]
    complexity: pd.DataFrame
    time: pd.DataFrame
    memory: pd.DataFrame
    accuracy: pd.DataFrame  # measured rows and the zoo's reported rows, labelled by accuracy_source
    zoo: pd.DataFrame
    source: str = ""
    peaks: pd.DataFrame = field(default_factory=peaks_frame)  # peak FLOP/s per machine, device, precision, threads
    energy: pd.DataFrame | None = None  # joules per image per timed config (None: built without energy cells)
    # the offline and server cells (docs/SCENARIOS.md), as records: analysis/scenarios.py makes their frames
    scenario_records: tuple[ResultRecord, ...] = ()

    @property
    def is_empty(self) -> bool:
        return (self.complexity.empty and self.time.empty and self.memory.empty and not self.measured_accuracy
                and not self.scenario_records)

    @property
    def measured_accuracy(self) -> bool:
        return bool((self.accuracy["accuracy_source"] == "measured").any()) if len(self.accuracy) else False

    @property
    def models(self) -> list[str]:
        return list(self.zoo["model"])

    def machine(self, selector: str | None = None) -> Machine:
        """By id prefix or label fragment; may be omitted when the store holds one machine."""
        return default_machine(selector, self.machines)

    def machine_by_id(self, machine_id: str) -> Machine:
        return resolve_machine(machine_id, self.machines)

    def require_data(self) -> None:
        if self.is_empty:
            where = f" {self.source}" if self.source else ""
            raise UsageError(f"the results store{where} holds no results; measure with `dnnbench run` first")


def load_frames(store: Store | str | Path) -> BenchmarkFrames:
    """Read a store (an open Store or a path; a missing path is an error, never a new empty store)."""
    if isinstance(store, Store):
        return _from_store(store)
    with Store(store, create=False) as opened:
        return _from_store(opened)


def _from_store(store: Store) -> BenchmarkFrames:
    machines = store.machines()
    software: dict[str, dict[str, Any]] = {}
    for run in store.runs():  # ordered by start: the last run of a machine wins
        software[run["machine_id"]] = {**run["software"], "run_started_at": run["started_at"]}
    fingerprints = {mid: m["fingerprint"] for mid, m in machines.items()}
    return frames_from_records(store.results(), fingerprints, software, source=str(store.path), peaks=store.peaks())


def frames_from_records(records: Iterable[ResultRecord], fingerprints: Mapping[str, Mapping[str, Any]] | None = None,
                        software: Mapping[str, Mapping[str, Any]] | None = None, source: str = "",
                        peaks: Iterable[Mapping[str, Any]] = ()) -> BenchmarkFrames:
    """The frames of `records`; `fingerprints` and `software` (of each machine's latest run) by machine_id;
    `peaks` as Store.peaks() returns them."""
    records = list(records)
    fingerprints = dict(fingerprints or {})
    for r in records:  # a record of an unregistered machine still gets a (bare) machine
        fingerprints.setdefault(r.machine_id, {})
    machines = build_machines(fingerprints, software)
    labels = {m.machine_id: m.label for m in machines}
    zoo = zoo_frame(r.model for r in records)
    info = zoo.set_index("model")
    rows: dict[str, list[dict[str, Any]]] = {"complexity": [], "time": [], "memory": [], "energy": [], "accuracy": []}
    pools = _pooled_spreads(records)
    for r in records:
        if r.metric == "time":
            rows["time"].append(_time_row(r, pools.get((r.machine_id, r.config.get("device")))))
        elif r.metric in rows:
            rows[r.metric].append(_ROW_BUILDERS[r.metric](r))
    complexity = _finish(rows["complexity"], ("machine_id", "model", "input_size", "dtype", "mode", "status", "error",
                                              *COMPLEXITY_VALUES), labels, info)
    time = _finish_keyed(rows["time"], TIME_COLUMNS, labels, info)
    memory = _finish_keyed(rows["memory"], MEMORY_COLUMNS, labels, info)
    energy = _finish_keyed(rows["energy"], ENERGY_COLUMNS, labels, info)
    accuracy = _accuracy_frame(rows["accuracy"], zoo, labels)
    scenarios = tuple(r for r in records if r.metric in ("offline", "server"))
    return BenchmarkFrames(machines, complexity, time, memory, accuracy, zoo, source, peaks_frame(peaks), energy,
                           scenarios)


# --- one record -> one row ------------------------------------------------------------------------


def _base(r: ResultRecord) -> dict[str, Any]:
    return {"machine_id": r.machine_id, "model": r.model, "status": r.status, "error": r.error or "",
            "finished_at": r.finished_at}


def _config(r: ResultRecord) -> dict[str, Any]:
    c = r.config
    return {"device": c.get("device", "cpu"), "dtype": c.get("dtype", "fp32"), "batch_size": c.get("batch_size", 1),
            "threads": c.get("threads"), "backend": c.get("backend", "eager"), "input_size": c.get("input_size"),
            "tf32": c.get("tf32")}


def _value(r: ResultRecord, value_type: type) -> Any:
    """The record's typed value when the cell succeeded, else None (its row keeps status and error)."""
    return r.values if r.status == "ok" and isinstance(r.values, value_type) else None


def _nan(value: Any) -> Any:
    return np.nan if value is None else value


def _complexity_row(r: ResultRecord) -> dict[str, Any]:
    v: ComplexityValue | None = _value(r, ComplexityValue)
    row = {**_base(r), "input_size": r.config.get("input_size", v.input_size if v else None),
           "dtype": r.config.get("dtype", "fp32"), "mode": r.config.get("mode", "standard")}
    # the cell counts one image; per_image divides anyway, so that a batched count still gives per-image figures
    for name in COMPLEXITY_VALUES:
        row[name] = _nan(v.per_image(name, r.config.get("batch_size")) if v else None)
    return row


def _pooled_spreads(records: list[ResultRecord]) -> dict[tuple[str, Any], PooledSpread]:
    """The between-process spread of each machine and device, pooled over its cells with several trials."""
    by_machine: dict[tuple[str, Any], list[TimeValue]] = {}
    for r in records:
        if r.metric == "time" and r.status == "ok" and isinstance(r.values, TimeValue):
            by_machine.setdefault((r.machine_id, r.config.get("device")), []).append(r.values)
    pools = {key: pooled_spread(values) for key, values in by_machine.items()}
    return {key: pool for key, pool in pools.items() if pool is not None}


def _time_row(r: ResultRecord, pooled: PooledSpread | None = None) -> dict[str, Any]:
    row = {**_base(r), **_config(r)}
    v: TimeValue | None = _value(r, TimeValue)
    median_s = v.latency_s if v else None
    batch = row["batch_size"] or 1
    row["latency_ms"] = median_s * 1e3 if median_s is not None else np.nan
    row["ms_per_image"] = v.ms_per_image if v and v.ms_per_image is not None else row["latency_ms"] / batch
    row["images_per_s"] = (v.images_per_s if v and v.images_per_s is not None
                           else batch / median_s if median_s else np.nan)
    row["sustained_images_per_s"] = _nan(v.sustained_images_per_s if v else None)
    # the headline interval (over trials; else pooled over the machine's multi-trial cells; else within the one
    # trial); "range (n = k)" is no confidence interval
    low, high, method = latency_interval_s(v, pooled)
    row["ci_half_width_rel"] = ((high - low) / 2 / median_s if low is not None and high is not None and median_s
                                else np.nan)
    row["latency_low_ms"] = low * 1e3 if low is not None else np.nan
    row["latency_high_ms"] = high * 1e3 if high is not None else np.nan
    row["ci_method"] = method or ""
    row["trials"] = v.trial_count if v else 0
    row["between_trial_cv"] = _nan(v.between_trial_cv if v else None)  # sd of trial medians / their mean
    row["within_trial_rel"] = _nan(v.within_trial_rel if v else None)  # one process's relative half-width
    row["samples"] = _nan(v.sample_count if v else None)
    row["stop_reason"] = (v.stop_reason if v else None) or ""
    row["contended"] = bool(v and v.contended)
    # deployment backends (cells before them: eager, checked by construction)
    check = v.output_check if v else None
    row["executed_precision"] = v.precision_executed(row["dtype"]) if v else ""
    row["output_check_passed"] = v.check_passed if v else False
    row["output_cosine"] = _nan(check.cosine_similarity if check else None)
    row["output_rel_error"] = _nan(check.relative_max_error if check else None)
    row["setup_s"] = _nan(v.setup_s if v else None)
    # cells from stores before `converged` was recorded (layout 0) are not judged on it: an old store
    # reads as it did; their stop reason stays in `stop_reason`
    row["converged"] = bool(v.converged) if v and v.converged is not None else True
    return row


def _memory_row(r: ResultRecord) -> dict[str, Any]:
    row = {**_base(r), **_config(r)}
    v: MemoryValue | None = _value(r, MemoryValue)
    measured, row["memory_kind"] = v.headline() if v else (None, "")
    row["memory_bytes"] = _nan(measured)
    for name in ("peak_rss_bytes", "max_reserved_bytes", "nvml_process_bytes", "weight_bytes"):
        row[name] = _nan(getattr(v, name) if v else None)
    row["analytic_peak_bytes"] = _nan(v.analytic.total_peak_bytes if v and v.analytic else None)
    return row


def _energy_row(r: ResultRecord) -> dict[str, Any]:
    row = {**_base(r), **_config(r)}
    v: EnergyValue | None = _value(r, EnergyValue)
    for name in ("joules_per_image", "images_per_joule", "joules_per_batch", "idle_watts"):
        row[name] = _nan(getattr(v, name) if v else None)
    row["energy_method"] = (v.method if v else None) or ""
    return row


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _accuracy_row(r: ResultRecord) -> dict[str, Any]:
    v: AccuracyValue | None = _value(r, AccuracyValue)
    rest = {k: val for k, val in r.config.items() if k not in ("weights", "preprocessing")}
    return {**_base(r), "accuracy_source": "measured",
            "top1": np.nan if v is None or v.top1 is None else float(v.top1),
            "top5": np.nan if v is None or v.top5 is None else float(v.top5),
            "images": np.nan if v is None or v.n is None else float(v.n),  # validation images evaluated
            "weights": _text(r.config.get("weights")), "preprocessing": _text(r.config.get("preprocessing")),
            "accuracy_config": ", ".join(f"{k}={_text(val)}" for k, val in sorted(rest.items())),
            "source": "measured by dnnbench",
            # the deployment evaluated (eager before backends could be), and the images it was evaluated on
            "backend": r.config.get("backend", "eager"), "dtype": r.config.get("dtype"),
            "evaluation": _text({k: r.config.get(k) for k in ("dataset", "limit")})}


_ROW_BUILDERS = {"complexity": _complexity_row, "memory": _memory_row, "energy": _energy_row, "accuracy": _accuracy_row}


# --- rows -> frames -------------------------------------------------------------------------------


def _add_model_columns(frame: pd.DataFrame, labels: Mapping[str, str], info: pd.DataFrame) -> pd.DataFrame:
    frame.insert(1, "machine", frame["machine_id"].map(labels))
    frame.insert(3, "name", frame["model"].map(info["name"]))
    frame.insert(4, "family", frame["model"].map(info["family"]))
    return frame


def _finish(rows: list[dict[str, Any]], columns: tuple[str, ...], labels: Mapping[str, str],
            info: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*columns, "finished_at"])))
    return _add_model_columns(frame, labels, info)


def setup_label(device: str, dtype: str, threads: Any, backend: str, tf32: Any = None, input_size: Any = None,
                native_input_size: Any = None) -> str:
    """The config of a timed cell except its batch size, in words: `cpu fp32 1 thread eager`."""
    n = None if threads is None or pd.isna(threads) else int(threads)
    parts = [str(device), str(dtype), "default threads" if n is None else f"{n} thread{'s' if n != 1 else ''}",
             str(backend)]
    if tf32 is True:
        parts.append("TF32")
    if not _missing(input_size) and not _missing(native_input_size) and int(input_size) != int(native_input_size):
        parts.append(f"{int(input_size)}px input")
    return " ".join(parts)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _finish_keyed(rows: list[dict[str, Any]], values: tuple[str, ...], labels: Mapping[str, str],
                  info: pd.DataFrame) -> pd.DataFrame:
    columns = ["machine_id", "model", *CONFIG_COLUMNS, "status", "error", *values, "finished_at"]
    frame = pd.DataFrame(rows, columns=columns)
    frame = _add_model_columns(frame, labels, info)
    native = frame["model"].map(info["native_input_size"])
    frame.insert(5, "setup", [setup_label(*args) for args in zip(
        frame["device"], frame["dtype"], frame["threads"], frame["backend"], frame["tf32"], frame["input_size"],
        native)])
    frame["threads"] = frame["threads"].astype("Int64")
    frame["batch_size"] = frame["batch_size"].astype(int)
    for name in values:
        if name not in ("stop_reason", "memory_kind", "contended", "executed_precision", "output_check_passed",
                        "ci_method", "converged", "energy_method"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame.sort_values(["machine_id", "model", "setup", "input_size", "batch_size"], kind="stable",
                             ignore_index=True)


def _accuracy_frame(measured_rows: list[dict[str, Any]], zoo: pd.DataFrame,
                    labels: Mapping[str, str]) -> pd.DataFrame:
    measured = pd.DataFrame(measured_rows, columns=[c for c in ACCURACY_COLUMNS if c not in ("machine", "name",
                                                                                             "family")])
    reported = zoo[zoo["reported_top1"].notna()]
    reported = pd.DataFrame({
        "machine_id": "", "model": reported["model"], "accuracy_source": "reported",
        "top1": reported["reported_top1"], "top5": reported["reported_top5"], "images": np.nan, "weights": "",
        "preprocessing": "",
        "accuracy_config": "", "source": reported["reported_source"], "status": "ok", "error": "",
        "finished_at": np.nan, "backend": "", "dtype": "", "evaluation": "",
    })
    frame = pd.concat([f for f in (measured, reported) if len(f)] or [measured], ignore_index=True)
    frame = _add_model_columns(frame, {**labels, "": ""}, zoo.set_index("model"))
    for name in ("top1", "top5", "images", "finished_at"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame
