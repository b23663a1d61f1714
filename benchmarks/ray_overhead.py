"""What the Ray executor costs on one machine: the same sweeps with the local executor and with the Ray
executor on a one-node cluster on this machine (started here, ray.cluster_utils, unless --address names one).

Two sweeps each: 20 complexity cells (20 torchvision models, metric complexity: no slot, so Ray runs them
up to --cpus at once) and 6 timed cells (3 models x batch sizes 1 and 4, one thread, metric time: one job
at a time, holding the node's CPU slot). Printed: each sweep's wall time under both executors and their
ratio (Ray's includes joining the cluster and fingerprinting the node, not starting the cluster), and the
timed medians under both.

    ip netns add dnb; ip netns exec dnb ip link set lo up     # Ray on loopback only (root)
    ip netns exec dnb env RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/ray_overhead.py

Figures (2-core VM shared with other agents' work; torch 2.14.1 CPU, ray 2.60.0; 2 rounds, local-ray-ray-local).
With load average 1.3 rising to 3.0 (other work busy on both cores):

    sweep                    local s     ray s  ray/local
    20 complexity cells         77.3      77.7       1.00
    6 timed cells               28.8      32.0       1.11    (+3 s: join the cluster, fingerprint the node)
    all                        106.1     109.7       1.03
    timed medians, ray/local: 0.89 to 1.10 per cell, median 1.03 (resnet18 b4 200.0 vs 205.2 ms)

An earlier run with load average 0.5 to 1.2 gave 67.5 vs 45.8 s (0.68) for the complexity cells. Ray ran two of
those jobs at once there, on the two otherwise idle cores. Its timed medians were 0.93 to 1.03 of the local ones,
median 0.96. On this machine a cell's median varies by up to 10% from run to run, so both runs are within noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dnnbench.run.config import SweepConfig, build_sweep_config
from dnnbench.run.executor import LocalExecutor
from dnnbench.run.ray_executor import RayExecutor
from dnnbench.run.runner import run_sweep
from dnnbench.store import Store
from dnnbench.zoo import get

COMPLEXITY_MODELS = ("alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "googlenet",
                     "inceptionv3", "mobilenetv2", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn")
TIMED_MODELS = ("resnet18", "mobilenetv2", "squeezenet1_1")


def sweeps(budget: float) -> list[tuple[str, list, SweepConfig]]:
    # the local path may also probe the CPU's peak FLOP/s before a timed sweep: not part of this comparison
    extra = {"measure_peak": False}
    return [
        ("20 complexity cells", [get(m) for m in COMPLEXITY_MODELS], build_sweep_config(metrics=("complexity",), **extra)),
        ("6 timed cells", [get(m) for m in TIMED_MODELS],
         build_sweep_config(metrics=("time",), batch_sizes=(1, 4), threads=(1,), time_budget_s=budget, min_samples=10,
                     **extra)),
    ]


def run(executor_factory, folder: Path, name: str, budget: float) -> tuple[dict[str, float], dict[tuple, float]]:
    walls, medians = {}, {}
    with Store(folder / f"{name}.sqlite") as store:
        for label, specs, config in sweeps(budget):
            started = time.perf_counter()
            summary = run_sweep(specs, config, store, executor_factory())
            walls[label] = time.perf_counter() - started
            bad = {s: n for s, n in summary.counts.items() if s != "ok"}
            if bad:
                print(f"  {name}: {label}: not ok: {bad}")
            for r in summary.records:
                if r.metric == "time" and r.status == "ok":
                    medians[r.model, r.config["batch_size"]] = r.values["stats"]["median"]
    return walls, medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="an existing cluster (its node must lend dnnbench_slot_cpu)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the one-node cluster started here")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed iterations per timed cell")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, the order alternating (local, ray, ray, local, ...) against drifting load")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    cluster = None
    address = args.address
    if address is None:
        from ray.cluster_utils import Cluster

        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": args.cpus, "object_store_memory": 80 * 2**20, "include_dashboard": False,
            "resources": {"dnnbench_slot_cpu": 1, "machine=here": 1}})
        address = cluster.address
        print(f"one-node cluster started in {time.perf_counter() - started:.1f} s (not counted below)")
    factories = {"local": LocalExecutor, "ray": lambda: RayExecutor(address)}
    walls = {"local": [], "ray": []}
    medians = {"local": [], "ray": []}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.rounds):
                for name in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
                    w, m = run(factories[name], Path(folder), f"{name}-{round_}", args.budget)
                    walls[name].append(w)
                    medians[name].append(m)
                    print(f"round {round_ + 1} {name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in w.items()), flush=True)
    finally:
        if cluster is not None:
            cluster.shutdown()
    # each executor: mean wall time per sweep, median of its per-round medians per timed cell
    local_walls, ray_walls = ({k: statistics.mean(w[k] for w in walls[n]) for k in walls[n][0]} for n in ("local", "ray"))
    local_medians, ray_medians = ({k: statistics.median(m[k] for m in medians[n] if k in m) for k in medians[n][0]}
                                  for n in ("local", "ray"))
    print(f"\n{args.rounds} round(s); wall times are means, timed medians the median over rounds")
    print(f"\n{'sweep':<22}{'local s':>10}{'ray s':>10}{'ray/local':>11}")
    for label in local_walls:
        print(f"{label:<22}{local_walls[label]:>10.1f}{ray_walls[label]:>10.1f}"
              f"{ray_walls[label] / local_walls[label]:>11.2f}")
    total_local, total_ray = sum(local_walls.values()), sum(ray_walls.values())
    print(f"{'all':<22}{total_local:>10.1f}{total_ray:>10.1f}{total_ray / total_local:>11.2f}")
    print(f"\n{'timed cell':<26}{'local ms':>10}{'ray ms':>10}{'ray/local':>11}")
    ratios = []
    for key in sorted(local_medians):
        if key in ray_medians:
            ratio = ray_medians[key] / local_medians[key]
            ratios.append(ratio)
            print(f"{key[0] + ' batch ' + str(key[1]):<26}{local_medians[key] * 1e3:>10.2f}"
                  f"{ray_medians[key] * 1e3:>10.2f}{ratio:>11.3f}")
    if ratios:
        print(f"median ratio of the timed medians (ray/local): {statistics.median(ratios):.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
