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
    scenario_summary,
    server_curve,
    server_knees,
    server_p99_at_rate,
)
from dnnbench.analysis.select import selection_rows
from dnnbench.errors import UsageError
from dnnbench.report import ReportOptions, build_report
from dnnbench.report import figures as static
from dnnbench.report import interactive
from dnnbench.store import ResultRecord, Store
from dnnbench.store.values import decode

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


def test_a_contended_offline_cell_gives_no_best_point_only_the_reason():
    records = [offline("resnet50", "eager", [point(1, 1, 20.0), point(2, 1, 30.0)], contended=True)]
    best = best_offline(frames_from_records(records)).iloc[0]
    assert not best["trusted"] and np.isnan(best["best_images_per_s"]) and best["excluded"] == "2 contended"


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
    assert "openvino" not in at[15.0].index  # contended: no trusted server cell


def test_summary_sets_single_stream_best_offline_and_knee_side_by_side(frames):
    summary = scenario_summary(frames).set_index(["model", "backend"])
    r = summary.loc[("resnet50", "eager")]
    assert (r["single_stream_images_per_s"], r["best_images_per_s"], r["knee_rate"]) == pytest.approx(
        (20.0, 36.0, 20.0))
    assert np.isnan(summary.loc[("resnet50", "openvino"), "knee_rate"])  # contended server cell
    assert summary.loc[("resnet50", "openvino"), "server_excluded"] == "contended"


def test_frames_of_a_store_without_scenario_cells_are_empty_and_well_formed():
    frames = frames_from_records([timed("resnet50", "eager", 0.05)])
    for frame in (offline_curve(frames), best_offline(frames), server_curve(frames), server_knees(frames),
                  server_p99_at_rate(frames, 10.0), scenario_summary(frames)):
        assert frame.empty and len(frame.columns)


def test_a_store_with_only_scenario_cells_is_not_empty(frames):
    frames.require_data()
