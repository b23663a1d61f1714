"""Quantized deployments in the analysis: which timed cells are quantized, and what is known of their accuracy.

An int8 deployment computes something other than the fp32 model: its speed means little without its accuracy.
Each quantized cell is marked, with the top-1 drop from eager fp32 where both were measured on the same images,
weights and preprocessing (`dnnbench accuracy --backend B --dtype int8` beside `dnnbench accuracy`), and
"accuracy not measured" where they were not (docs/BACKENDS.md, "Quantized int8").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..devices import QUANTIZED_PRECISIONS

NOT_MEASURED = "accuracy not measured"
DEPLOYMENT_ACCURACY_COLUMNS = ["model", "backend", "dtype", "top1", "top5", "images", "fp32_top1", "accuracy_drop"]
_SAME_EVALUATION = ["model", "weights", "preprocessing", "evaluation"]


def is_quantized(dtype: object) -> bool:
    return str(dtype) in QUANTIZED_PRECISIONS


def deployment_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per model x backend x quantized precision with a measured accuracy (the evaluation on the most
    images, then the latest): its top-1, and eager fp32's on the same evaluation with the drop in points
    (fp32 - quantized; NaN where eager fp32 was not measured on it)."""
    needed = {"backend", "dtype", "evaluation", "accuracy_source"}
    if accuracy is None or accuracy.empty or not needed <= set(accuracy.columns):
        return pd.DataFrame(columns=DEPLOYMENT_ACCURACY_COLUMNS)
    ok = accuracy[(accuracy["status"] == "ok") & accuracy["top1"].notna()
                  & (accuracy["accuracy_source"] == "measured")]
    quantized = ok[ok["dtype"].isin(QUANTIZED_PRECISIONS)]
    eager = ok[(ok["backend"] == "eager") & (ok["dtype"] == "fp32")].sort_values("finished_at", na_position="first")
    quantized = (quantized.sort_values(["images", "finished_at"], na_position="first")
                 .drop_duplicates(["model", "backend", "dtype"], keep="last"))
    rows = []
    for r in quantized.itertuples(index=False):
        same = eager
        for column in _SAME_EVALUATION:
            same = same[same[column] == getattr(r, column)]
        fp32 = float(same["top1"].iloc[-1]) if len(same) else np.nan
        rows.append({"model": r.model, "backend": r.backend, "dtype": r.dtype, "top1": r.top1, "top5": r.top5,
                     "images": r.images, "fp32_top1": fp32, "accuracy_drop": fp32 - r.top1})
    return pd.DataFrame(rows, columns=DEPLOYMENT_ACCURACY_COLUMNS)


def quantization_columns(frame: pd.DataFrame, accuracy: pd.DataFrame | None) -> pd.DataFrame:
    """`frame` (rows with model, backend, dtype) with `quantized`, `quantized_top1`, `accuracy_drop` and
    `quantization` (the note shown in tables: "" for unquantized rows)."""
    frame = frame.copy()
    measured = deployment_accuracy(accuracy if accuracy is not None else pd.DataFrame())
    found = {(r.model, r.backend, r.dtype): r for r in measured.itertuples(index=False)}
    notes, tops, drops = [], [], []
    for model, backend, dtype in zip(frame["model"], frame["backend"], frame["dtype"]):
        row = found.get((model, backend, dtype))
        tops.append(row.top1 if row is not None else np.nan)
        drops.append(row.accuracy_drop if row is not None else np.nan)
        notes.append(quantization_note(dtype, row))
    frame["quantized"] = [is_quantized(d) for d in frame["dtype"]]
    frame["quantized_top1"], frame["accuracy_drop"], frame["quantization"] = tops, drops, notes
    return frame


def quantization_note(dtype: object, measured: object | None) -> str:
    """"" (not quantized), "int8 quantized: accuracy not measured", or the measured top-1 and its drop."""
    if not is_quantized(dtype):
        return ""
    if measured is None:
        return f"{dtype} quantized: {NOT_MEASURED}"
    top1, drop = float(measured.top1), float(measured.accuracy_drop)
    if np.isnan(drop):
        return f"{dtype} quantized: top-1 {top1:.2f}% (eager fp32 not measured on the same images)"
    return f"{dtype} quantized: top-1 {top1:.2f}%, {drop:.2f} points below eager fp32 ({measured.fp32_top1:.2f}%)"
