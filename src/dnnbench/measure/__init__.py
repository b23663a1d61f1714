"""Measurements, one module per index: complexity (parameters, operations), and later time, memory, accuracy."""

from .complexity import MODES, ComplexityResult, LayerComplexity, complexity, count_model, count_parameters

__all__ = ["MODES", "ComplexityResult", "LayerComplexity", "complexity", "count_model", "count_parameters"]
