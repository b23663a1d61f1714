"""The best deployment: for each model and workload, the fastest backend x precision whose outputs passed
the check against eager fp32. A backend flagged by the output check is never chosen, however fast.

`best_deployments` gives one row per (machine, model, device, batch size, threads, input size) with the
winner, its latency and its speed-up over eager fp32. `with_best_rows` appends the winners to the timed
frame as rows of backend `best` (precision `any`, and `fp32` for the best fp32-only deployment), so
that every figure and table drawn per setup can be drawn for the best deployable speed too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .frames import setup_label

if TYPE_CHECKING:
    from .frames import BenchmarkFrames

WORKLOAD = ["machine_id", "model", "device", "batch_size", "threads", "input_size", "tf32"]
BEST = "best"
ANY_PRECISION = "any"


def valid_timings(time: pd.DataFrame) -> pd.DataFrame:
    """Timed cells that count: measured, with a latency, and outputs that agree with eager fp32."""
    if time.empty:
        return time
    passed = time["output_check_passed"].fillna(False).astype(bool) if "output_check_passed" in time else True
    return time[(time["status"] == "ok") & time["latency_ms"].notna() & passed & (time["backend"] != BEST)]


def best_deployments(time: pd.DataFrame, precisions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The winner per workload among the valid cells (of `precisions` only, when given), with eager fp32's
    latency beside it, the speed-up, how many deployments were timed and how many the check flagged."""
    columns = [*WORKLOAD, "name", "family", "backend", "dtype", "executed_precision", "latency_ms", "images_per_s",
               "setup_s", "output_cosine", "eager_fp32_latency_ms", "speedup_vs_eager", "candidates", "flagged"]
    winners = _winners(time, precisions)
    if winners.empty:
        return pd.DataFrame(columns=columns)
    valid = valid_timings(time)
    keys = _keys(time)
    winner_keys = keys.loc[winners.index]
    eager = valid[(valid["backend"] == "eager") & (valid["dtype"] == "fp32")]
    eager_latency = pd.Series(eager["latency_ms"].to_numpy(), index=keys.loc[eager.index].to_numpy())
    timed = time[(time["status"] == "ok") & (time["backend"] != BEST)]
    passed = timed["output_check_passed"].fillna(False).astype(bool) if "output_check_passed" in timed else None
    flagged = timed[~passed] if passed is not None else timed.iloc[:0]
    winners["eager_fp32_latency_ms"] = winner_keys.map(eager_latency).to_numpy()
    winners["speedup_vs_eager"] = winners["eager_fp32_latency_ms"] / winners["latency_ms"]
    winners["candidates"] = winner_keys.map(keys.loc[timed.index].value_counts()).fillna(0).astype(int).to_numpy()
    winners["flagged"] = winner_keys.map(keys.loc[flagged.index].value_counts()).fillna(0).astype(int).to_numpy()
    return winners[[c for c in columns if c in winners]].reset_index(drop=True)


def _winners(time: pd.DataFrame, precisions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The fastest valid row of `time` per workload (of `precisions` only, when given), keeping time's index."""
    valid = valid_timings(time)
    if precisions is not None and not valid.empty:
        valid = valid[valid["dtype"].isin(precisions)]
    if valid.empty:
        return valid
    return valid.loc[valid.groupby(_keys(valid))["latency_ms"].idxmin()].copy()


def with_best_rows(time: pd.DataFrame) -> pd.DataFrame:
    """`time` plus, where more than one deployment was timed for a workload, its winners as backend `best`:
    precision `any` (the fastest valid deployment) and `fp32` (the fastest valid fp32 one)."""
    valid = valid_timings(time)
    if valid.empty:
        return time
    chosen_among = _keys(valid).value_counts()
    several = set(chosen_among[chosen_among > 1].index)
    if not several:
        return time
    rows = []
    for label, precisions in ((ANY_PRECISION, None), ("fp32", ("fp32",))):
        winners = _winners(time, precisions)
        picked = winners[_keys(winners).isin(several)] if not winners.empty else winners
        if picked.empty:
            continue
        picked["winner_backend"], picked["winner_dtype"] = picked["backend"], picked["dtype"]
        picked["backend"], picked["dtype"] = BEST, label
        rows.append(picked)
    if not rows:
        return time
    best = pd.concat(rows, ignore_index=True)
    best["setup"] = [setup_label(d, p, t, b, f, None, None) for d, p, t, b, f in zip(
        best["device"], best["dtype"], best["threads"], best["backend"], best["tf32"])]
    return pd.concat([time, best], ignore_index=True)


def _keys(frame: pd.DataFrame) -> pd.Series:
    """One string per workload (NaN-safe: threads and tf32 may be missing)."""
    return pd.Series(["|".join(map(str, row)) for row in frame[WORKLOAD].itertuples(index=False)], index=frame.index,
                     dtype=object)


def add_best(frames: BenchmarkFrames) -> BenchmarkFrames:
    """`frames` with backend-`best` rows in its time frame (with_best_rows) and the winners' memory rows beside
    them, relabelled the same way: the report's figures then have a `best` setup next to eager."""
    from dataclasses import replace

    time = with_best_rows(frames.time)
    added = time[time["backend"] == BEST]
    if added.empty:
        return frames
    config = ["machine_id", "model", "device", "batch_size", "threads", "input_size", "tf32", "backend", "dtype"]
    memory_rows = []
    for row in added.itertuples(index=False):
        match = frames.memory
        for column, value in zip(config, (row.machine_id, row.model, row.device, row.batch_size, row.threads,
                                          row.input_size, row.tf32, row.winner_backend, row.winner_dtype)):
            match = match[match[column].isna()] if _is_missing(value) else match[match[column] == value]
        if len(match):
            picked = match.iloc[[0]].copy()
            picked["backend"], picked["dtype"], picked["setup"] = BEST, row.dtype, row.setup
            memory_rows.append(picked)
    memory = pd.concat([frames.memory, *memory_rows], ignore_index=True) if memory_rows else frames.memory
    return replace(frames, time=time, memory=memory)


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)
