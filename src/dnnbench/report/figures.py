"""Static figures (matplotlib, Agg canvas, no pyplot state) built from analysis frames.

Each function takes frames from `dnnbench.analysis` (`model_summary`, `performance`, `machine_ratios`,
`constraint_grid`) and returns a `matplotlib.figure.Figure`; `save_figure` writes it as PNG and SVG (PDF on
request). A figure with nothing to draw raises EmptyFigureError instead of drawing empty axes.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter

from ..analysis.pareto import pareto_front, pareto_mask
from ..errors import UsageError
from .labels import column_labels, place_labels
from .style import AXIS, family_colors, fmt_number

FORMATS = ("png", "svg", "pdf")
PNG_DPI = 200
BALL_MAX_PT2 = 1400.0  # marker area of the largest model in ball charts
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2}
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7.5, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.25, "grid.linewidth": 0.6, "svg.hashsalt": "dnnbench", "figure.facecolor": "white",
}
F = TypeVar("F", bound=Callable[..., Figure])


class EmptyFigureError(UsageError):
    """Nothing to draw: the frames hold none of the values the figure needs."""


def _styled(draw: F) -> F:
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def _freeze_layout(fig: Figure) -> None:
    """Run the layout once and keep it, so that labels placed in pixels stay where they were put."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def save_figure(fig: Figure, directory: str | Path, stem: str, formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    """Write `stem.png`, `stem.svg` (and `stem.pdf` if asked) into `directory`; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"unknown image format {fmt!r}; formats: {', '.join(FORMATS)}")
        path = directory / f"{stem}.{fmt}"
        # no creation date in SVG/PDF: the same results give byte-identical files
        metadata = {"Creator": "dnnbench", **{"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})}
        extra = {"pil_kwargs": {"compress_level": 3}} if fmt == "png" else {}  # 30% faster, 2% larger
        with matplotlib.rc_context(STYLE):
            fig.savefig(path, format=fmt, dpi=PNG_DPI, metadata=metadata, **extra)
        paths.append(path)
    return paths


# --- shared pieces ---------------------------------------------------------------------------------


def usable(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows with a finite value in every one of `columns` (what a figure can draw)."""
    mask = pd.Series(True, index=frame.index)
    for column in columns:
        mask &= np.isfinite(pd.to_numeric(frame[column], errors="coerce").astype(float))
    return frame[mask]


def _ball_areas(params: pd.Series, largest: float) -> np.ndarray:
    """Marker areas (pt^2) proportional to the parameter count; a floor keeps the smallest visible."""
    return np.maximum(params.to_numpy(float) / max(largest, 1.0) * BALL_MAX_PT2, 8.0)


def _radii_px(fig: Figure, areas_pt2: np.ndarray) -> np.ndarray:
    return np.sqrt(areas_pt2 / math.pi) * fig.dpi / 72.0


def _family_handles(colors: dict[str, str], families: Iterable[str]) -> list[Line2D]:
    return [Line2D([], [], marker="o", ls="", markerfacecolor=colors[f], markeredgecolor="none", markersize=7,
                   alpha=0.8, label=f) for f in sorted(set(families))]


def _source_handles(sources: Iterable[str]) -> list[Line2D]:
    present = set(sources)
    handles = []
    if "measured" in present:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="black",
                              markeredgewidth=1.2, markersize=7, label="accuracy measured"))
    if "reported" in present:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#999999",
                              markeredgewidth=0.6, markersize=7, label="accuracy reported (zoo)"))
    return handles


def _scatter(ax, frame: pd.DataFrame, x: str, y: str, areas: np.ndarray, colors: dict[str, str]) -> None:
    """Balls coloured by family; a black rim marks measured accuracy, a grey one reported accuracy."""
    source = frame["accuracy_source"] if "accuracy_source" in frame else pd.Series("none", index=frame.index)
    for kind, edge, width in (("reported", "#999999", 0.6), ("none", "#999999", 0.6), ("measured", "black", 1.2)):
        part = (source == kind).to_numpy()
        if part.any():
            ax.scatter(frame[x].to_numpy(float)[part], frame[y].to_numpy(float)[part], s=areas[part],
                       c=[colors[f] for f in frame["family"][part]], alpha=0.65, edgecolors=edge,
                       linewidths=width, zorder=3)


def _step_front(ax, front: pd.DataFrame, x: str, y: str, label: str) -> None:
    if len(front):
        ax.step(front[x].to_numpy(float), front[y].to_numpy(float), where="post", color="#333333", lw=1.0,
                ls="--", zorder=2, label=label)


def _accuracy_note(frame: pd.DataFrame) -> str:
    counts = frame["accuracy_source"].value_counts() if "accuracy_source" in frame else {}
    measured, reported = int(counts.get("measured", 0)), int(counts.get("reported", 0))
    return f"accuracy: {measured} measured, {reported} reported (measured preferred)"


def _plain(text: object) -> str:
    """User text drawn as is: a `$` would otherwise start matplotlib mathtext."""
    return str(text).replace("$", r"\$")


def _names(frame: pd.DataFrame) -> list[str]:
    return [_plain(n) for n in frame["name"]]


def _log_axis_formatter(ax, axis: str = "x") -> None:
    """Plain numbers (`300`, `1,000`) on a log axis instead of powers of ten; minor ticks are labelled only
    when the axis spans too few decades to have enough major ones (matplotlib's own rule)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: fmt_number(v)))
    target.set_minor_formatter(LogFormatter(labelOnlyBase=False))


# --- the 2018 study's figures ------------------------------------------------------------------------


@_styled
def accuracy_vs_operations(models: pd.DataFrame, metric: str = "top1", log_x: bool = False) -> Figure:
    """Fig. 1: top-1 (or top-5) accuracy vs G-MACs per image; ball area proportional to parameters,
    colour by family, with the Pareto front (no model more accurate with fewer operations)."""
    data = usable(models, metric, "gmacs", "params")
    if data.empty:
        raise EmptyFigureError(f"no model has both a {metric} accuracy and an operation count")
    colors = family_colors(data["family"])
    fig, axes = new_figure(10.5, 6.4)
    ax = axes[0, 0]
    areas = _ball_areas(data["params"], data["params"].max())
    _scatter(ax, data, "gmacs", metric, areas, colors)
    _step_front(ax, pareto_front(data, "gmacs", metric), "gmacs", metric,
                "Pareto front (none more accurate with fewer MACs)")
    if log_x:
        ax.set_xscale("log")
        _log_axis_formatter(ax)
    ax.margins(0.08)
    ax.set_xlabel(AXIS["gmacs"] + (" (log scale)" if log_x else ""))
    ax.set_ylabel(AXIS[metric])
    name = "Top-1" if metric == "top1" else "Top-5"
    ax.set_title(f"{name} accuracy vs operations - ball area proportional to parameters; {_accuracy_note(data)}",
                 loc="left", fontsize=8.5, color="#444444")
    fig.suptitle(f"{name} accuracy vs G-MACs per image (Bianco et al. 2018, Fig. 1)", x=0.01, ha="left",
                 fontweight="bold")
    reference = [v for v in (1e6, 10e6, 100e6) if v <= data["params"].max() * 1.5] or [data["params"].max()]
    sizes = [Line2D([], [], marker="o", ls="", markerfacecolor="#dddddd", markeredgecolor="#888888",
                    markersize=math.sqrt(float(_ball_areas(pd.Series([v]), data["params"].max())[0])),
                    label=f"{v / 1e6:g} M params") for v in reference]
    handles = _family_handles(colors, data["family"]) + sizes + _source_handles(data["accuracy_source"])
    handles += [Line2D([], [], color="#333333", ls="--", lw=1, label="Pareto front")]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, labelspacing=1.0)
    _freeze_layout(fig)
    on_front = pareto_mask(data, "gmacs", metric)
    place_labels(ax, data["gmacs"], data[metric], _names(data), _radii_px(fig, areas), fontsize=6.5,
                 bold=list(on_front))
    return fig


@_styled
def accuracy_density_bars(models: pd.DataFrame) -> Figure:
    """Fig. 2 (left): accuracy density (top-1 % per million parameters) per model, best first."""
    data = usable(models, "accuracy_density").sort_values("accuracy_density", ascending=True)
    if data.empty:
        raise EmptyFigureError("no model has both an accuracy and a parameter count")
    colors = family_colors(data["family"])
    fig, axes = new_figure(8.0, 1.4 + 0.17 * len(data))
    ax = axes[0, 0]
    y = np.arange(len(data))
    ax.barh(y, data["accuracy_density"], color=[colors[f] for f in data["family"]], alpha=0.85,
            edgecolor=["black" if s == "measured" else "none" for s in data["accuracy_source"]], linewidth=0.8)
    ax.set_yticks(y, _names(data), fontsize=7)
    ax.grid(axis="y", visible=False)
    for yi, value in zip(y, data["accuracy_density"]):
        ax.text(value, yi, f" {value:.2f}", va="center", fontsize=6.5, color="#333333")
    ax.set_xlabel(AXIS["accuracy_density"])
    ax.margins(x=0.12)
    fig.suptitle("Accuracy density per model (Bianco et al. 2018, Fig. 2a)", x=0.01, ha="left", fontweight="bold")
    ax.set_title(f"top-1 % / M params; {_accuracy_note(data)}; black outline = measured", loc="left",
                 fontsize=8.5, color="#444444")
    fig.legend(handles=_family_handles(colors, data["family"]), loc="outside right upper", frameon=False)
    return fig


@_styled
def accuracy_vs_density(models: pd.DataFrame) -> Figure:
    """Fig. 2 (right): top-1 accuracy vs accuracy density, log x."""
    data = usable(models, "accuracy_density", "top1")
    if data.empty:
        raise EmptyFigureError("no model has both an accuracy and a parameter count")
    colors = family_colors(data["family"])
    fig, axes = new_figure(10.0, 6.0)
    ax = axes[0, 0]
    areas = np.full(len(data), 40.0)
    _scatter(ax, data, "accuracy_density", "top1", areas, colors)
    ax.set_xscale("log")
    _log_axis_formatter(ax)
    ax.margins(0.08)
    ax.set_xlabel(AXIS["accuracy_density"] + " (log scale)")
    ax.set_ylabel(AXIS["top1"])
    fig.suptitle("Top-1 accuracy vs accuracy density (Bianco et al. 2018, Fig. 2b)", x=0.01, ha="left",
                 fontweight="bold")
    ax.set_title(_accuracy_note(data), loc="left", fontsize=8.5, color="#444444")
    fig.legend(handles=_family_handles(colors, data["family"]) + _source_handles(data["accuracy_source"]),
               loc="outside right upper", frameon=False)
    _freeze_layout(fig)
    place_labels(ax, data["accuracy_density"], data["top1"], _names(data), _radii_px(fig, areas),
                 fontsize=6.5)
    return fig


def _panels(perf: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(machine label, setup, rows) per machine and setup, in the frame's order."""
    return [(part["machine"].iloc[0], setup, part)
            for (_, setup), part in perf.groupby(["machine_id", "setup"], sort=False)]


def _grid(n: int, width: float = 10.5, height: float = 5.6, ncols: int = 1) -> tuple[Figure, list]:
    """Panels stacked in rows (one column by default: labelled scatter plots need the width)."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(width * ncols + 1.8, height * nrows, nrows, ncols)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


@_styled
def accuracy_vs_resource(perf: pd.DataFrame, x: str = "images_per_s", batch_size: int = 1,
                         fps_marks: Sequence[float] = (30.0,)) -> Figure:
    """Fig. 3: top-1 accuracy vs throughput (or memory) at one batch size, log x, one panel per machine
    and setup, with the Pareto front; Pareto models are labelled in bold."""
    higher_is_better = x == "images_per_s"
    data = usable(perf[(perf["batch_size"] == batch_size) & (perf["status"] == "ok")], x, "top1")
    if data.empty:
        raise EmptyFigureError(f"no model has both a top-1 accuracy and {x.replace('_', ' ')} at batch size "
                               f"{batch_size}")
    colors = family_colors(data["family"])
    panels = _panels(data)
    fig, axes = _grid(len(panels))
    placed = []
    for ax, (machine, setup, part) in zip(axes, panels):
        areas = np.full(len(part), 36.0)
        _scatter(ax, part, x, "top1", areas, colors)
        front = pareto_front(part, x, "top1", minimize_x=not higher_is_better)
        if higher_is_better:  # draw from the fast end: accuracy rises as throughput falls
            front = front.iloc[::-1]
        _step_front(ax, front, x, "top1", "Pareto front")
        ax.set_xscale("log")
        _log_axis_formatter(ax)
        ax.margins(0.1)
        if higher_is_better:
            for fps in fps_marks:
                ax.axvline(fps, color="#2ca02c", lw=0.8, ls=":", zorder=1)
                ax.text(fps, 1.0, f" {fps:g} FPS", transform=ax.get_xaxis_transform(), fontsize=7,
                        color="#2ca02c", va="top")
        ax.set_xlabel((AXIS[x] if x in AXIS else x) + " (log scale)")
        ax.set_ylabel(AXIS["top1"])
        ax.set_title(f"{_plain(machine)}\n{setup}, batch size {batch_size}", loc="left", fontsize=8.5)
        placed.append((ax, part, areas, pareto_mask(part, x, "top1", minimize_x=not higher_is_better)))
    what = "throughput" if higher_is_better else "memory"
    fig.suptitle(f"Top-1 accuracy vs {what} (Bianco et al. 2018, Fig. 3); {_accuracy_note(data)}",
                 x=0.01, ha="left", fontweight="bold")
    handles = _family_handles(colors, data["family"]) + _source_handles(data["accuracy_source"])
    handles += [Line2D([], [], color="#333333", ls="--", lw=1, label="Pareto front (bold labels)")]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    _freeze_layout(fig)
    for ax, part, areas, on_front in placed:
        place_labels(ax, part[x], part["top1"], _names(part), _radii_px(fig, areas), fontsize=6,
                     bold=list(on_front))
    return fig


@_styled
def metric_vs_batch(perf: pd.DataFrame, machine_id: str, y: str = "ms_per_image") -> Figure:
    """Time per image (or memory) vs batch size on one machine: one line per model, one panel per setup."""
    data = usable(perf[(perf["machine_id"] == machine_id) & (perf["status"] == "ok")], y, "batch_size")
    if data.empty:
        raise EmptyFigureError(f"no {y.replace('_', ' ')} measured on machine {machine_id[:8]}")
    colors = family_colors(data["family"])
    panels = _panels(data)
    fig, axes = _grid(len(panels), width=9.0, height=8.0)
    ends = []
    for ax, (machine, setup, part) in zip(axes, panels):
        for (_, _input), line in part.groupby(["model", "input_size"], sort=False):
            line = line.sort_values("batch_size")
            ax.plot(line["batch_size"], line[y], marker="o", ms=2.5, lw=1.0, color=colors[line["family"].iloc[0]],
                    alpha=0.85)
            ends.append((ax, line.iloc[-1]))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        _log_axis_formatter(ax, "y")
        ax.set_xticks(sorted(part["batch_size"].unique()))
        ax.margins(x=0.05)
        ax.set_xlabel(AXIS["batch_size"] + " (log2 scale)")
        ax.set_ylabel(AXIS[y] + " (log scale)")
        ax.set_title(f"{_plain(machine)}\n{setup}", loc="left", fontsize=8.5)
    what = "Time per image" if y == "ms_per_image" else "Memory"
    fig.suptitle(f"{what} vs batch size", x=0.01, ha="left", fontweight="bold")
    fig.legend(handles=_family_handles(colors, data["family"]), loc="outside right upper", frameon=False)
    _freeze_layout(fig)
    for ax in axes:  # make room on the right of each panel for its column of line-end labels
        box = ax.get_position()
        ax.set_position([box.x0, box.y0, box.width * 0.8, box.height])
    for ax in axes:
        mine = [row for a, row in ends if a is ax]
        column_labels(ax, [r["batch_size"] for r in mine], [r[y] for r in mine], [_plain(r["name"]) for r in mine],
                      [colors[r["family"]] for r in mine], fontsize=5.5)
    return fig


@_styled
def params_vs_memory(perf: pd.DataFrame, batch_size: int = 1) -> Figure:
    """Memory at one batch size vs parameters, one panel per machine and setup, with the weights' own size."""
    data = usable(perf[(perf["batch_size"] == batch_size) & (perf["status"] == "ok")], "params", "memory_mb")
    if data.empty:
        raise EmptyFigureError(f"no model has both a parameter count and memory at batch size {batch_size}")
    data = data.assign(params_m=data["params"] / 1e6)
    colors = family_colors(data["family"])
    panels = _panels(data)
    fig, axes = _grid(len(panels))
    placed = []
    for ax, (machine, setup, part) in zip(axes, panels):
        areas = np.full(len(part), 36.0)
        _scatter(ax, part.assign(accuracy_source="none"), "params_m", "memory_mb", areas, colors)
        span = np.geomspace(part["params_m"].min() * 0.8, part["params_m"].max() * 1.25, 50)
        per_param = BYTES_PER_PARAM.get(str(part["dtype"].iloc[0]), 4)
        ax.plot(span, span * 1e6 * per_param / 2**20, color="#555555", lw=0.8, ls=":",
                label=f"weights alone ({per_param} bytes/param)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_axis_formatter(ax)
        _log_axis_formatter(ax, "y")
        ax.margins(0.1)
        ax.set_xlabel(AXIS["params_m"] + " (log scale)")
        ax.set_ylabel(AXIS["memory_mb"] + " (log scale)")
        ax.set_title(f"{_plain(machine)}\n{setup}, batch size {batch_size}", loc="left", fontsize=8.5)
        ax.legend(loc="upper left", frameon=False)
        placed.append((ax, part, areas))
    fig.suptitle("Memory vs parameters", x=0.01, ha="left", fontweight="bold")
    fig.legend(handles=_family_handles(colors, data["family"]), loc="outside right upper", frameon=False)
    _freeze_layout(fig)
    for ax, part, areas in placed:
        place_labels(ax, part["params_m"], part["memory_mb"], _names(part), _radii_px(fig, areas), fontsize=6)
    return fig


@_styled
def speed_ratio_bars(ratios: pd.DataFrame, label_a: str, label_b: str, batch_size: int = 1) -> Figure:
    """The same model on two machines: images/s on A over images/s on B, per model (log x; > 1: A faster)."""
    data = usable(ratios[ratios["batch_size"] == batch_size], "speed_ratio").sort_values("speed_ratio")
    data = data.drop_duplicates("model", keep="last")  # several matching setups: the best ratio
    if data.empty:
        raise EmptyFigureError(f"no model was timed in a matching setup on both machines at batch size {batch_size}")
    colors = family_colors(data["family"])
    fig, axes = new_figure(8.5, 1.6 + 0.17 * len(data))
    ax = axes[0, 0]
    y = np.arange(len(data))
    ax.barh(y, data["speed_ratio"], color=[colors[f] for f in data["family"]], alpha=0.85)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    _log_axis_formatter(ax)
    ax.set_yticks(y, _names(data), fontsize=7)
    ax.grid(axis="y", visible=False)
    for yi, value in zip(y, data["speed_ratio"]):
        ax.text(value, yi, f" {value:.2f}x", va="center", fontsize=6.5, color="#333333")
    ax.margins(x=0.15)
    ax.set_xlabel(f"images/s on A / images/s on B at batch size {batch_size} (log scale; > 1: A is faster)")
    fig.suptitle("Speed ratio per model", x=0.01, ha="left", fontweight="bold")
    ax.set_title(f"A: {_plain(label_a)}\nB: {_plain(label_b)}", loc="left", fontsize=8, color="#444444")
    fig.legend(handles=_family_handles(colors, data["family"]), loc="outside right upper", frameon=False)
    return fig


@_styled
def constraint_table(grid: pd.DataFrame, machine: str, setup_note: str = "") -> Figure:
    """The best models (by top-1) under each memory and throughput limit, as a table figure (rows: memory
    limits, columns: throughput floors; Bianco et al. 2018, Table 2)."""
    if grid.empty:
        raise EmptyFigureError(f"no model with an accuracy meets any of the limits on {machine}")
    memories = sorted(grid["max_memory_mb"].unique())
    rates = sorted(grid["min_images_per_s"].unique())
    cells = {(m, r): [f"{row.rank}. {_plain(row.name)}  {row.top1:.1f}%"
                      for row in grid[(grid["max_memory_mb"] == m) & (grid["min_images_per_s"] == r)].itertuples()]
             for m in memories for r in rates}
    line_in, pad_in, label_in, column_in, header_in = 0.19, 0.08, 1.5, 2.7, 0.34  # inches
    heights = [max(1, max(len(cells[(m, r)]) for r in rates)) * line_in + 2 * pad_in for m in memories]
    width, height = label_in + column_in * len(rates), header_in + sum(heights)
    fig = Figure(figsize=(width + 0.2, height + 0.75))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1 / (width + 0.2), 0.05 / (height + 0.75), width / (width + 0.2), height / (height + 0.75)))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top
    ax.axis("off")
    ax.add_patch(matplotlib.patches.Rectangle((0, 0), width, header_in, color="#eef2f8", zorder=0))
    ax.text(pad_in, header_in / 2, "memory \\ throughput", va="center", fontsize=8, fontweight="bold")
    for j, rate in enumerate(rates):
        ax.text(label_in + j * column_in + pad_in, header_in / 2, f">= {rate:g} images/s", va="center", fontsize=8,
                fontweight="bold")
    top = header_in
    for memory, row_height in zip(memories, heights):
        ax.axhline(top, color="#cccccc", lw=0.8)
        ax.text(pad_in, top + pad_in, f"<= {memory:g} MB", va="top", fontsize=8, fontweight="bold")
        for j, rate in enumerate(rates):
            lines = cells[(memory, rate)] or ["none"]
            ax.text(label_in + j * column_in + pad_in, top + pad_in, "\n".join(lines), va="top", fontsize=7.5,
                    linespacing=1.45, color="#222222" if cells[(memory, rate)] else "#999999")
        top += row_height
    ax.axhline(top, color="#cccccc", lw=0.8)
    fig.suptitle(f"Best models under memory and speed limits: {_plain(machine)}", x=0.01, ha="left",
                 fontweight="bold", fontsize=10)
    fig.text(0.01, 1 - 0.5 / (height + 0.75), f"top-1 (measured or reported); {setup_note}", fontsize=8,
             color="#444444")
    return fig


# --- roofline ----------------------------------------------------------------------------------------


def batch_marker_areas(batch: pd.Series) -> np.ndarray:
    """Marker areas (pt^2) growing with log2 of the batch size: batch 1 small, batch 64 large."""
    return 14.0 + 12.0 * np.log2(np.maximum(batch.to_numpy(float), 1.0))


def roofs(part: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(precision, peak GFLOP/s, bandwidth GB/s or NaN) of the peaks the rows of `part` are matched with."""
    rows = part.dropna(subset=["peak_gflops_per_s"])
    seen = rows.drop_duplicates(["precision", "peak_gflops_per_s"])
    return [(str(r.precision), float(r.peak_gflops_per_s), float(r.bandwidth_gb_per_s))
            for r in seen.itertuples(index=False)]


def roof_span(intensity: pd.Series, peaks: Sequence[tuple[str, float, float]]) -> tuple[float, float]:
    """x range of a roofline: the cells' intensities, widened to show each ridge point (peak / bandwidth)."""
    low, high = float(intensity.min()), float(intensity.max())
    for _, peak, bandwidth in peaks:
        if bandwidth == bandwidth and bandwidth > 0:
            low = min(low, peak / bandwidth / 4)
            high = max(high, peak / bandwidth * 2)
    return low / 1.5, high * 1.5


@_styled
def roofline(perf: pd.DataFrame) -> Figure:
    """Achieved GFLOP/s vs arithmetic intensity (log-log), one point per model and batch size (bigger markers:
    bigger batches), one panel per machine and setup, with the peak FLOP/s of the setup's precision and, where
    the copy bandwidth was measured, the memory roof (bandwidth x intensity) up to the ridge point."""
    data = usable(perf[perf["status"] == "ok"], "arithmetic_intensity", "gflops_per_s")
    data = data[(data["gflops_per_s"] > 0) & (data["arithmetic_intensity"] > 0)]
    if data.empty:
        raise EmptyFigureError("no timed cell has both an achieved GFLOP/s and an arithmetic intensity")
    colors = family_colors(data["family"])
    panels = _panels(data)
    fig, axes = _grid(len(panels), width=9.0, height=5.6)
    for ax, (machine, setup, part) in zip(axes, panels):
        ax.scatter(part["arithmetic_intensity"], part["gflops_per_s"], s=batch_marker_areas(part["batch_size"]),
                   c=[colors[f] for f in part["family"]], alpha=0.7, edgecolors="#333333", linewidths=0.4, zorder=3)
        peaks = roofs(part)
        low, high = roof_span(part["arithmetic_intensity"], peaks)
        bottom = float(part["gflops_per_s"].min()) / 1.6
        top = max([float(part["gflops_per_s"].max())] + [peak for _, peak, _ in peaks]) * 1.4
        for precision, peak, bandwidth in peaks:
            start = low
            if bandwidth == bandwidth and bandwidth > 0:
                start = max(peak / bandwidth, low)
                xs = np.geomspace(low, start, 20)
                ax.plot(xs, xs * bandwidth, color="#555555", lw=1.0, ls="-.", zorder=2)
                visible = max(low, bottom / bandwidth)
                if visible < start:  # label the visible part of the slope in its middle
                    mid = math.sqrt(visible * start)
                    ax.text(mid, mid * bandwidth, f"{fmt_number(bandwidth)} GB/s x intensity ", fontsize=6.5,
                            color="#555555", ha="right", va="bottom")
            ax.plot([start, high], [peak, peak], color="black", lw=1.2, zorder=2)
            ax.text(high, peak, f"{precision} peak {fmt_number(peak)} GFLOP/s ", fontsize=7, ha="right", va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(bottom, top)
        _log_axis_formatter(ax)
        _log_axis_formatter(ax, "y")
        ax.set_xlabel(AXIS["arithmetic_intensity"] + " (log scale)")
        ax.set_ylabel(AXIS["gflops_per_s"] + " (log scale)")
        note = "" if peaks else " - no peak stored for this setup (dnnbench peak)"
        ax.set_title(f"{_plain(machine)}\n{setup}{note}", loc="left", fontsize=8.5)
    fig.suptitle("Roofline: achieved GFLOP/s vs arithmetic intensity", x=0.01, ha="left", fontweight="bold")
    sizes = [Line2D([], [], marker="o", ls="", markerfacecolor="#dddddd", markeredgecolor="#888888",
                    markersize=math.sqrt(float(batch_marker_areas(pd.Series([b]))[0])), label=f"batch {b}")
             for b in sorted(data["batch_size"].unique())[:: max(1, data["batch_size"].nunique() // 4)]]
    roof_handles = [Line2D([], [], color="black", lw=1.2, label="peak FLOP/s"),
                    Line2D([], [], color="#555555", lw=1.0, ls="-.", label="memory bandwidth x intensity")]
    fig.legend(handles=_family_handles(colors, data["family"]) + sizes + roof_handles, loc="outside right upper",
               frameon=False)
    return fig


# --- the zoo-wide view and the screen ---------------------------------------------------------------------


def _in_paper(models: pd.DataFrame) -> np.ndarray:
    return (models["in_paper"].fillna(False).astype(bool) if "in_paper" in models
            else pd.Series(False, index=models.index)).to_numpy()


@_styled
def zoo_view(models: pd.DataFrame) -> Figure:
    """Top-1 against G-MACs per image (log) for every counted model with a published or measured top-1: the
    paper's models coloured by family and labelled, every other model a small grey dot (drawn as one
    rasterised collection, so a thousand and more stay light in SVG and PDF too)."""
    data = usable(models, "top1", "gmacs")
    data = data[data["gmacs"] > 0]
    if data.empty:
        raise EmptyFigureError("no counted model has a top-1 accuracy")
    paper = _in_paper(data)
    fig, axes = new_figure(10.5, 6.4)
    ax = axes[0, 0]
    others = data[~paper]
    if len(others):
        ax.scatter(others["gmacs"].to_numpy(float), others["top1"].to_numpy(float), s=9, c="#9a9a9a", alpha=0.45,
                   edgecolors="none", zorder=2, rasterized=True)
    highlighted = data[paper]
    colors = family_colors(highlighted["family"]) if len(highlighted) else {}
    if len(highlighted):
        ax.scatter(highlighted["gmacs"].to_numpy(float), highlighted["top1"].to_numpy(float), s=36,
                   c=[colors[f] for f in highlighted["family"]], edgecolors="black", linewidths=0.6, zorder=4)
    _step_front(ax, pareto_front(data, "gmacs", "top1"), "gmacs", "top1", "Pareto front")
    ax.set_xscale("log")
    _log_axis_formatter(ax)
    ax.margins(0.05)
    ax.set_xlabel(AXIS["gmacs"] + " (log scale)")
    ax.set_ylabel(AXIS["top1"])
    fig.suptitle("Top-1 accuracy vs operations: every counted model", x=0.01, ha="left", fontweight="bold")
    paper_text = f"the paper's {len(highlighted)} in colour" if len(highlighted) else "none of the paper's counted"
    ax.set_title(f"{len(data)} models with a top-1 figure; {paper_text}, {len(others)} others in grey; "
                 f"{_accuracy_note(data)}", loc="left", fontsize=8.5, color="#444444")
    handles = _family_handles(colors, highlighted["family"]) if len(highlighted) else []
    handles += [Line2D([], [], marker="o", ls="", markerfacecolor="#9a9a9a", markeredgecolor="none", markersize=5,
                       label="other models")] if len(others) else []
    handles += [Line2D([], [], color="#333333", ls="--", lw=1, label="Pareto front")]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    if len(highlighted):
        _freeze_layout(fig)
        place_labels(ax, highlighted["gmacs"], highlighted["top1"], _names(highlighted), 3.5, fontsize=6)
    return fig


@_styled
def screen_front(screened: pd.DataFrame) -> Figure:
    """The screen's models that fit: top-1 against latency, filled where the latency was measured, open with
    the prediction's 5-95% interval where it was predicted; the Pareto front dashed and its models labelled."""
    data = usable(screened[screened["fits"].astype(bool)], "top1", "latency_ms")
    if data.empty:
        raise EmptyFigureError("no screened model fits the limits and has a published top-1")
    fig, axes = new_figure(10.5, 6.0)
    ax = axes[0, 0]
    measured = (data["latency_source"] == "measured").to_numpy()
    predicted = data[~measured]
    if len(predicted):
        low = (predicted["latency_ms"] - predicted["predicted_low_ms"]).clip(lower=0).fillna(0).to_numpy(float)
        high = (predicted["predicted_high_ms"] - predicted["latency_ms"]).clip(lower=0).fillna(0).to_numpy(float)
        ax.errorbar(predicted["latency_ms"].to_numpy(float), predicted["top1"].to_numpy(float), xerr=[low, high],
                    fmt="o", mfc="white", mec="#1f77b4", ecolor="#9ecae1", elinewidth=0.8, ms=5, zorder=3,
                    label="latency predicted (5-95% interval)")
    if measured.any():
        ax.scatter(data["latency_ms"].to_numpy(float)[measured], data["top1"].to_numpy(float)[measured], s=40,
                   c="#d62728", edgecolors="black", linewidths=0.6, zorder=4, label="latency measured here")
    front = data[data["on_front"].astype(bool)].sort_values("latency_ms")
    _step_front(ax, front, "latency_ms", "top1", "Pareto front")
    ax.set_xscale("log")
    _log_axis_formatter(ax)
    ax.margins(0.08)
    ax.set_xlabel(AXIS["latency_ms"] + " (log scale)")
    ax.set_ylabel(AXIS["top1"] + ", published")
    fig.suptitle("Screen: published top-1 vs latency of the models that fit", x=0.01, ha="left", fontweight="bold")
    ax.set_title(f"{len(data)} models; {int(measured.sum())} measured, {len(predicted)} predicted", loc="left",
                 fontsize=8.5, color="#444444")
    fig.legend(loc="outside right upper", frameon=False)
    if len(front):
        _freeze_layout(fig)
        place_labels(ax, front["latency_ms"], front["top1"], _names(front), 4.0, fontsize=6.5,
                     bold=[True] * len(front))
    return fig
