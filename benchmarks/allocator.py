"""Allocator: how much the memory allocator alone moves a CPU timing, measured with `dnnbench run`.

The same cells (default: MobileNetV2 eager fp32, batch 1 and 8, one thread) are measured in fresh
`dnnbench run` processes that differ only in the allocator:

- glibc: the system malloc as it comes;
- glibc-tuned: glibc with large mmap/trim thresholds and top pad, so freed activation buffers are kept
  instead of being returned to the kernel and page-faulted in again at every forward;
- tcmalloc / jemalloc: preloaded with LD_PRELOAD (Debian: libtcmalloc-minimal4, libjemalloc2).

Each variant's allocator is read back from the worker's recorded runtime (`runtime.allocator`), so a
preload that did not take is seen. Rounds alternate the variants to spread drift over all of them.

    .venv/bin/python benchmarks/allocator.py [--models mobilenetv2,resnet50] [--batch-sizes 1,8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LIBS = Path("/usr/lib/x86_64-linux-gnu")
GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31),
               "MALLOC_TOP_PAD_": str(2**28)}
VARIANTS = {
    "glibc": {},
    "glibc-tuned": GLIBC_TUNED,
    "tcmalloc": {"LD_PRELOAD": str(LIBS / "libtcmalloc_minimal.so.4")},
    "jemalloc": {"LD_PRELOAD": str(LIBS / "libjemalloc.so.2")},
}


def measure(variant: str, env_extra: dict[str, str], models: str, batch_sizes: str, threads: int, budget: float,
            workdir: Path, round_index: int) -> list[dict]:
    from dnnbench.store import Store

    db = workdir / f"{variant}-{round_index}.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    env.update(env_extra)
    dnnbench = Path(sys.executable).with_name("dnnbench")
    command = [str(dnnbench), "run", *models.split(","), "--batch-sizes", batch_sizes, "--threads", str(threads),
               "--metrics", "time", "--time-budget", str(budget), "--no-peak", "--db", str(db)]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    with Store(db, create=False) as store:
        for r in store.results(metric="time"):
            if r.status == "ok":
                rows.append({"variant": variant, "model": r.model, "batch": r.config["batch_size"],
                             "median_ms": r.values["median_s"] * 1e3, "allocator": r.values["runtime"]["allocator"],
                             "contended": r.values["contention"]["contended"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenetv2")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    variants = {name: extra for name, extra in VARIANTS.items()
                if "LD_PRELOAD" not in extra or Path(extra["LD_PRELOAD"]).exists()}
    missing = sorted(set(VARIANTS) - set(variants))
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (apt-get install libtcmalloc-minimal4 libjemalloc2)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, extra in variants.items():
                rows += measure(name, extra, args.models, args.batch_sizes, args.threads, args.budget, Path(tmp),
                                round_index)
    print(f"{args.threads} intra-op thread(s), eager fp32, median of the per-round medians over {args.rounds} rounds")
    print(f"{'model':<14}{'batch':>6}  {'variant':<12}{'allocator seen':<16}{'median ms':>10}{'speed-up':>10}  contended")
    for model in dict.fromkeys(r["model"] for r in rows):
        for batch in sorted({r["batch"] for r in rows if r["model"] == model}):
            medians = {}
            for name in variants:
                mine = [r for r in rows if (r["model"], r["batch"], r["variant"]) == (model, batch, name)]
                medians[name] = (statistics.median(r["median_ms"] for r in mine), mine)
            base = medians["glibc"][0]
            for name, (median, mine) in medians.items():
                seen = ",".join(sorted({r["allocator"] for r in mine}))
                flagged = sum(r["contended"] for r in mine)
                print(f"{model:<14}{batch:>6}  {name:<12}{seen:<16}{median:>10.2f}{base / median:>9.2f}x  "
                      f"{flagged}/{len(mine)}")


if __name__ == "__main__":
    main()
