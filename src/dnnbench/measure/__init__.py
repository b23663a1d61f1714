"""Measurements, one module per index: complexity (parameters, operations), latency, memory
(measured and analytic), contention, and the statistics behind them.

Submodules are imported where they are used; `complexity` is re-exported for convenience.
"""

from .complexity import MODES, ComplexityResult, LayerComplexity, complexity, count_model, count_parameters

__all__ = ["MODES", "ComplexityResult", "LayerComplexity", "complexity", "count_model", "count_parameters"]
