"""The best deployment, chosen with confidence: for each model and workload, the fastest backend x
precision whose outputs passed the check against eager fp32, among cells that can be trusted.

Candidates, and the eager fp32 baseline, come only from cells timed without contention and whose
stopping rule converged; the others are counted per reason (`excluded`: "2 contended, 1 unconverged"),
never chosen (`dnnbench run --remeasure-contended` measures contended cells again). A backend flagged by
the output check is never chosen, however fast.

Where the fastest candidate's interval (analysis.intervals.latency_interval_s) overlaps another
candidate's, the data cannot tell them apart: the row reports a tie and recommends the simplest, most
portable of the tied deployments: fp32 before reduced precision, then eager < eager-channels-last <
torchscript < compile < onnxruntime < openvino < tensorrt (docs/BACKENDS.md argues the order). The
speed-up over eager fp32 carries an interval from the ends of the two latency intervals: eager's low end
over the deployment's high end, to eager's high end over its low end. It covers the true ratio whenever
both intervals cover their medians, needs no stored samples, and widens by itself when the latency
intervals do (e.g. once they include between-trial variance).

`best_deployments` gives one row per (machine, model, device, batch size, threads, input size) with the
recommended deployment, its latency and its speed-up over eager fp32. `with_best_rows` appends the
recommended deployments to the timed frame as rows of backend `best` (precision `any`, and `fp32` for the
best fp32-only deployment), so that every figure and table drawn per setup can be drawn for the best
deployable speed too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .frames import setup_label
from .quantized import quantization_columns

if TYPE_CHECKING:
    from .frames import BenchmarkFrames

WORKLOAD = ["machine_id", "model", "device", "batch_size", "threads", "input_size", "tf32"]
BEST = "best"
ANY_PRECISION = "any"
# Simplest and most portable first (docs/BACKENDS.md, "Best deployment"); unknown names come last.
PRECISION_PREFERENCE = ("fp32", "bf16", "fp16", "int8")
BACKEND_PREFERENCE = ("eager", "eager-channels-last", "torchscript", "compile", "onnxruntime", "openvino", "tensorrt")
COLUMNS = [*WORKLOAD, "name", "family", "backend", "dtype", "executed_precision", "latency_ms", "latency_low_ms",
           "latency_high_ms", "images_per_s", "setup_s", "output_cosine", "tie", "fastest", "tied_with",
           "recommendation", "eager_fp32_latency_ms", "eager_fp32_low_ms", "eager_fp32_high_ms", "speedup_vs_eager",
           "speedup_low", "speedup_high", "candidates", "flagged", "contended", "unconverged", "excluded",
           "quantization", "accuracy_drop"]


def timed_cells(time: pd.DataFrame) -> pd.DataFrame:
    """Cells measured with a latency (any output check result, any conditions), `best` rows left out."""
    if time.empty:
        return time
    return time[(time["status"] == "ok") & time["latency_ms"].notna() & (time["backend"] != BEST)]


def _passed(frame: pd.DataFrame) -> pd.Series:
    if "output_check_passed" not in frame:
        return pd.Series(True, index=frame.index)
    return frame["output_check_passed"].fillna(False).astype(bool)


def _trusted(frame: pd.DataFrame) -> pd.Series:
    """Timed without contention, and the stopping rule converged (unknown: trusted, as stored before)."""
    contended = frame["contended"].fillna(False).astype(bool) if "contended" in frame else False
    converged = frame["converged"].fillna(True).astype(bool) if "converged" in frame else True
    return ~contended & converged


def valid_timings(time: pd.DataFrame) -> pd.DataFrame:
    """Timed cells that may be chosen or serve as baseline: outputs agree with eager fp32, no contention,
    converged."""
    timed = timed_cells(time)
    if timed.empty:
        return timed
    return timed[_passed(timed) & _trusted(timed)]


def preference(backend: str, dtype: str) -> tuple[int, int]:
    """Sort key of a deployment among tied ones: smaller is simpler and more portable."""
    def rank(order: tuple[str, ...], name: str) -> int:
        return order.index(name) if name in order else len(order)
    return rank(PRECISION_PREFERENCE, str(dtype)), rank(BACKEND_PREFERENCE, str(backend))


def _interval(row) -> tuple[float, float]:
    """A row's latency interval, ms; a cell without one is its point estimate (it ties only on equality)."""
    low, high = getattr(row, "latency_low_ms", np.nan), getattr(row, "latency_high_ms", np.nan)
    point = row.latency_ms
    return (point if pd.isna(low) else low), (point if pd.isna(high) else high)


def _label(row) -> str:
    return f"{row.backend} {row.dtype}"


def _choose(candidates: pd.DataFrame) -> tuple[object, dict]:
    """The recommended row's index among `candidates` (one workload's valid cells), and the tie columns."""
    ordered = candidates.sort_values("latency_ms", kind="stable")
    fastest = next(ordered.itertuples())
    _, fastest_high = _interval(fastest)
    tied = [row for row in ordered.itertuples() if _interval(row)[0] <= fastest_high]
    chosen = min(tied, key=lambda row: (preference(row.backend, row.dtype), row.latency_ms))
    others = [_label(row) for row in tied if row.Index != chosen.Index]
    columns = {"tie": bool(others), "fastest": _label(fastest), "tied_with": ", ".join(others),
               "recommendation": _recommendation(chosen, fastest, others)}
    return chosen.Index, columns


def _recommendation(chosen, fastest, others: list[str]) -> str:
    if not others:
        return "fastest; no other deployment within its interval"
    tie = f"tie with {', '.join(others)} (intervals overlap)"
    if chosen.Index == fastest.Index:
        return f"{tie}: {_label(chosen)} has the fastest median and is the simplest of them"
    why = ("fp32: no reduced-precision error" if chosen.dtype == "fp32" and fastest.dtype != "fp32"
           else "simpler and more portable")
    return f"{tie}: {_label(chosen)} recommended over the faster median of {_label(fastest)}, {why}"


def _excluded_text(contended: int, unconverged: int, eager_reason: str) -> str:
    parts = [f"{n} {what}" for n, what in ((contended, "contended"), (unconverged, "unconverged")) if n]
    text = ", ".join(parts)
    if eager_reason:
        text += f"; eager fp32 {eager_reason}"
    return text


def best_deployments(time: pd.DataFrame, precisions: tuple[str, ...] | None = None,
                     accuracy: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per workload, the recommended deployment among the valid cells (of `precisions` only, when given),
    with eager fp32's latency beside it, the speed-up and its interval, ties, and how many deployments
    were timed, flagged by the output check, or excluded as contended or unconverged. A workload whose
    every candidate was excluded keeps a row without a deployment, saying why. A quantized (int8) choice says
    so in `quantization`, with its accuracy drop from the `accuracy` frame where it was measured."""
    timed = timed_cells(time)
    if timed.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = _keys(timed)
    passed, trusted = _passed(timed), _trusted(timed)
    contended = timed["contended"].fillna(False).astype(bool) if "contended" in timed else passed & False
    converged = timed["converged"].fillna(True).astype(bool) if "converged" in timed else passed | True
    in_scope = timed["dtype"].isin(precisions) if precisions is not None else passed | True
    eager = (timed["backend"] == "eager") & (timed["dtype"] == "fp32")
    rows = []
    for index in timed.groupby(keys, sort=False).groups.values():
        group = timed.loc[index]
        pool = passed[index] & (in_scope[index] | eager[index])  # cells whose exclusion matters here
        n_contended = int((pool & contended[index]).sum())
        n_unconverged = int((pool & converged[index].eq(False) & ~contended[index]).sum())
        candidates = group[passed[index] & trusted[index] & in_scope[index]]
        baseline = group[eager[index] & passed[index] & trusted[index]]
        eager_cells = group[eager[index]]
        eager_reason = ("" if not len(eager_cells) or len(baseline) else
                        "contended" if contended[eager_cells.index].any() else
                        "unconverged" if converged[eager_cells.index].eq(False).any() else "flagged")
        if len(candidates):
            chosen, tie_columns = _choose(candidates)
            row = timed.loc[chosen].to_dict()
            row.update(tie_columns)
        else:
            first = group.iloc[0]
            row = {c: first[c] for c in [*WORKLOAD, "name", "family"] if c in group}
            row.update(backend=None, dtype=None, tie=False,
                       recommendation="no deployment to recommend: every candidate was excluded")
        row.update(candidates=len(group), flagged=int((~passed[index]).sum()), contended=n_contended,
                   unconverged=n_unconverged, excluded=_excluded_text(n_contended, n_unconverged, eager_reason))
        if len(baseline):
            base = next(baseline.sort_values("latency_ms").itertuples())
            low, high = _interval(base)
            row.update(eager_fp32_latency_ms=base.latency_ms, eager_fp32_low_ms=low, eager_fp32_high_ms=high)
            if len(candidates):
                chosen_row = next(timed.loc[[chosen]].itertuples())
                own_low, own_high = _interval(chosen_row)
                row.update(speedup_vs_eager=base.latency_ms / chosen_row.latency_ms,
                           speedup_low=low / own_high, speedup_high=high / own_low)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame = quantization_columns(frame, accuracy)
    frame = frame.reindex(columns=[c for c in COLUMNS if c in frame or c not in ("name", "family")])
    return frame.reset_index(drop=True)


def _winners(time: pd.DataFrame, precisions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The recommended valid row of `time` per workload (of `precisions` only, when given), keeping time's index."""
    valid = valid_timings(time)
    if precisions is not None and not valid.empty:
        valid = valid[valid["dtype"].isin(precisions)]
    if valid.empty:
        return valid
    chosen = [_choose(valid.loc[index])[0] for index in valid.groupby(_keys(valid), sort=False).groups.values()]
    return valid.loc[chosen].copy()


def with_best_rows(time: pd.DataFrame) -> pd.DataFrame:
    """`time` plus, where more than one deployment passed its output check for a workload, the recommended
    ones as backend `best`: precision `any` (among all valid deployments) and `fp32` (among fp32 ones).
    Only valid (uncontended, converged) cells are recommended; a workload without one gets no row."""
    timed = timed_cells(time)
    if valid_timings(time).empty:
        return time
    checked = timed[_passed(timed)]
    chosen_among = _keys(checked).value_counts()
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
