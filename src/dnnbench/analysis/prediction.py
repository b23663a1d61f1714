"""How good predictions are against measurement: per machine, configuration and batch size, the share of models
predicted within +-10% and +-15%, the median absolute error and Kendall's tau between the predicted and the
measured order (the figures issue 14 states its targets in). Takes a frame of predicted and measured
milliseconds (`predict.frames.predicted_vs_measured` makes one); analysis does not import `predict`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .derived import MIB, best_accuracy
from .frames import BenchmarkFrames, setup_label
from .zoo_info import zoo_row

BANDS = (0.10, 0.15)  # relative errors the report draws and counts
ACCURACY_COLUMNS = ("machine_id", "device", "dtype", "threads", "backend", "batch_size", "models", "within_10",
                    "within_15", "median_abs_error", "kendall_tau", "contended", "not_predicted")


def kendall_tau(predicted: pd.Series, measured: pd.Series) -> float:
    """Kendall's tau-b between the predicted and the measured order (NaN under two models or with no spread)."""
    if len(predicted) < 2:
        return math.nan
    from scipy.stats import kendalltau

    tau = kendalltau(np.asarray(predicted, float), np.asarray(measured, float)).statistic
    return float(tau) if tau is not None else math.nan


def prediction_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (machine, configuration, batch size) of `rows` (columns of `predict.frames.PREDICTION_COLUMNS`:
    latency_ms predicted, measured_ms, error = predicted / measured - 1): how many models, the share within +-10%
    and +-15%, the median |error|, Kendall's tau, how many measured cells were contended, and how many measured
    models could not be predicted."""
    keys = ["machine_id", "device", "dtype", "threads", "backend", "batch_size"]
    out = []
    for key, group in rows.groupby(keys, sort=True):
        done = group[np.isfinite(group["latency_ms"].astype(float)) & np.isfinite(group["measured_ms"].astype(float))]
        errors = done["error"].astype(float).abs()
        out.append({**dict(zip(keys, key)), "models": len(done),
                    "within_10": float((errors <= BANDS[0]).mean()) if len(done) else math.nan,
                    "within_15": float((errors <= BANDS[1]).mean()) if len(done) else math.nan,
                    "median_abs_error": float(errors.median()) if len(done) else math.nan,
                    "kendall_tau": kendall_tau(done["latency_ms"], done["measured_ms"]),
                    "contended": int(done["contended"].sum()), "not_predicted": len(group) - len(done)})
    return pd.DataFrame(out, columns=list(ACCURACY_COLUMNS))


def predicted_performance(predicted: pd.DataFrame, frames: BenchmarkFrames) -> pd.DataFrame:
    """Predicted cells (`predict.frames.PREDICTION_COLUMNS`) as rows of `performance`'s frame, for `select`: the
    model's name, family and accuracy beside them, memory the analytic estimate, `latency_source` "predicted" and
    the 5-95% interval in latency_low_ms / latency_high_ms. A model that could not be predicted keeps its row with
    status "not predicted" and the reason as its error."""
    accuracy = best_accuracy(frames.accuracy).set_index("model")
    labels = {m.machine_id: m.label for m in frames.machines}
    rows = []
    for r in predicted.itertuples(index=False):
        info = zoo_row(r.model)
        known = r.model in accuracy.index
        reported = not known and not pd.isna(info["reported_top1"])
        ok = bool(np.isfinite(r.latency_ms))
        rows.append({
            "machine_id": r.machine_id, "machine": labels.get(r.machine_id, r.machine_id), "model": r.model,
            "name": info["name"], "family": info["family"],
            "setup": setup_label(r.device, r.dtype, r.threads, r.backend, None, r.input_size,
                                 info["native_input_size"]),
            "device": r.device, "dtype": r.dtype, "batch_size": int(r.batch_size), "threads": r.threads,
            "backend": r.backend, "input_size": r.input_size, "tf32": None,
            "status": "ok" if ok else "not predicted", "error": "" if ok else r.note,
            "latency_ms": r.latency_ms, "latency_low_ms": r.latency_low_ms, "latency_high_ms": r.latency_high_ms,
            "images_per_s": r.images_per_s, "ms_per_image": r.latency_ms / r.batch_size,
            "memory_mb": r.memory_bytes / MIB, "memory_kind": "analytic estimate",
            "top1": accuracy.at[r.model, "top1"] if known else info["reported_top1"] if reported else np.nan,
            "top5": accuracy.at[r.model, "top5"] if known else info["reported_top5"] if reported else np.nan,
            "accuracy_source": accuracy.at[r.model, "accuracy_source"] if known else "reported" if reported else "none",
            "joules_per_image": np.nan, "latency_source": "predicted",
        })
    return pd.DataFrame(rows)


def with_predictions(perf: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """`perf` (labelled `latency_source` "measured") and the predicted rows of `predicted_performance` for the
    cells it lacks: a cell measured in any state (ok or failed) on that machine, setup and batch size keeps its
    measurement."""
    perf = perf.assign(latency_source="measured")
    if predicted.empty:
        return perf
    keys = ["machine_id", "model", "setup", "batch_size"]
    have = set(map(tuple, perf[keys].itertuples(index=False)))
    fresh = predicted[[tuple(k) not in have for k in predicted[keys].itertuples(index=False)]]
    return pd.concat([perf, fresh], ignore_index=True) if len(fresh) else perf
