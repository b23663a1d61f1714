"""How results look in a terminal (Rich) and in files (CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the layers below import torch: the functions that need them import them when called
    import pandas as pd

    from ..measure.complexity import ComplexityResult, LayerComplexity
    from ..store import ResultRecord
    from ..zoo import ModelSpec

from ..store.values import MemoryValue, OutputCheckInfo, SetupInfo, TimeValue

MAC_HEADERS = {
    "standard": "MACs: convolutions + linear + matrix products",
    "conv-only": "MACs: convolutions only",
    "extended": "MACs: convolutions + linear + matrix products; element ops counted apart",
    "bianco2018": "the 2018 companion code's count: nn.Conv2d only, groups ignored, bias counted, "
                  "resnet* halved (not true MACs)",
}
FLOPS_RULES = {"extended": "FLOPs = 2 x MACs + element ops",
               "bianco2018": "FLOPs = 2 x MACs + bias additions, halved for resnet*"}


def reported_of(spec: ModelSpec) -> tuple[Any, str]:
    """The figure shown as a model's reported accuracy: the 2018-era one, else its weights' publisher's
    (timm's results for timm tags); with its source, or "accuracy unknown" where there is none."""
    from ..zoo.timm_results import UNKNOWN

    reported = spec.published_accuracy
    return reported, reported.source if reported else UNKNOWN


def model_rows(specs: Iterable[ModelSpec]) -> list[dict[str, Any]]:
    rows = []
    for s in specs:
        w = s.weights
        reported, source = reported_of(s)
        rows.append({
            "id": s.id, "paper_name": s.paper_name or "", "family": s.family, "year": s.year, "builder": s.builder,
            "input_size": s.input_size, "weights": w.ref or "", "weights_same_as_2018": w.same_as_2018,
            "reported_top1": reported.top1 if reported else None,
            "reported_top5": reported.top5 if reported else None,
            "reported_source": source,
            "preprocessing": s.preprocessing.describe() if s.preprocessing else "",
            "notes": s.notes,
        })
    return rows


def models_table(specs: Sequence[ModelSpec], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for header, justify in [("id", "left"), ("paper name", "left"), ("family", "left"), ("year", "right"),
                            ("builder", "left"), ("input", "right"), ("weights", "left"),
                            ("reported top-1/top-5 (%)", "right")]:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for s in specs:
        w = s.weights
        flag = {True: "", False: " [yellow](not the 2018 weights)[/]", None: ""}[w.same_as_2018]
        weights = (w.ref or "[dim]none[/]") + flag
        figure, source = reported_of(s)
        top5 = f" / {figure.top5:.2f}" if figure and figure.top5 is not None else ""
        reported = f"{figure.top1:.2f}{top5}" if figure else f"[dim]{source}[/]"
        table.add_row(s.id, s.paper_name or "", s.family, str(s.year or ""), s.builder, str(s.input_size), weights,
                      reported)
    return table


def complexity_rows(results: Iterable[ComplexityResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        row = r.to_dict()
        row["output_shape"] = "x".join(map(str, row["output_shape"]))
        rows.append(row)
    return rows


def complexity_table(results: Sequence[ComplexityResult]) -> Table:
    mode = results[0].mode if results else "standard"
    rule = FLOPS_RULES.get(mode, "FLOPs = 2 x MACs")
    title = f"Complexity, counted by {results[0].counter if results else ''}\n{MAC_HEADERS[mode]}; {rule}"
    table = Table(title=title, title_justify="left")
    for header in ["model", "input", "batch", "params (M)", "weights (MB)", "GMACs", "GFLOPs", "activations (M)"]:
        table.add_column(header, justify="left" if header == "model" else "right")
    if mode == "extended":
        table.add_column("G element ops", justify="right")
    for r in results:
        row = [r.model, str(r.input_size), str(r.batch_size), f"{r.params / 1e6:.3f}", f"{r.param_bytes / 2**20:.1f}",
               f"{r.macs / 1e9:.3f}", f"{r.flops / 1e9:.3f}", f"{r.activations / 1e6:.3f}"]
        if mode == "extended":
            row.append(f"{r.element_ops / 1e9:.3f}")
        table.add_row(*row)
    return table


LAYER_SORTS = ("order", "macs", "params", "path", "type")


def sorted_layers(layers: Sequence[LayerComplexity], sort_by: str) -> list[LayerComplexity]:
    if sort_by == "order":
        return list(layers)
    reverse = sort_by in ("macs", "params")
    return sorted(layers, key=lambda layer: getattr(layer, sort_by), reverse=reverse)


def layer_rows(result: ComplexityResult, layers: Sequence[LayerComplexity]) -> list[dict[str, Any]]:
    total = result.macs or 1
    return [{"model": result.model, "path": layer.path, "type": layer.type, "params": layer.params, "macs": layer.macs,
             "macs_share": layer.macs / total, "element_ops": layer.element_ops,
             "output_shape": "x".join(map(str, layer.output_shape or ())), "calls": layer.calls} for layer in layers]


def layers_table(result: ComplexityResult, layers: Sequence[LayerComplexity]) -> Table:
    table = Table(title=f"{result.model}: per layer ({MAC_HEADERS[result.mode]}), input "
                        f"{result.batch_size}x3x{result.input_size}x{result.input_size}", title_justify="left")
    for header in ["path", "type", "params", "MMACs", "share", "output shape"]:
        table.add_column(header, justify="left" if header in ("path", "type", "output shape") else "right")
    for row in layer_rows(result, layers):
        table.add_row(row["path"], row["type"], f"{row['params']:,}", f"{row['macs'] / 1e6:.3f}",
                      f"{100 * row['macs_share']:.1f}%", row["output_shape"])
    return table


def emit_layers(console: Console, results: Sequence[ComplexityResult], sort_by: str, top: int | None, fmt: str,
                output: Path | None) -> None:
    """`profile --per-layer`: a table per model, or all the models' layers as one CSV/JSON."""
    rows = []
    for result in results:
        layers = sorted_layers(result.layers, sort_by)[:top]
        rows += layer_rows(result, layers)
        if fmt == "table" and output is None:
            console.print(layers_table(result, layers))
    if fmt != "table" or output is not None:
        emit(console, rows, None, fmt, output)


def to_text(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def emit(console: Console, rows: list[dict[str, Any]], table: Table | None, fmt: str, output: Path | None) -> None:
    """Print a Rich table, or CSV/JSON text; with `output`, write the text to that file instead."""
    if output is not None:
        from ..files import atomic_file

        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(output) as staged:  # whole or not at all: a full disk leaves the old file
            staged.write_text(to_text(rows, "csv" if fmt == "table" else fmt), encoding="utf-8")
        console.print(f"wrote {len(rows)} rows to {output}", style="dim")
    elif fmt == "table" and table is not None:
        console.print(table)
    else:
        print(to_text(rows, fmt), end="")


def run_summary_table(records: Sequence[ResultRecord]) -> Table:
    """One row per (model, deployment, threads, batch size): time and memory side by side, with how they were
    measured and, for every deployment, its output check against eager fp32."""
    table = Table(title="Inference time (median over trials of the per-batch wall time; interval: 95% CI over "
                        "trials, or within one process for one trial; \"range (n = k)\" where too few samples for a CI), "
                        "the spread between trials and within one, and memory", title_justify="left")
    energy_cells = any(r.metric == "energy" for r in records)  # a J/image column only for sweeps that asked
    for header in ["model", "deployment", "threads", "batch", "status", "median ms", "interval", "trials",
                   "between %", "within ±%", "ms/image", "images/s", "sustained img/s", "stop", "set-up s", "check",
                   "peak MB", "estimate MB", *(["J/image"] if energy_cells else []), "note"]:
        table.add_column(header, justify="left" if header in ("model", "deployment", "status", "interval", "stop",
                                                              "check", "note") else "right")
    cells: dict[tuple, dict[str, ResultRecord]] = {}
    for r in records:
        if r.metric in ("time", "memory", "energy"):
            key = (r.model, f"{r.config.get('backend', 'eager')} {r.config.get('dtype', 'fp32')}",
                   r.config.get("threads"), r.config.get("batch_size"))
            cells.setdefault(key, {})[r.metric] = r
    for (model, deployment, threads, batch), metrics in cells.items():
        time_r, mem_r = metrics.get("time"), metrics.get("memory")
        status = ", ".join(sorted({m.status for m in metrics.values()}))
        row = [model, deployment, str(threads or "default"), str(batch), status]
        timed = time_r.values if time_r is not None and time_r.status == "ok" else None
        if isinstance(timed, TimeValue):
            row += [_number(timed.latency_s, 1e3, ".2f"), timed.ci_text, str(timed.trial_count),
                    _number(timed.between_trial_cv, 100, ".1f"), _number(timed.within_trial_rel, 100, ".1f"),
                    _number(timed.ms_per_image, 1, ".2f"), _number(timed.images_per_s, 1, ".1f"),
                    _number(timed.sustained_images_per_s, 1, ".1f"), timed.stop_reason or "-", setup_text(timed.setup),
                    check_text(timed.output_check)]
        else:
            row += ["-"] * 11
        if mem_r is not None and mem_r.status == "ok" and isinstance(mem_r.values, MemoryValue):
            memory = mem_r.values
            row += [_number(memory.headline_bytes, 2**-20, ".0f"),
                    _number(memory.analytic.total_peak_bytes if memory.analytic else None, 2**-20, ".0f")]
        else:
            row += ["-", "-"]
        if energy_cells:
            energy_r = metrics.get("energy")
            energy = energy_r.values if energy_r is not None and energy_r.status == "ok" else None
            row.append(_number(getattr(energy, "joules_per_image", None), 1, ".3f"))
        failed = next((m for m in metrics.values() if m.status != "ok"), None)
        note = (failed.error or "").splitlines()[0][:60] if failed is not None and failed.error else ""
        if isinstance(timed, TimeValue) and timed.contended:
            note = "measured under contention " + note
        row.append(note)
        table.add_row(*row)
    return table


def _number(value: float | None, scale: float, spec: str) -> str:
    return "-" if value is None else format(value * scale, spec)


def setup_text(setup: SetupInfo | None) -> str:
    """The cell's set-up seconds and, apart, its first inference at this batch size: `1.24 (1st 0.31)`;
    `c` marks a first inference that compiled the shape (inductor, TensorRT)."""
    if setup is None:
        return "-"
    if setup.first_inference_s is None:
        return f"{setup.total_s:.2f}"
    return f"{setup.total_s:.2f} (1st {setup.first_inference_s:.2f}{'c' if setup.first_inference_compiles else ''})"


def check_text(check: OutputCheckInfo | None) -> str:
    """The output check of this batch size in a few characters: `ok L2 0.04%` or `FLAGGED L2 34%` (`ok L2
    <0.01%` below a ten-thousandth); cells checked before layout 2 (cosine only): `ok cos 0.99998`, or
    `FLAGGED cos 0.91 err 34%`."""
    if check is None:
        return "-"
    if check.relative_l2_error is not None:
        error = check.relative_l2_error
        text = "L2 <0.01%" if error < 1e-4 else f"L2 {_number(error, 100, '.2g')}%"
        return ("ok " if check.passed else "FLAGGED ") + text
    if check.cosine_similarity is None:
        return "-"
    text = f"cos {check.cosine_similarity:.5f}"
    if check.passed:
        return "ok " + text
    return f"FLAGGED {text} err {_number(check.relative_max_error, 100, '.0f')}%"


def best_table(best: pd.DataFrame) -> Table:
    """The recommended deployment per model and batch size (analysis.best.best_deployments)."""
    quantized = "quantization" in best and best["quantization"].fillna("").astype(bool).any()
    table = Table(title="Best deployment (fastest backend x precision whose outputs match eager fp32, among "
                  "uncontended, converged cells; a tie goes to the simpler one)", title_justify="left")
    headers = ["model", "threads", "batch", "best", "executed", "median ms", "images/s", "eager fp32 ms",
               "speed-up [interval]", "set-up s", "timed", "flagged", "excluded", "why"]
    for header in headers + (["quantized"] if quantized else []):  # int8: its accuracy drop, or "not measured"
        table.add_column(header, justify="left" if header in ("model", "best", "executed", "excluded", "why",
                                                                 "quantized") else "right")
    for row in best.itertuples(index=False):
        threads = "default" if _missing(row.threads) else str(int(row.threads))
        chosen = "-" if _missing(row.backend) else f"{row.backend} {row.dtype}" + (" (tie)" if row.tie else "")
        speedup = _num(row.speedup_vs_eager, ".2f", "x")
        if not _missing(row.speedup_vs_eager):
            speedup += f" [{_num(row.speedup_low, '.2f')}, {_num(row.speedup_high, '.2f')}]"
        table.add_row(row.model, threads, str(row.batch_size), chosen, _text(row.executed_precision),
                      _num(row.latency_ms, ".2f"), _num(row.images_per_s, ".1f"), _num(row.eager_fp32_latency_ms, ".2f"),
                      speedup, _num(row.setup_s, ".1f"), str(row.candidates), str(row.flagged), row.excluded or "-",
                      row.recommendation if row.tie or _missing(row.backend) else "-",
                      *([row.quantization or "-"] if quantized else []))
    return table


def _text(value: Any) -> str:
    return "-" if _missing(value) else str(value)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    return "-" if _missing(value) else f"{value:{fmt}}{suffix}"


def machine_name(machine: dict) -> str:
    """A stored machine's name: its Ray node's, or its host's."""
    fingerprint = machine.get("fingerprint", {})
    return fingerprint.get("ray_node_name") or fingerprint.get("hostname") or ""


def scenario_tables(records: Sequence[ResultRecord]) -> list[Table]:
    """The offline and server cells of a sweep: the best throughput with its streams and batch size beside the
    single-stream figure; the knee rate under the p99 bound with the latencies there."""
    from ..store.values import OfflineValue, ServerValue

    tables = []
    offline = [r for r in records if r.metric == "offline"]
    if offline:
        table = Table(title="Offline: sustained images/s with several requests in flight (best over streams x batch "
                            "sizes; single stream: 1 stream, batch 1)", title_justify="left")
        for header in ("model", "deployment", "status", "best img/s", "streams", "batch", "threads/stream",
                       "single-stream img/s", "gain", "points", "concurrency", "note"):
            table.add_column(header, justify="left" if header in ("model", "deployment", "status", "concurrency",
                                                                  "note") else "right")
        for r in offline:
            v = r.values if isinstance(r.values, OfflineValue) and r.status == "ok" else None
            best = v.best if v else None
            table.add_row(r.model, f"{r.config.get('backend', 'eager')} {r.config.get('dtype', 'fp32')}", r.status,
                          *((_number(v.best_images_per_s, 1, ".1f"), str(v.best_streams), str(v.best_batch_size),
                             str(best.threads_per_stream if best else "-"),
                             _number(v.single_stream_images_per_s, 1, ".1f"), _number(v.gain_over_single_stream, 1, ".2f"),
                             str(len(v.points or ())), v.concurrency or "-") if v else ["-"] * 8),
                          (r.error or "")[:120])
        tables.append(table)
    server = [r for r in records if r.metric == "server"]
    if server:
        table = Table(title="Server: the highest Poisson rate whose p99 latency (from arrival, queueing included) "
                            "meets the bound", title_justify="left")
        for header in ("model", "deployment", "status", "p99 bound ms", "bound", "knee req/s", "p50 ms", "p99 ms",
                       "streams", "rates tried", "concurrency", "note"):
            table.add_column(header, justify="left" if header in ("model", "deployment", "status", "bound",
                                                                  "concurrency", "note") else "right")
        for r in server:
            v = r.values if isinstance(r.values, ServerValue) and r.status == "ok" else None
            knee = v.knee if v else None
            table.add_row(r.model, f"{r.config.get('backend', 'eager')} {r.config.get('dtype', 'fp32')}", r.status,
                          *((_number(v.p99_bound_s, 1e3, ".2f"), v.bound_source or "-", _number(v.knee_rate, 1, ".1f"),
                             _number(knee.p50_s if knee else None, 1e3, ".2f"),
                             _number(knee.p99_s if knee else None, 1e3, ".2f"), str(v.streams),
                             str(len(v.points or ())), v.concurrency or "-") if v else ["-"] * 8),
                          (r.error or "")[:120])
        tables.append(table)
    return tables
