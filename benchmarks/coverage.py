"""Coverage: does the interval of a `--repeats 3` sweep contain what a rerun measures?

For ResNet-18 and MobileNetV2 at batch 1, 1 thread, eager fp32, one repetition of the experiment is:

1. a sweep with `repeats=3` (3 fresh worker processes per model, interleaved) -> the headline interval
   (t over the 3 trial medians), and, from its first trial alone, the single-trial intervals: the
   order-statistics 95% CI of the median (what one process reported before trials), the batch-medians
   interval, and the interval the report gives a single-trial cell from the machine's pooled
   between-process spread (pooled from the other model's 3 trials only, df = 2);
2. a sweep with `repeats=8` in a fresh store -> the median of 8 further fresh-process trial medians;
3. covered when that median lies inside the interval.

The experiment is repeated R times (--repetitions, default 10) and the coverage of each interval printed,
per model and overall. Budgets are small (--time-budget 0.5 s per trial after 0.2 s of warm-up): a worker
process costs a few seconds to start, and a repetition starts 22 of them: about 1.5-2 minutes per repetition
on an idle 2-core machine, so --repetitions 6 keeps to ~15 minutes there (the default 10 takes longer); on a
busy one far more (2 repetitions took 530 s at load 5 on 2 cores). What it used is printed at the end.
Run it on an idle machine, and again while another sweep runs, to see what contention does to each figure.

    PYTHONPATH=src .venv/bin/python benchmarks/coverage.py [--repetitions 10] [--time-budget 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dnnbench.analysis.intervals import latency_interval_s, pooled_spread
from dnnbench.run.config import build_sweep_config
from dnnbench.run.runner import run_sweep
from dnnbench.store import Store
from dnnbench.store.values import TimeValue
from dnnbench.zoo import resolve_models

MODELS = ("resnet18", "mobilenetv2")
INTERVALS = ("trials (k = 3)", "single trial: order statistics", "single trial: batch medians",
             "single trial + pooled spread")


def measure(folder: Path, name: str, repeats: int, budget_s: float) -> dict[str, TimeValue]:
    config = build_sweep_config(device="cpu", backends="eager", precisions="fp32", batch_sizes=(1,), threads=(1,),
                                metrics=("time",), time_budget_s=budget_s, min_samples=10, warmup_iters=3,
                                warmup_s=0.2, measure_peak=False, repeats=repeats)
    with Store(folder / f"{name}.sqlite") as store:
        summary = run_sweep(resolve_models(list(MODELS)), config, store)
        return {r.model: r.values for r in summary.records if r.status == "ok" and isinstance(r.values, TimeValue)}


def intervals(v: TimeValue, other: TimeValue) -> dict[str, tuple[float, float]]:
    """The intervals of `v` (a 3-trial cell); the last is what the report gives `v`'s first trial alone when
    the machine's pool of multi-trial cells is `other` (the other model's 3 trials: df = 2)."""
    first = v.trials[0]
    alone = replace(v, trials=None, interval=None, median_s=first.median_s)
    return {INTERVALS[0]: v.ci[:2], INTERVALS[1]: (v.stats.ci_low, v.stats.ci_high),
            INTERVALS[2]: (first.ci_low, first.ci_high),
            INTERVALS[3]: latency_interval_s(alone, pooled_spread([other]))[:2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=10, help="repetitions of the experiment (default 10)")
    parser.add_argument("--time-budget", type=float, default=0.5, help="timed seconds per trial (default 0.5)")
    args = parser.parse_args()
    started = time.monotonic()
    hits: dict[tuple[str, str], list[bool]] = {}
    workers = 0
    for rep in range(1, args.repetitions + 1):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            three = measure(folder, "three", 3, args.time_budget)
            eight = measure(folder, "eight", 8, args.time_budget)
        workers += 11 * len(MODELS)
        for model in MODELS:
            if model not in three or model not in eight:
                print(f"repetition {rep}: {model} failed to measure; left out")
                continue
            v3, target = three[model], eight[model].median_s
            line = [f"repetition {rep} {model:12s} rerun median {target * 1e3:7.3f} ms"]
            other = next(three[m] for m in MODELS if m != model and m in three) if len(three) > 1 else None
            for name, (low, high) in intervals(v3, other).items():
                inside = low is not None and high is not None and low <= target <= high
                hits.setdefault((model, name), []).append(inside)
                line.append(f"{name}: [{low * 1e3:.3f}, {high * 1e3:.3f}] {'in' if inside else 'OUT'}")
            contended = "contended" if v3.contended or eight[model].contended else ""
            print(" | ".join(line), contended, flush=True)
    print()
    print(f"coverage over {args.repetitions} repetitions (nominal 95%):")
    for name in INTERVALS:
        per_model = [hits.get((m, name), []) for m in MODELS]
        total = [h for hs in per_model for h in hs]
        parts = ", ".join(f"{m} {sum(h)}/{len(h)}" for m, h in zip(MODELS, per_model))
        share = sum(total) / len(total) if total else float("nan")
        print(f"  {name:32s} {100 * share:5.1f}%  ({parts})")
    print(f"used: {time.monotonic() - started:.0f} s wall, {workers} worker processes, time budget "
          f"{args.time_budget} s per trial, warm-up 3 iterations and 0.2 s, batch 1, 1 thread, eager fp32")


if __name__ == "__main__":
    main()
