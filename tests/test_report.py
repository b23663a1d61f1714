"""Figures and the HTML report, built from a store the test fills by hand; the page is opened in headless
Chromium (skipped where /usr/bin/chromium is missing) to check that every plot renders without JavaScript
errors and that a malicious model name stays inert text."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dnnbench.analysis import load_frames, machine_ratios, model_summary, performance
from dnnbench.errors import UsageError
from dnnbench.report import EmptyFigureError, ReportOptions, build_report, figures, interactive, save_figure
from dnnbench.report.html import script_json
from dnnbench.report.labels import place_labels, spread
from dnnbench.store import Store
from test_analysis import A_CPU, B_CPU, B_CUDA, EVIL, all_records, fill_store

CHROMIUM = Path("/usr/bin/chromium")
# interactive figures of the hand-made store: Fig. 1 (top-1, top-5), Fig. 2 (two), then per machine and setup
# (A cpu, B cpu, B cuda): accuracy vs throughput and vs memory, time and memory vs batch, params vs memory;
# and one speed-ratio chart
EXPECTED_FIGURES = 2 + 2 + 3 * 2 + 3 * 2 + 3 + 1
TIMED_CONFIGS = sum(len(by_batch) for table in (A_CPU, B_CPU, B_CUDA) for by_batch in table.values())


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return fill_store(tmp_path_factory.mktemp("store") / "results.sqlite")


@pytest.fixture(scope="module")
def frames(store_path):
    return load_frames(store_path)


@pytest.fixture(scope="module")
def built(store_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(store_path, out, ReportOptions(formats=("png", "svg")))


# --- static figures ------------------------------------------------------------------------------------


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_ball_chart_labels_every_model_with_accuracy_and_draws_the_pareto_front(frames):
    models = model_summary(frames)
    fig = figures.accuracy_vs_operations(models)
    ax = fig.axes[0]
    labelled = models.dropna(subset=["top1", "gmacs"])
    assert sorted(_texts(fig)) == sorted(labelled["name"])
    assert "shufflenet" not in _texts(fig) and EVIL not in _texts(fig)  # no accuracy: left out
    step = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
    # fewest MACs first: MobileNetV2 (0.3 G, 71.9%), then ResNet50 (4.1 G, 80% measured)
    assert list(step.get_xdata()) == pytest.approx([0.3, 4.1])
    areas = np.concatenate([c.get_sizes() for c in ax.collections])
    assert areas.max() == pytest.approx(figures.BALL_MAX_PT2)  # VGG16, the largest model
    assert "FLOPs = 2 x MACs" in ax.get_xlabel() and "G-MACs" in ax.get_xlabel()


def test_labels_do_not_overlap_in_a_crowded_chart():
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    ax.scatter(x, y)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    fig.canvas.draw()
    texts = place_labels(ax, x, y, [f"model-{i}" for i in range(40)], 3.0, fontsize=6)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    overlaps = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 - 1 <= b.x0 and b.x1 <= frame.x1 + 1 for b in boxes)


def test_user_text_is_drawn_literally(frames, tmp_path):
    models = model_summary(frames)
    models.loc[models["model"] == "resnet18", "name"] = r"py:$\frac$"  # mathtext would fail to parse this
    fig = figures.accuracy_vs_operations(models)
    save_figure(fig, tmp_path, "literal", ("png",))
    assert r"py:\$\frac\$" in _texts(fig)


def test_spread_keeps_order_and_gap():
    placed = spread([5.0, 5.0, 6.0, 100.0], gap=10, low=0, high=200)
    assert list(np.diff(np.sort(placed))) >= [10, 10, 10] and placed[3] == 100.0
    assert spread([195.0, 199.0], gap=10, low=0, high=200).max() <= 200


def test_speed_figures_one_panel_per_machine_and_setup(frames):
    perf = performance(frames)
    fig = figures.accuracy_vs_resource(perf, "images_per_s")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3 and all(ax.get_xscale() == "log" for ax in panels)
    titles = " ".join(ax.get_title(loc="left") for ax in panels)
    assert "alpha (Intel(R) Xeon(R) Gold 6230)" in titles and "cuda:0 fp32" in titles
    bold = {t.get_text() for t in panels[0].texts if t.get_fontweight() == "bold"}
    assert bold == {"SqueezeNet1_1", "MobileNetV2", "ResNet50"}  # the Pareto front, worked out by hand


def test_other_static_figures(frames, tmp_path):
    perf = performance(frames)
    models = model_summary(frames)
    ratios = machine_ratios(perf, "m-a", "m-b")
    built = {
        "density": figures.accuracy_density_bars(models),
        "density-scatter": figures.accuracy_vs_density(models),
        "time": figures.metric_vs_batch(perf, "m-a"),
        "memory": figures.metric_vs_batch(perf, "m-a", "memory_mb"),
        "params": figures.params_vs_memory(perf),
        "ratio": figures.speed_ratio_bars(ratios, "alpha", "beta"),
    }
    time_labels = _texts(built["time"])
    assert "VGG16" in time_labels and EVIL in time_labels  # the line stops at the oom, but VGG16 has batch 1
    ratio_labels = [t.get_text() for t in built["ratio"].axes[0].get_yticklabels()]
    assert ratio_labels == ["MobileNetV2", "ResNet18"]  # 0.4x then 0.5x
    paths = save_figure(built["density"], tmp_path, "density", ("png", "svg", "pdf"))
    heads = {p.suffix: p.read_bytes()[:8] for p in paths}
    assert heads[".png"].startswith(b"\x89PNG") and heads[".pdf"].startswith(b"%PDF")
    assert b"<svg" in paths[1].read_bytes()[:400]


def test_figures_refuse_to_draw_nothing(frames):
    models = model_summary(frames).assign(top1=np.nan, top5=np.nan)
    with pytest.raises(EmptyFigureError, match="no model has both"):
        figures.accuracy_vs_operations(models)
    with pytest.raises(EmptyFigureError):
        interactive.ball_chart(models)
    perf = performance(frames)
    with pytest.raises(EmptyFigureError, match="batch size 64"):
        figures.accuracy_vs_resource(perf, batch_size=64)
    with pytest.raises(UsageError, match="unknown image format"):
        save_figure(figures.accuracy_density_bars(model_summary(frames)), "/tmp", "x", ("gif",))


# --- the HTML report -----------------------------------------------------------------------------------


def test_report_files(built):
    assert built.index.name == "index.html" and built.figures == EXPECTED_FIGURES and not built.skipped
    names = {p.name for p in built.images}
    assert len(names) == 2 * EXPECTED_FIGURES + 2 * 2  # PNG and SVG of each, plus each machine's constraint table
    assert all((built.index.parent / n).stat().st_size > 1000 for n in names)
    assert any(n.endswith("top1-vs-gmacs.svg") for n in names)


def test_report_is_self_contained_and_escaped(built):
    page = built.index.read_text()
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=[\"']?https?:", page)
    assert "cdn.plot.ly/plotly" not in page  # (plotly.js itself names cdn.plot.ly for map data only)
    assert EVIL not in page  # neither raw in HTML nor raw in the embedded JSON
    assert "python:&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == page.count("</script>") == 4  # error hook, plotly.js, figure data, page JS


def test_report_tables_show_failed_cells_and_notes(built):
    page = built.index.read_text()
    assert "Failed cells (3)" in page  # vgg16 time and memory at batch 2 on alpha, shufflenet's accuracy
    assert "no pretrained weights exist for this model" in page
    assert 'class="failed"' in page and "out of memory at batch size 2" in page
    assert "VGG16: oom at batch size 2" in page  # the note under the batch-size figures
    assert "shufflenet: no accuracy" in page.lower()
    results = page.split('id="results"', 1)[1].split("</table>", 1)[0]
    assert results.count("timed while other processes used the CPU") == 1  # the contended cell's note
    assert "MACs" in page and "FLOPs = 2 x MACs" in page and "max_memory_allocated" in page  # methodology
    assert "Intel(R) Xeon(R) Gold 6230" in page and "NVIDIA T4" in page  # fingerprints


def test_script_json_cannot_close_a_script():
    text = script_json({"name": "</script><script>alert(1)</script>", "amp": "&"})
    assert "<" not in text and ">" not in text and "&" not in text


def test_report_refuses_empty_store_and_unknown_machine(tmp_path, store_path):
    Store(tmp_path / "empty.sqlite").close()
    with pytest.raises(UsageError, match="holds no results"):
        build_report(tmp_path / "empty.sqlite", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="no machine matches 'gamma'"):
        build_report(store_path, tmp_path / "out2", ReportOptions(machines=("gamma",)))


def test_report_with_one_machine_and_no_images(store_path, tmp_path):
    result = build_report(store_path, tmp_path, ReportOptions(formats=(), machines=("alpha",)))
    page = result.index.read_text()
    assert result.images == [] and "One machine in this report" in page
    assert 'id="machine-filter"' not in page  # no selector for one machine
    assert "beta (AMD" not in page


def test_report_notes_a_figure_it_cannot_draw(tmp_path):
    records = [r for r in all_records() if r.metric != "complexity"]
    result = build_report(fill_store(tmp_path / "s.sqlite", records), tmp_path / "out", ReportOptions(formats=()))
    assert any("operation count" in reason for reason in result.skipped)
    assert "Not drawn: no model has both a top1 accuracy and an operation count" in result.index.read_text()


# --- in a browser --------------------------------------------------------------------------------------


def _chromium() -> str:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed (/usr/bin/chromium; apt-get install chromium)")
    return str(CHROMIUM)


def _run_chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=10000", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or ("CONSOLE" in line and re.search(r"error", line, re.IGNORECASE))]


# After load: choose machine alpha in the selector, sort the results by images/s (descending), and write what
# is then visible into the DOM, which --dump-dom shows.
UI_PROBE = """<script>
window.addEventListener('load', function () {
  var select = document.getElementById('machine-filter');
  select.value = 'm-a';
  select.dispatchEvent(new Event('change'));
  var visible = function (el) { return !el.closest('.hidden-by-filter'); };
  var plots = Array.prototype.filter.call(document.querySelectorAll('.js-plotly-plot'), visible).length;
  var rows = Array.prototype.filter.call(document.querySelectorAll('#results tbody tr'), visible);
  var header = Array.prototype.find.call(document.querySelectorAll('#results thead th'),
                                         function (th) { return th.textContent === 'images/s'; });
  header.click(); header.click();
  var first = document.querySelector('#results tbody tr:not(.hidden-by-filter)');
  document.body.setAttribute('data-probe', JSON.stringify({plots: plots, rows: rows.length,
    family: first.cells[2].textContent, batch: first.cells[4].textContent, sort: header.getAttribute('aria-sort')}));
});
</script>"""


def test_report_renders_in_chromium_without_errors(built, tmp_path):
    page = built.index.parent / "probe.html"
    # a page-level alert() probe: a live <script> from a model name would call it
    probe = "<script>window.alert = function (m) { document.documentElement.setAttribute('data-alert', m); };</script>"
    page.write_text(built.index.read_text().replace("<head>", "<head>" + probe, 1).replace("</body>",
                                                                                          UI_PROBE + "</body>"))
    done = _run_chromium(page, tmp_path, "--dump-dom")
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console_errors(done.stderr) == []
    assert re.search(r'<div id="js-errors" class="js-errors" hidden="">\s*</div>', dom)  # the hook saw no error
    assert not re.search(r"<html[^>]*data-alert", dom)
    assert dom.count('class="plot js-plotly-plot"') == EXPECTED_FIGURES  # every figure rendered by Plotly
    assert dom.count('class="main-svg"') >= EXPECTED_FIGURES
    assert "<script>alert(1)</script>" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    results = dom.split('id="results"', 1)[1].split("</table>", 1)[0]
    assert results.count("<tr") == 1 + TIMED_CONFIGS  # header + one row per timed configuration, failed included
    probe = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
    # alpha: its 5 figures (speed x2, batch x2, params-memory) + 5 not tied to a machine; its 14 timed configs
    assert probe["plots"] == 10 and probe["rows"] == sum(len(t) for t in A_CPU.values())
    assert probe == {**probe, "family": "custom", "batch": "2", "sort": "descending"}  # 2/9 ms: fastest on alpha


def test_report_screenshot(built, tmp_path):
    shot = tmp_path / "report.png"
    done = _run_chromium(built.index, tmp_path, "--hide-scrollbars", "--window-size=1400,2000",
                         f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    assert _console_errors(done.stderr) == []
    artifacts = os.environ.get("DNNBENCH_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report-screenshot.png")
