"""How well `dnnbench predict` predicts: calibrate this machine, measure the paper's models afresh, compare.

1. `dnnbench calibrate` (eager, fp32, 1 thread by default; --backend openvino) into a fresh store (or reuse one:
   --skip-calibrate).
2. The models measured afresh at each batch size through dnnbench's own API (`dnnbench.benchmark`, the same
   backend, fp32, the same threads, a short time budget per cell), into the same store (or --skip-measure).
3. `dnnbench predict` for each model and batch size; the prediction carries the measured time the store holds.
Per batch size it prints the share of models predicted within +-10% and +-15%, the median absolute error,
Kendall's tau between predicted and measured order (scipy.stats.kendalltau), which models miss, and how many
measured cells were taken while other processes used the CPU (their times are not the idle machine's).

    PYTHONPATH=src .venv/bin/python benchmarks/prediction.py                   # the 46 paper models, batch 1 and 8
    PYTHONPATH=src .venv/bin/python benchmarks/prediction.py --quick --models resnet18,mobilenetv2 --batch-sizes 1
    PYTHONPATH=src .venv/bin/python benchmarks/prediction.py --backend openvino    # OpenVINO's CPU plug-in
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

from scipy.stats import kendalltau

from dnnbench.predict import predict
from dnnbench.run import benchmark
from dnnbench.run.calibrate import calibrate, calibration_config
from dnnbench.store import Store
from dnnbench.zoo import list_models, resolve_models


def contended_cells(db: Path, models: list[str], batch: int, backend: str) -> list[str]:
    with Store(db, create=False) as store:
        return [r.model for r in store.results(metric="time", models=models)
                if r.status == "ok" and r.config.get("batch_size") == batch and r.values.contended
                and r.config.get("backend", "eager") == backend]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="Comma-separated models (default: the paper suite's 46).")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="eager", help="eager or openvino (calibrated, measured and predicted "
                        "with that backend).")
    parser.add_argument("--quick", action="store_true", help="The quick calibration size (about a minute).")
    parser.add_argument("--time-budget", type=float, default=2.0, help="Seconds of timing per measured cell.")
    parser.add_argument("--min-samples", type=int, default=3, help="Timed forwards per measured cell at least.")
    parser.add_argument("--output", type=Path, help="Also write every model's prediction and measurement (CSV).")
    parser.add_argument("--db", type=Path, help="Store to use (default: a fresh one in a temporary folder).")
    parser.add_argument("--skip-calibrate", action="store_true", help="Use the calibration --db holds.")
    parser.add_argument("--skip-measure", action="store_true", help="Use the measured cells --db holds (the "
                        "models' latest, same backend and threads) instead of measuring afresh.")
    args = parser.parse_args()

    models = [m.strip() for m in args.models.split(",")] if args.models else list_models(suite="paper")
    models = [s.id for s in resolve_models(tuple(models))]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    db = args.db or Path(tempfile.mkdtemp(prefix="dnnbench-prediction-")) / "store.sqlite"
    print(f"store {db}; {len(models)} models; batch sizes {batches}; {args.threads} thread(s); {args.backend}")

    if not args.skip_calibrate:
        config = calibration_config("quick" if args.quick else "default", threads=args.threads, backend=args.backend,
                                    batch_sizes=tuple(batches))
        summary = calibrate(db, config)
        print(f"calibration: {summary.timed} of {summary.sampled} operators timed ({summary.distinct} distinct "
              f"shapes in the paper models) in {summary.wall_s:.0f} s"
              f"{f' (of which {summary.setup_s:.0f} s converting and compiling)' if summary.setup_s else ''}; "
              f"kinds {len(summary.kinds)}")
        for kind, reason in sorted(summary.failed_kinds.items()):
            print(f"  kind {kind} could not be timed: {reason}")

    if not args.skip_measure:
        started = time.perf_counter()
        benchmark(models, db=db, backends=args.backend, precisions="fp32", batch_sizes=batches, threads=[args.threads],
                  metrics="time", time_budget_s=args.time_budget, min_samples=args.min_samples, warmup_iters=1,
                  warmup_s=0.5, force=True)
        print(f"measured {len(models)} models x {len(batches)} batch sizes in {time.perf_counter() - started:.0f} s")

    rows = []
    for batch in batches:
        predictions = [p for p in predict(models, db, threads=args.threads, batch_size=batch, backend=args.backend)
                       if p.measured_s]
        rows += [{"model": p.model, "batch_size": batch, "predicted_ms": p.seconds * 1e3, "low_ms": p.low * 1e3,
                  "high_ms": p.high * 1e3, "measured_ms": p.measured_s * 1e3, "error": p.error,
                  "fitted": p.fitted, "fused": p.fused, "operators": p.operators} for p in predictions]
        errors = [p.error for p in predictions]
        absolute = [abs(e) for e in errors]
        tau = kendalltau([p.seconds for p in predictions], [p.measured_s for p in predictions]).statistic
        contended = contended_cells(db, models, batch, args.backend)
        if not predictions:
            print(f"\nbatch {batch}: no model measured")
            continue
        print(f"\nbatch {batch}: {len(predictions)} models predicted and measured")
        print(f"  within +-10%: {sum(a <= 0.10 for a in absolute) / len(absolute):.0%}   within +-15%: "
              f"{sum(a <= 0.15 for a in absolute) / len(absolute):.0%}   median |error|: "
              f"{statistics.median(absolute):.1%}   Kendall tau: {tau:.3f}")
        inside = sum(p.low <= p.measured_s <= p.high for p in predictions)
        print(f"  measured inside the prediction interval: {inside} of {len(predictions)}")
        print(f"  measured while other processes used the CPU: {len(contended)} of {len(predictions)}")
        for p in sorted(predictions, key=lambda p: -abs(p.error)):
            if abs(p.error) > 0.15:
                print(f"  miss {p.model}: predicted {p.seconds * 1e3:.1f} ms [{p.low * 1e3:.1f}-{p.high * 1e3:.1f}], "
                      f"measured {p.measured_s * 1e3:.1f} ms, error {p.error:+.1%}, {p.fitted}/{p.operators} operators "
                      f"fitted{f', {p.fused} fused' if p.fused else ''}{' (contended)' if p.model in contended else ''}")
    if args.output:
        with args.output.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
