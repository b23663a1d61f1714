"""Achieved rate against the device's peak: fraction of peak and arithmetic intensity of every timed cell.

* **precision** of a cell: the precision its backend reports it executed (`executed_precision`), else its
  dtype; fp32 on a CUDA device with TF32 on counts as `tf32` (matched with the tf32 peak, whichever way the
  fp32 was reported).
* **fraction_of_peak** = achieved GFLOP/s (2 x MACs per image x images/s) / the stored peak of the same machine,
  device, precision and thread count (`dnnbench peak`, `dnnbench.env.peak`). A CPU cell run with PyTorch's
  default threads is matched with the peak of the most threads stored; other devices ignore threads.
* **arithmetic_intensity** (FLOP per byte of one batch) = 2 x MACs x batch / bytes, with bytes a compulsory-traffic
  model: the weights read once per batch, the input read once, and every convolution/linear output (the
  complexity count's `activations`) written once and read once, at the cell's precision. Caches make the real
  DRAM traffic lower (a layer's output read back from cache) and element-wise layers (normalisation,
  activations run apart) make it higher; the figure places a model on the roofline, it is not a measurement.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..devices import PRECISION_BYTES, canonical_precision, normalise_device
from ..store.values import PeakValue

PEAK_COLUMNS = ("machine_id", "device", "precision", "threads", "peak_flops", "theoretical_flops", "measured_flops",
                "bandwidth_bytes_per_s", "basis", "basis_detail", "contended", "measured_at")
EFFICIENCY_COLUMNS = ("precision", "arithmetic_intensity", "peak_gflops_per_s", "fraction_of_peak", "peak_basis",
                      "bandwidth_gb_per_s")


def peaks_frame(peaks: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """One row per stored peak (Store.peaks() rows; `estimate` a PeakValue or its dict)."""
    rows = []
    for p in peaks:
        estimate = p.get("estimate") or {}
        estimate = estimate if isinstance(estimate, PeakValue) else PeakValue.from_dict(estimate)
        rows.append({"machine_id": p["machine_id"], "device": normalise_device(p["device"]),
                     "precision": canonical_precision(p["precision"]), "threads": int(p.get("threads") or 0),
                     "peak_flops": _float(p.get("peak_flops")),
                     "theoretical_flops": _float(estimate.theoretical_flops),
                     "measured_flops": _float(estimate.measured_flops),
                     "bandwidth_bytes_per_s": _float(estimate.bandwidth_bytes_per_s),
                     "basis": estimate.basis or "", "basis_detail": estimate.basis_detail or "",
                     "contended": estimate.contended,
                     "measured_at": _float(p.get("measured_at"))})
    return pd.DataFrame(rows, columns=list(PEAK_COLUMNS))


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def cell_precision(dtype: Any, device: Any = "cpu", tf32: Any = None, executed: Any = None) -> str:
    """The precision a cell computed in: its executed precision when known, else its dtype; fp32 with TF32 on a
    CUDA device is tf32 (backends report fp32 as executed: TF32 is a mode of fp32 math, not a storage type)."""
    if isinstance(executed, str) and executed.strip():
        precision = canonical_precision(executed)
    else:
        precision = canonical_precision(dtype if not _missing(dtype) else "fp32")
    if precision == "fp32" and tf32 is True and str(device).startswith("cuda"):
        return "tf32"
    return precision


def batch_bytes(params: float, activations: float, input_size: float, batch: float, precision: str) -> float:
    """Bytes one batch moves in the compulsory-traffic model: weights once, input once, every conv/linear output
    written and read once."""
    size = PRECISION_BYTES.get(precision, 4)
    return size * (params + batch * (3.0 * input_size**2 + 2.0 * activations))


def _lookup(peaks: pd.DataFrame) -> dict[tuple[str, str, str], dict[int, Mapping[str, Any]]]:
    table: dict[tuple[str, str, str], dict[int, Mapping[str, Any]]] = {}
    for row in peaks.to_dict(orient="records"):
        if _missing(row["peak_flops"]):
            continue
        table.setdefault((row["machine_id"], row["device"], row["precision"]), {})[int(row["threads"])] = row
    return table


def match_peak(table: Mapping[tuple[str, str, str], Mapping[int, Mapping[str, Any]]], machine_id: str, device: str,
               precision: str, threads: Any) -> Mapping[str, Any] | None:
    """The peak a cell is measured against: same machine, device and precision; on a CPU the same threads (or
    the most threads stored, for a cell run with PyTorch's default); on other devices any thread count."""
    candidates = table.get((machine_id, normalise_device(device), precision))
    if not candidates:
        return None
    if normalise_device(device) != "cpu":
        return candidates.get(0) or next(iter(candidates.values()))
    if _missing(threads):
        return candidates[max(candidates)]
    return candidates.get(int(threads))


def add_efficiency(perf: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """`perf` (with gflops_per_s, macs, params, activations) plus EFFICIENCY_COLUMNS."""
    perf = perf.copy()
    executed = perf["executed_precision"] if "executed_precision" in perf else pd.Series(None, index=perf.index)
    perf["precision"] = [cell_precision(d, dev, t, e) for d, dev, t, e in
                         zip(perf["dtype"], perf["device"], perf["tf32"], executed)]
    flops = 2.0 * perf["macs"] * perf["batch_size"]
    activations = perf["activations"] if "activations" in perf else pd.Series(np.nan, index=perf.index)
    moved = [batch_bytes(p, a, s, b, prec) if not any(_missing(v) for v in (p, a, s)) else np.nan
             for p, a, s, b, prec in zip(perf["params"], activations, pd.to_numeric(perf["input_size"], errors="coerce"),
                                         perf["batch_size"], perf["precision"])]
    perf["arithmetic_intensity"] = flops / pd.Series(moved, index=perf.index, dtype=float)
    table = _lookup(peaks)
    matched = [match_peak(table, m, d, p, t) for m, d, p, t in
               zip(perf["machine_id"], perf["device"], perf["precision"], perf["threads"])]
    perf["peak_gflops_per_s"] = [m["peak_flops"] / 1e9 if m else np.nan for m in matched]
    perf["fraction_of_peak"] = perf["gflops_per_s"] / perf["peak_gflops_per_s"]
    perf["peak_basis"] = [m["basis"] if m else "" for m in matched]
    perf["bandwidth_gb_per_s"] = [m["bandwidth_bytes_per_s"] / 1e9 if m else np.nan for m in matched]
    return perf
