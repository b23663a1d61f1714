"""Analysis of a results store: tidy frames per index, derived indices, Pareto fronts, model selection.

    >>> from dnnbench.analysis import load_frames, model_summary, performance, select_models, Constraints
    >>> frames = load_frames("results/dnnbench.sqlite")
    >>> perf = performance(frames)                       # one row per timed cell
    >>> select_models(perf, Constraints(max_latency_ms=33, max_memory_mb=1024)).chosen
"""

from .derived import best_accuracy, complexity_by_input, config_differences, machine_ratios, model_summary, performance
from .frames import CONFIG_COLUMNS, MEMORY_KINDS, BenchmarkFrames, frames_from_records, load_frames, setup_label
from .machines import Machine, default_machine, hardware_summary, machine_label, resolve_machine, resolve_machines
from .pareto import pareto_by, pareto_front, pareto_mask
from .select import (
                      DEFAULT_FPS_LEVELS,
                      DEFAULT_MEMORY_LEVELS_MB,
                      Candidate,
                      Constraints,
                      Rejection,
                      Selection,
                      Violation,
                      constraint_grid,
                      select_models,
)

__all__ = [
    "CONFIG_COLUMNS", "DEFAULT_FPS_LEVELS", "DEFAULT_MEMORY_LEVELS_MB", "MEMORY_KINDS", "BenchmarkFrames",
    "Candidate", "Constraints", "Machine", "Rejection", "Selection", "Violation", "best_accuracy",
    "complexity_by_input", "config_differences", "constraint_grid", "default_machine", "frames_from_records",
    "hardware_summary", "load_frames", "machine_label", "machine_ratios", "model_summary", "pareto_by",
    "pareto_front", "pareto_mask", "performance", "resolve_machine", "resolve_machines", "select_models",
    "setup_label",
]
