"""Latency models fitted on a calibration: one regressor per operator kind, and the cost of a module call.

Per kind the target is log(seconds) (operator times span five orders of magnitude; an error in log space is a
relative error). The regressor is a line on log FLOPs, log bytes in and log bytes out with non-negative slopes
(a power law in the roofline's two costs: it extrapolates sensibly past the shapes calibrated) plus
scikit-learn's GradientBoostingRegressor on the line's residuals over all features (kernel, stride, groups,
channels, spatial size: the kernel choices and cache effects a line cannot follow). Operators whose exact shape
was calibrated take their measured time: the calibration is sampled from the shapes real models contain. The module-call
overhead is the slope of a line through the module-call probes' times. See docs/PREDICTION.md for the argument.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import KFold, cross_val_predict

from ..errors import UsageError
from ..measure.openvino_operators import INFER_CALL
from ..measure.operators import FEATURES, MODULE_CALL

LINE_FEATURES = (FEATURES.index("flops"), FEATURES.index("in_bytes"), FEATURES.index("out_bytes"))
MIN_FOR_BOOSTING = 8  # fewer timings than this: the line alone
MIN_FOR_CV = 5
MIN_FOR_OWN_INTERVAL = 20  # fewer timings: the kind's bounds are the quantiles of all kinds' residuals pooled
INTERVAL = (0.05, 0.95)  # quantiles of the cross-validated residuals that bound a fitted operator's time


class MissingOperatorKinds(UsageError):
    """A model uses operator kinds the calibration has no timings for."""


def feature_matrix(features: Sequence[Mapping[str, float]]) -> np.ndarray:
    return np.log1p(np.array([[max(float(f.get(name, 0.0)), 0.0) for name in FEATURES] for f in features]))


class KindRegressor(RegressorMixin, BaseEstimator):
    """log seconds ~ a line on log FLOPs, log bytes in and log bytes out with non-negative slopes, plus
    gradient-boosted trees on the line's residuals over all features. X is `feature_matrix`; y is log seconds."""

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, max_depth: int = 3,
                 random_state: int = 0):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> KindRegressor:
        # Non-negative slopes: more work never takes less time, and a few timings cannot make the line extrapolate
        # downwards (an unconstrained line through 6 nearly collinear points can, by orders of magnitude).
        # A power law rather than overhead + work / throughput: per FLOP, large operators run slower than small
        # ones here (their working sets leave the caches), which a sum of costs cannot follow.
        self.line_ = Ridge(alpha=1.0, positive=True).fit(X[:, LINE_FEATURES], y)
        residual = y - self.line_.predict(X[:, LINE_FEATURES])
        self.trees_ = None
        if len(y) >= MIN_FOR_BOOSTING and np.ptp(residual) > 1e-9:
            self.trees_ = GradientBoostingRegressor(
                n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
                min_samples_leaf=2, random_state=self.random_state).fit(X, residual)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        y = self.line_.predict(X[:, LINE_FEATURES])
        return y + self.trees_.predict(X) if self.trees_ is not None else y


@dataclass
class KindModel:
    kind: str
    regressor: KindRegressor
    timings: int
    # quantiles of measured / predicted over cross-validation (1.0, 1.0 with too few timings to tell)
    low: float = 1.0
    high: float = 1.0
    cv_median_abs_error: float | None = None


@dataclass(frozen=True)
class OperatorEstimate:
    seconds: float
    low: float
    high: float
    source: str  # "measured" (this shape was calibrated) or "fitted"


@dataclass
class LatencyModel:
    """Everything fitted on one calibration."""

    kinds: dict[str, KindModel]
    measured: dict[str, float]  # signature -> median seconds of the calibrated shape
    module_call_s: float
    rows: int
    notes: list[str] = field(default_factory=list)
    infer_call_s: float = 0.0  # an OpenVINO infer request's own cost, paid once per forward pass (0: eager)

    def missing(self, kinds: Iterable[str]) -> list[str]:
        return sorted(set(kinds) - set(self.kinds))

    def estimate(self, calls: Sequence[Any]) -> list[OperatorEstimate]:
        """Each call's time (calls have .kind, .signature, .features). Raises MissingOperatorKinds first if
        any call's kind has no timings."""
        missing = self.missing(c.kind for c in calls)
        if missing:
            raise MissingOperatorKinds(f"the calibration has no timings for operator kind(s) {', '.join(missing)}")
        estimates: list[OperatorEstimate | None] = [None] * len(calls)
        by_kind: dict[str, list[int]] = defaultdict(list)
        for i, call in enumerate(calls):
            seconds = self.measured.get(call.signature)
            if seconds is not None:
                estimates[i] = OperatorEstimate(seconds, seconds, seconds, "measured")
            else:
                by_kind[call.kind].append(i)
        for kind, indices in by_kind.items():
            model = self.kinds[kind]
            predicted = np.exp(model.regressor.predict(feature_matrix([calls[i].features for i in indices])))
            for i, seconds in zip(indices, predicted):
                estimates[i] = OperatorEstimate(float(seconds), float(seconds * model.low),
                                                float(seconds * model.high), "fitted")
        return [e for e in estimates if e is not None]


def fit_latency_model(rows: Sequence[Mapping[str, Any]]) -> LatencyModel:
    """Fit on calibration rows (kind, signature, features, seconds), as `Store.calibration` gives them."""
    by_kind: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["seconds"] > 0:
            by_kind[row["kind"]].append(row)
    probes = by_kind.pop(MODULE_CALL, [])
    requests = by_kind.pop(INFER_CALL, [])
    infer_call_s = median(float(r["seconds"]) for r in requests) if requests else 0.0
    module_call_s = 0.0
    if len(probes) >= 2:
        modules = np.array([[p["features"]["modules"]] for p in probes])
        module_call_s = max(float(LinearRegression().fit(modules, [p["seconds"] for p in probes]).coef_[0]), 0.0)
    measured: dict[str, list[float]] = defaultdict(list)
    kinds = {}
    ratios: dict[str, np.ndarray] = {}
    for kind, kind_rows in sorted(by_kind.items()):
        for r in kind_rows:
            measured[r["signature"]].append(float(r["seconds"]))
        X = feature_matrix([r["features"] for r in kind_rows])
        y = np.log([float(r["seconds"]) for r in kind_rows])
        kinds[kind] = KindModel(kind, KindRegressor().fit(X, y), len(kind_rows))
        if len(kind_rows) >= MIN_FOR_CV:
            folds = KFold(n_splits=min(5, len(kind_rows)), shuffle=True, random_state=0)
            ratios[kind] = np.exp(y - cross_val_predict(KindRegressor(), X, y, cv=folds))
            kinds[kind].cv_median_abs_error = float(np.median(np.abs(ratios[kind] - 1.0)))
    # A 5-95% quantile of a handful of residuals is their extreme: kinds with few timings share the pooled bounds.
    # No kind with enough timings to cross-validate: the error is unknown, and the interval says so (0 to inf).
    pooled = np.concatenate(list(ratios.values())) if ratios else np.array([0.0, math.inf])
    for kind, model in kinds.items():
        own = ratios.get(kind)
        sample = own if own is not None and len(own) >= MIN_FOR_OWN_INTERVAL else pooled
        low, high = (0.0, math.inf) if not ratios else np.quantile(sample, INTERVAL)
        model.low, model.high = min(float(low), 1.0), max(float(high), 1.0)
    return LatencyModel(kinds, {s: median(v) for s, v in measured.items()}, module_call_s, len(rows),
                        infer_call_s=infer_call_s)


def relative_error(predicted: float, measured: float) -> float:
    return predicted / measured - 1.0 if measured > 0 else math.nan
