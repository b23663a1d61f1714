"""Interactive figures (Plotly) for the HTML report: the static figures' content, with hover details.

Plotly draws hover text, legends and titles from a small HTML subset, so every user-controlled string
(model names: `python:` models and suite entries are user text; host names) is HTML-escaped here before it
reaches a figure. A figure with nothing to draw raises EmptyFigureError.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..analysis.pareto import pareto_front
from .figures import EmptyFigureError, roof_span, roofs, usable
from .style import AXIS, family_colors

TEMPLATE = "plotly_white"
BALL_MAX_PX = 46.0  # diameter of the largest model's ball


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    if math.isnan(number):
        return "-"
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.{digits}g}"


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, x_log: bool = False, y_log: bool = False,
            height: int = 560, subtitle: str = "") -> go.Figure:
    text = f"<b>{title}</b>" + (f"<br><span style='font-size:12px;color:#555'>{subtitle}</span>" if subtitle else "")
    top = 60 + 18 * (subtitle.count("<br>") + 1 if subtitle else 0)
    fig.update_layout(template=TEMPLATE, title={"text": text, "x": 0.01, "xanchor": "left"}, height=height,
                      margin={"l": 70, "r": 20, "t": top, "b": 60}, hoverlabel={"align": "left"},
                      legend={"itemsizing": "constant", "font": {"size": 10}, "tracegroupgap": 4})
    # log axes label only the 1-2-5 digits: every digit crowds a short range
    fig.update_xaxes(title_text=x_title, showline=True, linecolor="#444", ticks="outside",
                     **({"type": "log", "dtick": "D2"} if x_log else {}))
    fig.update_yaxes(title_text=y_title, showline=True, linecolor="#444", ticks="outside",
                     **({"type": "log", "dtick": "D2"} if y_log else {}))
    return fig


def _hover_model(row: pd.Series) -> str:
    """Hover text of one model: the figures an engineer checks first, measured/reported said."""
    lines = [f"<b>{esc(row['name'])}</b> ({esc(row['family'])})"]
    if "machine" in row and isinstance(row.get("machine"), str):
        lines.append(f"machine: {esc(row['machine'])}")
    if "setup" in row and isinstance(row.get("setup"), str):
        lines.append(f"config: {esc(row['setup'])}, batch {esc(row.get('batch_size'))}, input "
                     f"{esc(row.get('input_size'))} px")
    source = row.get("accuracy_source", "none")
    if isinstance(row.get("top1"), (float, int)) and not pd.isna(row.get("top1")):
        lines.append(f"top-1 {_num(row['top1'], 4)}% / top-5 {_num(row.get('top5'), 4)}% ({esc(source)})")
    else:
        lines.append("accuracy: none measured or reported")
    if isinstance(row.get("accuracy_detail"), str) and row["accuracy_detail"]:
        lines.append(f"<i>{esc(row['accuracy_detail'][:120])}</i>")
    for column, label in (("params", "params"), ("gmacs", "G-MACs/image"), ("images_per_s", "images/s"),
                          ("latency_ms", "ms/batch"), ("ms_per_image", "ms/image"), ("memory_mb", "memory MB"),
                          ("gflops_per_s", "achieved GFLOP/s"), ("fraction_of_peak", "% of peak"),
                          ("arithmetic_intensity", "FLOP/byte"), ("accuracy_density", "top-1 %/M params")):
        if column in row and not pd.isna(row[column]):
            value = {"params": 1e-6, "fraction_of_peak": 100.0}.get(column, 1.0) * row[column]
            lines.append(f"{label}: {_num(value)}" + (" M" if column == "params" else ""))
    if isinstance(row.get("contended"), (bool, np.bool_)) and row["contended"]:
        lines.append("<i>timed while other processes used the CPU</i>")
    return "<br>".join(lines)


def _family_traces(fig: go.Figure, data: pd.DataFrame, x: str, y: str, sizes: np.ndarray | float,
                   colors: dict[str, str], size_mode_area: bool = False) -> None:
    """One trace per family (the legend), rims: black = measured accuracy, grey = reported."""
    sizes = np.broadcast_to(np.asarray(sizes, float), (len(data),))
    for family in sorted(data["family"].unique()):
        part_mask = (data["family"] == family).to_numpy()
        part = data[part_mask]
        measured = (part.get("accuracy_source", pd.Series("none", index=part.index)) == "measured").to_numpy()
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="markers", name=esc(family), legendgroup=esc(family),
            text=[_hover_model(r) for _, r in part.iterrows()], hovertemplate="%{text}<extra></extra>",
            marker={"size": sizes[part_mask], "sizemode": "diameter", "color": colors[family], "opacity": 0.7,
                    "line": {"color": np.where(measured, "black", "#999999").tolist(),
                             "width": np.where(measured, 2.0, 0.6).tolist()}},
        ))


def _front_trace(front: pd.DataFrame, x: str, y: str, shape: str = "hv") -> go.Scatter:
    return go.Scatter(x=front[x], y=front[y], mode="lines", line={"color": "#333", "dash": "dash", "width": 1.2,
                                                                  "shape": shape},
                      name="Pareto front", hoverinfo="skip")


def _front_labels(front: pd.DataFrame, x: str, y: str) -> go.Scatter:
    """Names of the Pareto models (the others are in the hover: labelling all would pile them up)."""
    return go.Scatter(x=front[x], y=front[y], mode="text", text=[esc(n) for n in front["name"]],
                      textposition="top center", textfont={"size": 10, "color": "#333"}, showlegend=False,
                      hoverinfo="skip")


def _accuracy_subtitle(data: pd.DataFrame) -> str:
    counts = data["accuracy_source"].value_counts()
    return (f"accuracy: {int(counts.get('measured', 0))} measured, {int(counts.get('reported', 0))} reported "
            "(measured preferred); black rim = measured")


def ball_chart(models: pd.DataFrame, metric: str = "top1") -> go.Figure:
    """Fig. 1: accuracy vs G-MACs per image; ball area proportional to parameters."""
    data = usable(models, metric, "gmacs", "params")
    if data.empty:
        raise EmptyFigureError(f"no model has both a {metric} accuracy and an operation count")
    colors = family_colors(data["family"])
    diameters = BALL_MAX_PX * np.sqrt(data["params"].to_numpy(float) / data["params"].max())  # area ~ params
    fig = go.Figure()
    _family_traces(fig, data, "gmacs", metric, np.maximum(diameters, 4.0), colors)
    front = pareto_front(data, "gmacs", metric)
    fig.add_trace(_front_trace(front, "gmacs", metric))
    fig.add_trace(_front_labels(front, "gmacs", metric))
    name = "Top-1" if metric == "top1" else "Top-5"
    return _layout(fig, f"{name} accuracy vs operations (Bianco et al. 2018, Fig. 1)", AXIS["gmacs"], AXIS[metric],
                   subtitle="ball area proportional to parameters; " + _accuracy_subtitle(data), height=620)


def density_bars(models: pd.DataFrame) -> go.Figure:
    data = usable(models, "accuracy_density").sort_values("accuracy_density")
    if data.empty:
        raise EmptyFigureError("no model has both an accuracy and a parameter count")
    colors = family_colors(data["family"])
    fig = go.Figure(go.Bar(
        x=data["accuracy_density"], y=[esc(n) for n in data["name"]], orientation="h",
        marker={"color": [colors[f] for f in data["family"]],
                "line": {"color": ["black" if s == "measured" else "rgba(0,0,0,0)" for s in data["accuracy_source"]],
                         "width": 1}},
        text=[_hover_model(r) for _, r in data.iterrows()], hovertemplate="%{text}<extra></extra>",
        textposition="none", showlegend=False))
    fig = _layout(fig, "Accuracy density per model (Bianco et al. 2018, Fig. 2a)", AXIS["accuracy_density"], "",
                  height=max(420, 120 + 16 * len(data)), subtitle=_accuracy_subtitle(data))
    return fig.update_yaxes(type="category", dtick=1, tickfont={"size": 10})


def accuracy_vs_density(models: pd.DataFrame) -> go.Figure:
    data = usable(models, "accuracy_density", "top1")
    if data.empty:
        raise EmptyFigureError("no model has both an accuracy and a parameter count")
    fig = go.Figure()
    _family_traces(fig, data, "accuracy_density", "top1", 11.0, family_colors(data["family"]))
    return _layout(fig, "Top-1 accuracy vs accuracy density (Bianco et al. 2018, Fig. 2b)",
                   AXIS["accuracy_density"] + " (log scale)", AXIS["top1"], x_log=True,
                   subtitle=_accuracy_subtitle(data))


def accuracy_vs_resource(part: pd.DataFrame, x: str = "images_per_s",
                         fps_marks: Sequence[float] = (30.0,)) -> go.Figure:
    """Fig. 3 for one machine and setup: top-1 vs throughput (or memory), log x, with the Pareto front."""
    higher_is_better = x == "images_per_s"
    data = usable(part[part["status"] == "ok"], x, "top1")
    if data.empty:
        raise EmptyFigureError(f"no model has both a top-1 accuracy and {x.replace('_', ' ')}")
    fig = go.Figure()
    _family_traces(fig, data, x, "top1", 11.0, family_colors(data["family"]))
    front = pareto_front(data, x, "top1", minimize_x=not higher_is_better)
    fig.add_trace(_front_trace(front.iloc[::-1] if higher_is_better else front, x, "top1"))
    fig.add_trace(_front_labels(front, x, "top1"))
    if higher_is_better:  # a trace, not add_vline: its annotation misreads x on log axes
        low, high = data["top1"].min(), data["top1"].max()
        for fps in fps_marks:
            fig.add_trace(go.Scatter(x=[fps, fps], y=[low, high], mode="lines", hoverinfo="skip",
                                     line={"color": "#2ca02c", "dash": "dot", "width": 1.2},
                                     name=f"{fps:g} images/s"))
    first = data.iloc[0]
    what = "throughput" if higher_is_better else "memory"
    return _layout(fig, f"Top-1 accuracy vs {what}: {esc(first['machine'])}", f"{AXIS[x]} (log scale)",
                   AXIS["top1"], x_log=True, height=620,
                   subtitle=f"{esc(first['setup'])}, batch size {int(first['batch_size'])}; Pareto models labelled; "
                            + _accuracy_subtitle(data))


def metric_vs_batch(part: pd.DataFrame, y: str = "ms_per_image") -> go.Figure:
    """One machine and setup: time per image (or memory) vs batch size, one line per model."""
    data = usable(part[part["status"] == "ok"], y, "batch_size")
    if data.empty:
        raise EmptyFigureError(f"no {y.replace('_', ' ')} measured")
    colors = family_colors(data["family"])
    fig = go.Figure()
    for (family, _model, _input), line in data.groupby(["family", "model", "input_size"], sort=True):
        line = line.sort_values("batch_size")
        fig.add_trace(go.Scatter(
            x=line["batch_size"], y=line[y], mode="lines+markers", name=esc(line["name"].iloc[0]),
            legendgroup=esc(family), legendgrouptitle_text=esc(family), line={"color": colors[family], "width": 1.5},
            marker={"size": 5}, text=[_hover_model(r) for _, r in line.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    first = data.iloc[0]
    what = "Time per image" if y == "ms_per_image" else "Memory"
    fig = _layout(fig, f"{what} vs batch size: {esc(first['machine'])}", AXIS["batch_size"] + " (log2 scale)",
                  AXIS[y] + " (log scale)", x_log=True, y_log=True, height=640,
                  subtitle=esc(first["setup"]) + "; click a legend entry to hide a model, double-click to isolate it")
    fig.update_xaxes(tickvals=sorted(data["batch_size"].unique()))
    return fig


def params_vs_memory(part: pd.DataFrame) -> go.Figure:
    data = usable(part[part["status"] == "ok"], "params", "memory_mb")
    if data.empty:
        raise EmptyFigureError("no model has both a parameter count and memory")
    data = data.assign(params_m=data["params"] / 1e6)
    fig = go.Figure()
    _family_traces(fig, data.assign(accuracy_source="none"), "params_m", "memory_mb", 11.0,
                   family_colors(data["family"]))
    per_param = {"fp16": 2, "bf16": 2}.get(str(data["dtype"].iloc[0]), 4)
    span = np.geomspace(data["params_m"].min() * 0.8, data["params_m"].max() * 1.25, 20)
    fig.add_trace(go.Scatter(x=span, y=span * 1e6 * per_param / 2**20, mode="lines", hoverinfo="skip",
                             line={"color": "#555", "dash": "dot", "width": 1},
                             name=f"weights alone ({per_param} bytes/param)"))
    first = data.iloc[0]
    return _layout(fig, f"Memory vs parameters: {esc(first['machine'])}", AXIS["params_m"] + " (log scale)",
                   AXIS["memory_mb"] + " (log scale)", x_log=True, y_log=True,
                   subtitle=f"{esc(first['setup'])}, batch size {int(first['batch_size'])}")


def speed_ratio(ratios: pd.DataFrame, label_a: str, label_b: str, batch_size: int = 1) -> go.Figure:
    data = usable(ratios[ratios["batch_size"] == batch_size], "speed_ratio").sort_values("speed_ratio")
    data = data.drop_duplicates("model", keep="last")
    if data.empty:
        raise EmptyFigureError(f"no model was timed in a matching setup on both machines at batch size {batch_size}")
    colors = family_colors(data["family"])
    hover = [f"<b>{esc(r['name'])}</b> ({esc(r['family'])})<br>A: {_num(r['images_per_s_a'])} images/s, "
             f"{_num(r['memory_mb_a'])} MB ({esc(r['setup_a'])})<br>B: {_num(r['images_per_s_b'])} images/s, "
             f"{_num(r['memory_mb_b'])} MB ({esc(r['setup_b'])})<br>speed A/B: {_num(r['speed_ratio'])}x, "
             f"memory A/B: {_num(r['memory_ratio'])}x" for _, r in data.iterrows()]
    fig = go.Figure(go.Bar(x=data["speed_ratio"], y=[esc(n) for n in data["name"]], orientation="h",
                           marker={"color": [colors[f] for f in data["family"]]}, text=hover,
                           hovertemplate="%{text}<extra></extra>", textposition="none", showlegend=False))
    fig.add_shape(type="line", x0=1.0, x1=1.0, y0=0, y1=1, yref="paper", line={"color": "black", "width": 1})
    fig = _layout(fig, "Speed ratio per model (images/s on A / images/s on B)",
                  f"speed ratio at batch size {batch_size} (log scale; > 1: A is faster)", "", x_log=True,
                  height=max(420, 160 + 16 * len(data)), subtitle=f"A: {esc(label_a)}<br>B: {esc(label_b)}")
    return fig.update_yaxes(type="category", dtick=1, tickfont={"size": 10})


def roofline(part: pd.DataFrame) -> go.Figure:
    """One machine and setup: achieved GFLOP/s vs arithmetic intensity (log-log), one point per model and batch
    size (bigger markers: bigger batches), with the peak FLOP/s and the memory-bandwidth roof where measured."""
    data = usable(part[part["status"] == "ok"], "arithmetic_intensity", "gflops_per_s")
    data = data[(data["gflops_per_s"] > 0) & (data["arithmetic_intensity"] > 0)]
    if data.empty:
        raise EmptyFigureError("no timed cell has both an achieved GFLOP/s and an arithmetic intensity")
    colors = family_colors(data["family"])
    sizes = 6.0 + 2.5 * np.log2(np.maximum(data["batch_size"].to_numpy(float), 1.0))
    fig = go.Figure()
    _family_traces(fig, data.assign(accuracy_source="none"), "arithmetic_intensity", "gflops_per_s", sizes, colors)
    peaks = roofs(data)
    low, high = roof_span(data["arithmetic_intensity"], peaks)
    for precision, peak, bandwidth in peaks:
        start = low
        if bandwidth == bandwidth and bandwidth > 0:
            start = max(peak / bandwidth, low)
            xs = np.geomspace(low, start, 20)
            fig.add_trace(go.Scatter(x=xs, y=xs * bandwidth, mode="lines", hoverinfo="skip",
                                     line={"color": "#555", "dash": "dashdot", "width": 1.2},
                                     name=f"memory roof {_num(bandwidth)} GB/s (copy)"))
        fig.add_trace(go.Scatter(x=[start, high], y=[peak, peak], mode="lines", hoverinfo="skip",
                                 line={"color": "black", "width": 1.6},
                                 name=f"{esc(precision)} peak {_num(peak)} GFLOP/s"))
    first = data.iloc[0]
    note = "" if peaks else "; no peak stored for this setup (dnnbench peak)"
    fig = _layout(fig, f"Roofline: {esc(first['machine'])}", AXIS["arithmetic_intensity"] + " (log scale)",
                  AXIS["gflops_per_s"] + " (log scale)", x_log=True, y_log=True, height=600,
                  subtitle=f"{esc(first['setup'])}; one point per model and batch size (bigger: larger batch)" + note)
    bottom = float(data["gflops_per_s"].min()) / 1.6
    top = max([float(data["gflops_per_s"].max())] + [peak for _, peak, _ in peaks]) * 1.4
    fig.update_yaxes(range=[math.log10(bottom), math.log10(top)])
    return fig.update_xaxes(range=[math.log10(low), math.log10(high)])


def zoo_view(models: pd.DataFrame) -> go.Figure:
    """Every counted model with a top-1 figure against G-MACs per image (log): the paper's models coloured by
    family and named, the others one grey WebGL trace (a thousand points and more stay quick to draw)."""
    data = usable(models, "top1", "gmacs")
    data = data[data["gmacs"] > 0]
    if data.empty:
        raise EmptyFigureError("no counted model has a top-1 accuracy")
    paper = (data["in_paper"].fillna(False).astype(bool) if "in_paper" in data
             else pd.Series(False, index=data.index)).to_numpy()
    fig = go.Figure()
    others = data[~paper]
    if len(others):
        hover = [f"<b>{esc(n)}</b><br>top-1 {_num(t, 4)}% ({esc(s)})<br>G-MACs/image {_num(g)}<br>params "
                 f"{_num(p / 1e6 if p == p else None)} M" for n, t, s, g, p in
                 zip(others["name"], others["top1"], others["accuracy_source"], others["gmacs"], others["params"])]
        fig.add_trace(go.Scattergl(x=others["gmacs"], y=others["top1"], mode="markers", name="other models",
                                   text=hover, hovertemplate="%{text}<extra></extra>",
                                   marker={"size": 5, "color": "#9a9a9a", "opacity": 0.55}))
    highlighted = data[paper]
    if len(highlighted):
        _family_traces(fig, highlighted, "gmacs", "top1", 10.0, family_colors(highlighted["family"]))
        fig.add_trace(go.Scatter(x=highlighted["gmacs"], y=highlighted["top1"], mode="text",
                                 text=[esc(n) for n in highlighted["name"]], textposition="top center",
                                 textfont={"size": 9, "color": "#333"}, showlegend=False, hoverinfo="skip"))
    fig.add_trace(_front_trace(pareto_front(data, "gmacs", "top1"), "gmacs", "top1"))
    return _layout(fig, "Top-1 accuracy vs operations: every counted model", AXIS["gmacs"] + " (log scale)",
                   AXIS["top1"], x_log=True, height=640,
                   subtitle=f"{len(data)} models with a top-1 figure; "
                            + (f"the paper's {len(highlighted)} in colour and named" if len(highlighted) else
                               "none of the paper's counted")
                            + f", {len(others)} others in grey; " + _accuracy_subtitle(data))


def screen_front(screened: pd.DataFrame) -> go.Figure:
    """The screen's models that fit: published top-1 against latency; measured latencies filled, predicted ones
    open with their 5-95% interval; the Pareto front dashed and named."""
    data = usable(screened[screened["fits"].astype(bool)], "top1", "latency_ms")
    if data.empty:
        raise EmptyFigureError("no screened model fits the limits and has a published top-1")
    fig = go.Figure()
    for source, style in (("predicted", {"symbol": "circle-open", "color": "#1f77b4", "size": 9}),
                          ("measured", {"symbol": "circle", "color": "#d62728", "size": 11,
                                        "line": {"color": "black", "width": 1}})):
        part = data[data["latency_source"] == source]
        if part.empty:
            continue
        hover = [f"<b>{esc(r.name)}</b><br>top-1 {_num(r.top1, 4)}% ({esc(r.accuracy_source)})<br>latency "
                 f"{_num(r.latency_ms)} ms ({source})"
                 + (f", predicted {_num(r.predicted_ms)} ms [{_num(r.predicted_low_ms)}, {_num(r.predicted_high_ms)}]"
                    if source == "measured" and r.predicted_ms == r.predicted_ms else
                    f" [{_num(r.predicted_low_ms)}, {_num(r.predicted_high_ms)}]" if source == "predicted" else "")
                 + f"<br>memory {_num(r.memory_mb)} MB ({esc(r.memory_source)})" for r in part.itertuples()]
        error = None
        if source == "predicted":
            high = (part["predicted_high_ms"] - part["latency_ms"]).clip(lower=0).fillna(0)
            low = (part["latency_ms"] - part["predicted_low_ms"]).clip(lower=0).fillna(0)
            error = {"type": "data", "symmetric": False, "array": high, "arrayminus": low, "color": "#9ecae1",
                     "thickness": 1}
        fig.add_trace(go.Scatter(x=part["latency_ms"], y=part["top1"], mode="markers", error_x=error,
                                 name=f"latency {source}" + (" (5-95% interval)" if source == "predicted" else " here"),
                                 text=hover, hovertemplate="%{text}<extra></extra>", marker=style))
    front = data[data["on_front"].astype(bool)].sort_values("latency_ms")
    fig.add_trace(_front_trace(front, "latency_ms", "top1"))
    fig.add_trace(_front_labels(front, "latency_ms", "top1"))
    measured = int((data["latency_source"] == "measured").sum())
    return _layout(fig, "Screen: published top-1 vs latency of the models that fit", AXIS["latency_ms"]
                   + " (log scale)", AXIS["top1"] + ", published", x_log=True, height=600,
                   subtitle=f"{len(data)} models; {measured} measured on this machine, {len(data) - measured} "
                            "predicted from the calibration; Pareto models named")
