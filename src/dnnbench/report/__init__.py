"""Figures and the interactive report.

    >>> from dnnbench.report import build_report, ReportOptions
    >>> build_report("results/dnnbench.sqlite", "report/")           # report/index.html + PNG/SVG images

Static figures, from analysis frames (each returns a matplotlib Figure; `save_figure` writes PNG/SVG/PDF):

    >>> from dnnbench.analysis import load_frames, model_summary, performance
    >>> from dnnbench.report import figures
    >>> frames = load_frames("results/dnnbench.sqlite")
    >>> figures.save_figure(figures.accuracy_vs_operations(model_summary(frames)), "out", "fig1")
"""

from . import figures, interactive
from .build import ReportOptions, ReportResult, build_report
from .figures import EmptyFigureError, save_figure

__all__ = ["EmptyFigureError", "ReportOptions", "ReportResult", "build_report", "figures", "interactive",
           "save_figure"]
