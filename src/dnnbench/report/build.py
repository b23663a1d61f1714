"""`build_report`: from a results store to report/index.html plus the static images beside it."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..analysis import (
    DEFAULT_FPS_LEVELS,
    DEFAULT_MEMORY_LEVELS_MB,
    BenchmarkFrames,
    Machine,
    config_differences,
    constraint_grid,
    load_frames,
    machine_ratios,
    model_summary,
    performance,
    resolve_machines,
)
from ..analysis.best import add_best, best_deployments
from ..files import staged_folder
from ..store import Store
from . import figures as static
from . import interactive
from .figures import EmptyFigureError, save_figure
from .html import FigureBlock, Section, definition_list, esc, message_html, render_page, table_html
from .methodology import METHODOLOGY_HTML
from .style import fmt_number

GIB = 2**30
# Cross-machine comparison: first the exact config; if nothing matches, the same model, dtype, batch and input
# on whatever device and thread count each machine ran.
LOOSE_MATCH = ("device", "threads", "tf32")
NO_TIMED_CELLS = "No timed cells on the machines of this report: `dnnbench run` measures time and memory."
# Past this many models the labelled per-model figures (Figs. 1 and 2) keep the paper's models and the measured
# ones; every counted model is in the zoo-wide view, which draws thousands of points without labels.
PER_MODEL_LIMIT = 120


@dataclass(frozen=True)
class ReportOptions:
    formats: tuple[str, ...] = ("png", "svg")  # static images; add "pdf" for PDFs; () for none
    batch_size: int = 1  # of the accuracy-vs-speed, memory and selection figures
    fps_levels: tuple[float, ...] = DEFAULT_FPS_LEVELS
    memory_levels_mb: tuple[float, ...] = DEFAULT_MEMORY_LEVELS_MB
    machines: tuple[str, ...] = ()  # selectors (id prefix or label fragment); () = every machine
    title: str = "dnnbench report"


@dataclass
class ReportResult:
    index: Path
    images: list[Path] = field(default_factory=list)
    figures: int = 0  # interactive figures in the page
    skipped: list[str] = field(default_factory=list)  # figures not drawn, and why
    seconds: float = 0.0


def _slug(text: str) -> str:
    """A file-name-safe version of a figure key."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "figure"


class _Builder:
    """Collects figures (interactive and static) section by section."""

    def __init__(self, out_dir: Path, options: ReportOptions) -> None:
        self.out_dir, self.options = out_dir, options
        self.result = ReportResult(out_dir / "index.html")
        self.counter = 0

    def figure(self, key: str, make_interactive: Callable[[], Any], make_static: Callable[[], Any] | None,
               machine_id: str | None = None, notes: Sequence[str] = ()) -> FigureBlock | str:
        """One figure, or a note saying why there is none (never an empty chart)."""
        try:
            fig = make_interactive()
        except EmptyFigureError as exc:
            self.result.skipped.append(f"{key}: {exc}")
            return message_html(f"Not drawn: {exc}.", machine_id)
        images: list[str] = []
        if make_static is not None and self.options.formats:
            self.counter += 1
            stem = f"{self.counter:02d}-{_slug(key)}"
            paths = save_figure(make_static(), self.out_dir, stem, self.options.formats)
            self.result.images += paths
            images = [p.name for p in paths]
        self.result.figures += 1
        return FigureBlock(key, fig, machine_id, images, notes)


def build_report(source: Store | str | Path | BenchmarkFrames, out_dir: str | Path,
                 options: ReportOptions = ReportOptions(),
                 screening: tuple[pd.DataFrame, str] | None = None) -> ReportResult:
    """Write `out_dir/index.html` (self-contained, interactive) and the static images; returns what was written.
    `screening`: a screen's models (`dnnbench.screen.ScreenResult.frame()`'s columns) and its summary, shown in a
    section of their own."""
    started = time.perf_counter()
    frames = source if isinstance(source, BenchmarkFrames) else load_frames(source)
    frames.require_data()
    machines = resolve_machines(options.machines, frames.machines)
    chosen = {m.machine_id for m in machines}
    out_dir = Path(out_dir)
    # the whole report is written into a temporary folder first: a full disk or a failure leaves the old one
    with staged_folder(out_dir, last="index.html") as stage:
        result = _build(stage, frames, machines, chosen, options, screening)
    result.index = out_dir / result.index.name
    result.images = [out_dir / image.name for image in result.images]
    result.seconds = time.perf_counter() - started
    return result


def _build(out_dir: Path, frames: BenchmarkFrames, machines: list[Machine], chosen: set[str],
           options: ReportOptions, screening: tuple[pd.DataFrame, str] | None = None) -> ReportResult:
    models = model_summary(frames)
    in_paper = frames.zoo.set_index("model")["in_paper"]
    models = models.assign(in_paper=models["model"].map(in_paper).fillna(False).astype(bool))
    labelled, left_to_zoo = _labelled_models(models, frames)
    deployments = best_deployments(frames.time, accuracy=frames.accuracy)
    deployments = deployments[deployments["machine_id"].isin(chosen)]
    frames = add_best(frames)  # a `best` setup beside eager wherever several deployments were timed
    perf = performance(frames)
    perf = perf[perf["machine_id"].isin(chosen)]
    builder = _Builder(out_dir, options)
    sections = [
        _overview_section(frames, machines, models, perf),
        *([_screen_section(builder, *screening)] if screening is not None else []),
        _operations_section(builder, labelled, left_to_zoo),
        _zoo_section(builder, models),
        _density_section(builder, labelled, left_to_zoo),
        _speed_section(builder, perf, machines, options.batch_size),
        _batch_section(builder, perf, machines),
        _memory_section(builder, perf, machines, options.batch_size),
        _deployment_section(deployments, machines),
        _scenario_section(builder, frames, machines),
        _roofline_section(builder, perf, machines, frames.peaks),
        _compare_section(builder, perf, machines, options.batch_size),
        _constraints_section(builder, perf, machines, options),
        _prediction_section(builder, frames.source, machines),
        _results_section(perf),
        _failures_section(frames, chosen),
        Section("methodology", "Methodology: what each number means", blocks=[METHODOLOGY_HTML]),
    ]
    subtitle = (f"{len(machines)} machine(s), {len(frames.models)} model(s), {len(perf)} timed configurations; "
                f"store {frames.source or '(in memory)'}; generated "
                f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    sections = [s for s in sections if s is not None]
    page = render_page(options.title, subtitle, [(m.machine_id, m.label) for m in machines], sections)
    builder.result.index.write_text(page, encoding="utf-8")
    return builder.result


# --- notes on what a figure leaves out ------------------------------------------------------------------


def _missing_notes(rows: pd.DataFrame, needs: dict[str, str], limit: int = 12) -> list[str]:
    """`name: why` for rows without a value the figure needs; failed cells say their status and batch sizes."""
    reasons: dict[str, list[str]] = {}
    failed_at: dict[tuple[str, str], list[str]] = {}
    for _, row in rows.iterrows():
        status = row.get("status")
        if isinstance(status, str) and status != "ok":
            batch = str(int(row["batch_size"])) if "batch_size" in row and not pd.isna(row["batch_size"]) else ""
            failed_at.setdefault((row["name"], status), []).append(batch)
            continue
        for column, why in needs.items():
            if pd.isna(row.get(column)):
                counted = row.get("complexity_status")
                if column in ("gmacs", "params") and isinstance(counted, str) and counted != "ok":
                    why = f"complexity cell {counted}"  # e.g. `error`, or `not measured`
                reasons.setdefault(row["name"], []).append(why)
    for (name, status), batches in failed_at.items():
        sizes = ", ".join(b for b in dict.fromkeys(batches) if b)
        reasons.setdefault(name, []).append(f"{status}" + (f" at batch size {sizes}" if sizes else ""))
    notes = [f"{name}: {', '.join(dict.fromkeys(why))}" for name, why in reasons.items()]
    if not notes:
        return []
    shown = notes[:limit] + ([f"... and {len(notes) - limit} more"] if len(notes) > limit else [])
    return ["Left out (see the results table): " + "; ".join(shown)]


# --- sections ------------------------------------------------------------------------------------------


def _machine_card(machine: Machine) -> str:
    fp, sw = machine.fingerprint, machine.software
    gpus = ", ".join(f"{g.get('name')} ({(g.get('total_memory_bytes') or 0) / GIB:.0f} GiB)"
                     for g in fp.get("gpus") or [] if isinstance(g, dict)) or "none"
    memory = fp.get("memory_total_bytes")
    hardware = [("machine id", machine.machine_id), ("host name", fp.get("hostname")), ("OS", fp.get("os")),
                ("kernel", fp.get("kernel")), ("CPU", fp.get("cpu_model")), ("architecture", fp.get("arch")),
                ("logical cores", fp.get("cpu_cores_logical")), ("physical cores", fp.get("cpu_cores_physical")),
                ("cores available to dnnbench", fp.get("cpu_affinity_count")),
                ("memory", f"{memory / GIB:.1f} GiB" if memory else None), ("GPUs", gpus),
                ("CUDA driver", fp.get("cuda_driver_version"))]
    software = [(label, sw.get(key)) for label, key in (
        ("Python", "python_version"), ("PyTorch", "torch_version"), ("torchvision", "torchvision_version"),
        ("timm", "timm_version"), ("CUDA (PyTorch)", "torch_cuda_version"), ("cuDNN", "cudnn_version"),
        ("dnnbench", "dnnbench_version"), ("git revision", "git_revision"))]
    items = [(k, v) for k, v in hardware + software if v not in (None, "")]
    raw = esc(json.dumps({"fingerprint": fp, "software": sw}, indent=1, sort_keys=True, default=str))
    return (f'<div class="machine-card" data-machine="{esc(machine.machine_id)}"><h3>{esc(machine.label)}</h3>'
            f"{definition_list(items)}<details><summary>full fingerprint (JSON)</summary><pre>{raw}</pre></details>"
            "</div>")


def _overview_section(frames: BenchmarkFrames, machines: list[Machine], models: pd.DataFrame,
                      perf: pd.DataFrame) -> Section:
    failed = int((perf["status"] != "ok").sum())
    measured = int((models["accuracy_source"] == "measured").sum())
    reported = int((models["accuracy_source"] == "reported").sum())
    intro = (f"{len(models)} models; {len(perf)} timed configurations ({failed} failed). Accuracy: measured for "
             f"{measured}, reported by the zoo for {reported}, none for {len(models) - measured - reported}. "
             + ("Use the machine selector at the top to show one machine." if len(machines) > 1 else ""))
    cards = '<div class="machines">' + "".join(_machine_card(m) for m in machines) + "</div>"
    return Section("machines", "Machines and environment", intro, [cards])


def _labelled_models(models: pd.DataFrame, frames: BenchmarkFrames) -> tuple[pd.DataFrame, list[str]]:
    """The models of the labelled per-model figures: all of them up to PER_MODEL_LIMIT, past it the paper's and
    the ones with a timed or measured-accuracy cell (with a note sending the rest to the zoo-wide view)."""
    if len(models) <= PER_MODEL_LIMIT:
        return models, []
    measured = set(frames.time["model"]) | set(frames.accuracy.loc[frames.accuracy["accuracy_source"] == "measured",
                                                                    "model"])
    keep = models["in_paper"] | models["model"].isin(measured)
    left = int((~keep).sum())
    return models[keep], [f"{left} of {len(models)} models, counted but neither in the paper's suite nor timed, are "
                          "drawn in the zoo-wide view below, not here."] if left else []


def _operations_section(builder: _Builder, models: pd.DataFrame, left_to_zoo: Sequence[str] = ()) -> Section:
    notes = [*left_to_zoo, *_missing_notes(models, {"top1": "no accuracy (measured or reported)",
                                                    "gmacs": "no MAC count"})]
    blocks = [builder.figure("top1-vs-gmacs", lambda: interactive.ball_chart(models, "top1"),
                             lambda: static.accuracy_vs_operations(models, "top1"), notes=notes),
              builder.figure("top5-vs-gmacs", lambda: interactive.ball_chart(models, "top5"),
                             lambda: static.accuracy_vs_operations(models, "top5"),
                             notes=_missing_notes(models, {"top5": "no top-5 accuracy", "gmacs": "no MAC count"}))]
    return Section("operations", "Accuracy vs operations",
                   "Top-1 and top-5 accuracy against G-MACs per image at each model's native input size "
                   "(1 MAC = 1 multiply-accumulate = 2 FLOPs); ball area is proportional to the parameter count.",
                   blocks)


def _zoo_section(builder: _Builder, models: pd.DataFrame) -> Section:
    """Accuracy against operations for every counted model of the store, the paper's highlighted."""
    title = "Zoo-wide view: accuracy vs operations"
    counted = models[models["gmacs"].notna()]
    unknown = counted[counted["top1"].isna()]
    if counted.empty or (counted["in_paper"] | counted["top1"].isna()).all():
        return Section("zoo", title, "", [message_html(
            "No counted model outside the paper's has a top-1 figure"
            + (f" ({len(unknown)} counted without one)" if len(unknown) else "")
            + ": the figures above show the rest. `dnnbench profile 'timm:*' 'torchvision:*'` counts whole "
            "libraries, with their published accuracy.")])
    notes = [f"{len(unknown)} of {len(counted)} counted models have no published or measured top-1 (accuracy "
             "unknown) and are not drawn: "
             + ", ".join(unknown["name"].head(20)) + (" ..." if len(unknown) > 20 else "") + "."] if len(unknown) else []
    not_counted = int(models["gmacs"].isna().sum())
    if not_counted:
        notes.append(f"{not_counted} models of the store have no operation count (see the failed cells).")
    return Section("zoo", title,
                   "Top-1 accuracy (published by the model's library, or measured) against G-MACs per image at each "
                   "model's native input size, for every model counted in this store (`dnnbench profile`), the "
                   "paper's models in colour and named. Hover for each model's name and figures.",
                   [builder.figure("zoo-top1-vs-gmacs", lambda: interactive.zoo_view(models),
                                   lambda: static.zoo_view(models), notes=notes)])


SCREEN_COLUMNS = [("rank", "#"), ("name", "Model"), ("stage", "Stage"), ("#top1", "Top-1 %"),
                  ("accuracy_source", "Accuracy source"), ("#latency_ms", "ms/batch"), ("latency_source", "Latency"),
                  ("#predicted_ms", "Predicted ms"), ("interval", "Predicted 5-95% ms"), ("#memory_mb", "Memory MB"),
                  ("memory_source", "Memory"), ("#gmacs", "G-MACs/image"), ("front", "Pareto"), ("why_not", "Why not")]
SCREEN_ROWS = 60  # rows of the table: the models that fit first; the rest counted by stage


def _screen_section(builder: _Builder, screened: pd.DataFrame, summary: str) -> Section:
    rows = []
    for rank, r in enumerate(screened.head(SCREEN_ROWS).itertuples(index=False), 1):
        rows.append({"_cls": "" if r.fits else "failed", "rank": str(rank) if r.fits else "", "name": r.name,
                     "stage": r.stage, "#top1": _num_cell(r.top1), "accuracy_source": r.accuracy_source,
                     "#latency_ms": _num_cell(r.latency_ms), "latency_source": r.latency_source or "",
                     "#predicted_ms": _num_cell(r.predicted_ms),
                     "interval": _range_text(r.predicted_low_ms, r.predicted_high_ms),
                     "#memory_mb": _num_cell(r.memory_mb), "memory_source": r.memory_source or "",
                     "#gmacs": _num_cell(r.gmacs), "front": "yes" if r.on_front else "", "why_not": r.why_not or ""})
    left = len(screened) - len(rows)
    more = message_html(f"{left} more models (none of them fits) are not listed; `dnnbench screen --format csv` lists "
                        "every one.") if left > 0 else ""
    block = builder.figure("screen-front", lambda: interactive.screen_front(screened),
                           lambda: static.screen_front(screened))
    return Section("screen", "Screen: the models that fit, measured and predicted", summary,
                   [block, table_html(SCREEN_COLUMNS, rows, table_id="screen"), *([more] if more else [])])


def _density_section(builder: _Builder, models: pd.DataFrame, left_to_zoo: Sequence[str] = ()) -> Section:
    notes = [*left_to_zoo, *_missing_notes(models, {"top1": "no accuracy", "params": "no parameter count"})]
    return Section("density", "Accuracy density", "Top-1 accuracy (%) per million parameters: how efficiently a "
                   "model uses its parameters.", [
                       builder.figure("accuracy-density", lambda: interactive.density_bars(models),
                                      lambda: static.accuracy_density_bars(models), notes=notes),
                       builder.figure("top1-vs-density", lambda: interactive.accuracy_vs_density(models),
                                      lambda: static.accuracy_vs_density(models))])


def _by_setup(perf: pd.DataFrame, machine: Machine) -> list[pd.DataFrame]:
    """The machine's timed cells, one frame per setup (device, dtype, threads, backend)."""
    mine = perf[perf["machine_id"] == machine.machine_id]
    return [part for _, part in mine.groupby("setup", sort=True)]


def _speed_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine], batch_size: int) -> Section:
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        for index, part in enumerate(_by_setup(perf, machine)):
            at_batch = part[part["batch_size"] == batch_size]
            key = f"{machine.short_id}-{index}"
            notes = _missing_notes(at_batch, {"top1": "no accuracy"})
            blocks.append(builder.figure(f"top1-vs-throughput-{key}",
                                         lambda p=at_batch: interactive.accuracy_vs_resource(p, "images_per_s"),
                                         lambda p=at_batch: static.accuracy_vs_resource(p, "images_per_s",
                                                                                         batch_size),
                                         machine.machine_id, notes))
            blocks.append(builder.figure(f"top1-vs-memory-{key}",
                                         lambda p=at_batch: interactive.accuracy_vs_resource(p, "memory_mb"),
                                         lambda p=at_batch: static.accuracy_vs_resource(p, "memory_mb", batch_size),
                                         machine.machine_id, notes))
    if not blocks:
        blocks.append(message_html(NO_TIMED_CELLS))
    return Section("speed", "Accuracy vs speed and memory",
                   f"Top-1 accuracy against throughput (images/s, log scale) and memory at batch size {batch_size}, "
                   "one figure per machine and config (Bianco et al. 2018, Fig. 3). The dashed line is the Pareto "
                   "front: no other model is both more accurate and faster (or smaller).", blocks)


def _batch_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine]) -> Section:
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        for index, part in enumerate(_by_setup(perf, machine)):
            key = f"{machine.short_id}-{index}"
            failed = part[part["status"] != "ok"]
            notes = _missing_notes(failed, {})
            blocks.append(builder.figure(f"time-vs-batch-{key}", lambda p=part: interactive.metric_vs_batch(p),
                                         lambda p=part, m=machine.machine_id: static.metric_vs_batch(p, m),
                                         machine.machine_id, notes))
            blocks.append(builder.figure(f"memory-vs-batch-{key}",
                                         lambda p=part: interactive.metric_vs_batch(p, "memory_mb"),
                                         lambda p=part, m=machine.machine_id: static.metric_vs_batch(p, m, "memory_mb"),
                                         machine.machine_id, notes))
    if not blocks:
        blocks.append(message_html(NO_TIMED_CELLS))
    return Section("batch", "Time per image and memory vs batch size",
                   "Median batch time divided by the batch size, and peak memory, for every batch size measured. "
                   "A line stops where a cell failed (e.g. out of memory).", blocks)


def _memory_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine], batch_size: int) -> Section:
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        for index, part in enumerate(_by_setup(perf, machine)):
            at_batch = part[part["batch_size"] == batch_size]
            blocks.append(builder.figure(f"params-vs-memory-{machine.short_id}-{index}",
                                         lambda p=at_batch: interactive.params_vs_memory(p),
                                         lambda p=at_batch: static.params_vs_memory(p, batch_size),
                                         machine.machine_id,
                                         _missing_notes(at_batch, {"params": "no parameter count"})))
    if not blocks:
        blocks.append(message_html(NO_TIMED_CELLS))
    return Section("memory", "Memory vs parameters",
                   f"Memory at batch size {batch_size} against the parameter count; the dotted line is the size of "
                   "the weights alone.", blocks)


PEAK_COLUMNS = [("device", "Device"), ("precision", "Precision"), ("#threads", "Threads"),
                ("#peak", "Peak GFLOP/s"), ("basis", "Basis"), ("#spec", "Spec GFLOP/s"),
                ("#measured", "Best kernel GFLOP/s"), ("#bandwidth", "Copy GB/s"), ("detail", "How")]


def _peak_table(peaks: pd.DataFrame, machine: Machine) -> str:
    rows = [{"_machine": machine.machine_id, "device": p.device, "precision": p.precision,
             "#threads": _num_cell(p.threads) if p.device == "cpu" else {"text": "-", "sort": "", "cls": "num"},
             "#peak": _num_cell(p.peak_flops, 1e-9), "basis": p.basis, "#spec": _num_cell(p.theoretical_flops, 1e-9),
             "#measured": _num_cell(p.measured_flops, 1e-9), "#bandwidth": _num_cell(p.bandwidth_bytes_per_s, 1e-9),
             "detail": p.basis_detail + (" (measured while other processes used the CPU)" if _flag(p.contended)
                                         else "")}
            for p in peaks.itertuples(index=False)]
    return (f'<div data-machine="{esc(machine.machine_id)}"><h3>{esc(machine.label)}: peak FLOP/s</h3>'
            f"{table_html(PEAK_COLUMNS, rows)}</div>")


def _roofline_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine], peaks: pd.DataFrame) -> Section:
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        mine = peaks[peaks["machine_id"] == machine.machine_id]
        if mine.empty:
            blocks.append(message_html(f"{machine.label}: no peak FLOP/s stored for this machine; `dnnbench peak` "
                                       "measures it.", machine.machine_id))
            continue
        blocks.append(_peak_table(mine, machine))
        for index, part in enumerate(_by_setup(perf, machine)):
            missing = part[part["status"] == "ok"]
            notes = _missing_notes(missing, {"gflops_per_s": "no achieved GFLOP/s (no MAC count)",
                                             "arithmetic_intensity": "no arithmetic intensity (no activation count)"})
            if part["peak_gflops_per_s"].isna().all():
                notes = [f"No peak stored for {part['setup'].iloc[0]}: `dnnbench peak` with this precision and "
                         "thread count measures it."] + notes
            blocks.append(builder.figure(f"roofline-{machine.short_id}-{index}", lambda p=part: interactive.roofline(p),
                                         lambda p=part: static.roofline(p), machine.machine_id, notes))
    return Section("roofline", "Roofline: achieved FLOP/s against the peak",
                   "Achieved GFLOP/s (2 x MACs x images/s) against arithmetic intensity (FLOP per byte of weights and "
                   "activations moved), one point per model and batch size. The solid line is the device's peak at "
                   "the cell's precision: the spec estimate (cores x FLOP/cycle x clock), raised to the rate of a "
                   "measured dense kernel (matrix product, 3x3 convolution) when that is higher; the dash-dotted "
                   "line is the measured copy bandwidth x intensity. \"% of peak\" in the results table is the "
                   "same ratio. See the methodology.", blocks)


DEPLOYMENT_COLUMNS = [("name", "Model"), ("#batch_size", "Batch"), ("#threads", "Threads"),
                      ("#eager_ms", "Eager fp32 ms"), ("best", "Best deployment"), ("executed", "Executed"),
                      ("#best_ms", "Best ms"), ("interval", "Best ms interval"), ("#images_per_s", "Best images/s"),
                      ("#speedup", "Speed-up"), ("speedup_interval", "Speed-up interval"),
                      ("#cosine", "Output cosine"), ("#setup_s", "Set-up s"), ("#candidates", "Timed"),
                      ("#flagged", "Flagged"), ("excluded", "Excluded"), ("why", "Tie / why")]
QUANTIZED_COLUMN = ("quantization", "Quantized")  # shown where a quantized (int8) deployment was chosen


def _deployment_section(deployments: pd.DataFrame, machines: list[Machine]) -> Section:
    intro = ("Per model and batch size, the fastest deployment (backend x precision) whose logits matched eager "
             "PyTorch fp32 within its precision's tolerance, beside eager fp32. Only cells timed without "
             "contention and whose stopping rule converged are candidates or baseline; the others are counted "
             "under Excluded (`dnnbench run --remeasure-contended` measures contended cells again). Where the "
             "fastest deployment's interval overlaps another's the row reports a tie and recommends the simplest, "
             "most portable of the tied ones (fp32 first, int8 last; then eager, eager-channels-last, torchscript, "
             "compile, onnxruntime, openvino, tensorrt). The speed-up interval runs from eager's interval low end "
             "over the deployment's high end to the reverse. Deployments the output check flagged are counted, never "
             "chosen. Elsewhere in this report the recommended deployments appear as the `best` setups "
             "(precision `any`, and `fp32` for the best fp32-only deployment). An int8 deployment is quantized: "
             "Quantized gives its top-1 drop from eager fp32 where `dnnbench accuracy` measured both on the same "
             "images, else says that its accuracy was not measured. See docs/BACKENDS.md.")
    if deployments.empty or (deployments["candidates"] <= 1).all():
        return Section("deployments", "Deployment: eager vs best backend", intro, [message_html(
            "One deployment per cell in this store: `dnnbench run --backend best` times every backend and "
            "precision available.")])
    quantized = "quantization" in deployments and deployments["quantization"].fillna("").astype(bool).any()
    columns = DEPLOYMENT_COLUMNS + ([QUANTIZED_COLUMN] if quantized else [])
    blocks = []
    for machine in machines:
        mine = deployments[deployments["machine_id"] == machine.machine_id]
        rows = [{"_machine": machine.machine_id, "name": r.name, "#batch_size": _num_cell(r.batch_size),
                 "#threads": _num_cell(r.threads), "#eager_ms": _num_cell(r.eager_fp32_latency_ms),
                 "best": "-" if pd.isna(r.backend) else f"{r.backend} {r.dtype}" + (" (tie)" if r.tie else ""),
                 "executed": "" if pd.isna(r.executed_precision) else str(r.executed_precision),
                 "#best_ms": _num_cell(r.latency_ms), "interval": _range_text(r.latency_low_ms, r.latency_high_ms),
                 "#images_per_s": _num_cell(r.images_per_s), "#speedup": _num_cell(r.speedup_vs_eager),
                 "speedup_interval": _range_text(r.speedup_low, r.speedup_high), "#cosine": _num_cell(r.output_cosine),
                 "#setup_s": _num_cell(r.setup_s), "#candidates": _num_cell(r.candidates),
                 "#flagged": _num_cell(r.flagged), "excluded": r.excluded or "",
                 "why": r.recommendation if r.tie or pd.isna(r.backend) else "",
                 "quantization": r.quantization or ""}
                for r in mine.itertuples(index=False)]
        if rows:
            blocks.append(f'<div data-machine="{esc(machine.machine_id)}"><h3>{esc(machine.label)}</h3>'
                          f"{table_html(columns, rows)}</div>")
    return Section("deployments", "Deployment: eager vs best backend", intro, blocks)


SCENARIO_COLUMNS = [("name", "Model"), ("setup", "Config"), ("#single", "Single-stream images/s"),
                    ("single_source", "From"), ("#offline", "Best offline images/s"), ("#streams", "Streams"),
                    ("#batch", "Batch"), ("#gain", "Gain"), ("#knee", "Server knee req/s"), ("#bound", "p99 bound ms"),
                    ("serving", "Serving"), ("note", "Note")]


def _scenario_section(builder: _Builder, frames: BenchmarkFrames, machines: list[Machine]) -> Section | None:
    """The offline and server scenarios: a table per machine setting single-stream images/s beside the best offline
    point and the server knee, and the curves; None (no section) where the machines have no scenario cell."""
    from ..analysis import scenarios as views
    from . import scenarios as draw

    if not views.has_scenarios(frames, [m.machine_id for m in machines]):
        return None
    curve, server = views.offline_curve(frames), views.server_curve(frames)
    best, knees = views.best_offline(frames, curve), views.server_knees(frames, server)
    summary = views.scenario_summary(frames)
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        mine = summary[summary["machine_id"] == machine.machine_id]
        if mine.empty:
            continue
        rows = [{"_machine": machine.machine_id, "name": r.name, "setup": r.setup,
                 "#single": _num_cell(r.single_stream_images_per_s), "single_source": r.single_stream_source or "",
                 "#offline": _num_cell(r.best_images_per_s), "#streams": _num_cell(r.best_streams),
                 "#batch": _num_cell(r.best_batch_size), "#gain": _num_cell(r.gain), "#knee": _num_cell(r.knee_rate),
                 "#bound": _num_cell(r.p99_bound_ms),
                 "serving": "" if pd.isna(r.server_streams) else
                 f"{int(r.server_streams)} streams, batch {int(r.server_batch_size)}",
                 "note": "; ".join(f"{what}: {why}" for what, why in (("offline", r.offline_excluded),
                                                                       ("server", r.server_excluded))
                                   if isinstance(why, str) and why)}
                for r in mine.itertuples(index=False)]
        blocks.append(f'<div data-machine="{esc(machine.machine_id)}"><h3>{esc(machine.label)}</h3>'
                      f"{table_html(SCENARIO_COLUMNS, rows)}</div>")
        offline = curve[curve["machine_id"] == machine.machine_id]
        if len(offline):
            mine_best = best[best["machine_id"] == machine.machine_id]
            blocks.append(builder.figure(
                f"offline-throughput-{machine.short_id}",
                lambda c=offline, b=mine_best: draw.offline_throughput_interactive(c, b),
                lambda c=offline, b=mine_best: draw.offline_throughput(c, b), machine.machine_id))
        served = server[server["machine_id"] == machine.machine_id]
        if len(served):
            mine_knees = knees[knees["machine_id"] == machine.machine_id]
            blocks.append(builder.figure(
                f"server-latency-{machine.short_id}",
                lambda c=served, k=mine_knees: draw.server_latency_interactive(c, k),
                lambda c=served, k=mine_knees: draw.server_latency(c, k), machine.machine_id))
    return Section("scenarios", "Scenarios: offline throughput and server latency",
                   "Beyond one request at a time (single-stream, the rest of this report): the offline scenario keeps "
                   "several requests in flight and reports sustained images/s over stream counts and batch sizes, the "
                   "best point starred; the server scenario offers Poisson arrivals at rising rates and reports the "
                   "p50 and p99 latency from arrival (queueing included), the knee being the highest rate whose p99 "
                   "met the bound with nothing dropped. Single-stream images/s: the time cell at batch size 1 of the "
                   "same config, else the offline curve's 1 stream x batch 1 point. Points measured without contention "
                   "whose outputs passed the check (and, offline, whose window met the minimum duration and sample "
                   "count) are trusted; the others are drawn hollow or grey and counted under Note. A flagged cell "
                   "never gives a figure; a contended one only where nothing trusted was measured, marked "
                   "(contention only slows: such a figure is conservative). See docs/SCENARIOS.md.", blocks)


def _range_text(low: float, high: float) -> str:
    """`[1.90, 2.10]`, or empty where the cell stored no interval."""
    return "" if pd.isna(low) or pd.isna(high) else f"[{low:.3g}, {high:.3g}]"


def _compare_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine], batch_size: int) -> Section:
    if len(machines) < 2:
        return Section("compare", "Machine comparison", "", [message_html(
            "One machine in this report: merge stores from other machines (`dnnbench merge`) to compare them.")])
    blocks: list[FigureBlock | str] = []
    reference = machines[0]
    for other in machines[1:]:
        ratios = machine_ratios(perf, other.machine_id, reference.machine_id)
        how = "same config"
        if ratios.empty:
            ratios = machine_ratios(perf, other.machine_id, reference.machine_id, ignore=LOOSE_MATCH)
            differing = config_differences(perf, other.machine_id, reference.machine_id)
            how = ("no identical config; matched on model, dtype, batch size, backend and input size, ignoring "
                   + ", ".join(sorted(set(differing) & set(LOOSE_MATCH)) or "device and threads"))
        blocks.append(builder.figure(
            f"speed-ratio-{other.short_id}-vs-{reference.short_id}",
            lambda r=ratios, a=other, b=reference: interactive.speed_ratio(r, a.label, b.label, batch_size),
            lambda r=ratios, a=other, b=reference: static.speed_ratio_bars(r, a.label, b.label, batch_size),
            notes=[f"Matching: {how}."]))
    return Section("compare", "Machine comparison",
                   f"The same model and config on two machines: images/s on A divided by images/s on B at batch size "
                   f"{batch_size} (> 1: A is faster). B is {reference.label}. The hover shows the memory ratio too.",
                   blocks)


def _grid_html(grid: pd.DataFrame, machine: Machine, levels: ReportOptions) -> str:
    header = "".join(f"<th>&ge; {esc(f'{fps:g}')} images/s</th>" for fps in levels.fps_levels)
    rows = []
    for memory in levels.memory_levels_mb:
        cells = []
        for fps in levels.fps_levels:
            part = grid[(grid["max_memory_mb"] == memory) & (grid["min_images_per_s"] == fps)]
            items = "".join(f"<li>{esc(r.name)} <b>{r.top1:.1f}%</b> <small>({esc(r.accuracy_source)}, "
                            f"{fmt_number(r.images_per_s)} img/s, {fmt_number(r.memory_mb)} MB)</small></li>"
                            for r in part.itertuples())
            cells.append(f"<td>{f'<ol>{items}</ol>' if items else '<i>none</i>'}</td>")
        rows.append(f"<tr><th>&le; {esc(f'{memory:g}')} MB</th>{''.join(cells)}</tr>")
    return (f'<div data-machine="{esc(machine.machine_id)}"><h3>{esc(machine.label)}</h3><div class="table-wrap">'
            f'<table class="grid-table"><thead><tr><th>memory</th>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></div>")


def _constraints_section(builder: _Builder, perf: pd.DataFrame, machines: list[Machine],
                         options: ReportOptions) -> Section:
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        mine = perf[perf["machine_id"] == machine.machine_id]
        if mine.empty or not (mine["batch_size"] == options.batch_size).any():
            blocks.append(message_html(f"{machine.label}: nothing measured at batch size {options.batch_size}.",
                                       machine.machine_id))
            continue
        grid = constraint_grid(perf, machine.machine_id, options.fps_levels, options.memory_levels_mb,
                               options.batch_size)
        blocks.append(_grid_html(grid, machine, options))
        if options.formats and not grid.empty:
            builder.counter += 1
            paths = save_figure(static.constraint_table(grid, machine.label, f"batch size {options.batch_size}"),
                                builder.out_dir, f"{builder.counter:02d}-constraints-{_slug(machine.short_id)}",
                                options.formats)
            builder.result.images += paths
            links = " · ".join(f'<a href="{esc(p.name)}">{esc(p.suffix[1:].upper())}</a>' for p in paths)
            blocks.append(f'<p class="intro" data-machine="{esc(machine.machine_id)}">Static image: {links}</p>')
    return Section("constraints", "Best models under memory and speed limits",
                   f"For each memory limit (rows) and throughput floor (columns) at batch size {options.batch_size}, "
                   "the five most accurate models that meet both, in their fastest config (Bianco et al. 2018, "
                   "Table 2). Models without an accuracy figure are left out. `dnnbench select` answers the same "
                   "question for any limits.", blocks)


PREDICTION_COLUMNS = [("#batch_size", "Batch"), ("#models", "Models"), ("#within_10", "Within ±10 %"),
                      ("#within_15", "Within ±15 %"), ("#median_abs_error", "Median |error| %"),
                      ("#kendall_tau", "Kendall tau"), ("#contended", "Measured while contended"),
                      ("#not_predicted", "Not predicted")]


def _prediction_section(builder: _Builder, source: str, machines: list[Machine]) -> Section | None:
    """Predicted vs measured per machine and calibrated configuration; None (no section) where the store holds no
    calibration with measured cells of its configuration."""
    from ..analysis.prediction import prediction_accuracy
    from ..predict.frames import predicted_vs_measured
    from . import prediction

    if not source or not Path(source).is_file():
        return None
    with Store(source, create=False) as store:
        if not store.calibrations():
            return None
        rows = predicted_vs_measured(store, [m.machine_id for m in machines])
    if rows.empty:
        return None
    blocks: list[FigureBlock | str] = []
    for machine in machines:
        mine = rows[rows["machine_id"] == machine.machine_id]
        for index, (config, part) in enumerate(mine.groupby(["device", "dtype", "threads", "backend"], sort=True)):
            device, dtype, threads, backend = config
            setup = f"{device} {dtype} {threads} thread{'s' if threads != 1 else ''} {backend}"
            title = f"{machine.label}, {setup}: predicted vs measured"
            summary = prediction_accuracy(part)
            table = [{"_machine": machine.machine_id, "#batch_size": _num_cell(r.batch_size),
                      "#models": _num_cell(r.models), "#within_10": _num_cell(r.within_10, 100),
                      "#within_15": _num_cell(r.within_15, 100), "#median_abs_error": _num_cell(r.median_abs_error, 100),
                      "#kendall_tau": _num_cell(r.kendall_tau), "#contended": _num_cell(r.contended),
                      "#not_predicted": _num_cell(r.not_predicted)} for r in summary.itertuples(index=False)]
            blocks.append(f'<div data-machine="{esc(machine.machine_id)}"><h3>{esc(title)}</h3>'
                          f"{table_html(PREDICTION_COLUMNS, table)}</div>")
            missed = part[part["note"] != ""]
            notes = [f"Not predicted: {r.model} at batch {r.batch_size}: {r.note}" for r in missed.itertuples()][:12]
            blocks.append(builder.figure(f"predicted-vs-measured-{machine.short_id}-{index}",
                                         lambda p=part, t=title: prediction.predicted_vs_measured_interactive(p, t),
                                         lambda p=part, t=title: prediction.predicted_vs_measured(p, t),
                                         machine.machine_id, notes))
    return Section("prediction", "Predicted vs measured latency",
                   "Where a machine has a calibration (`dnnbench calibrate`) and measured time cells of the same "
                   "configuration, each measured model is predicted (`dnnbench predict`) and set against its measured "
                   "median: predicted against measured ms per batch with y = x and the ±10% and ±15% bands, each "
                   "prediction's 5-95% interval as an error bar (a hollow marker without one where the calibration "
                   "was too small to bound it), and the distribution of the error (predicted / measured - 1). The table "
                   "gives per batch size the share of models within ±10% and ±15%, the median absolute error and "
                   "Kendall's tau between the predicted and the measured order. See docs/PREDICTION.md.", blocks)


RESULT_COLUMNS = [
    ("machine", "Machine"), ("name", "Model"), ("family", "Family"), ("setup", "Config"), ("#batch_size", "Batch"),
    ("#input_size", "Input px"), ("status", "Status"), ("#latency_ms", "ms/batch"), ("#ci", "Interval"),
    ("#trials", "Trials"), ("#between", "Between-trial %"), ("#within", "Within-trial ±%"),
    ("#ms_per_image", "ms/image"), ("#images_per_s", "images/s"), ("#sustained", "Sustained img/s"), ("#memory_mb", "Memory MB"),
    ("#joules_per_image", "J/image"),
    ("#params", "Params M"), ("#gmacs", "G-MACs/image"), ("#gflops_per_s", "GFLOP/s achieved"),
    ("#fraction_of_peak", "% of peak"),
    ("#top1", "Top-1 %"), ("#top5", "Top-5 %"), ("accuracy_source", "Accuracy"), ("note", "Note"),
]


def _flag(value: Any) -> bool:
    """True for True and numpy's True; False for False, None and NaN (a cell without that figure)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _num_cell(value: Any, scale: float = 1.0) -> dict[str, Any]:
    if value is None or pd.isna(value):
        return {"text": "-", "sort": "", "cls": "num"}
    return {"text": fmt_number(float(value) * scale), "sort": repr(float(value) * scale), "cls": "num"}


def _interval_cell(rel: Any, method: Any) -> dict[str, Any]:
    """The headline interval's half-width in %, or "range (n = k) ±x%" where there were too few samples for a
    confidence interval: a range is never shown as one."""
    cell = _num_cell(rel, 100)
    if isinstance(method, str) and method.startswith("range") and cell["text"] != "-":
        cell["text"] = f"{method} ±{cell['text']}"
    return cell


def _results_section(perf: pd.DataFrame) -> Section:
    rows = []
    for r in perf.itertuples(index=False):
        note = (r.error.splitlines()[0][:160] if isinstance(r.error, str) and r.error else
                ("timed while other processes used the CPU" if _flag(r.contended) else ""))
        rows.append({
            "_machine": r.machine_id, "_cls": "" if r.status == "ok" else "failed", "machine": r.machine,
            "name": r.name, "family": r.family, "setup": r.setup, "#batch_size": _num_cell(r.batch_size),
            "#input_size": _num_cell(r.input_size), "status": {"text": r.status, "cls": f"status-{r.status}"},
            "#latency_ms": _num_cell(r.latency_ms), "#ci": _interval_cell(r.ci_half_width_rel, r.ci_method),
            "#trials": _num_cell(r.trials if r.time_status == "ok" else None),
            "#between": _num_cell(r.between_trial_cv, 100), "#within": _num_cell(r.within_trial_rel, 100),
            "#ms_per_image": _num_cell(r.ms_per_image), "#images_per_s": _num_cell(r.images_per_s),
            "#sustained": _num_cell(r.sustained_images_per_s),
            "#memory_mb": _num_cell(r.memory_mb),
            "#joules_per_image": _num_cell(getattr(r, "joules_per_image", None)),
            "#params": _num_cell(r.params, 1e-6), "#gmacs": _num_cell(r.gmacs),
            "#gflops_per_s": _num_cell(r.gflops_per_s), "#fraction_of_peak": _num_cell(r.fraction_of_peak, 100),
            "#top1": _num_cell(r.top1), "#top5": _num_cell(r.top5),
            "accuracy_source": r.accuracy_source if isinstance(r.accuracy_source, str) else "none", "note": note,
        })
    controls = ('<p class="intro"><label>Filter rows <input id="table-filter" type="search" '
                'placeholder="model, family, status, config..."></label> <span id="row-count"></span>. '
                "Click a column header to sort.</p>")
    return Section("results", "All results",
                   "One row per timed configuration, failed ones included (in red, with their status). ms/batch is "
                   "the median over trials (fresh worker processes) of the median time of one batch. Interval: the "
                   "half-width of its 95% confidence interval, over trials when there were several (a t-interval "
                   "over trial medians, which holds the between-process spread), else within the one process "
                   "(batch medians); \"range (n = k)\" where there were too few samples for any interval. "
                   "Between-trial %: the spread of the trial medians (sd / mean); within-trial ±%: one process's "
                   "own interval. Sustained img/s: images over the whole timed time, beside the median-derived "
                   "images/s.",
                   [controls, table_html(_with_data(RESULT_COLUMNS, rows, ("#joules_per_image",)), rows,
                                         table_id="results")])


def _with_data(columns: list[tuple[str, str]], rows: list[dict], optional: tuple[str, ...]) -> list[tuple[str, str]]:
    """`columns` less the `optional` ones that no row fills (energy where no sweep measured it)."""
    empty = {key for key in optional if all(_is_blank(row.get(key)) for row in rows)}
    return [(key, label) for key, label in columns if key not in empty]


def _is_blank(cell) -> bool:
    text = cell.get("text") if isinstance(cell, dict) else cell
    return text in (None, "", "-", "–")


def _failures_section(frames: BenchmarkFrames, chosen: set[str]) -> Section:
    from ..analysis.scenarios import scenario_cells

    rows = []
    scenario = [("scenario", scenario_cells(frames))] if frames.scenario_records else []
    for metric, frame in (("complexity", frames.complexity), ("time", frames.time), ("memory", frames.memory),
                          ("accuracy", frames.accuracy[frames.accuracy["accuracy_source"] == "measured"]), *scenario):
        failed = frame[(frame["status"] != "ok") & frame["machine_id"].isin(chosen)]
        for _, r in failed.iterrows():
            config = r.get("setup") if isinstance(r.get("setup"), str) else ""
            if "batch_size" in r and not pd.isna(r.get("batch_size")):
                config += f", batch {int(r['batch_size'])}"
            rows.append({"_machine": r["machine_id"], "_cls": "failed", "machine": r["machine"], "name": r["name"],
                         "metric": r["metric"] if metric == "scenario" else metric, "config": config.strip(", "),
                         "status": r["status"],
                         "error": (r["error"] or "").splitlines()[0][:300] if r["error"] else ""})
    if not rows:
        return Section("failures", "Failed cells", "Every cell of this store was measured successfully.")
    columns = [("machine", "Machine"), ("name", "Model"), ("metric", "Metric"), ("config", "Config"),
               ("status", "Status"), ("error", "Error (first line)")]
    return Section("failures", f"Failed cells ({len(rows)})",
                   "Cells that did not produce a value: they appear in the tables with their status and are left "
                   "out of the figures that need their value.", [table_html(columns, rows, table_id="failures")])
