"""The offline and server scenarios in the analysis: tidy frames of their cells (docs/SCENARIOS.md).

An offline cell holds a whole throughput curve over stream counts x batch sizes, a server cell the latency
percentiles at each offered rate; both belong to one deployment (machine, model, device, precision, threads,
backend), the `setup` of the time cells. This module flattens them into one row per point, picks the best
offline point and the server knee per deployment, and judges a server p99 at a given rate (`select`).

Trust follows the time cells (analysis/best.py): a point is trusted where its cell's output check passed and
it was measured without contention, and an offline point only where its window met the minimum duration and
sample count. Untrusted points stay in the curves, marked, and are counted (`excluded`). A flagged cell or a
point short of its minimums never gives a best figure. A contended one does only where a deployment has nothing
better, marked `contended`: contention only ever lowers a throughput and raises a latency, so such a figure is
a conservative one (`select` lets it pass a limit it meets, and says so where it fails one).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..store import ResultRecord
from ..store.values import OfflineValue, ServerValue
from .frames import BenchmarkFrames, setup_label

SCENARIO_METRICS = ("offline", "server")
# what makes a deployment: the setup of the time cells (device, precision, threads, backend) on one machine
DEPLOYMENT = ["machine_id", "machine", "model", "name", "family", "setup", "device", "dtype", "threads", "backend",
              "input_size", "tf32"]
CELL_COLUMNS = [*DEPLOYMENT, "metric", "cell", "status", "error", "executed_precision", "concurrency", "cores",
                "contended", "output_check_passed", "finished_at"]
OFFLINE_COLUMNS = [*CELL_COLUMNS, "streams", "batch_size", "threads_per_stream", "images_per_s", "samples", "images",
                   "duration_s", "met_minimums", "point_error", "trusted"]
BEST_OFFLINE_COLUMNS = [*DEPLOYMENT, "executed_precision", "concurrency", "best_images_per_s", "best_streams",
                        "best_batch_size", "best_threads_per_stream", "single_stream_images_per_s",
                        "single_stream_source", "gain", "points", "excluded", "trusted", "contended"]
SERVER_COLUMNS = [*CELL_COLUMNS, "streams", "batch_size", "threads_per_stream", "p99_bound_ms", "bound_source",
                  "target_rate", "achieved_rate", "count", "completed", "dropped", "p50_ms", "p90_ms", "p99_ms",
                  "mean_ms", "max_ms", "meets_bound", "trusted"]
KNEE_COLUMNS = [*DEPLOYMENT, "executed_precision", "concurrency", "cell", "streams", "batch_size", "p99_bound_ms",
                "bound_source", "knee_rate", "knee_p99_ms", "knee_achieved_rate", "rates", "trusted", "excluded"]
AT_RATE_COLUMNS = [*DEPLOYMENT, "server_rate", "server_p99_ms", "server_streams", "server_batch_size",
                   "server_dropped", "server_contended", "server_note"]


def _nan(value: Any) -> Any:
    return np.nan if value is None else value


def _label(frames: BenchmarkFrames, machine_id: str) -> str:
    for m in frames.machines:
        if m.machine_id == machine_id:
            return m.label
    return machine_id


def _scenario_records(frames: BenchmarkFrames) -> list[ResultRecord]:
    return [r for r in frames.scenario_records if r.metric in SCENARIO_METRICS]


def _cell_row(frames: BenchmarkFrames, r: ResultRecord) -> dict[str, Any]:
    c = r.config
    zoo = frames.zoo.set_index("model")
    name = zoo.at[r.model, "name"] if r.model in zoo.index else r.model
    family = zoo.at[r.model, "family"] if r.model in zoo.index else ""
    native = zoo.at[r.model, "native_input_size"] if r.model in zoo.index else None
    device, dtype, threads, backend = (c.get("device", "cpu"), c.get("dtype", "fp32"), c.get("threads"),
                                       c.get("backend", "eager"))
    v = r.values if r.status == "ok" and isinstance(r.values, (OfflineValue, ServerValue)) else None
    check = v.output_check if v is not None else None
    return {
        "machine_id": r.machine_id, "machine": _label(frames, r.machine_id), "model": r.model, "name": name,
        "family": family,
        "setup": setup_label(device, dtype, threads, backend, c.get("tf32"), c.get("input_size"), native),
        "device": device, "dtype": dtype, "threads": threads, "backend": backend, "input_size": c.get("input_size"),
        "tf32": c.get("tf32"), "metric": r.metric, "cell": r.cell_key.digest, "status": r.status,
        "error": r.error or "", "executed_precision": (v.executed_precision or dtype) if v is not None else "",
        "concurrency": (v.concurrency or "") if v is not None else "", "cores": _nan(v.cores if v else None),
        "contended": bool(v and v.contention and v.contention.contended),
        # cells without a stored check count as passed, as time cells from before checks do
        "output_check_passed": v is not None and (check is None or check.passed is None or bool(check.passed)),
        "finished_at": r.finished_at,
    }


def scenario_cells(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per offline or server cell, failed and unsupported ones included (status, error)."""
    rows = [_cell_row(frames, r) for r in _scenario_records(frames)]
    return _typed(pd.DataFrame(rows, columns=CELL_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["threads"] = frame["threads"].astype("Int64")
    return frame


def offline_curve(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per point of every ok offline cell: streams, batch size, threads per stream, sustained images/s,
    samples, window duration, and whether the point can be trusted (check passed, no contention, minimums met).
    A point measured again by a later cell of the same deployment replaces the earlier one."""
    rows = []
    for r in _scenario_records(frames):
        if r.metric != "offline" or r.status != "ok" or not isinstance(r.values, OfflineValue):
            continue
        cell = _cell_row(frames, r)
        for p in r.values.points or ():
            measured = p.images_per_s is not None
            rows.append({**cell, "streams": p.streams, "batch_size": p.batch_size,
                         "threads_per_stream": _nan(p.threads_per_stream), "images_per_s": _nan(p.images_per_s),
                         "samples": _nan(p.samples), "images": _nan(p.images), "duration_s": _nan(p.duration_s),
                         "met_minimums": p.met_minimums is not False, "point_error": p.error or "",
                         "trusted": measured and cell["output_check_passed"] and not cell["contended"]
                         and p.met_minimums is not False})
    frame = _typed(pd.DataFrame(rows, columns=OFFLINE_COLUMNS))
    frame = frame.sort_values("finished_at", kind="stable").drop_duplicates(
        [*_keys(), "streams", "batch_size"], keep="last")
    return frame.sort_values([*_keys(), "batch_size", "streams"], kind="stable", ignore_index=True)


def _keys() -> list[str]:
    """Deployment columns that identify it (the others follow from them)."""
    return ["machine_id", "model", "setup", "input_size"]


def _excluded(points: pd.DataFrame) -> str:
    """Why measured points were not candidates: "2 contended, 1 short of the minimums, 3 flagged"."""
    measured = points[points["images_per_s"].notna()] if "images_per_s" in points else points
    counts = [(int((~measured["output_check_passed"]).sum()), "flagged by the output check"),
              (int((measured["output_check_passed"] & measured["contended"]).sum()), "contended")]
    if "met_minimums" in measured:
        counts.append((int((measured["output_check_passed"] & ~measured["contended"]
                            & ~measured["met_minimums"].astype(bool)).sum()), "short of the minimums"))
    return ", ".join(f"{n} {what}" for n, what in counts if n)


def best_offline(frames: BenchmarkFrames, curve: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per deployment with an offline curve: the trusted point of the highest images/s (its streams,
    batch size, threads per stream), the single-stream images/s beside it and the gain. The single-stream
    figure is the time cell at batch size 1 of the same setup (`time cell`), else the curve's (1 stream,
    batch 1) point (`offline 1x1`). Where no point is trusted, the best of the contended points (check passed,
    minimums met) stands in, `trusted` False and `contended` True; where there is none, the best figures are NaN.
    `excluded` counts the points left out and why."""
    curve = offline_curve(frames) if curve is None else curve
    single = _single_stream(frames)
    rows = []
    for _, points in curve.groupby(_keys(), sort=False, dropna=False):
        first = points.iloc[0]
        trusted = points[points["trusted"].astype(bool)]
        pool = trusted if len(trusted) else points[
            points["images_per_s"].notna() & points["output_check_passed"].astype(bool)
            & points["met_minimums"].astype(bool)]
        best = pool.loc[pool["images_per_s"].idxmax()] if len(pool) else None
        key = tuple(first[k] for k in _keys())
        ss, source = single.get(key, (np.nan, ""))
        if (ss is None or pd.isna(ss)) and len(pool):
            one = pool[(pool["streams"] == 1) & (pool["batch_size"] == 1)]
            ss, source = (float(one["images_per_s"].iloc[0]), "offline 1x1") if len(one) else (np.nan, "")
        row = {k: first[k] for k in DEPLOYMENT}
        row.update({"executed_precision": (best if best is not None else first)["executed_precision"],
                    "concurrency": first["concurrency"],
                    "best_images_per_s": best["images_per_s"] if best is not None else np.nan,
                    "best_streams": best["streams"] if best is not None else np.nan,
                    "best_batch_size": best["batch_size"] if best is not None else np.nan,
                    "best_threads_per_stream": best["threads_per_stream"] if best is not None else np.nan,
                    "single_stream_images_per_s": ss, "single_stream_source": source,
                    "gain": best["images_per_s"] / ss if best is not None and ss and not pd.isna(ss) else np.nan,
                    "points": int(points["images_per_s"].notna().sum()), "excluded": _excluded(points),
                    "trusted": best is not None and len(trusted) > 0,
                    "contended": best is not None and not len(trusted)})
        rows.append(row)
    return _typed(pd.DataFrame(rows, columns=BEST_OFFLINE_COLUMNS))


def _single_stream(frames: BenchmarkFrames) -> dict[tuple, tuple[float, str]]:
    """images/s of the ok time cell at batch size 1 per deployment (the latest, `best` rows left out)."""
    time = frames.time
    if time.empty:
        return {}
    ok = time[(time["status"] == "ok") & (time["batch_size"] == 1) & (time["backend"] != "best")
              & time["images_per_s"].notna()].sort_values("finished_at", kind="stable")
    return {tuple(r[k] for k in _keys()): (float(r["images_per_s"]), "time cell") for _, r in ok.iterrows()}


def server_curve(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per offered rate of every ok server cell: p50/p90/p99 from the scheduled arrival (ms), the
    achieved rate, dropped requests, whether the point met the cell's p99 bound, and trust (the cell's check
    passed and no contention)."""
    rows = []
    for r in _scenario_records(frames):
        if r.metric != "server" or r.status != "ok" or not isinstance(r.values, ServerValue):
            continue
        v = r.values
        cell = _cell_row(frames, r)
        shared = {**cell, "streams": _nan(v.streams), "batch_size": _nan(v.batch_size),
                  "threads_per_stream": _nan(v.threads_per_stream), "p99_bound_ms": _ms(v.p99_bound_s),
                  "bound_source": v.bound_source or "",
                  "trusted": cell["output_check_passed"] and not cell["contended"]}
        for p in v.points or ():
            rows.append({**shared, "target_rate": _nan(p.target_rate), "achieved_rate": _nan(p.achieved_rate),
                         "count": _nan(p.count), "completed": _nan(p.completed), "dropped": p.dropped or 0,
                         "p50_ms": _ms(p.p50_s), "p90_ms": _ms(p.p90_s), "p99_ms": _ms(p.p99_s),
                         "mean_ms": _ms(p.mean_s), "max_ms": _ms(p.max_s), "meets_bound": bool(p.meets_bound)})
    frame = _typed(pd.DataFrame(rows, columns=SERVER_COLUMNS))
    return frame.sort_values([*_keys(), "cell", "target_rate"], kind="stable", ignore_index=True)


def _ms(seconds: float | None) -> float:
    return np.nan if seconds is None else seconds * 1e3


def server_knees(frames: BenchmarkFrames, curve: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per server configuration of a deployment (streams, batch size, p99 bound; the latest cell of
    each): the knee, the highest offered rate whose p99 met the bound with nothing dropped (NaN where none
    did), with its p99 and achieved rate. `trusted` False (and `excluded`) for a contended or flagged cell."""
    curve = server_curve(frames) if curve is None else curve
    rows = []
    latest = curve.sort_values("finished_at", kind="stable").drop_duplicates(
        [*_keys(), "streams", "batch_size", "p99_bound_ms"], keep="last")["cell"]
    for cell, points in curve[curve["cell"].isin(set(latest))].groupby("cell", sort=False):
        first = points.iloc[0]
        meeting = points[points["meets_bound"].astype(bool)]
        knee = meeting.loc[meeting["target_rate"].idxmax()] if len(meeting) else None
        reasons = [why for flag, why in ((not first["output_check_passed"], "flagged by the output check"),
                                         (first["contended"], "contended")) if flag]
        row = {k: first[k] for k in DEPLOYMENT}
        row.update({"executed_precision": first["executed_precision"], "concurrency": first["concurrency"],
                    "cell": cell, "streams": first["streams"], "batch_size": first["batch_size"],
                    "p99_bound_ms": first["p99_bound_ms"], "bound_source": first["bound_source"],
                    "knee_rate": knee["target_rate"] if knee is not None else np.nan,
                    "knee_p99_ms": knee["p99_ms"] if knee is not None else np.nan,
                    "knee_achieved_rate": knee["achieved_rate"] if knee is not None else np.nan,
                    "rates": len(points), "trusted": bool(first["trusted"]), "excluded": ", ".join(reasons)})
        rows.append(row)
    frame = _typed(pd.DataFrame(rows, columns=KNEE_COLUMNS))
    return frame.sort_values([*_keys(), "streams"], kind="stable", ignore_index=True)


def server_p99_at_rate(frames: BenchmarkFrames, rate: float, curve: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per deployment with a server cell whose output check passed: the p99 (ms) at offered rate `rate`,
    judged at the smallest measured rate >= `rate` (no interpolation: latency rises with load, so that p99 bounds
    the one at `rate`; an interpolated figure would be one nobody measured). Of several serving configurations
    (stream counts, batch sizes) the one with the lowest such p99, uncontended cells first (`server_contended`:
    only contended cells had one). `server_p99_ms` is NaN, with the reason in `server_note`, where no rate that
    high was measured, or where requests were dropped at it (overloaded: the p99 of the completed ones would
    understate)."""
    if not rate > 0:
        raise ValueError(f"the offered rate must be positive, not {rate}")
    curve = server_curve(frames) if curve is None else curve
    rows = []
    for _, points in curve[curve["output_check_passed"].astype(bool)].groupby(_keys(), sort=False, dropna=False):
        first = points.iloc[0]
        best: dict[str, Any] | None = None
        notes = []
        for _, cell_points in points.groupby("cell", sort=False):
            above = cell_points[cell_points["target_rate"] >= rate]
            c0 = cell_points.iloc[0]
            serving = f"{_int(c0['streams'])} streams, batch {_int(c0['batch_size'])}"
            if above.empty:
                notes.append(f"server scenario measured up to {cell_points['target_rate'].max():.3g} requests/s "
                             f"({serving}), below {rate:g}")
                continue
            p = above.loc[above["target_rate"].idxmin()]
            if p["dropped"]:
                notes.append(f"overloaded at {p['target_rate']:.3g} requests/s ({serving}): {int(p['dropped'])} of "
                             f"{_int(p['count'])} requests dropped")
                continue
            candidate = {"server_rate": p["target_rate"], "server_p99_ms": p["p99_ms"], "server_streams":
                         c0["streams"], "server_batch_size": c0["batch_size"], "server_dropped": 0,
                         "server_contended": bool(c0["contended"])}
            if best is None or (candidate["server_contended"], candidate["server_p99_ms"]) < (
                    best["server_contended"], best["server_p99_ms"]):
                best = candidate
        row = {k: first[k] for k in DEPLOYMENT}
        row.update(best or {"server_rate": np.nan, "server_p99_ms": np.nan, "server_streams": np.nan,
                            "server_batch_size": np.nan, "server_dropped": np.nan, "server_contended": False})
        row["server_note"] = "" if best is not None else "; ".join(notes)
        rows.append(row)
    return _typed(pd.DataFrame(rows, columns=AT_RATE_COLUMNS))


def _int(value: Any) -> str:
    return "?" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def scenario_summary(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per deployment with an offline or server cell: single-stream images/s, the best offline images/s
    with its streams and batch size, the gain, and the server knee rate under its p99 bound (the latest serving
    configuration's; the others are in `server_knees`)."""
    best = best_offline(frames)
    knees = server_knees(frames)
    keys = _keys()
    columns = [*DEPLOYMENT, "single_stream_images_per_s", "single_stream_source", "best_images_per_s",
               "best_streams", "best_batch_size", "gain", "offline_excluded", "knee_rate", "p99_bound_ms",
               "bound_source", "server_streams", "server_batch_size", "server_excluded"]
    rows: dict[tuple, dict[str, Any]] = {}
    for _, r in best.iterrows():
        rows[tuple(r[k] for k in keys)] = {**{k: r[k] for k in DEPLOYMENT}, **{
            k: r[k] for k in ("single_stream_images_per_s", "single_stream_source", "best_images_per_s",
                              "best_streams", "best_batch_size", "gain")}, "offline_excluded": r["excluded"]}
    single = _single_stream(frames)
    for _, k in knees.iterrows():
        key = tuple(k[c] for c in keys)
        row = rows.setdefault(key, {**{c: k[c] for c in DEPLOYMENT}})
        if "single_stream_images_per_s" not in row:
            row["single_stream_images_per_s"], row["single_stream_source"] = single.get(key, (np.nan, ""))
        flagged = "flagged" in k["excluded"]
        row.update({"knee_rate": np.nan if flagged else k["knee_rate"], "p99_bound_ms": k["p99_bound_ms"],
                    "bound_source": k["bound_source"], "server_streams": k["streams"],
                    "server_batch_size": k["batch_size"], "server_excluded": k["excluded"]})
    frame = pd.DataFrame(list(rows.values()), columns=columns)
    return _typed(frame.sort_values(["machine_id", "model", "setup"], kind="stable", ignore_index=True))


def has_scenarios(frames: BenchmarkFrames, machine_ids: Iterable[str] | None = None) -> bool:
    """Whether the frames hold any offline or server cell (of these machines)."""
    wanted = None if machine_ids is None else set(machine_ids)
    return any(wanted is None or r.machine_id in wanted for r in _scenario_records(frames))


FIGURE_COLUMNS = [*DEPLOYMENT, "offline_images_per_s", "offline_streams", "offline_batch_size", "offline_reason",
                  "offline_contended", "server_p99_ms", "server_rate", "server_streams", "server_batch_size",
                  "server_reason", "server_contended"]
OFFLINE_HOW = "dnnbench run --scenario offline"
SERVER_HOW = "dnnbench run --scenario server"


def scenario_figures(frames: BenchmarkFrames, at_rate: float | None = None) -> pd.DataFrame:
    """One row per deployment with any offline or server cell (failed ones too), with what `select` judges: the
    best trusted offline images/s (and its point) and, given `at_rate`, the server p99 there
    (server_p99_at_rate). Where a figure is missing, `offline_reason`/`server_reason` says why (a contended or
    unsupported cell, a rate not reached); the model's accuracy columns come with it, as in `performance`."""
    from .derived import model_summary
    from .quantized import quantization_columns

    cells = scenario_cells(frames)
    if cells.empty:
        return pd.DataFrame(columns=FIGURE_COLUMNS)
    best = best_offline(frames)
    at = server_p99_at_rate(frames, at_rate) if at_rate is not None else None
    keys = _keys()
    rows = []
    for key, group in cells.sort_values("finished_at", kind="stable").groupby(keys, sort=False, dropna=False):
        row = {k: group.iloc[-1][k] for k in DEPLOYMENT}
        row.update(_offline_figures(group[group["metric"] == "offline"], _match(best, keys, key)))
        row.update(_server_figures(group[group["metric"] == "server"], _match(at, keys, key), at_rate))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=FIGURE_COLUMNS)
    summary = model_summary(frames)[["model", "params", "top1", "top5", "accuracy_source"]]
    frame = quantization_columns(frame.merge(summary, on="model", how="left"), frames.accuracy)
    frame["accuracy_source"] = frame["accuracy_source"].fillna("none")
    return _typed(frame)


def _match(frame: pd.DataFrame | None, keys: list[str], key: tuple) -> pd.Series | None:
    if frame is None or frame.empty:
        return None
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(keys, key):
        mask &= frame[column].isna() if _missing(value) else frame[column] == value
    return frame[mask].iloc[0] if mask.any() else None


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _failed_reason(cells: pd.DataFrame, scenario: str) -> str:
    """Why the latest failed cell of a scenario gave no figure: `offline scenario unsupported: reason`."""
    failed = cells[cells["status"] != "ok"]
    if failed.empty:
        return ""
    last = failed.iloc[-1]
    first_line = last["error"].splitlines()[0][:160] if last["error"] else ""
    return f"{scenario} scenario {last['status']}" + (f": {first_line}" if first_line else "")


def _offline_figures(cells: pd.DataFrame, best: pd.Series | None) -> dict[str, Any]:
    figures = {"offline_images_per_s": np.nan, "offline_streams": np.nan, "offline_batch_size": np.nan,
               "offline_contended": False}
    if best is not None and not _missing(best["best_images_per_s"]):
        figures.update(offline_images_per_s=best["best_images_per_s"], offline_streams=best["best_streams"],
                       offline_batch_size=best["best_batch_size"], offline_reason="",
                       offline_contended=bool(best["contended"]))
    elif best is not None:
        figures["offline_reason"] = (f"offline scenario measured, no point to judge ({best['excluded']}): measure "
                                     f"it again (`{OFFLINE_HOW} --force`)")
    else:
        figures["offline_reason"] = (_failed_reason(cells, "offline")
                                     or f"not measured in the offline scenario (`{OFFLINE_HOW}`)")
    return figures


def _server_figures(cells: pd.DataFrame, at: pd.Series | None, rate: float | None) -> dict[str, Any]:
    figures = {"server_p99_ms": np.nan, "server_rate": np.nan, "server_streams": np.nan,
               "server_batch_size": np.nan, "server_reason": "", "server_contended": False}
    if rate is None:
        return figures
    if at is not None and not _missing(at["server_p99_ms"]):
        figures.update(server_p99_ms=at["server_p99_ms"], server_rate=at["server_rate"],
                       server_streams=at["server_streams"], server_batch_size=at["server_batch_size"],
                       server_contended=bool(at["server_contended"]))
    elif at is not None:
        figures["server_reason"] = f"server p99 at {rate:g} requests/s not measured: {at['server_note']}"
    else:
        ok = cells[cells["status"] == "ok"]
        if len(ok) and not ok["output_check_passed"].astype(bool).any():
            figures["server_reason"] = ("server scenario measured, every cell flagged by the output check: its "
                                        "outputs differ from eager fp32")
        else:
            figures["server_reason"] = (_failed_reason(cells, "server")
                                        or f"not measured in the server scenario (`{SERVER_HOW}`)")
    return figures
