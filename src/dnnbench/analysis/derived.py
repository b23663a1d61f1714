"""Indices derived from the tidy frames: one row per model (accuracy, size, operations), one row per
timed cell (speed, memory, achieved GFLOP/s), and cross-machine ratios."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from ..devices import QUANTIZED_PRECISIONS
from ..errors import UsageError
from .efficiency import add_efficiency
from .frames import KEY_COLUMNS, BenchmarkFrames
from .quantized import quantization_columns

MIB = 2**20
MODEL_COLUMNS = ("model", "name", "family", "params", "param_bytes", "macs", "gmacs", "complexity_input_size",
                 "top1", "top5", "accuracy_source", "accuracy_detail", "measured_top1", "measured_top5",
                 "reported_top1", "reported_top5", "accuracy_density", "complexity_status")


def best_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per model: the measured figure when there is one (on the most images, then the latest), else the
    reported one.

    Both figures are kept in measured_top1/5 and reported_top1/5; accuracy_source says which one top1/top5 hold.
    """
    columns = ["model", "top1", "top5", "accuracy_source", "accuracy_detail", "measured_top1", "measured_top5",
               "reported_top1", "reported_top5"]
    ok = accuracy[(accuracy["status"] == "ok") & accuracy["top1"].notna()]
    if "dtype" in ok:  # a quantized deployment's accuracy is its own (analysis.quantized), not the model's
        ok = ok[~ok["dtype"].isin(QUANTIZED_PRECISIONS)]
    measured = (ok[ok["accuracy_source"] == "measured"].sort_values(["images", "finished_at"], na_position="first")
                .drop_duplicates("model", keep="last").set_index("model"))
    reported = ok[ok["accuracy_source"] == "reported"].drop_duplicates("model").set_index("model")
    rows = []
    for model in dict.fromkeys(accuracy["model"]):
        m = measured.loc[model] if model in measured.index else None
        r = reported.loc[model] if model in reported.index else None
        chosen = m if m is not None else r
        if chosen is None:
            continue
        detail = (f"measured on {m['machine']}" + (f", {m['images']:.0f} images" if m["images"] == m["images"] else "")
                  + (f"; weights {m['weights']}" if m["weights"] else "")
                  + (f"; preprocessing {m['preprocessing']}" if m["preprocessing"] else "")
                  if m is not None else f"reported: {r['source']}")
        rows.append({"model": model, "top1": chosen["top1"], "top5": chosen["top5"],
                     "accuracy_source": "measured" if m is not None else "reported", "accuracy_detail": detail,
                     "measured_top1": m["top1"] if m is not None else np.nan,
                     "measured_top5": m["top5"] if m is not None else np.nan,
                     "reported_top1": r["top1"] if r is not None else np.nan,
                     "reported_top5": r["top5"] if r is not None else np.nan})
    return pd.DataFrame(rows, columns=columns)


def complexity_by_input(complexity: pd.DataFrame) -> pd.DataFrame:
    """One complexity row per (model, input size): counts do not depend on the machine, so any ok one serves."""
    ok = complexity[complexity["status"] == "ok"]
    ok = ok.assign(_standard=ok["mode"] != "standard").sort_values(["_standard", "finished_at"], kind="stable")
    return ok.drop_duplicates(["model", "input_size"]).drop(columns="_standard")


def model_summary(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per model of the store: family, params and MACs per image at the native input size,
    top-1/top-5 (measured preferred), and accuracy density = top-1 (%) / params (millions)."""
    zoo = frames.zoo.set_index("model")
    counts = complexity_by_input(frames.complexity)
    accuracy = best_accuracy(frames.accuracy).set_index("model")
    rows = []
    for model in frames.models:
        native = zoo.at[model, "native_input_size"]
        candidates = counts[counts["model"] == model]
        at_native = candidates[candidates["input_size"] == native] if not pd.isna(native) else candidates.iloc[:0]
        count = (at_native if len(at_native) else candidates).head(1)
        failed = frames.complexity[(frames.complexity["model"] == model) & (frames.complexity["status"] != "ok")]
        status = "ok" if len(count) else (failed["status"].iloc[0] if len(failed) else "not measured")
        row = {"model": model, "name": zoo.at[model, "name"], "family": zoo.at[model, "family"],
               "complexity_status": status}
        for name in ("params", "param_bytes", "macs"):
            row[name] = float(count[name].iloc[0]) if len(count) else np.nan
        row["complexity_input_size"] = count["input_size"].iloc[0] if len(count) else pd.NA
        if model in accuracy.index:
            row.update(accuracy.loc[model].to_dict())
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in MODEL_COLUMNS if c not in ("gmacs", "accuracy_density")])
    frame["accuracy_source"] = frame["accuracy_source"].fillna("none")
    frame["accuracy_detail"] = frame["accuracy_detail"].fillna("")
    frame["gmacs"] = frame["macs"] / 1e9
    frame["accuracy_density"] = frame["top1"] / (frame["params"] / 1e6)
    return frame[list(MODEL_COLUMNS)]


def performance(frames: BenchmarkFrames) -> pd.DataFrame:
    """One row per timed cell (machine, model, config): latency, images/s, memory, and the model's figures.

    gflops_per_s is the arithmetic rate the run achieved: 2 x MACs per image x images/s / 1e9, with MACs
    counted at the cell's input size (NaN where that count is missing). fraction_of_peak divides it by the stored
    peak of the machine's device at the cell's precision and threads; arithmetic_intensity is FLOP per byte of a
    batch (see analysis.efficiency).
    """
    keys = list(KEY_COLUMNS)
    time = frames.time.rename(columns={"status": "time_status", "error": "time_error"}).drop(columns="finished_at")
    memory = frames.memory.rename(columns={"status": "memory_status", "error": "memory_error"}).drop(
        columns="finished_at")
    merged = _decode(pd.merge(_encode(time), _encode(memory), on=keys, how="outer"))
    merged["status"] = [_combined_status(t, m) for t, m in zip(merged["time_status"], merged["memory_status"])]
    merged["error"] = [e1 if isinstance(e1, str) and e1 else (e2 if isinstance(e2, str) else "")
                       for e1, e2 in zip(merged["time_error"], merged["memory_error"])]
    merged["memory_mb"] = merged["memory_bytes"] / MIB
    merged = _with_energy(merged, frames.energy, keys)
    counts = complexity_by_input(frames.complexity)[["model", "input_size", "macs", "activations"]]
    counts = counts.assign(_input=pd.to_numeric(counts["input_size"], errors="coerce")).drop(columns="input_size")
    merged["_input"] = pd.to_numeric(merged["input_size"], errors="coerce")
    merged = merged.merge(counts, on=["model", "_input"], how="left").drop(columns="_input")
    summary = model_summary(frames)[["model", "params", "top1", "top5", "accuracy_source", "accuracy_density"]]
    merged = merged.merge(summary, on="model", how="left")
    merged = quantization_columns(merged, frames.accuracy)  # int8 rows marked, with their own accuracy if measured
    merged["gmacs"] = merged["macs"] / 1e9
    merged["gflops_per_s"] = 2 * merged["macs"] * merged["images_per_s"] / 1e9
    merged = add_efficiency(merged, frames.peaks)
    return merged.sort_values(["machine_id", "setup", "model", "input_size", "batch_size"], kind="stable",
                              ignore_index=True)


ENERGY_VALUES = ("joules_per_image", "images_per_joule", "energy_method", "energy_status", "energy_error")


def _with_energy(merged: pd.DataFrame, energy: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame:
    """The energy cell's figures beside each timed cell of the same config (NaN where none was measured); an
    energy cell alone does not make a row, and its failure does not change the row's status."""
    if energy is None or energy.empty:
        return merged.assign(**{name: np.nan if not name.startswith("energy_") else "" for name in ENERGY_VALUES})
    energy = energy.rename(columns={"status": "energy_status", "error": "energy_error"})[
        [*keys, *ENERGY_VALUES]]
    return _decode(pd.merge(_encode(merged), _encode(energy), on=keys, how="left"))


def _encode(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing thread counts and TF32 flags as -1, so that they match each other in a merge."""
    return frame.assign(threads=frame["threads"].fillna(-1).astype(int),
                        tf32=frame["tf32"].map({True: 1, False: 0}).fillna(-1).astype(int))


def _decode(frame: pd.DataFrame) -> pd.DataFrame:
    threads = frame["threads"].astype("Int64")
    return frame.assign(threads=threads.mask(threads == -1),
                        tf32=frame["tf32"].map({1: True, 0: False, -1: None}).astype(object))


def _combined_status(time_status: object, memory_status: object) -> str:
    statuses = [s for s in (time_status, memory_status) if isinstance(s, str)]
    failed = [s for s in statuses if s != "ok"]
    return failed[0] if failed else ("ok" if statuses else "not measured")


MATCH_COLUMNS = ("model", "device", "dtype", "batch_size", "threads", "backend", "input_size", "tf32")


def machine_ratios(perf: pd.DataFrame, machine_a: str, machine_b: str,
                   ignore: Iterable[str] = ()) -> pd.DataFrame:
    """Per model and matching config: images/s on A over images/s on B (> 1: A is faster) and memory A / B.

    `ignore` names config columns that need not match (e.g. `device` to set a CPU against a GPU).
    """
    ignore = set(ignore)
    unknown = ignore - set(MATCH_COLUMNS[1:])
    if unknown:
        raise UsageError(f"cannot ignore {', '.join(sorted(unknown))}: the config columns that may differ are "
                         + ", ".join(MATCH_COLUMNS[1:]))
    on = [c for c in MATCH_COLUMNS if c not in ignore]
    side_columns = ["setup", "status", "latency_ms", "images_per_s", "memory_mb"]
    a = perf[perf["machine_id"] == machine_a]
    b = perf[perf["machine_id"] == machine_b]
    if machine_a == machine_b:
        raise UsageError("compare needs two different machines")
    merged = pd.merge(_match_keys(a, on)[[*on, "name", "family", *side_columns, "_key"]],
                      _match_keys(b, on)[[*side_columns, "_key"]], on="_key", suffixes=("_a", "_b"))
    merged = merged.drop(columns="_key")
    merged["speed_ratio"] = merged["images_per_s_a"] / merged["images_per_s_b"]
    merged["memory_ratio"] = merged["memory_mb_a"] / merged["memory_mb_b"]
    return merged.sort_values(["batch_size", "speed_ratio"], ascending=[True, False], kind="stable",
                              ignore_index=True)


def _as_text(series: pd.Series) -> pd.Series:
    """Values as text with missing ones spelled `NA`, so that they compare equal across frames."""
    # object dtype even when empty: an empty series keeps its own dtype through map (int64 for a machine with no
    # timed cells, e.g. one only calibrated), and text plus int64 does not add
    return series.map(lambda v: "NA" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
                      ).astype(object)


def _match_keys(frame: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    key = pd.Series("", index=frame.index, dtype=object)
    for column in on:
        key = key + "\x1f" + _as_text(frame[column])
    frame["_key"] = key
    return frame


def config_differences(perf: pd.DataFrame, machine_a: str, machine_b: str) -> dict[str, tuple[list, list]]:
    """Config columns whose values do not overlap between two machines (why nothing matches)."""
    a, b = perf[perf["machine_id"] == machine_a], perf[perf["machine_id"] == machine_b]
    out = {}
    for column in MATCH_COLUMNS:
        va, vb = set(_as_text(a[column])), set(_as_text(b[column]))
        if va and vb and not va & vb:
            out[column] = (sorted(va), sorted(vb))
    return out


def matching_ratios(perf: pd.DataFrame, machine_a: str, machine_b: str, ignore: Iterable[str] = (),
                    batch_size: int | None = None) -> pd.DataFrame:
    """machine_ratios, at one batch size when given; when no config matches, an error naming the config columns
    whose values differ between the machines and the --ignore that would match them."""
    ignore = tuple(ignore)
    ratios = machine_ratios(perf, machine_a, machine_b, ignore=ignore)
    if batch_size is not None:
        ratios = ratios[ratios["batch_size"] == batch_size]
    if ratios.empty:
        differing = {c: v for c, v in config_differences(perf, machine_a, machine_b).items() if c not in ignore}
        hint = "; ".join(f"{col}: {', '.join(va)} on A vs {', '.join(vb)} on B" for col, (va, vb) in differing.items())
        raise UsageError("no model was measured with the same config on both machines"
                         + (f" at batch size {batch_size}" if batch_size is not None else "")
                         + (f" ({hint}); add --ignore {','.join(differing)}" if hint else ""))
    return ratios


def speed_ratio_summary(ratios: pd.DataFrame) -> tuple[int, float, float, float] | None:
    """(cells, geometric mean, min, max) of the positive speed ratios A/B; None when there is none."""
    speed = pd.to_numeric(ratios["speed_ratio"], errors="coerce").dropna()
    speed = speed[speed > 0]
    if not len(speed):
        return None
    return len(speed), float(np.exp(np.log(speed).mean())), float(speed.min()), float(speed.max())
