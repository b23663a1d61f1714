"""GPU acceptance: does dnnbench measure an NVIDIA GPU right? One pass/fail table, in at most about 8 minutes.

Run it on a machine with a CUDA GPU, from the repository with the README's set-up (nothing is installed here):

    .venv/bin/python benchmarks/gpu_acceptance.py [--device cuda:0] [--db acceptance.sqlite] [--budget-s 480] [--full]
        [--sections fidelity,deployments,paper,peaks,building]

Every measurement goes through dnnbench's own Python API (`dnnbench.run.benchmark`, `dnnbench.env.peak`), so
the table tests the product, not a copy of it. Checks:

1. timing fidelity, twice, for ResNet-50 (eager, batch 1 and 64, fp32 and fp16) against a minimal CUDA-event loop
   (events around each call, one synchronisation at the end), within 5%: (a) in one process, dnnbench's timer
   (`measure_latency`, the worker's rules) and the loop taken in turn on the same model; (b) dnnbench's worker
   cell against the loop in this process. Across processes a launch-bound shape (the GPU waiting for the host's
   kernel launches: ResNet-50 at batch 1 on an H200) moves with the host's dispatch speed — the same cell read
   2.9 and 4.2 ms in two runs there — so (b) reads n/a for such a shape outside 5%, and (a) judges it;
2. deployments: every backend available here x every precision on ResNet-50 and MobileNetV2, batch 1 and 64,
   with its output check against eager fp32 passing (unsupported and unavailable pairs are listed as n/a);
3. memory: every memory cell's headline above the model's weight bytes and at most MEMORY_FACTOR x the analytic
   estimate (the headline is NVML's whole-process figure above the pre-model baseline: it holds the libraries'
   kernels and workspaces, hence a wide factor);
4. peak: the measured matmul rate at fp32, tf32, fp16 and bf16 between PEAK_LOW and PEAK_HIGH of the datasheet
   figure the spec peak now comes from;
5. energy: ResNet-50 fp16 energy cells with joules per image present (NVML's total-energy counter);
6. the 46 paper models at fp16, batch 1 and 64, eager, with no error.

Workers run one after another (timing needs the GPU alone). The order is by cost: fidelity, the cheap backends,
the paper's models, the peaks, then TensorRT and torch.compile, whose engine builds and compilations per shape
take minutes; before each costly step the elapsed time is checked against `--budget-s` (480 s), and a step not
started in time reads SKIP: `--full` lifts the budget. Exit status: 0 when every check that ran passed, 1
otherwise, 2 when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

FIDELITY_TOLERANCE = 0.05
MEMORY_FACTOR = 10.0
PEAK_LOW, PEAK_HIGH = 0.5, 1.05
BATCHES = (1, 64)
DEPLOYMENT_MODELS = ("resnet50", "mobilenetv2")
# the cheap backends run first; the ones that build per shape (TensorRT's engines, inductor's compilation) last
CHEAP_BACKENDS = ("eager", "eager-channels-last", "torchscript", "onnxruntime")
BUILDING_BACKENDS = ("tensorrt", "compile")
SECTIONS = ("fidelity", "deployments", "paper", "peaks", "building")  # in the order they run
QUICK = {"time_budget_s": 1.0, "min_samples": 5, "warmup_iters": 3, "warmup_s": 0.3, "measure_peak": False}
PAPER = {"time_budget_s": 0.3, "min_samples": 3, "warmup_iters": 2, "warmup_s": 0.1, "measure_peak": False}


@dataclass(frozen=True)
class Check:
    section: str
    item: str
    status: str  # PASS, FAIL, n/a, SKIP
    detail: str = ""


# --- the table's logic: pure functions of records and figures (tested on synthetic records) -----------------


def _label(record) -> str:
    c = record.config
    return f"{record.model} {c.get('backend', 'eager')} {c.get('dtype')} b{c.get('batch_size')}"


def fidelity_checks(dnnbench_s: dict[tuple[str, int], float | None],
                    reference_s: dict[tuple[str, int], float | None], section: str = "timing fidelity",
                    launch_bound: frozenset = frozenset()) -> list[Check]:
    """dnnbench's median against the minimal loop's, by (precision, batch). A shape in `launch_bound` (the GPU
    waits for the host's kernel launches) compared across processes reads n/a when outside the tolerance: its
    latency is the host's dispatch speed, which differs between processes; the one-process check judges it."""
    out = []
    for key in sorted(set(dnnbench_s) | set(reference_s), key=lambda k: (k[0], k[1])):
        ours, ref = dnnbench_s.get(key), reference_s.get(key)
        item = f"resnet50 eager {key[0]} b{key[1]}"
        if ours is None or ref is None or ref <= 0:
            out.append(Check(section, item, "FAIL", "no dnnbench median" if ours is None else
                             "no reference median"))
            continue
        ratio = ours / ref
        within = abs(ratio - 1) <= FIDELITY_TOLERANCE
        detail = f"dnnbench {ours * 1e3:.3f} ms, CUDA-event loop {ref * 1e3:.3f} ms, ratio {ratio:.3f}"
        if not within and key in launch_bound:
            out.append(Check(section, item, "n/a", detail + "; launch-bound: host dispatch speed, per process"))
            continue
        out.append(Check(section, item, "PASS" if within else "FAIL", detail))
    return out


def launch_bound_shapes(reference_s: dict[tuple[str, int], float | None]) -> frozenset:
    """(precision, batch) shapes whose time per image is over 4x that of the precision's largest batch: the GPU
    then waits for the host's kernel launches (ResNet-50 at batch 1 on an H200), it does not compute."""
    found = set()
    for precision in {p for p, _ in reference_s}:
        sizes = sorted((b, t) for (p, b), t in reference_s.items() if p == precision and t)
        if len(sizes) < 2:
            continue
        largest, t_largest = sizes[-1]
        found |= {(precision, b) for b, t in sizes[:-1] if t / b > 4 * t_largest / largest}
    return frozenset(found)


def deployment_checks(records: Iterable) -> list[Check]:
    """One row per time cell: ok with its output check passing, n/a when unsupported or unavailable here."""
    out = []
    for r in records:
        if r.metric != "time":
            continue
        if r.status in ("unsupported", "unavailable"):
            out.append(Check("deployments", _label(r), "n/a", f"{r.status}: {(r.error or '').splitlines()[0][:90]}"))
        elif r.status != "ok":
            out.append(Check("deployments", _label(r), "FAIL", f"{r.status}: {(r.error or '').splitlines()[0][:90]}"))
        else:
            check = r.values.output_check
            passed = r.values.check_passed
            cosine = f"cos {check.cosine_similarity:.5f}" if check and check.cosine_similarity is not None else ""
            below = _reference_below_fp16(check) if not passed and r.config.get("dtype") == "fp16" else None
            if below is not None:  # the weights' logits, not the deployment: docs/BACKENDS.md
                out.append(Check("deployments", _label(r), "n/a", f"{r.values.latency_s * 1e3:.3f} ms; flagged: the "
                                 f"reference logits (max {below:.1e}) are below fp16's smallest subnormal"))
                continue
            out.append(Check("deployments", _label(r), "PASS" if passed else "FAIL",
                             f"{r.values.latency_s * 1e3:.3f} ms, output check {'passed' if passed else 'FAILED'} "
                             f"{cosine}".strip()))
    return out


FP16_SMALLEST_SUBNORMAL = 2.0**-24


def _reference_below_fp16(check) -> float | None:
    """The reference's largest logit when it is below fp16's range (a failed fp16 check is then the weights'
    doing: the zoo's random weights give MobileNetV2 logits of about 3e-9), else None. The check stores the
    largest absolute error and that error over the reference's largest logit."""
    if check is None or not check.max_abs_error or not check.relative_max_error:
        return None
    largest = check.max_abs_error / check.relative_max_error
    return largest if largest < FP16_SMALLEST_SUBNORMAL else None


def memory_checks(records: Iterable) -> list[Check]:
    """Every memory cell: weight bytes < headline <= MEMORY_FACTOR x the analytic estimate."""
    out = []
    for r in records:
        if r.metric != "memory" or r.status != "ok":
            continue
        value = r.values
        bytes_, kind = value.headline()
        estimate = value.analytic.total_peak_bytes if value.analytic else None
        weights = value.weight_bytes
        if bytes_ is None or estimate is None or weights is None:
            out.append(Check("memory", _label(r), "FAIL", f"missing figure (headline {bytes_}, estimate {estimate}, "
                                                          f"weights {weights})"))
            continue
        ratio = bytes_ / estimate
        ok = bytes_ > weights and ratio <= MEMORY_FACTOR
        out.append(Check("memory", _label(r), "PASS" if ok else "FAIL",
                         f"{bytes_ / 2**20:.0f} MiB ({kind}), weights {weights / 2**20:.0f} MiB, "
                         f"estimate {estimate / 2**20:.0f} MiB, ratio {ratio:.2f} (<= {MEMORY_FACTOR:g})"))
    return out


def peak_checks(estimates: Iterable) -> list[Check]:
    """Measured matmul against the datasheet figure (env.peak.PeakEstimate or its to_dict()); the 3x3 convolution is
    left out: cuDNN may serve it with Winograd, whose rate counts FLOPs it did not do."""
    out = []
    for e in estimates:
        e = e if isinstance(e, dict) else e.to_dict()
        spec = e.get("spec") or {}
        item = f"{e.get('device_name') or e.get('device')} {e['precision']}"
        matmuls = [k["rate"] for k in e.get("kernels") or () if k.get("kernel") == "matmul"]
        sheet, measured = e.get("theoretical_flops"), max(matmuls, default=None)
        if spec.get("clock_source") != "datasheet" or not sheet:
            out.append(Check("peak", item, "FAIL", f"no datasheet figure: {e.get('basis_detail', '')[:100]}"))
            continue
        if not measured:
            out.append(Check("peak", item, "FAIL", "no matmul measured"))
            continue
        share = measured / sheet
        out.append(Check("peak", item, "PASS" if PEAK_LOW <= share <= PEAK_HIGH else "FAIL",
                         f"matmul {measured / 1e12:.1f} T, datasheet {sheet / 1e12:.1f} T = {share:.0%} "
                         f"(expected {PEAK_LOW:.0%}..{PEAK_HIGH:.0%})"))
    return out


def energy_checks(records: Iterable) -> list[Check]:
    out = []
    for r in records:
        if r.metric != "energy":
            continue
        if r.status != "ok":
            out.append(Check("energy", _label(r), "FAIL", f"{r.status}: {(r.error or '')[:100]}"))
            continue
        v = r.values
        ok = v.joules_per_image is not None and v.joules_per_image > 0 and bool(v.method)
        out.append(Check("energy", _label(r), "PASS" if ok else "FAIL",
                         f"{v.joules_per_image:.4f} J/image, idle {v.idle_watts:.0f} W, {v.calls} calls in "
                         f"{v.seconds:.1f} s ({v.method})" if v.joules_per_image is not None else "no figure"))
    return out


def paper_checks(records: Iterable, expected_models: Sequence[str]) -> list[Check]:
    """One row: every paper model's time cells ok at both batch sizes; the failures named."""
    cells = [r for r in records if r.metric == "time"]
    failed = [f"{_label(r)}: {r.status}" for r in cells if r.status != "ok"]
    seen = {r.model for r in cells}
    missing = [m for m in expected_models if m not in seen]
    ok = not failed and not missing and len(cells) >= len(expected_models) * len(BATCHES)
    detail = f"{len(cells)} cells, {len(seen)} models"
    if failed:
        detail += f"; failed: {'; '.join(failed[:4])}" + (" ..." if len(failed) > 4 else "")
    if missing:
        detail += f"; not measured: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else "")
    return [Check("paper models", "46 models fp16 eager b1,b64", "PASS" if ok else "FAIL", detail)]


def render(checks: Sequence[Check], elapsed_s: float, device_name: str) -> str:
    widths = [max(len(getattr(c, f)) for c in checks) if checks else 0 for f in ("section", "item", "status")]
    widths = [max(w, len(h)) for w, h in zip(widths, ("section", "check", "result"))]
    lines = [f"dnnbench GPU acceptance on {device_name}, {elapsed_s / 60:.1f} min",
             f"{'section':<{widths[0]}}  {'check':<{widths[1]}}  {'result':<{widths[2]}}  detail"]
    lines += [f"{c.section:<{widths[0]}}  {c.item:<{widths[1]}}  {c.status:<{widths[2]}}  {c.detail}" for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in ("PASS", "FAIL", "n/a", "SKIP")}
    lines.append(" ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def exit_status(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == "FAIL" for c in checks) else 0


# --- measuring (needs a CUDA device) -------------------------------------------------------------------------


def _built(model_id: str, precision: str, batch: int, device: str):
    """The model as dnnbench builds it and an input, with the worker's settings: fp32 is fp32 (TF32 off), cuDNN
    autotuning on."""
    import torch

    from dnnbench.devices import torch_dtype
    from dnnbench.zoo import build_model, get

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    spec = get(model_id)
    model = build_model(spec, device).to(torch_dtype(precision))
    x = torch.randn(batch, 3, spec.input_size, spec.input_size, device=device, dtype=torch_dtype(precision))
    return model, x


def _loop_median(model, x, device: str, calls: int) -> float:
    """The minimal loop: CUDA events around each call on the current stream, one synchronisation at the end."""
    import torch

    with torch.inference_mode():
        for _ in range(20):
            model(x)
        torch.cuda.synchronize(device)
        pairs = []
        for _ in range(calls):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
    return statistics.median(s.elapsed_time(e) for s, e in pairs) / 1e3


def reference_latency(model_id: str, precision: str, batch: int, device: str, calls: int) -> float:
    """The minimal loop's median on a fresh copy of the model, in this process."""
    import torch

    model, x = _built(model_id, precision, batch, device)
    median = _loop_median(model, x, device, calls)
    del model, x
    torch.cuda.empty_cache()
    return median


def in_process_latency(model_id: str, precision: str, batch: int, device: str, calls: int,
                       rounds: int = 3) -> tuple[float, float]:
    """dnnbench's timer (`measure_latency` with the worker's stopping rule and warm-up) and the minimal loop on
    one model in one process, taken in turn `rounds` times: (median of dnnbench's medians, median of the loop's).
    Across processes a launch-bound shape moves with the host; here only the timing method differs."""
    import torch

    from dnnbench.measure.latency import WarmupPolicy, measure_latency
    from dnnbench.measure.stats import StoppingRule

    model, x = _built(model_id, precision, batch, device)
    forward = functools.partial(model, x)  # what the eager backend's bind returns: the model called on its input
    ours, loop = [], []
    with torch.inference_mode():
        for _ in range(rounds):
            loop.append(_loop_median(model, x, device, calls))
            result = measure_latency(forward, batch, device, StoppingRule(time_budget_s=1.0, min_samples=5),
                                     WarmupPolicy(min_iters=3, min_seconds=0.3))
            ours.append(result.median_s)
    del forward, model, x
    torch.cuda.empty_cache()
    return statistics.median(ours), statistics.median(loop)


class Budget:
    def __init__(self, seconds: float | None):
        self.started, self.seconds = time.monotonic(), seconds

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> bool:
        return self.seconds is None or self.elapsed < self.seconds


def run_job(benchmark: Callable[..., Any], db: Path, device: str, models: Sequence[str], backends: Sequence[str],
            precisions: Sequence[str], metrics: str, suite: str | None = None, settings: dict | None = None) -> list:
    """One dnnbench.run.benchmark call (one worker per model x backend x precision, one after another)."""
    summary = benchmark(tuple(models), suite=suite, db=db, device=device, backends=",".join(backends),
                        precisions=",".join(precisions), batch_sizes=BATCHES, metrics=metrics,
                        **(settings or QUICK))
    return list(summary.cells or summary.records)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--db", type=Path, default=Path(f"gpu-acceptance-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"),
                        help="a fresh store by default: a store with cells in it would resume them, not re-measure")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--full", action="store_true", help="no time budget: every check, however long")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which checks to run, comma-separated, of {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if sections - set(SECTIONS):
        parser.error(f"--sections: unknown {', '.join(sorted(sections - set(SECTIONS)))}; of {', '.join(SECTIONS)}")
    # the minimal loops of this process run in the environment of dnnbench's fp32 workers: NVIDIA_TF32_OVERRIDE=0,
    # read by cuBLAS and cuDNN when they load (so before torch touches the GPU). Without it the two compared
    # different library settings: on an H200 the fp32 batch-1 worker cells read 4.2 ms twice against 2.8-3.0 ms for
    # this process's loop, while fp16 (no TF32 either way) agreed within 3% (docs/METHODOLOGY.md, "On a GPU")
    from dnnbench.run.worker import tf32_environment

    tf32_environment(args.device, False, os.environ)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_acceptance: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    from dnnbench.backends import available_backends, search_precisions
    from dnnbench.env.peak import estimate_peak
    from dnnbench.run import benchmark
    from dnnbench.zoo import resolve_models

    device = args.device
    budget = Budget(None if args.full else args.budget_s)
    name = torch.cuda.get_device_name(torch.device(device))
    print(f"GPU acceptance on {name}; results in {args.db}", flush=True)
    checks: list[Check] = []
    precisions = search_precisions(device)  # fp32, fp16, and bf16 from compute capability 8.0

    # 1 + 5: ResNet-50 eager, fp32 and fp16, with energy, against the minimal loop
    eager_records: list = []
    if "fidelity" in sections:
        eager_records = run_job(benchmark, args.db, device, ["resnet50"], ["eager"], ["fp32", "fp16"],
                                "time,memory,energy")
        ours = {(r.config["dtype"], r.config["batch_size"]): r.values.latency_s if r.status == "ok" else None
                for r in eager_records if r.metric == "time"}
        refs = {(precision, batch): reference_latency("resnet50", precision, batch, device, 200 if batch == 1 else 40)
                for precision in ("fp32", "fp16") for batch in BATCHES}
        same = {(precision, batch): in_process_latency("resnet50", precision, batch, device,
                                                       200 if batch == 1 else 40)
                for precision in ("fp32", "fp16") for batch in BATCHES}
        checks += fidelity_checks({k: v[0] for k, v in same.items()}, {k: v[1] for k, v in same.items()},
                                  section="timing fidelity (one process)")
        checks += fidelity_checks(ours, refs, section="timing fidelity (worker)", launch_bound=launch_bound_shapes(refs))

    # 2 + 3: every backend x precision on two models: the cheap backends (one call; ResNet-50 eager is resumed
    # from above), then the paper's models and the peaks, then the backends that build per shape (TensorRT's
    # engines, inductor), each only while the budget lasts
    here = available_backends(device)
    deployment_records: list = []
    skipped: list[str] = []
    for backend, reason in here.items():
        if backend in CHEAP_BACKENDS + BUILDING_BACKENDS and reason is not None:
            checks.append(Check("deployments", backend, "n/a", f"unavailable here: {reason[:100]}"))
    cheap = [b for b in CHEAP_BACKENDS if here.get(b) is None]
    if "deployments" in sections:
        deployment_records += run_job(benchmark, args.db, device, DEPLOYMENT_MODELS, cheap, precisions, "time,memory")
    paper = [s.id for s in resolve_models((), "paper", ())]
    paper_result = [Check("paper models", "46 models fp16 eager b1,b64", "SKIP", "budget spent (--full runs it)")]
    if "paper" not in sections:
        paper_result = []
    elif budget.left():
        paper_result = paper_checks(run_job(benchmark, args.db, device, (), ["eager"], ["fp16"], "time",
                                            suite="paper", settings=PAPER), paper)
    peaks = [estimate_peak(device, precision, seconds=2.0, bandwidth=False)
             for precision in ("fp32", "tf32", "fp16", "bf16")
             if "peaks" in sections and (precision != "bf16" or "bf16" in precisions)]
    for backend in (b for b in BUILDING_BACKENDS if here.get(b) is None and "building" in sections):
        if budget.left():
            deployment_records += run_job(benchmark, args.db, device, DEPLOYMENT_MODELS, [backend], precisions,
                                          "time,memory")
        else:
            skipped.append(backend)

    checks += deployment_checks(deployment_records)
    if skipped:
        checks.append(Check("deployments", ", ".join(skipped), "SKIP",
                            f"budget of {args.budget_s:.0f} s spent before it (--full runs it)"))
    checks += memory_checks(deployment_records)
    checks += peak_checks(peaks)
    checks += energy_checks(eager_records)
    checks += paper_result

    print(render(checks, budget.elapsed, name))
    return exit_status(checks)


if __name__ == "__main__":
    sys.exit(main())
