"""Scenarios: single-stream, offline and server figures of ResNet-50 and MobileNetV2 with OpenVINO and eager PyTorch,
beside OpenVINO's own benchmark_app.

For each model x backend, on this CPU with all its cores (default): `dnnbench run --scenario offline` (streams
1, 2, 4, ... the cores x batch sizes 1, 2, 4, 8, the whole curve) and `--scenario server` (batch 1, one stream per
core, the highest Poisson rate whose p99 latency stays under 4x the single-stream median), into their own store;
right after each model's offline cells, on the very ONNX file OpenVINO compiled, at batch 1 on the same cores,
`benchmark_app -m FILE -d CPU -hint throughput -t SECS -shape [1,3,H,W] -infer_precision f32` (the cell's
precision: the plug-in would otherwise run bf16 on CPUs that have it), its "Throughput:" line parsed.
Printed per row: single-stream images/s (1 stream, batch 1: call, wait, call again),
the best offline images/s with its stream count and batch size, the gain over single-stream, the server knee
rate with its bound, benchmark_app's figure and dnnbench's best offline over it. Then the issue's two targets:
offline best >= 1.5x single-stream for MobileNetV2 with OpenVINO, and dnnbench's best offline within 10% of
benchmark_app or above.

Scenario points are short by default (--scenario-min-s 0.5: each offline point and each offered rate at least
0.5 s; the searches' caps scale with it) so the whole script takes about six minutes on a 2-core machine; use
--scenario-min-s 2 on an idle machine for the figures to keep. Every cell's contention flag is printed.

    .venv/bin/python benchmarks/scenarios.py [--models resnet50,mobilenetv2] [--backends openvino,eager]
        [--threads N] [--batch-sizes 1,2,4,8] [--scenario-min-s 0.5] [--benchmark-app-s 8]
        [--db results/scenarios.sqlite] [--force]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# dnnbench's precision -> benchmark_app's -infer_precision. Without it benchmark_app takes the CPU plug-in's
# default, which is bf16 on CPUs with bf16 units: on this Zen 4 it timed a bf16 network against dnnbench's fp32
# cell (51.4 against 26.9 images/s for ResNet-50: the bf16 figure of benchmarks/backends.py, 51.9)
INFER_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def benchmark_app_throughput(onnx_file: str, input_size: int, threads: int, seconds: float,
                             precision: str = "fp32") -> tuple[float | None, str]:
    """OpenVINO's benchmark_app with the throughput hint on `onnx_file` at batch 1 (the exported graph's batch is
    dynamic: `-shape` fixes it, as a user's batch-1 model would be): (images/s, the line it came from)."""
    app = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    if not Path(app).exists():
        return None, "benchmark_app not found (it installs with the openvino package)"
    # benchmark_app refuses -nthreads beside a hint: its CPU plugin takes every core this process may use, which
    # `taskset` restricts to the cores dnnbench was given
    cores = sorted(os.sched_getaffinity(0))[:threads]
    command = ["taskset", "-c", ",".join(map(str, cores)), app, "-m", onnx_file, "-d", "CPU", "-hint", "throughput",
               "-t", f"{seconds:g}", "-shape", f"[1,3,{input_size},{input_size}]",
               "-infer_precision", INFER_PRECISION[precision]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 180)
    for line in done.stdout.splitlines():
        match = re.search(r"Throughput:\s*([0-9.]+)\s*FPS", line)
        if match:
            return float(match.group(1)), line.strip()
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return None, f"no Throughput line (exit {done.returncode}): {' | '.join(tail)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenetv2")
    parser.add_argument("--backends", default="openvino,eager")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--scenario-min-s", type=float, default=0.5)
    parser.add_argument("--benchmark-app-s", type=float, default=8.0)
    parser.add_argument("--db", default="results/scenarios.sqlite")
    parser.add_argument("--force", action="store_true", help="measure again cells the store already has")
    args = parser.parse_args()

    from dnnbench.run import benchmark
    from dnnbench.store import Store
    from dnnbench.store.values import OfflineValue, ServerValue
    from dnnbench.zoo import get

    models = [get(name).id for name in args.models.split(",")]
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    common = dict(db=args.db, backends=args.backends, threads=(args.threads,), measure_peak=False,
                  scenario_min_s=args.scenario_min_s, force=args.force, metrics="time")
    def stored_cells() -> dict:
        with Store(args.db) as store:
            return {(r.model, r.metric, r.config["backend"]): r for r in store.results()
                    if r.metric in ("offline", "server") and r.config.get("threads") == args.threads
                    and r.model in models}

    started = time.perf_counter()
    app_figures: dict[str, tuple[float | None, str]] = {}
    for model in models:
        # benchmark_app right after the model's offline cells, so the two share the machine's conditions
        benchmark(model, scenario="offline", batch_sizes=args.batch_sizes, **common)
        offline = stored_cells().get((model, "offline", "openvino"))
        value = offline.values if offline is not None else None
        if isinstance(value, OfflineValue) and value.backend is not None and value.backend.extra.get("source_file"):
            app_figures[model] = benchmark_app_throughput(value.backend.extra["source_file"],
                                                          offline.config["input_size"], args.threads,
                                                          args.benchmark_app_s,
                                                          value.executed_precision or offline.config["dtype"])
        benchmark(model, scenario="server", batch_sizes=(1,), **common)
    scenario_s = time.perf_counter() - started
    cells = stored_cells()
    print(f"\n{args.threads} cores; scenario points >= {args.scenario_min_s:g} s; scenarios (and benchmark_app) took "
          f"{scenario_s:.0f} s")
    header = (f"{'model':<14} {'backend':<9} {'single img/s':>12} {'offline best':>12} {'streams x batch':>15} "
              f"{'gain':>5} {'server knee/s':>13} {'p99 bound ms':>12} {'benchmark_app':>13} {'ratio':>6} "
              f"{'contended':>9}")
    print(header)
    print("-" * len(header))
    targets = []
    for model in models:
        for backend in args.backends.split(","):
            offline, server = cells.get((model, "offline", backend)), cells.get((model, "server", backend))
            o = offline.values if offline is not None and isinstance(offline.values, OfflineValue) else None
            s = server.values if server is not None and isinstance(server.values, ServerValue) else None
            if o is None:
                print(f"{model:<14} {backend:<9} offline {offline.status if offline else 'missing'}: "
                      f"{(offline.error or '') if offline else ''}")
                continue
            app_fps, app_line = app_figures.get(model, (None, "")) if backend == "openvino" else (None, "")
            ratio = o.best_images_per_s / app_fps if app_fps and o.best_images_per_s else None
            contended = bool(o.contention and o.contention.contended) or bool(s and s.contention and
                                                                            s.contention.contended)
            print(f"{model:<14} {backend:<9} {o.single_stream_images_per_s or float('nan'):>12.1f} "
                  f"{o.best_images_per_s or float('nan'):>12.1f} {f'{o.best_streams} x {o.best_batch_size}':>15} "
                  f"{o.gain_over_single_stream or float('nan'):>5.2f} "
                  f"{(s.knee_rate if s and s.knee_rate else float('nan')):>13.1f} "
                  f"{(s.p99_bound_s * 1e3 if s and s.p99_bound_s else float('nan')):>12.1f} "
                  f"{app_fps or float('nan'):>13.1f} {ratio or float('nan'):>6.2f} {str(contended):>9}")
            if app_line and app_fps is None:
                print(f"    benchmark_app: {app_line}")
            curve = ", ".join(f"{p.streams}x{p.batch_size}: {p.images_per_s:.1f}" if p.images_per_s is not None
                              else f"{p.streams}x{p.batch_size}: {p.error}" for p in o.points or ())
            print(f"    offline curve (streams x batch: images/s): {curve}")
            if s is not None:
                rates = ", ".join(f"{p.target_rate:.1f}/s p99 {p.p99_s * 1e3 if p.p99_s else float('nan'):.1f} ms"
                                  f"{'' if p.meets_bound else ' (over)'}" for p in s.points or ())
                print(f"    server ({s.streams} streams, {s.concurrency}): {rates}")
            if model == "mobilenetv2" and backend == "openvino":
                gain = o.gain_over_single_stream
                targets.append(f"MobileNetV2/OpenVINO offline best over single-stream: {gain or float('nan'):.2f}x "
                               f"(target >= 1.5x): {'met' if gain and gain >= 1.5 else 'NOT met'}")
            if ratio is not None:
                targets.append(f"{model}/OpenVINO offline best over benchmark_app: {ratio:.2f} (target >= 0.90): "
                               f"{'met' if ratio >= 0.9 else 'NOT met'}")
    print()
    for line in targets:
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
