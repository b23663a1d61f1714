"""Backends: images/s of every backend x precision, its fraction of the machine's estimated peak, and best vs eager.

Measures ResNet-50 and MobileNetV2 (default) at batch sizes 1 and 8 with `dnnbench run --backend best`
(every backend available here, at fp32 and the reduced precisions this CPU computes natively), all
intra-op threads of the machine by default, into its own store; then the peak FLOP/s of each precision
at the same thread count (`dnnbench.run.peak.ensure_peak`, kept in the same store), and prints per cell:
images/s, achieved GFLOP/s = 2 x MACs x images/s, the fraction of the fp32 peak and of the peak of the
precision executed, the output check, the set-up cost; then per model and batch size the best valid
deployment, its speed-up over eager fp32, and the best fp32 deployment's fraction of the fp32 peak. Last, per model
and batch size: images/s of eager fp32 and of the best fp32, bf16 and int8 deployments, int8 over bf16, and
the int8 deployment's output check (relative L2 error and top-1 agreement with eager fp32 on held-out images;
int8 is calibrated on the synthetic set unless --calibration-data is given).

Run it with the machine otherwise idle: the figures are only as good as the quiet around them (every
cell's contention flag is printed).

    .venv/bin/python benchmarks/backends.py [--models resnet50,mobilenetv2] [--batch-sizes 1,8] [--threads 2]
        [--budget 5] [--db results/backends.sqlite] [--calibration-data DIR]
"""

from __future__ import annotations

import argparse
import os

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenetv2")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--backends", default="best")
    parser.add_argument("--db", default="results/backends.sqlite")
    parser.add_argument("--indicative", action="store_true", help="choose the best deployments among contended "
                        "and unconverged cells too (a shared machine, short budgets: the figures are indicative)")
    parser.add_argument("--calibration-data", default=None, help="int8: calibrate on these images (default: "
                        "the synthetic set)")
    args = parser.parse_args()

    from dnnbench.analysis import load_frames
    from dnnbench.analysis.best import best_deployments
    from dnnbench.backends import parse_backends, search_precisions
    from dnnbench.env import collect_machine
    from dnnbench.run import benchmark
    from dnnbench.run.config import parse_int_list
    from dnnbench.run.peak import ensure_peak
    from dnnbench.store import Store

    backends, _ = parse_backends(args.backends, "cpu")
    precisions = search_precisions("cpu")
    benchmark(args.models.split(","), db=args.db, batch_sizes=parse_int_list(args.batch_sizes, "batch sizes"),
              threads=(args.threads,), backends=backends, precisions=precisions, time_budget_s=args.budget,
              metrics=("time", "complexity"), calibration_data=args.calibration_data)
    machine_id = collect_machine().machine_id
    with Store(args.db) as store:
        # the peak probe times cast kernels: int8 cells are read against the fp32 peak only
        peaks = {p: ensure_peak(store, machine_id, "cpu", p, args.threads) for p in precisions if p != "int8"}
        checks = int8_checks(store, machine_id)
        frames = load_frames(store)
    for precision, peak in peaks.items():
        print(f"peak {precision} at {args.threads} threads: {peak.peak_flops / 1e9:.0f} GFLOP/s ({peak.basis})")
    macs = frames.complexity.set_index("model")["macs"]
    time = frames.time[frames.time["machine_id"] == machine_id].copy()
    if args.indicative:
        print("contended and unconverged cells are candidates too (--indicative): the figures are indicative")
        time["contended"], time["converged"] = False, True
    time["gflops"] = 2 * time["model"].map(macs) * time["images_per_s"] / 1e9
    fp32_peak = peaks["fp32"].peak_flops / 1e9
    time["of_fp32_peak"] = time["gflops"] / fp32_peak
    own = {p: e.peak_flops / 1e9 for p, e in peaks.items()}
    time["of_own_peak"] = time["gflops"] / time["executed_precision"].map(own)
    pd.set_option("display.width", 200)
    columns = ["model", "batch_size", "backend", "dtype", "status", "images_per_s", "gflops", "of_fp32_peak",
               "of_own_peak", "output_check_passed", "setup_s", "contended"]
    print(time[columns].sort_values(["model", "batch_size", "images_per_s"], ascending=[True, True, False])
          .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    best = best_deployments(time)
    best_fp32 = best_deployments(time, ("fp32",)).set_index(["model", "batch_size"])
    print("\nbest valid deployment per model and batch size")
    for row in best.itertuples(index=False):
        fp32 = best_fp32.loc[(row.model, row.batch_size)]
        fp32_gflops = 2 * macs[row.model] * fp32["images_per_s"] / 1e9
        print(f"{row.model:<12} batch {row.batch_size}: best {row.backend} {row.dtype} {row.images_per_s:.1f} img/s, "
              f"{row.speedup_vs_eager:.2f}x eager fp32 ({row.eager_fp32_latency_ms:.1f} -> {row.latency_ms:.1f} ms); "
              f"best fp32 {fp32['backend']} {fp32_gflops:.0f} GFLOP/s = {100 * fp32_gflops / fp32_peak:.0f}% of the "
              f"fp32 peak, {fp32['speedup_vs_eager']:.2f}x eager")
    print_precision_summary(time, checks)

def int8_checks(store, machine_id: str) -> dict[tuple[str, int, str], tuple[float, float, bool]]:
    """(model, batch size, backend) of every int8 time cell -> its output check: relative L2 error of the logits,
    top-1 agreement with eager fp32 on the held-out check images, passed."""
    found = {}
    for record in store.results(machine_id=machine_id, metric="time"):
        check = getattr(record.values, "output_check", None)
        if record.config.get("dtype") == "int8" and record.status == "ok" and check is not None:
            found[record.model, record.config["batch_size"], record.config["backend"]] = (
                check.relative_l2_error, check.top1_agreement, bool(check.passed))
    return found


def print_precision_summary(time: pd.DataFrame, checks: dict) -> None:
    """Per model and batch size: images/s of eager fp32 and of the fastest fp32, bf16 and int8 deployments whose
    output check passed (the fastest median: the recommendation's tie rule would prefer a simpler one), int8 over
    bf16, and the int8 deployment's agreement with eager fp32 (issue 16's table)."""
    ok = time[(time["status"] == "ok") & time["output_check_passed"].fillna(False).astype(bool)]
    print("\nimages/s of the fastest valid deployment per precision, and the int8 one's agreement with eager fp32")
    print(f"{'model':<12} {'batch':>5} {'eager fp32':>11} {'fastest fp32':>24} {'fastest bf16':>24} "
          f"{'fastest int8':>24} {'int8/bf16':>9}  int8 check (rel. L2, top-1 agreement)")
    for (model, batch), rows in ok.groupby(["model", "batch_size"]):
        eager = rows[(rows["backend"] == "eager") & (rows["dtype"] == "fp32")]["images_per_s"].max()
        cells = []
        for precision in ("fp32", "bf16", "int8"):
            mine = rows[rows["dtype"] == precision].sort_values("images_per_s", ascending=False)
            cells.append((mine["images_per_s"].iloc[0], mine["backend"].iloc[0]) if len(mine) else (float("nan"), "-"))
        ratio = cells[2][0] / cells[1][0]
        check = checks.get((model, batch, cells[2][1]))
        agreement = f"{100 * check[0]:.1f}%, {100 * check[1]:.0f}%" if check else "-"
        print(f"{model:<12} {batch:>5} {eager:>11.1f} " + " ".join(f"{v:>10.1f} ({b:<11})" for v, b in cells)
              + f" {ratio:>9.2f}  {agreement}")
    flagged = {k: v for k, v in checks.items() if not v[2]}
    for (model, batch, backend), (l2, top1, _) in sorted(flagged.items()):
        print(f"flagged int8: {model} batch {batch} {backend}: relative L2 {100 * l2:.1f}%, top-1 agreement "
              f"{100 * top1:.0f}%")


if __name__ == "__main__":
    main()
