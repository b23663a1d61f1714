"""The offline and server scenarios (measure/scenarios.py, backends/streams.py) against queueing theory.

The synthetic backend's service time is deterministic: `time.sleep(D)` (which releases the GIL, so c threads
serve c requests at once). Under Poisson arrivals c such streams are an M/D/c queue, whose waiting times are
known exactly: for c = 1 the Pollaczek-Khinchine mean rho*D / (2(1 - rho)) and Erlang's M/D/1 waiting-time
distribution; for c = 2 Crommelin's (1932) mean waiting time of M/D/c. The effective service time D (the
sleep plus the thread hand-off and the sleep's overshoot) is measured on the same pool first, as the
single-stream median; the theory is evaluated at that D. Nothing here re-simulates the queue."""

from __future__ import annotations

import math
import statistics
import time

import pytest

from dnnbench.backends.streams import ConcurrencyUnsupported, ThreadStreamPool
from dnnbench.measure.scenarios import (
    OfflineRules,
    ServerRules,
    offline_point,
    offline_search,
    poisson_arrivals,
    server_point,
    server_search,
    single_stream_median,
)

D = 0.005  # seconds of service per request


def sleep_pool(streams: int, service_s: float = D, threads: int | None = None) -> ThreadStreamPool:
    return ThreadStreamPool(streams, threads, lambda index: (lambda: time.sleep(service_s)))


def poisson_tail(mean: float, m: int) -> float:
    """P(Poisson(mean) >= m), summed upwards from m (no cancellation)."""
    if m <= 0:
        return 1.0
    log_term = -mean + m * math.log(mean) - math.lgamma(m + 1)
    total, j = 0.0, m
    while True:
        term = math.exp(log_term)
        total += term
        j += 1
        log_term += math.log(mean / j)
        if term < 1e-16 * max(total, 1e-300) and j > mean:
            return total


def crommelin_mean_wait(rate: float, service_s: float, servers: int) -> float:
    """Crommelin's exact mean waiting time of M/D/c: D * sum_k [P(Poisson(k c rho) >= k c)
    - P(Poisson(k c rho) >= k c + 1) / rho], rho = rate * D / c."""
    rho = rate * service_s / servers
    total = 0.0
    for k in range(1, 2000):
        a = k * servers * rho
        term = poisson_tail(a, k * servers) - poisson_tail(a, k * servers + 1) / rho
        total += term
        if abs(term) < 1e-12:
            break
    return service_s * total


def md1_wait_cdf(t: float, rate: float, service_s: float) -> float:
    """Erlang's M/D/1 waiting-time distribution: P(W <= t) = (1 - rho) sum_{k=0}^{floor(t/D)}
    (rate (k D - t))^k / k! exp(-rate (k D - t))."""
    rho = rate * service_s
    total = sum((rate * (k * service_s - t)) ** k / math.factorial(k) * math.exp(-rate * (k * service_s - t))
                for k in range(int(t // service_s) + 1))
    return (1 - rho) * total


def test_crommelin_reduces_to_pollaczek_khinchine_for_one_server():
    for rho in (0.2, 0.5, 0.8):
        assert crommelin_mean_wait(rho / D, D, 1) == pytest.approx(rho * D / (2 * (1 - rho)), rel=1e-6)
    # and Erlang's distribution integrates to the same mean (a check of the formula as written here)
    rate = 0.5 / D
    mean = sum((1 - md1_wait_cdf(i * D / 200, rate, D)) * D / 200 for i in range(4000))
    assert mean == pytest.approx(0.5 * D / (2 * 0.5), rel=0.01)


def batch_means_se(values: list[float], batches: int = 10) -> float:
    """Standard error of the mean of autocorrelated waits, by batch means (from the observed data)."""
    size = len(values) // batches
    means = [statistics.fmean(values[i * size:(i + 1) * size]) for i in range(batches)]
    return statistics.stdev(means) / math.sqrt(batches)


@pytest.mark.parametrize("servers", [1, 2])
def test_poisson_load_gives_the_mdc_waiting_times(servers):
    """Mean wait (sojourn - D) within 3 batch-means standard errors of the exact M/D/c mean, plus 0.4 ms for the
    timer's and the scheduler's wake-up jitter. Latency measured from dispatch instead of the scheduled arrival
    (no queueing) would miss by the whole mean wait (2.5 ms at c = 1, ~0.9 ms at c = 2) and fail."""
    with sleep_pool(servers) as pool:
        service = single_stream_median(pool)
        rate = 0.5 * servers / service  # rho = 0.5 per server
        point = server_point(pool, rate, bound_s=1.0, rules=ServerRules(min_queries=800, max_point_s=30.0))
    assert point.dropped == 0 and point.completed == point.count
    waits = [latency - service for latency in point.latencies_s]
    expected = crommelin_mean_wait(rate, service, servers)
    tolerance = 3 * batch_means_se(waits) + 0.0004
    assert abs(statistics.fmean(waits) - expected) <= tolerance, (statistics.fmean(waits), expected, tolerance)
    if servers == 1:
        # the distribution too: P(W <= t) at t = D/2 and 1.5 D, within 0.12 (3 standard errors of a proportion
        # over ~170 effectively independent waits: 800 waits, autocorrelation time ~5 at rho = 0.5)
        for t in (0.5 * service, 1.5 * service):
            observed = sum(w <= t for w in waits) / len(waits)
            assert abs(observed - md1_wait_cdf(t, rate, service)) <= 0.12, (t, observed)


@pytest.mark.parametrize("streams", [1, 3])
def test_offline_throughput_of_n_streams_is_n_over_d(streams):
    with sleep_pool(streams) as pool:
        service = single_stream_median(pool, min_requests=10, min_seconds=0.2)
        point = offline_point(pool, batch_size=2, rules=OfflineRules(min_duration_s=0.6, min_images=40, warmup_s=0.1))
    assert point.met_minimums and point.streams == streams and point.batch_size == 2
    assert point.images_per_s == pytest.approx(2 * streams / service, rel=0.15)
    assert point.images == 2 * point.samples and point.duration_s >= 0.6


def test_offline_search_keeps_the_curve_and_finds_the_best():
    def make_pool(streams, batch_size, threads):
        # a batch costs D plus D/4 per image up to 4 images, D/2 per image past them: batch 4 is the best at any
        # stream count (images/s per stream: 0.8/D at 1, 2/D at 4, 1.6/D at 8)
        per_image = D / 4 if batch_size <= 4 else D / 2
        return sleep_pool(streams, D + per_image * batch_size, threads)

    result = offline_search(make_pool, cores=2, stream_counts=(1, 2), batch_sizes=(1, 4, 8),
                            rules=OfflineRules(min_duration_s=0.3, min_images=8, warmup_s=0.05))
    assert [(p.streams, p.batch_size) for p in result.points] == [(1, 1), (1, 4), (1, 8), (2, 1), (2, 4), (2, 8)]
    assert all(p.threads_per_stream == 2 // p.streams for p in result.points)
    assert (result.best_streams, result.best_batch_size) == (2, 4)
    assert result.single_stream_images_per_s == result.points[0].images_per_s
    assert result.concurrency == "threads" and result.cores == 2


def test_a_backend_that_cannot_run_concurrently_is_reported_not_timed():
    def make_pool(streams, batch_size, threads):
        raise ConcurrencyUnsupported("no concurrent requests proven for this backend")

    with pytest.raises(ConcurrencyUnsupported, match="no concurrent"):
        offline_search(make_pool, cores=2, stream_counts=(1, 2), batch_sizes=(1,))


def test_server_search_brackets_the_knee():
    """2 streams of D: the p99 bound of 4 D holds up to some rate below capacity 2/D and fails above it; the
    search ends with a bracket within the tolerance or its point budget, the knee a rate that met the bound."""
    with sleep_pool(2) as pool:
        result = server_search(pool, batch_size=1, p99_bound_s=None,
                               rules=ServerRules(min_queries=150, min_duration_s=0.3, max_points=6, rate_tolerance=0.2))
    assert result.bound_source.startswith("4x") and result.p99_bound_s == pytest.approx(4 * result.single_stream_median_s)
    assert 2 <= len(result.points) <= 6
    assert result.knee_rate is not None and result.knee_rate < 2 / result.single_stream_median_s
    met = [p.target_rate for p in result.points if p.meets_bound]
    failed = [p.target_rate for p in result.points if not p.meets_bound]
    assert result.knee_rate == max(met) and (not failed or min(failed) > result.knee_rate)


def test_poisson_arrivals_are_seeded_and_scale_with_the_rate():
    slow, fast = poisson_arrivals(2000, 10.0, seed=3), poisson_arrivals(2000, 20.0, seed=3)
    assert slow == [2 * t for t in fast]
    assert slow[-1] / 2000 == pytest.approx(0.1, rel=0.1)  # mean gap 1 / rate
    assert poisson_arrivals(5, 10.0, seed=4) != poisson_arrivals(5, 10.0, seed=3)


def test_a_failing_request_fails_the_point():
    def broken() -> None:
        raise RuntimeError("the runtime failed")

    with ThreadStreamPool(2, None, lambda index: broken) as pool, pytest.raises(RuntimeError, match="runtime failed"):
        offline_point(pool, 1, OfflineRules(min_duration_s=0.1, min_images=1, warmup_s=0.0))


# --- the scenarios as cells of a sweep --------------------------------------------------------------------------

FAST = dict(device="cpu", threads=(2,), input_size=32, measure_peak=False, scenario_min_s=0.2)


def test_scenario_settings_are_checked_before_any_work():
    from dnnbench.errors import UsageError
    from dnnbench.run.config import build_sweep_config

    assert build_sweep_config().scope.scenario == "single-stream"
    with pytest.raises(UsageError, match="unknown scenario"):
        build_sweep_config(scenario="batch")
    with pytest.raises(UsageError, match="--p99-ms bounds the server"):
        build_sweep_config(scenario="offline", p99_ms=10)
    with pytest.raises(UsageError, match="one stream count"):
        build_sweep_config(scenario="server", streams="1,2")
    with pytest.raises(UsageError, match="p99 latency bound"):
        build_sweep_config(scenario="server", p99_ms=-1)
    config = build_sweep_config(scenario="offline", scenario_min_s=0.5)
    assert config.offline.min_duration_s == 0.5 and config.server.min_duration_s == 0.5


def test_scenario_cells_are_cells_of_their_own():
    from dnnbench import zoo
    from dnnbench.run.config import build_sweep_config
    from dnnbench.run.plan import plan

    spec = zoo.get("resnet18")
    single = {c.digest for j in plan([spec], build_sweep_config(batch_sizes=(1, 2))) for c in j.cells}
    offline = [c for j in plan([spec], build_sweep_config(batch_sizes=(1, 2), scenario="offline", streams="1,2"))
               for c in j.cells]
    assert [c.metric for c in offline] == ["complexity", "offline"]
    assert offline[1].key.config_dict["batch_sizes"] == [1, 2] and offline[1].key.config_dict["streams"] == [1, 2]
    server = [c for j in plan([spec], build_sweep_config(batch_sizes=(1,), scenario="server", p99_ms=20))
              for c in j.cells if c.metric == "server"]
    assert server[0].key.config_dict["p99_ms"] == 20
    assert not ({offline[1].digest, server[0].digest} & single)


def test_a_tiny_model_runs_each_scenario_into_the_store(tmp_path):
    from dnnbench.run import benchmark
    from dnnbench.store import Store
    from dnnbench.store.values import OfflineValue, ServerValue

    db = tmp_path / "scenarios.sqlite"
    model = "python:dnnbench_test_models:tiny"
    benchmark(model, db=db, scenario="offline", batch_sizes=(1, 2), backends="eager,torchscript", **FAST)
    benchmark(model, db=db, scenario="server", batch_sizes=(1,), backends="eager", p99_ms=50, **FAST)
    with Store(db) as store:
        cells = {(r.metric, r.config["backend"]): r for r in store.results() if r.metric in ("offline", "server")}
    offline = cells["offline", "eager"].values
    assert isinstance(offline, OfflineValue) and offline.concurrency == "torch-threads" and offline.cores == 2
    assert {(p.streams, p.threads_per_stream) for p in offline.points} <= {(1, 2), (2, 1)}
    assert offline.best_images_per_s == max(p.images_per_s for p in offline.points if p.images_per_s)
    assert offline.output_check.passed
    unsupported = cells["offline", "torchscript"]
    assert unsupported.status == "unsupported" and "several requests at once" in unsupported.error
    server = cells["server", "eager"].values
    assert isinstance(server, ServerValue) and server.bound_source == "user" and server.p99_bound_s == 0.05
    assert server.points and all(p.p99_s is not None for p in server.points)
    assert server.knee_rate is None or server.knee.meets_bound
    # resume: the same call measures nothing again
    summary = benchmark(model, db=db, scenario="server", batch_sizes=(1,), backends="eager", p99_ms=50, **FAST)
    assert summary.already_done == summary.planned


def test_the_cli_runs_a_scenario(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    src = tests.parent / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{tests}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "dnnbench", "run", "python:dnnbench_test_models:tiny", "--db",
                           str(tmp_path / "cli.sqlite"), "--device", "cpu", "--threads", "2", "--input-size", "32",
                           "--no-peak", "--scenario", "offline", "--streams", "1,2", "--batch-sizes", "1",
                           "--scenario-min-s", "0.2"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Offline: sustained images/s" in done.stdout and "torch-threads" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "dnnbench", "run", "resnet18", "--db", str(tmp_path / "x.sqlite"),
                          "--scenario", "offline", "--p99-ms", "5"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "--p99-ms" in bad.stderr + bad.stdout


@pytest.mark.parametrize("backend, concurrency", [("onnxruntime", "onnxruntime-session-threads"),
                                                  ("openvino", "openvino-async-infer-queue")])
def test_runtimes_make_streams_their_own_way(tmp_path, backend, concurrency):
    """ONNX Runtime: one session from N threads; OpenVINO: an AsyncInferQueue on a NUM_STREAMS model (the tiny
    model end to end: the output check passes and both stream counts are measured)."""
    from dnnbench.backends import BACKENDS
    from dnnbench.run import benchmark
    from dnnbench.store import Store

    reason = BACKENDS[backend].unavailable_reason(__import__("torch").device("cpu"))
    if reason:
        pytest.skip(reason)
    db = tmp_path / "runtimes.sqlite"
    benchmark("python:dnnbench_test_models:tiny", db=db, scenario="offline", batch_sizes=(1,), streams="1,2",
              backends=backend, metrics="time", **FAST)
    with Store(db) as store:
        (cell,) = [r for r in store.results() if r.metric == "offline"]
    assert cell.status == "ok", cell.error
    assert cell.values.concurrency == concurrency and cell.values.output_check.passed
    assert [(p.streams, p.threads_per_stream) for p in cell.values.points] == [(1, 2), (2, 1)]


def test_one_cpu_stream_of_pytorch_runs_on_the_callers_thread_with_its_thread_count():
    """A second OpenMP team (a pool thread's) beside the main thread's halved MobileNetV2's single-stream speed on
    2 cores: one CPU stream is the caller's own thread, as `run`'s single-stream cells are."""
    import threading

    import torch

    from dnnbench.backends.streams import CallerThreadPool, ThreadStreamPool, torch_thread_pool

    seen = []
    before = torch.get_num_threads()
    pool = torch_thread_pool(lambda: seen.append((threading.get_ident(), torch.get_num_threads(),
                                                  torch.is_inference_mode_enabled())), 1, 1, torch.device("cpu"))
    errors = []
    with pool:
        assert isinstance(pool, CallerThreadPool) and pool.concurrency == "torch-threads"
        pool.submit(errors.append)
        pool.wait_all()
    assert seen == [(threading.get_ident(), 1, True)] and errors == [None]
    assert torch.get_num_threads() == before  # restored
    with torch_thread_pool(lambda: None, 2, 1, torch.device("cpu")) as two:
        assert isinstance(two, ThreadStreamPool)
