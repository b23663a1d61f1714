"""Stability: the same cell measured 5 times by `dnnbench run` (fresh worker each time); spread of the medians.

    .venv/bin/python benchmarks/stability.py [--model resnet50] [--batch-size 1] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from dnnbench.run.config import build_sweep_config
from dnnbench.run.runner import run_sweep
from dnnbench.store import Store
from dnnbench.zoo import get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=10.0)
    args = parser.parse_args()
    config = build_sweep_config(batch_sizes=(args.batch_size,), threads=(args.threads,), metrics=("time",),
                         time_budget_s=args.budget, force=True)
    medians, contended = [], 0
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "s.sqlite") as store:
        for repeat in range(args.repeats):
            summary = run_sweep([get(args.model)], config, store)
            values = summary.records[0].values
            medians.append(values["stats"]["median"])
            contended += bool(values["contention"]["contended"])
            print(f"repeat {repeat + 1}: median {values['stats']['median'] * 1e3:.3f} ms, "
                  f"CI ±{100 * values['stats']['ci_half_width_rel']:.2f}%, n={values['stats']['n']}, "
                  f"stop={values['stop_reason']}, other processes' CPU {values['contention']['other_cores']:.2f} cores")
    spread = (max(medians) - min(medians)) / statistics.median(medians)
    print(f"{args.model} batch {args.batch_size}, {args.threads} thread(s): median of medians "
          f"{statistics.median(medians) * 1e3:.3f} ms, spread (max-min)/median = {100 * spread:.2f}%, "
          f"{contended} of {args.repeats} flagged as contended")


if __name__ == "__main__":
    main()
