"""The offline and server scenarios in the report (docs/SCENARIOS.md): the figures of one machine, static
(matplotlib) and interactive (Plotly), from the frames of analysis/scenarios.py.

Offline: sustained throughput against the number of streams (requests in flight), one panel per deployment and
one line per batch size; the best trusted point is a star, points that cannot be trusted (contended, short of
the minimums, flagged) are hollow, and the single-stream figure is a dotted line. Server: p50 and p99 latency
(from the scheduled arrival, queueing included) against the offered Poisson rate, one panel per serving
configuration, with the p99 bound dashed and the knee (the highest rate meeting it) marked.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from plotly.subplots import make_subplots

from .figures import EmptyFigureError, _log_axis_formatter, _plain, _styled, new_figure, usable
from .interactive import TEMPLATE, esc

BATCH_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
STREAMS = "Streams (requests in flight)"
THROUGHPUT = "Sustained throughput [images/s]"
RATE = "Offered load [requests/s] (Poisson arrivals)"
LATENCY = "Latency from arrival [ms] (queueing included, log scale)"
PERCENTILES = (("p50_ms", "p50", "#1f77b4", "-"), ("p99_ms", "p99", "#d62728", "-"))
BOUND_COLOR, KNEE_COLOR = "#555555", "#2ca02c"


def _key(row: pd.Series | tuple) -> tuple:
    return tuple(row[k] for k in ("model", "setup", "input_size"))


def _panels(curve: pd.DataFrame, by: list[str]) -> list[pd.DataFrame]:
    return [part for _, part in curve.groupby(by, sort=True, dropna=False)]


def _batch_colors(curve: pd.DataFrame) -> dict[int, str]:
    batches = sorted(int(b) for b in curve["batch_size"].dropna().unique())
    return {b: BATCH_COLORS[i % len(BATCH_COLORS)] for i, b in enumerate(batches)}


def _grid(n: int) -> tuple[Figure, list]:
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(5.6 * ncols + 1.6, 3.9 * nrows, nrows, ncols)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _offline_data(curve: pd.DataFrame) -> pd.DataFrame:
    data = usable(curve, "images_per_s", "streams", "batch_size")
    if data.empty:
        raise EmptyFigureError("no offline point was measured")
    return data


def _best_by_deployment(best: pd.DataFrame | None) -> dict[tuple, pd.Series]:
    if best is None or best.empty:
        return {}
    return {_key(r): r for _, r in best.iterrows()}


@_styled
def offline_throughput(curve: pd.DataFrame, best: pd.DataFrame | None = None) -> Figure:
    """One machine's offline curves: images/s against streams, a panel per deployment, a line per batch size."""
    data = _offline_data(curve)
    colors = _batch_colors(data)
    bests = _best_by_deployment(best)
    panels = _panels(data, ["model", "setup", "input_size"])
    fig, axes = _grid(len(panels))
    for ax, part in zip(axes, panels):
        first = part.iloc[0]
        for batch, line in part.groupby("batch_size", sort=True):
            line = line.sort_values("streams")
            color = colors[int(batch)]
            ax.plot(line["streams"], line["images_per_s"], color=color, lw=1.2, label=f"batch {int(batch)}")
            trusted = line["trusted"].astype(bool).to_numpy()
            ax.scatter(line["streams"][trusted], line["images_per_s"][trusted], s=18, color=color, zorder=3)
            ax.scatter(line["streams"][~trusted], line["images_per_s"][~trusted], s=22, facecolors="white",
                       edgecolors=color, linewidths=1.0, zorder=3)
        b = bests.get(_key(first))
        if b is not None and not pd.isna(b["best_images_per_s"]):
            ax.scatter([b["best_streams"]], [b["best_images_per_s"]], marker="*", s=170,
                       color="#ffbf00" if b["trusted"] else "white", edgecolors="black", linewidths=0.7, zorder=5)
            ax.annotate(f"best {b['best_images_per_s']:.3g} images/s" + ("" if b["trusted"] else " (contended)")
                        + f"\n{_streams(b['best_streams'])} x batch {int(b['best_batch_size'])}",
                        (b["best_streams"], b["best_images_per_s"]),
                        xytext=(6, -4), textcoords="offset points", fontsize=6.5, va="top")
        if b is not None and not pd.isna(b["single_stream_images_per_s"]):
            ax.axhline(b["single_stream_images_per_s"], color="#777777", ls=":", lw=1.0)
            ax.text(0.01, b["single_stream_images_per_s"], " single stream, batch 1", color="#555555", fontsize=6.5,
                    va="bottom", transform=ax.get_yaxis_transform())
        streams = sorted(int(s) for s in part["streams"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(streams)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_ylim(bottom=0, top=max(part["images_per_s"].max(), b["single_stream_images_per_s"]
                                      if b is not None and not pd.isna(b["single_stream_images_per_s"]) else 0) * 1.22)
        ax.margins(x=0.12)
        ax.set_xlabel(STREAMS + " (log2 scale)")
        ax.set_ylabel(THROUGHPUT)
        ax.set_title(f"{_plain(first['name'])}\n{first['setup']}" + (f", {first['concurrency']}"
                                                                    if first["concurrency"] else ""),
                     loc="left", fontsize=8)
        ax.legend(loc="lower right", fontsize=6.5, frameon=False)
    fig.suptitle(f"Offline throughput against streams: {_plain(data['machine'].iloc[0])}", x=0.01, ha="left",
                 fontweight="bold")
    fig.supxlabel("star: best trusted point (white: only contended points); hollow: contended, short of the "
                  "minimums or flagged; dotted: single-stream images/s", x=0.01, ha="left", fontsize=6.5, color="#444444")
    return fig


def _streams(count: object) -> str:
    n = int(count)  # type: ignore[arg-type]
    return f"{n} stream{'s' if n != 1 else ''}"


def _server_data(curve: pd.DataFrame) -> pd.DataFrame:
    data = usable(curve, "target_rate", "p99_ms")
    if data.empty:
        raise EmptyFigureError("no offered rate of the server scenario completed a request")
    return data


def _serving(row: pd.Series) -> str:
    streams = "?" if pd.isna(row["streams"]) else int(row["streams"])
    batch = "?" if pd.isna(row["batch_size"]) else int(row["batch_size"])
    return f"{streams} stream{'' if streams == 1 else 's'}, batch {batch}"


def _knees(knees: pd.DataFrame | None) -> dict[str, pd.Series]:
    return {} if knees is None or knees.empty else {r["cell"]: r for _, r in knees.iterrows()}


@_styled
def server_latency(curve: pd.DataFrame, knees: pd.DataFrame | None = None) -> Figure:
    """One machine's server cells: p50 and p99 latency against the offered rate, a panel per serving
    configuration, the p99 bound dashed and the knee marked."""
    data = _server_data(curve)
    by_cell = _knees(knees)
    panels = _panels(data, ["model", "setup", "input_size", "cell"])
    fig, axes = _grid(len(panels))
    for ax, part in zip(axes, panels):
        part = part.sort_values("target_rate")
        first = part.iloc[0]
        for column, label, color, style in PERCENTILES:
            ax.plot(part["target_rate"], part[column], color=color, ls=style, lw=1.2, marker="o", ms=3, label=label)
        dropped = part[part["dropped"] > 0]
        if len(dropped):
            ax.scatter(dropped["target_rate"], dropped["p99_ms"], marker="x", s=40, color="black", zorder=4,
                       label="requests dropped (overloaded)")
        bound = first["p99_bound_ms"]
        if not pd.isna(bound):
            ax.axhline(bound, color=BOUND_COLOR, ls="--", lw=1.0, label=f"p99 bound {bound:.3g} ms")
        knee = by_cell.get(first["cell"])
        trusted = bool(first["trusted"])
        if knee is not None and not pd.isna(knee["knee_rate"]):
            ax.axvline(knee["knee_rate"], color=KNEE_COLOR if trusted else "#aaaaaa", ls=":", lw=1.2)
            ax.text(knee["knee_rate"], 0.98, f" knee {knee['knee_rate']:.3g} req/s"
                    + ("" if trusted else f" ({knee['excluded']})"), transform=ax.get_xaxis_transform(),
                    fontsize=6.5, color=KNEE_COLOR if trusted else "#777777", va="top")
        ax.set_yscale("log")
        _log_axis_formatter(ax, "y")
        ax.margins(x=0.06)
        ax.set_xlabel(RATE)
        ax.set_ylabel(LATENCY)
        ax.set_title(f"{_plain(first['name'])}\n{first['setup']}, {_serving(first)}", loc="left", fontsize=8)
        ax.legend(loc="best", fontsize=6.5, frameon=False)
    fig.suptitle(f"Server latency against offered load: {_plain(data['machine'].iloc[0])}", x=0.01, ha="left",
                 fontweight="bold")
    return fig


# --- interactive -------------------------------------------------------------------------------------------


def _subplots(n: int, titles: list[str]) -> go.Figure:
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    return make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.1,
                         vertical_spacing=min(0.3, 0.5 / max(nrows, 1)) if nrows > 1 else 0.1)


def _finish(fig: go.Figure, n: int, title: str, subtitle: str) -> go.Figure:
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    text = f"<b>{title}</b><br><span style='font-size:12px;color:#555'>{subtitle}</span>"
    fig.update_layout(template=TEMPLATE, title={"text": text, "x": 0.01, "xanchor": "left"},
                      height=140 + 380 * nrows, margin={"l": 70, "r": 20, "t": 110, "b": 60},
                      hoverlabel={"align": "left"}, legend={"font": {"size": 10}, "tracegroupgap": 4})
    fig.update_annotations(font_size=11)
    return fig


def _cell(index: int) -> dict[str, int]:
    return {"row": index // 2 + 1, "col": index % 2 + 1}


def offline_throughput_interactive(curve: pd.DataFrame, best: pd.DataFrame | None = None) -> go.Figure:
    data = _offline_data(curve)
    colors = _batch_colors(data)
    bests = _best_by_deployment(best)
    panels = _panels(data, ["model", "setup", "input_size"])
    n = len(panels)
    fig = _subplots(n, [f"{esc(p.iloc[0]['name'])}, {esc(p.iloc[0]['setup'])}" for p in panels])
    shown: set[int] = set()
    for i, part in enumerate(panels):
        at = _cell(i) if n > 1 else {"row": 1, "col": 1}
        for batch, line in part.groupby("batch_size", sort=True):
            line = line.sort_values("streams")
            b = int(batch)
            hover = [f"<b>{esc(r.name)}</b>, {esc(r.setup)}<br>{_streams(r.streams)} x batch {b}, "
                     f"{_int(r.threads_per_stream)} threads each<br>{r.images_per_s:.4g} images/s sustained over "
                     f"{r.duration_s:.3g} s, {_int(r.samples)} requests"
                     + ("" if r.trusted else "<br><i>not a candidate: " + ", ".join(
                         w for w, flag in (("contended", r.contended), ("short of the minimums", not r.met_minimums),
                                           ("flagged by the output check", not r.output_check_passed)) if flag)
                        + "</i>") for r in line.itertuples()]
            fig.add_trace(go.Scatter(
                x=line["streams"], y=line["images_per_s"], mode="lines+markers", name=f"batch {b}",
                legendgroup=f"batch {b}", showlegend=b not in shown, line={"color": colors[b], "width": 1.6},
                marker={"size": 7, "color": [colors[b] if t else "white" for t in line["trusted"]],
                        "line": {"color": colors[b], "width": 1.5}},
                text=hover, hovertemplate="%{text}<extra></extra>"), **at)
            shown.add(b)
        r = bests.get(_key(part.iloc[0]))
        if r is not None and not pd.isna(r["best_images_per_s"]):
            fig.add_trace(go.Scatter(
                x=[r["best_streams"]], y=[r["best_images_per_s"]], mode="markers", name="best point",
                legendgroup="best", showlegend=i == 0,
                marker={"symbol": "star", "size": 16, "color": "#ffbf00" if r["trusted"] else "white",
                        "line": {"color": "black", "width": 1}},
                text=[f"best: {r['best_images_per_s']:.4g} images/s at {_streams(r['best_streams'])} x batch "
                      f"{int(r['best_batch_size'])}" + (f"; {r['gain']:.3g}x single-stream" if not pd.isna(r["gain"])
                                                       else "")
                      + ("" if r["trusted"] else " (measured while contended: no trusted point)")],
                hovertemplate="%{text}<extra></extra>"), **at)
        if r is not None and not pd.isna(r["single_stream_images_per_s"]):
            streams = sorted(part["streams"].unique())
            fig.add_trace(go.Scatter(
                x=[streams[0], streams[-1]], y=[r["single_stream_images_per_s"]] * 2, mode="lines",
                name="single stream, batch 1", legendgroup="single", showlegend=i == 0,
                line={"color": "#777", "dash": "dot", "width": 1},
                hovertemplate=f"single stream, batch 1: {r['single_stream_images_per_s']:.4g} images/s "
                              f"({esc(r['single_stream_source'])})<extra></extra>"), **at)
        fig.update_xaxes(type="log", tickvals=sorted(part["streams"].unique()), title_text=STREAMS + " (log2)", **at)
        fig.update_yaxes(rangemode="tozero", title_text=THROUGHPUT, **at)
    return _finish(fig, n, f"Offline throughput against streams: {esc(data['machine'].iloc[0])}",
                   "star: best trusted point (white: only contended points); hollow: contended, short of the "
                   "minimums or flagged; dotted: single-stream images/s")


def _int(value: object) -> str:
    try:
        return str(int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks covering [low, high] (Plotly labels a short log range with bare digits otherwise)."""
    if not (low > 0 and high >= low):
        return []
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in (1, 2, 5)]
    inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    return inside or ticks


def server_latency_interactive(curve: pd.DataFrame, knees: pd.DataFrame | None = None) -> go.Figure:
    data = _server_data(curve)
    by_cell = _knees(knees)
    panels = _panels(data, ["model", "setup", "input_size", "cell"])
    n = len(panels)
    fig = _subplots(n, [f"{esc(p.iloc[0]['name'])}, {esc(p.iloc[0]['setup'])}, {_serving(p.iloc[0])}"
                        for p in panels])
    for i, part in enumerate(panels):
        at = _cell(i) if n > 1 else {"row": 1, "col": 1}
        part = part.sort_values("target_rate")
        first = part.iloc[0]
        hover = [f"<b>{esc(r.name)}</b>, {esc(r.setup)}<br>offered {r.target_rate:.4g} req/s, achieved "
                 f"{r.achieved_rate:.4g}<br>p50 {r.p50_ms:.3g} ms, p90 {r.p90_ms:.3g} ms, p99 {r.p99_ms:.3g} ms"
                 f"<br>{_int(r.completed)} of {_int(r.count)} requests completed"
                 + (f", {int(r.dropped)} dropped" if r.dropped else "")
                 + (" (meets the bound)" if r.meets_bound else " (misses the bound)") for r in part.itertuples()]
        for column, label, color, _ in PERCENTILES:
            fig.add_trace(go.Scatter(x=part["target_rate"], y=part[column], mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=i == 0, line={"color": color, "width": 1.6},
                                     marker={"size": 6}, text=hover, hovertemplate="%{text}<extra></extra>"), **at)
        dropped = part[part["dropped"] > 0]
        if len(dropped):
            fig.add_trace(go.Scatter(x=dropped["target_rate"], y=dropped["p99_ms"], mode="markers",
                                     name="requests dropped", legendgroup="dropped",
                                     marker={"symbol": "x", "size": 10, "color": "black"}, hoverinfo="skip"), **at)
        rates = [part["target_rate"].min(), part["target_rate"].max()]
        if not pd.isna(first["p99_bound_ms"]):
            fig.add_trace(go.Scatter(x=rates, y=[first["p99_bound_ms"]] * 2, mode="lines", name="p99 bound",
                                     legendgroup="bound", showlegend=i == 0,
                                     line={"color": BOUND_COLOR, "dash": "dash", "width": 1},
                                     hovertemplate=f"p99 bound {first['p99_bound_ms']:.3g} ms "
                                                   f"({esc(first['bound_source'])})<extra></extra>"), **at)
        knee = by_cell.get(first["cell"])
        if knee is not None and not pd.isna(knee["knee_rate"]):
            trusted = bool(knee["trusted"])
            low = np.nanmin(part["p50_ms"].to_numpy(float))
            high = np.nanmax(part["p99_ms"].to_numpy(float))
            fig.add_trace(go.Scatter(
                x=[knee["knee_rate"]] * 2, y=[low, high], mode="lines+text", name="knee", legendgroup="knee",
                text=["", f"knee {knee['knee_rate']:.3g} req/s" + ("" if trusted else " (contended)")],
                textposition="top right", textfont={"size": 10, "color": KNEE_COLOR if trusted else "#777"},
                showlegend=i == 0, line={"color": KNEE_COLOR if trusted else "#aaa", "dash": "dot", "width": 1.5},
                hovertemplate=f"knee: {knee['knee_rate']:.4g} req/s, p99 {knee['knee_p99_ms']:.3g} ms"
                              + ("" if trusted else f" ({esc(knee['excluded'])}: not a trusted knee)")
                              + "<extra></extra>"), **at)
        fig.update_xaxes(title_text=RATE, **at)
        values = part[["p50_ms", "p99_ms"]].to_numpy(float)
        bound = first["p99_bound_ms"]
        ticks = _log_ticks(np.nanmin(values), max(np.nanmax(values), 0 if pd.isna(bound) else bound))
        fig.update_yaxes(type="log", title_text=LATENCY, tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], **at)
    return _finish(fig, n, f"Server latency against offered load: {esc(data['machine'].iloc[0])}",
                   "p50 and p99 from the scheduled arrival; dashed: the p99 bound; dotted: the knee, the highest "
                   "rate whose p99 met the bound with nothing dropped")
