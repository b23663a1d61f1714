"""Latency predicted from a machine's operator calibration (`dnnbench predict`): regressors per operator kind
fitted on the store's calibration rows, applied to a model's meta-device trace. Sits between `store` and
`analysis`: it reads the store and traces with `measure`; `analysis` and `report` do not import it."""

from .predictor import CalibrationKey, LayerPrediction, Prediction, predict, predict_trace
from .regressors import LatencyModel, MissingOperatorKinds, fit_latency_model

__all__ = ["CalibrationKey", "LayerPrediction", "LatencyModel", "MissingOperatorKinds", "Prediction",
           "fit_latency_model", "predict", "predict_trace"]
