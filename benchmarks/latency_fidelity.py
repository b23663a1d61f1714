"""Fidelity: does dnnbench's timing agree with the simplest honest loop?

For ResNet-50 and MobileNetV2 at batch 1, in one process, alternate rounds of dnnbench's latency
measurement (the code path of `dnnbench run`) and a minimal hand-written loop (perf_counter_ns around
model(x), after a few warm-up calls), and print both medians with their 95% CIs and the ratio.

    .venv/bin/python benchmarks/latency_fidelity.py [--device cpu|cuda] [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from dnnbench.measure.latency import WarmupPolicy, measure_latency
from dnnbench.measure.stats import StoppingRule, summarize
from dnnbench.zoo import build_model, get


def minimal_loop(model, x, iters: int, device: torch.device) -> list[float]:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        model(x)
    sync()
    samples = []
    for _ in range(iters):
        start = time.perf_counter_ns()
        model(x)
        sync()  # on CUDA a synchronised wall-clock loop: the simplest correct reference
        samples.append((time.perf_counter_ns() - start) / 1e9)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} intra-op threads, {args.rounds} alternated rounds")
    for name in ("resnet50", "mobilenetv2"):
        spec = get(name)
        model = build_model(spec, device)
        x = torch.randn(1, 3, spec.input_size, spec.input_size, device=device)
        ours, theirs = [], []
        with torch.inference_mode():
            for _ in range(args.rounds):
                result = measure_latency(lambda model=model, x=x: model(x), 1, device, StoppingRule(time_budget_s=args.budget),
                                         WarmupPolicy(min_iters=3, min_seconds=0.5))
                ours += result.samples_s
                theirs += minimal_loop(model, x, len(result.samples_s), device)
        a, b = summarize(ours), summarize(theirs)
        print(f"{name:12s} dnnbench median {a.median * 1e3:8.3f} ms [{a.ci_low * 1e3:.3f}, {a.ci_high * 1e3:.3f}]"
              f"  (n={a.n})\n{'':12s} minimal  median {b.median * 1e3:8.3f} ms [{b.ci_low * 1e3:.3f}, {b.ci_high * 1e3:.3f}]"
              f"  (n={b.n})\n{'':12s} ratio dnnbench / minimal = {a.median / b.median:.3f}")


if __name__ == "__main__":
    main()
