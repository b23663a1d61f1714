"""Predicted against measured latency (`dnnbench calibrate` + `dnnbench predict` checked by `dnnbench run`): the
figures of one machine and configuration, static (matplotlib) and interactive (Plotly).

Left: predicted against measured ms per batch on log-log axes, one colour per batch size, with y = x, the +-10%
and +-15% bands, and each prediction's 5-95% interval as an error bar (a prediction with an open interval, from a
calibration too small to bound its error, is a hollow marker without one). Right: the error distribution
(predicted / measured - 1) as a histogram with the bands marked. Rows come from `predict.frames.predicted_vs_measured`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from plotly.subplots import make_subplots

from ..analysis.prediction import BANDS
from .figures import EmptyFigureError, _log_axis_formatter, _plain, _styled, new_figure, usable
from .interactive import TEMPLATE, esc

BATCH_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BAND_STYLES = {BANDS[0]: ("#2ca02c", 0.18), BANDS[1]: ("#ff7f0e", 0.10)}
MEASURED = "Measured latency [ms per batch] (median)"
PREDICTED = "Predicted latency [ms per batch]"
ERROR = "Error (predicted / measured - 1) [%]"


def _drawable(rows: pd.DataFrame) -> pd.DataFrame:
    data = usable(rows, "latency_ms", "measured_ms", "error")
    if data.empty:
        raise EmptyFigureError("no model of this configuration has both a prediction and a measured time")
    return data


def _bounded(data: pd.DataFrame) -> pd.Series:
    """The predictions whose interval is bounded (an open one has an infinite upper end)."""
    return pd.Series(np.isfinite(data["latency_high_ms"].astype(float)), index=data.index)


def _span(data: pd.DataFrame) -> tuple[float, float]:
    bounded = data[_bounded(data)]
    values = np.concatenate([data["latency_ms"], data["measured_ms"],
                             bounded["latency_low_ms"][bounded["latency_low_ms"] > 0],
                             bounded["latency_high_ms"]]).astype(float)
    low, high = float(values.min()), float(values.max())
    return low / 1.5, high * 1.5


def _batch_color(batches: list[int], batch: int) -> str:
    return BATCH_COLORS[batches.index(batch) % len(BATCH_COLORS)]


def _bins(errors: pd.Series) -> np.ndarray:
    top = max(0.3, float(errors.abs().max()) * 1.05) * 100
    step = 2.5 if top <= 40 else 5.0 if top <= 100 else 10 * math.ceil(top / 200)
    edge = step * math.ceil(top / step)
    return np.arange(-edge, edge + step / 2, step)


@_styled
def predicted_vs_measured(rows: pd.DataFrame, title: str) -> Figure:
    """The scatter and the error histogram of one machine and configuration (all its batch sizes)."""
    data = _drawable(rows)
    fig, axes = new_figure(11.0, 5.0, 1, 2, width_ratios=(1.25, 1))
    ax, hist = axes[0]
    low, high = _span(data)
    line = np.geomspace(low, high, 50)
    for band in sorted(BAND_STYLES, reverse=True):
        color, alpha = BAND_STYLES[band]
        ax.fill_between(line, line * (1 - band), line * (1 + band), color=color, alpha=alpha, lw=0,
                        label=f"within ±{band:.0%}")
    ax.plot(line, line, color="#444", lw=1, label="predicted = measured")
    batches = sorted(int(b) for b in data["batch_size"].unique())
    for batch in batches:
        part = data[data["batch_size"] == batch]
        color = _batch_color(batches, batch)
        closed, open_ = part[_bounded(part)], part[~_bounded(part)]
        below = (closed["latency_ms"] - closed["latency_low_ms"].clip(lower=0)).clip(lower=0)
        above = (closed["latency_high_ms"] - closed["latency_ms"]).clip(lower=0)
        if len(closed):
            ax.errorbar(closed["measured_ms"], closed["latency_ms"], yerr=[below, above], fmt="o", ms=4.5, color=color,
                        ecolor=color, elinewidth=0.8, capsize=2, alpha=0.85, label=f"batch {batch}")
        if len(open_):
            ax.plot(open_["measured_ms"], open_["latency_ms"], "o", ms=5, mfc="none", color=color,
                    label=f"batch {batch}, open interval")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel=MEASURED, ylabel=PREDICTED)
    ax.set_aspect("equal", adjustable="box")
    _log_axis_formatter(ax, "x")
    _log_axis_formatter(ax, "y")
    ax.legend(loc="upper left")
    bins = _bins(data["error"])
    for batch in batches:
        part = data[data["batch_size"] == batch]
        hist.hist(part["error"] * 100, bins=bins, color=_batch_color(batches, batch), alpha=0.6,
                  label=f"batch {batch} ({len(part)} model{'s' if len(part) != 1 else ''})")
    for band in BANDS:
        color, _ = BAND_STYLES[band]
        for sign in (-1, 1):
            hist.axvline(sign * band * 100, color=color, lw=1, ls="--")
    hist.axvline(0, color="#444", lw=1)
    hist.set(xlabel=ERROR, ylabel="Models")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.legend(loc="upper right")
    fig.suptitle(_plain(title))
    return fig


def predicted_vs_measured_interactive(rows: pd.DataFrame, title: str) -> go.Figure:
    data = _drawable(rows)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.09)
    low, high = _span(data)
    line = np.geomspace(low, high, 50)
    for band in sorted(BAND_STYLES, reverse=True):
        color, alpha = BAND_STYLES[band]
        fig.add_trace(go.Scatter(x=line, y=line * (1 - band), mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip"), 1, 1)
        fig.add_trace(go.Scatter(x=line, y=line * (1 + band), mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(color, alpha), name=f"within ±{band:.0%}", hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Scatter(x=line, y=line, mode="lines", line={"color": "#444", "width": 1},
                             name="predicted = measured", hoverinfo="skip"), 1, 1)
    batches = sorted(int(b) for b in data["batch_size"].unique())
    for batch in batches:
        part = data[data["batch_size"] == batch]
        color = _batch_color(batches, batch)
        bounded = _bounded(part)
        hover = [f"<b>{esc(r.model)}</b><br>batch {batch}, {int(r.input_size)} px<br>measured {r.measured_ms:.3g} ms"
                 f"{' (contended)' if r.contended else ''}<br>predicted {r.latency_ms:.3g} ms "
                 f"[{r.latency_low_ms:.3g}, {'?' if not math.isfinite(r.latency_high_ms) else f'{r.latency_high_ms:.3g}'}]"
                 f"<br>error {r.error:+.1%}" for r in part.itertuples()]
        # an open interval gets a hollow marker and no error bar
        fig.add_trace(go.Scatter(
            x=part["measured_ms"], y=part["latency_ms"], mode="markers", name=f"batch {batch}",
            marker={"color": color, "size": 8, "symbol": ["circle" if b else "circle-open" for b in bounded]},
            legendgroup=f"b{batch}", hovertext=hover, hoverinfo="text",
            error_y={"type": "data", "symmetric": False,
                     "array": (part["latency_high_ms"] - part["latency_ms"]).clip(lower=0).where(bounded, 0),
                     "arrayminus": (part["latency_ms"] - part["latency_low_ms"].clip(lower=0)).clip(lower=0)
                     .where(bounded, 0), "thickness": 1, "width": 2, "color": color}), 1, 1)
        fig.add_trace(go.Histogram(x=part["error"] * 100, name=f"batch {batch}", legendgroup=f"b{batch}",
                                   showlegend=False, marker={"color": color}, opacity=0.6,
                                   xbins={"size": float(np.diff(_bins(data["error"]))[0])}), 1, 2)
    for band in BANDS:
        for sign in (-1, 1):
            fig.add_vline(x=sign * band * 100, line={"color": BAND_STYLES[band][0], "dash": "dash", "width": 1},
                          row=1, col=2)
    fig.update_layout(template=TEMPLATE, barmode="overlay", height=520,
                      title={"text": f"<b>{esc(title)}</b>", "x": 0.01, "xanchor": "left"},
                      margin={"l": 70, "r": 20, "t": 60, "b": 60}, hoverlabel={"align": "left"})
    bounds = [math.log10(low), math.log10(high)]
    fig.update_xaxes(title_text=MEASURED, type="log", range=bounds, row=1, col=1)
    fig.update_yaxes(title_text=PREDICTED, type="log", range=bounds, row=1, col=1)
    fig.update_xaxes(title_text=ERROR, row=1, col=2)
    fig.update_yaxes(title_text="Models", row=1, col=2)
    return fig


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
