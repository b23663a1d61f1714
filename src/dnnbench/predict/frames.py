"""Predictions as tables, for the layers above `predict` (`report`, the CLI's `select`): a calibrated
configuration's predictions beside the store's measured time cells of the same configuration, and predicted cells
for the models a calibrated machine has not measured.

A calibration is fitted once and each model built on the meta device once (`predictor.CalibratedPredictor`),
then traced at each batch and input size asked for: predicting the dozens of measured cells of a report would
otherwise refit the calibration for every batch size. Intervals get their model-level band as in
`predict.predict` (`add_model_bands`: leave-one-out over the measured models of the same batch size). A model that
cannot be predicted (operator kinds the calibration lacks, a model that cannot be built) gets a row with its
reason in `note` and no figures, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UsageError
from ..store import Store
from .predictor import (
    CalibratedPredictor,
    CalibrationKey,
    Prediction,
    add_model_bands,
    fit_calibration,
    measured_cells,
)

# the cell's configuration in the store's frame terms (analysis.frames.CONFIG_COLUMNS: `dtype` is the precision)
PREDICTION_COLUMNS = ("machine_id", "model", "device", "dtype", "threads", "backend", "batch_size", "input_size",
                      "latency_ms", "latency_low_ms", "latency_high_ms", "images_per_s", "memory_bytes", "operators",
                      "fitted", "measured_ms", "error", "contended", "note")


def calibrated_keys(store: Store, machine_ids: Iterable[str] | None = None) -> list[CalibrationKey]:
    """Every calibration the store holds (of these machines, if given)."""
    wanted = None if machine_ids is None else set(machine_ids)
    return [CalibrationKey(c["machine_id"], c["device"], c["backend"], c["precision"], int(c["threads"]))
            for c in store.calibrations() if wanted is None or c["machine_id"] in wanted]


def _row(key: CalibrationKey, model: str, batch_size: int, input_size: int | None, prediction: Prediction | None,
         measured: tuple[float, bool] | None, note: str = "") -> dict[str, Any]:
    p = prediction
    return {"machine_id": key.machine_id, "model": model, "device": key.device, "dtype": key.precision,
            "threads": key.threads, "backend": key.backend, "batch_size": batch_size,
            "input_size": p.input_size if p else input_size,
            "latency_ms": p.seconds * 1e3 if p else math.nan, "latency_low_ms": p.low * 1e3 if p else math.nan,
            "latency_high_ms": p.high * 1e3 if p else math.nan, "images_per_s": p.images_per_s if p else math.nan,
            "memory_bytes": float(p.memory_bytes) if p and p.memory_bytes else math.nan,
            "operators": p.operators if p else 0, "fitted": p.fitted if p else 0,
            "measured_ms": measured[0] * 1e3 if measured else math.nan,
            "error": p.error if p and p.error is not None else math.nan,
            "contended": bool(measured and measured[1]), "note": note}


def _predict_or_note(predictor: CalibratedPredictor, model: str, batch_size: int, input_size: int | None,
                     measured_s: float | None) -> tuple[Prediction | None, str]:
    try:
        return predictor.predict(model, batch_size, input_size, measured_s), ""
    except UsageError as e:  # MissingOperatorKinds among them: named, never guessed
        return None, str(e).splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a model that cannot be built or traced costs its row, not the table
        return None, f"cannot be predicted: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    return out.astype({"batch_size": int, "threads": int, "contended": bool})


def predicted_vs_measured(db: Store | str | Path, machine_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """For every calibration of the store (of these machines), one row per measured ok time cell of the same
    machine and configuration: the prediction (latency_ms with its 5-95% interval) beside the measured median
    (measured_ms) and their relative error (predicted / measured - 1). Only the measured models are predicted."""
    if not isinstance(db, Store):
        with Store(db, create=False) as store:
            return predicted_vs_measured(store, machine_ids)
    rows = []
    for key in calibrated_keys(db, machine_ids):
        cells = measured_cells(db, key)
        if not cells:
            continue
        predictor = CalibratedPredictor(key, fit_calibration(db, key))
        found = []
        for (model, batch_size, input_size), measured in sorted(cells.items(), key=lambda kv: (
                kv[0][0], kv[0][1], kv[0][2] or 0)):
            prediction, note = _predict_or_note(predictor, model, batch_size, input_size, measured[0])
            found.append((model, batch_size, input_size, prediction, measured, note))
        rows += _banded_rows(key, found)
    return frame(rows)


def _banded_rows(key: CalibrationKey, found: list[tuple]) -> list[dict[str, Any]]:
    """Rows of (model, batch size, input size, prediction or None, measured, note), the predictions with their
    model-level bands (from the other measured predictions among them)."""
    banded = iter(add_model_bands([f[3] for f in found if f[3] is not None]))
    return [_row(key, model, batch, size, next(banded) if prediction is not None else None, measured, note)
            for model, batch, size, prediction, measured, note in found]


def predicted_cells(db: Store | str | Path, key: CalibrationKey, models: Sequence[str], batch_size: int,
                    input_size: int | None = None) -> pd.DataFrame:
    """One predicted cell per model at this batch size (input size None: each model's native one), with the
    measured median beside it where the store holds one; models that cannot be predicted say why in `note`."""
    if not isinstance(db, Store):
        with Store(db, create=False) as store:
            return predicted_cells(store, key, models, batch_size, input_size)
    from ..zoo import get

    measured = measured_cells(db, key)
    predictor = CalibratedPredictor(key, fit_calibration(db, key))
    found = []
    for model in models:
        try:
            spec = get(model)
        except UsageError as e:  # a model of the store this zoo no longer resolves (a python: module gone)
            found.append((model, batch_size, input_size, None, None, str(e).splitlines()[0]))
            continue
        size = input_size or spec.input_size
        cell = measured.get((spec.id, batch_size, size))
        prediction, note = _predict_or_note(predictor, spec.id, batch_size, input_size, cell[0] if cell else None)
        found.append((spec.id, batch_size, size, prediction, cell, note))
    return frame(_banded_rows(key, found))
