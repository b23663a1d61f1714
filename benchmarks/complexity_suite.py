"""Complexity of all 46 paper models at native resolution, in one process.

Prints total wall time (imports included) and peak RSS for dnnbench's meta-device count, then the same
job with an established real-tensor counter (ptflops, aten backend: real weights, real forward) as a
ratio. Targets on a 2-core machine: <= 15 s and <= 1.5 GB peak RSS for dnnbench.

    .venv/bin/python benchmarks/complexity_suite.py            # both counters
    .venv/bin/python benchmarks/complexity_suite.py --only dnnbench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

DNNBENCH_JOB = """
import time, resource, json
t0 = time.perf_counter()
from dnnbench.zoo import get_suite
from dnnbench.measure.complexity import complexity
results = [complexity(name) for name in get_suite("paper").models]
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "models": len(results), "macs": {r.model: r.macs for r in results}}))
"""

PTFLOPS_JOB = """
import time, resource, json, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import torch
from ptflops import get_model_complexity_info
from dnnbench.zoo import get_suite, get, build_model
macs = {}
for name in get_suite("paper").models:
    spec = get(name)
    model = build_model(spec, "cpu")
    value, _ = get_model_complexity_info(model, (3, spec.input_size, spec.input_size), as_strings=False,
                                         print_per_layer_stat=False, backend="aten", verbose=False)
    macs[spec.id] = value
    del model
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "models": len(macs), "macs": macs}))
"""


def run(job: str) -> dict:
    # a fresh interpreter per job, so imports and peak RSS are each job's own
    out = subprocess.run([sys.executable, "-c", job], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["dnnbench"], help="skip the comparison counter")
    args = parser.parse_args()
    ours = run(DNNBENCH_JOB)
    print(f"dnnbench (meta device):      {ours['models']} models in {ours['seconds']:.1f} s, "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB  (targets: <= 15 s, <= 1536 MB)")
    if args.only:
        return
    try:
        theirs = run(PTFLOPS_JOB)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"ptflops job failed (pip install ptflops): {exc.stderr[-500:]}")
    print(f"ptflops (aten, real tensors): {theirs['models']} models in {theirs['seconds']:.1f} s, "
          f"peak RSS {theirs['peak_rss_mb']:.0f} MB")
    print(f"ratio ptflops / dnnbench:    time {theirs['seconds'] / ours['seconds']:.2f}x, "
          f"peak RSS {theirs['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x")
    differ = {m: (ours["macs"][m], theirs["macs"].get(m)) for m in ours["macs"]
              if abs(ours["macs"][m] - (theirs["macs"].get(m) or 0)) > 1e-4 * ours["macs"][m]}
    print(f"models whose MACs differ by more than 0.01%: {len(differ)} (ptflops adds one op per bias element of "
          "convolutions and linear layers; dnnbench's MACs are multiply-accumulates only)")
    for model, (a, b) in differ.items():
        print(f"  {model}: dnnbench {a / 1e9:.4f} G, ptflops {(b or 0) / 1e9:.4f} G")


if __name__ == "__main__":
    main()
