"""Offline and server cells in the analysis, the report and `select` (docs/SCENARIOS.md): synthetic records of
known figures give the best point, the knee and the p99 at a rate; the report draws them only where they exist;
select keeps, rejects, and lists as not measured."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from dnnbench.analysis import Constraints, frames_from_records, performance, select_models
from dnnbench.analysis.scenarios import (
    best_offline,
    offline_curve,
    scenario_figures,
    scenario_summary,
    server_curve,
    server_knees,
    server_p99_at_rate,
)
from dnnbench.analysis.select import selection_rows
from dnnbench.cli.app import app
from dnnbench.errors import UsageError
from dnnbench.report import EmptyFigureError, ReportOptions, build_report
from dnnbench.report import scenarios as draw
from dnnbench.store import ResultRecord
from dnnbench.store.values import decode
from test_analysis import CPU_A, fill_store
from test_report import _console_errors, _run_chromium

MACHINE = "m1"


def record(model, metric, values, backend="eager", status="ok", error=None, batch=1, finished=None, **extra):
    config = {"device": "cpu", "dtype": "fp32", "batch_size": batch, "input_size": 224, "threads": 2,
              "backend": backend, **extra}
    now = finished or time.time()
    return ResultRecord(model=model, metric=metric, config=config, status=status,
                        values=decode(metric, values) if status == "ok" else None, error=error,
                        started_at=now, finished_at=now, machine_id=MACHINE)


def timed(model, backend, latency_s):
    return record(model, "time", {"median_s": latency_s, "stats": {"median": latency_s, "n": 50}, "converged": True,
                                  "contention": {"contended": False}, "images_per_s": 1 / latency_s,
                                  "ms_per_image": latency_s * 1e3, "output_check": {"passed": True}})


def point(streams, batch, images_per_s, met=True, error=None):
    if error:
        return {"streams": streams, "batch_size": batch, "threads_per_stream": 2 // streams, "error": error}
    return {"streams": streams, "batch_size": batch, "threads_per_stream": 2 // streams, "images_per_s": images_per_s,
            "samples": 100, "images": 100 * batch, "duration_s": 2.5, "met_minimums": met}


def offline(model, backend, points, contended=False, passed=True):
    best = max((p for p in points if "images_per_s" in p), key=lambda p: p["images_per_s"])
    return record(model, "offline", {
        "concurrency": "torch-threads", "cores": 2, "points": points, "best_images_per_s": best["images_per_s"],
        "best_streams": best["streams"], "best_batch_size": best["batch_size"], "min_duration_s": 2.0,
        "min_samples": 64, "output_check": {"passed": passed}, "contention": {"contended": contended}},
        backend=backend, scenario="offline", batch_sizes=[1, 4], streams=None)


def rate(target, p50_ms, p99_ms, dropped=0, bound_ms=20.0):
    return {"target_rate": target, "achieved_rate": target * 0.98, "count": 200, "completed": 200 - dropped,
            "duration_s": 200 / target, "p50_s": p50_ms / 1e3, "p90_s": (p50_ms + p99_ms) / 2e3,
            "p99_s": p99_ms / 1e3, "mean_s": p50_ms / 1e3, "max_s": p99_ms * 1.2 / 1e3, "dropped": dropped,
            "meets_bound": p99_ms <= bound_ms and not dropped}


def server(model, backend, rates, bound_ms=20.0, contended=False, streams=2):
    knee = max((r["target_rate"] for r in rates if r["meets_bound"]), default=None)
    return record(model, "server", {
        "concurrency": "torch-threads", "cores": 2, "streams": streams, "threads_per_stream": 1, "batch_size": 1,
        "p99_bound_s": bound_ms / 1e3, "bound_source": "user", "points": rates, "knee_rate": knee, "seed": 0,
        "output_check": {"passed": True}, "contention": {"contended": contended}},
        backend=backend, scenario="server", streams=streams, p99_ms=bound_ms)


def scenario_records():
    """resnet50: eager (time cell, offline, server) and openvino (offline only, a contended server cell);
    mobilenetv2: eager offline whose only fast points are untrusted, openvino offline unsupported."""
    return [
        timed("resnet50", "eager", 0.050),  # 20 images/s single-stream
        offline("resnet50", "eager", [point(1, 1, 20.0), point(2, 1, 30.0), point(2, 4, 36.0), point(1, 4, 25.0),
                                      point(2, 8, None, error="MemoryError: out of memory")]),
        server("resnet50", "eager", [rate(10.0, 60.0, 70.0, bound_ms=100.0), rate(20.0, 70.0, 90.0, bound_ms=100.0),
                                     rate(30.0, 90.0, 400.0, bound_ms=100.0),
                                     rate(40.0, 100.0, 900.0, dropped=5, bound_ms=100.0)], bound_ms=100.0),
        offline("resnet50", "openvino", [point(1, 1, 40.0), point(2, 1, 75.0), point(2, 4, 80.0)]),
        server("resnet50", "openvino", [rate(50.0, 20.0, 30.0, bound_ms=50.0)], bound_ms=50.0, contended=True),
        offline("mobilenetv2", "eager", [point(1, 1, 100.0), point(2, 1, 190.0, met=False)]),
        record("mobilenetv2", "offline", None, backend="openvino", status="unsupported",
               error="openvino at fp32: no concurrent requests here", scenario="offline", batch_sizes=[1],
               streams=None),
    ]


@pytest.fixture()
def frames():
    return frames_from_records(scenario_records())


# --- analysis -------------------------------------------------------------------------------------------------


def test_offline_curve_rows_and_the_best_trusted_point_per_deployment(frames):
    curve = offline_curve(frames)
    eager = curve[(curve["model"] == "resnet50") & (curve["backend"] == "eager")]
    assert len(eager) == 5 and eager["images_per_s"].notna().sum() == 4
    assert set(eager["threads_per_stream"].dropna()) == {1.0, 2.0}
    assert eager.loc[eager["point_error"] != "", "trusted"].eq(False).all()
    best = best_offline(frames).set_index(["model", "backend"])
    r = best.loc[("resnet50", "eager")]
    assert (r["best_images_per_s"], r["best_streams"], r["best_batch_size"]) == (36.0, 2, 4)
    # single-stream from the time cell at batch 1 (20 images/s), the gain over it
    assert r["single_stream_images_per_s"] == pytest.approx(20.0) and r["single_stream_source"] == "time cell"
    assert r["gain"] == pytest.approx(1.8)
    ov = best.loc[("resnet50", "openvino")]
    assert ov["best_images_per_s"] == 80.0 and ov["single_stream_source"] == "offline 1x1"
    # the 190 images/s point fell short of the minimums: the best is the trusted 100, the other one counted
    mob = best.loc[("mobilenetv2", "eager")]
    assert mob["best_images_per_s"] == 100.0 and mob["excluded"] == "1 short of the minimums"


def test_a_contended_offline_cell_gives_a_best_point_marked_contended_a_flagged_one_none():
    records = [offline("resnet50", "eager", [point(1, 1, 20.0), point(2, 1, 30.0)], contended=True),
               offline("resnet50", "openvino", [point(1, 1, 40.0), point(2, 1, 70.0)], contended=True),
               offline("resnet50", "openvino", [point(2, 2, 90.0)]),
               offline("mobilenetv2", "eager", [point(1, 1, 20.0)], passed=False)]
    best = best_offline(frames_from_records(records)).set_index(["model", "backend"])
    contended = best.loc[("resnet50", "eager")]
    assert contended["best_images_per_s"] == 30.0 and contended["contended"] and not contended["trusted"]
    assert contended["excluded"] == "2 contended"
    # a trusted point beats faster contended ones; a flagged cell gives nothing
    assert best.loc[("resnet50", "openvino"), "best_images_per_s"] == 90.0
    assert best.loc[("resnet50", "openvino"), "trusted"]
    assert np.isnan(best.loc[("mobilenetv2", "eager"), "best_images_per_s"])
    assert best.loc[("mobilenetv2", "eager"), "excluded"] == "1 flagged by the output check"


def test_server_rows_per_rate_the_knee_and_the_p99_at_a_rate(frames):
    curve = server_curve(frames)
    eager = curve[curve["backend"] == "eager"]
    assert list(eager["target_rate"]) == [10.0, 20.0, 30.0, 40.0]
    assert list(eager["p99_ms"]) == pytest.approx([70.0, 90.0, 400.0, 900.0])
    knees = server_knees(frames).set_index("backend")
    assert knees.loc["eager", "knee_rate"] == 20.0 and knees.loc["eager", "p99_bound_ms"] == pytest.approx(100.0)
    assert knees.loc["openvino", "excluded"] == "contended" and not knees.loc["openvino", "trusted"]
    # judged at the smallest measured rate >= R: 15 -> 20 req/s (p99 90 ms), 20 -> 20, 25 -> 30 (400 ms)
    at = {r: server_p99_at_rate(frames, r).set_index("backend") for r in (15.0, 20.0, 25.0, 35.0, 50.0)}
    assert at[15.0].loc["eager", "server_p99_ms"] == pytest.approx(90.0)
    assert at[15.0].loc["eager", "server_rate"] == 20.0
    assert at[25.0].loc["eager", "server_p99_ms"] == pytest.approx(400.0)
    assert np.isnan(at[35.0].loc["eager", "server_p99_ms"]) and "5 of 200 requests dropped" in \
        at[35.0].loc["eager", "server_note"]
    assert "measured up to 40 requests/s" in at[50.0].loc["eager", "server_note"]
    # the contended cell still answers, marked: judged at 50 req/s
    assert at[15.0].loc["openvino", "server_p99_ms"] == pytest.approx(30.0)
    assert at[15.0].loc["openvino", "server_contended"] and not at[15.0].loc["eager", "server_contended"]


def test_summary_sets_single_stream_best_offline_and_knee_side_by_side(frames):
    summary = scenario_summary(frames).set_index(["model", "backend"])
    r = summary.loc[("resnet50", "eager")]
    assert (r["single_stream_images_per_s"], r["best_images_per_s"], r["knee_rate"]) == pytest.approx(
        (20.0, 36.0, 20.0))
    assert summary.loc[("resnet50", "openvino"), "knee_rate"] == 50.0  # from a contended cell, said so
    assert summary.loc[("resnet50", "openvino"), "server_excluded"] == "contended"


def test_frames_of_a_store_without_scenario_cells_are_empty_and_well_formed():
    frames = frames_from_records([timed("resnet50", "eager", 0.05)])
    for frame in (offline_curve(frames), best_offline(frames), server_curve(frames), server_knees(frames),
                  server_p99_at_rate(frames, 10.0), scenario_summary(frames)):
        assert frame.empty and len(frame.columns)


def test_a_store_with_only_scenario_cells_is_not_empty(frames):
    frames.require_data()


# --- select ---------------------------------------------------------------------------------------------------


def _select(frames, limits, **kwargs):
    return select_models(performance(frames), limits, top=None, machine_id=MACHINE,
                         scenarios=scenario_figures(frames, limits.at_rate), **kwargs)


def test_min_throughput_keeps_deployments_whose_best_offline_point_meets_it(frames):
    selection = _select(frames, Constraints(min_offline_images_per_s=50.0))
    chosen = {c.model: c for c in selection.chosen}
    # resnet50: openvino's 80 images/s passes (eager's 36 does not); mobilenetv2: eager's trusted 100 (not the 190
    # point short of the minimums)
    assert chosen["resnet50"].setup.endswith("openvino") and chosen["resnet50"].offline_images_per_s == 80.0
    assert chosen["resnet50"].offline_point == "2 streams x batch 4"
    assert chosen["mobilenetv2"].offline_images_per_s == 100.0
    # the openvino deployment of mobilenetv2 could not run concurrently: listed, with why, not dropped
    missing = {(r.candidate.model, r.candidate.setup): r.describe() for r in selection.not_measured}
    assert missing == {("mobilenetv2", "cpu fp32 2 threads openvino"):
                       "offline scenario unsupported: openvino at fp32: no concurrent requests here"}
    too_slow = _select(frames, Constraints(min_offline_images_per_s=150.0))
    assert not too_slow.chosen
    why = {r.candidate.model: r.describe() for r in too_slow.rejected}
    assert why["resnet50"].startswith("offline throughput 80.0 < 150 images/s")


EAGER, OPENVINO = "cpu fp32 2 threads eager", "cpu fp32 2 threads openvino"


def test_max_p99_at_a_rate_judges_the_smallest_measured_rate_at_or_above_it(frames):
    # eager: 15 req/s is judged at 20 req/s (p99 90 ms): passes 95 ms, fails 80 ms
    eager = _select(frames, Constraints(max_p99_ms=95.0, at_rate=15.0), setups=[EAGER])
    assert [c.model for c in eager.chosen] == ["resnet50"] and eager.chosen[0].server_rate == 20.0
    strict = _select(frames, Constraints(max_p99_ms=80.0, at_rate=15.0), setups=[EAGER])
    assert not strict.chosen
    rejected = {r.candidate.model: r.describe() for r in strict.rejected}
    assert rejected["resnet50"] == ("server p99 90.0 > 80.0 ms (+10.0 ms, +12%) [at 20 requests/s offered]")
    # every deployment without a server figure is listed with why
    missing = {(r.candidate.model, r.candidate.setup): r.describe() for r in strict.not_measured}
    assert missing == {("mobilenetv2", EAGER): "not measured in the server scenario (`dnnbench run --scenario "
                                                "server`)"}


def test_a_contended_server_figure_passes_a_bound_it_meets_and_says_so_where_it_fails(frames):
    # openvino's only server cell was contended: 30 ms at 50 req/s, conservative
    passed = _select(frames, Constraints(max_p99_ms=95.0, at_rate=15.0))
    chosen = {c.model: c for c in passed.chosen}
    assert chosen["resnet50"].setup == OPENVINO and chosen["resnet50"].server_p99_ms == pytest.approx(30.0)
    assert chosen["resnet50"].scenario_note == "server measured while contended (conservative)"
    failed = _select(frames, Constraints(max_p99_ms=25.0, at_rate=15.0), setups=[OPENVINO])
    why = failed.rejected[0].describe()
    assert why.startswith("server p99 30.0 > 25.0 ms") and "measured while contended" in why
    assert "`dnnbench run --scenario server --force`" in why
    overloaded = _select(frames, Constraints(max_p99_ms=1e4, at_rate=35.0), setups=[EAGER])
    assert not overloaded.chosen and "5 of 200 requests dropped" in overloaded.rejected[0].describe()


def test_scenario_constraints_need_both_flags_and_positive_values():
    with pytest.raises(UsageError, match="--max-p99-ms"):
        Constraints(at_rate=10.0)
    with pytest.raises(UsageError, match="--at-rate"):
        Constraints(max_p99_ms=10.0)
    with pytest.raises(UsageError, match="--min-throughput must be positive"):
        Constraints(min_offline_images_per_s=0.0)


def test_selection_rows_carry_scenario_columns_only_when_asked(frames):
    plain = selection_rows(_select(frames, Constraints(min_images_per_s=1.0)), 5)
    assert plain and not any("offline_images_per_s" in row or "not_measured" in row for row in plain)
    rows = selection_rows(_select(frames, Constraints(min_offline_images_per_s=50.0)), 5)
    assert [row["not_measured"] for row in rows] == [False, False, True]
    assert rows[0]["offline_point"] == "2 streams x batch 4"


@pytest.fixture()
def store(tmp_path):
    return fill_store(tmp_path / "results.sqlite", scenario_records(), {MACHINE: CPU_A})


def test_cli_select_filters_and_lists_not_measured_deployments(store):
    runner = CliRunner()
    done = runner.invoke(app, ["select", "--db", store, "--min-throughput", "50", "--format", "json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output)
    assert {(r["model"], r["fits"], r["not_measured"]) for r in rows} == {
        ("resnet50", True, False), ("mobilenetv2", True, False), ("mobilenetv2", False, True)}
    table = runner.invoke(app, ["select", "--db", store, "--max-p99-ms", "20", "--at-rate", "15"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 1 and "not measured in that scenario" in table.output
    assert "no model meets batch size 1, server p99 <= 20 ms at 15 requests/s" in table.output


@pytest.mark.parametrize("args, message", [
    (["--at-rate", "15"], "--at-rate 15 says where a server p99 is judged; give the bound with --max-p99-ms MS"),
    (["--max-p99-ms", "5"], "--max-p99-ms 5 bounds the server p99 at an offered rate; give the rate with --at-rate"),
    (["--min-throughput", "-3"], "--min-throughput must be positive, not -3.0"),
])
def test_cli_select_errors_are_one_line_and_exit_2(store, args, message):
    done = CliRunner().invoke(app, ["select", "--db", store, *args], env={"COLUMNS": "300"})
    assert done.exit_code == 2 and message in done.output and len(done.output.strip().splitlines()) == 1


# --- the report -----------------------------------------------------------------------------------------------


def test_scenario_figures_draw_curves_and_refuse_empty_frames(frames):
    curve, server = offline_curve(frames), server_curve(frames)
    fig = draw.offline_throughput(curve, best_offline(frames))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3  # one panel per deployment
    assert all("images/s" in ax.get_ylabel() and "Streams" in ax.get_xlabel() for ax in fig.axes if ax.get_visible())
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "best 36 images/s\n2 streams x batch 4" in texts
    fig = draw.server_latency(server, server_knees(frames))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert " knee 20 req/s" in texts and " knee 50 req/s (contended)" in texts
    assert any("p99 bound 100 ms" in t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
    interactive = draw.server_latency_interactive(server, server_knees(frames))
    assert {t.name for t in interactive.data} >= {"p50", "p99", "p99 bound", "knee", "requests dropped"}
    offline_fig = draw.offline_throughput_interactive(curve, best_offline(frames))
    assert "best point" in {t.name for t in offline_fig.data}
    for make in (draw.offline_throughput, draw.offline_throughput_interactive):
        with pytest.raises(EmptyFigureError):
            make(curve.iloc[:0])
    for make in (draw.server_latency, draw.server_latency_interactive):
        with pytest.raises(EmptyFigureError):
            make(server.iloc[:0])


def test_report_has_a_scenario_section_only_with_scenario_cells(store, tmp_path):
    result = build_report(store, tmp_path / "report", ReportOptions(formats=("png",)))
    page = result.index.read_text()
    section = page.split('<section id="scenarios">', 1)[1].split("</section>", 1)[0]
    assert "Best offline images/s" in section and "Server knee req/s" in section
    assert {p.name for p in result.images} >= {f"{n:02d}-{key}-m1.png" for n, key in ((3, "offline-throughput"),
                                                                                      (4, "server-latency"))}
    failures = page.split('<section id="failures">', 1)[1].split("</section>", 1)[0]
    assert "offline" in failures and "no concurrent requests here" in failures
    plain = fill_store(tmp_path / "plain.sqlite", [timed("resnet50", "eager", 0.05)], {MACHINE: CPU_A})
    before = build_report(plain, tmp_path / "plain", ReportOptions(formats=()))
    text = before.index.read_text()
    assert 'id="scenarios"' not in text and "offline" not in text.split('<section id="failures">', 1)[1]


def test_report_with_scenarios_renders_in_chromium_without_errors(store, tmp_path):
    result = build_report(store, tmp_path / "report", ReportOptions(formats=()))
    done = _run_chromium(result.index, tmp_path, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console_errors(done.stderr) == []
    assert done.stdout.count('class="plot js-plotly-plot"') == result.figures
