"""`dnnbench calibrate`: time the operators real models are made of, and keep them in the store.

The operators come from meta-device traces of zoo models (`measure.operators.trace_operators`, at each batch
size asked for): every distinct operator shape is counted over the models and over each forward pass. The
order of timing (`sample_items`): first a few shapes of every kind spread over its sizes (what each kind's
regressor is fitted on), then every other shape by the share of the models' time it covers per second of
timing it costs; the timing stops at the time budget. A few probes time the cost of a module call itself
(`MODULE_CALL`). Operators are timed in isolated worker processes (`python -m dnnbench.run.calibrate_worker`),
in groups taken in turn (each operator with the others of its group run in between, as in a model) with `run`'s
timer and stopping rule at a small budget per operator. No whole model is timed. The timer is a parameter: tests
give one whose costs are known.

Backends: eager PyTorch, and OpenVINO's CPU plug-in (`--backend openvino`), whose workers time each operator as a
one-operator OpenVINO model (`measure.openvino_operators`) with the same sampling, grouping and stopping rule;
its probe is an infer request's own cost (`INFER_CALL`) instead of a module call's. Converting and compiling
the one-operator models is not counted against the time budget (the deadline moves on by the workers' set-up
time), so an OpenVINO calibration takes longer in all than an eager one of the same size.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import normalise_device, parse_precision
from ..errors import UsageError
from ..measure.openvino_operators import INFER_CALL
from ..measure.operators import MODULE_CALL, OperatorCall

CALIBRATION_BACKENDS = ("eager", "openvino")
# size -> (operators at most, seconds of timing at most); tracing the 46 paper models at two batch sizes takes
# another 40-60 s on 2 cores, so the default stays within 5 minutes in all (about 1,400 of their 5,454 distinct
# shapes get timed then; the rest are estimated by the regressors)
SIZES = {"quick": (300, 45.0), "default": (6000, 230.0)}
MODULE_CALL_COUNTS = (16, 64, 256)  # the module-call probes: chains of this many modules that dispatch nothing
ITEMS_PER_WORKER = 120
GROUP_SIZE = 8  # operators timed in turn with each other (see calibrate_worker): what a model puts between them


@dataclass(frozen=True)
class CalibrationConfig:
    """What is calibrated (device, backend, precision, threads: a calibration is a property of these and the
    machine), from which models' operators, and how much."""

    device: str = "cpu"
    backend: str = "eager"
    precision: str = "fp32"
    threads: int = 1
    models: tuple[str, ...] = ()
    suite: str | None = None  # with models: both; neither: the paper suite
    batch_sizes: tuple[int, ...] = (1, 8)
    operators: int = SIZES["default"][0]
    seconds: float = SIZES["default"][1]

    def __post_init__(self) -> None:
        if self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise UsageError(f"--device {self.device!r} is not a device operators can be timed on; use cpu, cuda, "
                             "cuda:N or mps")
        if self.backend not in CALIBRATION_BACKENDS:
            raise UsageError(f"calibrate --backend {self.backend}: only {', '.join(CALIBRATION_BACKENDS)} operators "
                             "can be timed so far; use --backend eager or openvino")
        if self.backend == "openvino" and (self.device != "cpu" or self.precision not in ("fp32", "bf16")):
            raise UsageError(f"calibrate --backend openvino times operators on OpenVINO's CPU plug-in in fp32 or bf16, "
                             f"not {self.device} {self.precision}; use --device cpu --precision fp32 (or bf16)")
        if self.threads < 1 and normalise_device(self.device) == "cpu":
            raise UsageError(f"--threads must be at least 1, not {self.threads}")
        if self.operators < 1 or not 0 < self.seconds < math.inf:
            raise UsageError(f"a calibration needs at least one operator and a finite positive time budget, not "
                             f"{self.operators} operators in {self.seconds} s")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UsageError(f"--batch-sizes must be positive, not {self.batch_sizes}")


def calibration_config(size: str = "default", **settings: Any) -> CalibrationConfig:
    """A config of the named size ("quick" or "default"); `settings` override its fields."""
    if size not in SIZES:
        raise UsageError(f"calibration size {size!r} is unknown; sizes: {', '.join(SIZES)}")
    operators, seconds = SIZES[size]
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.setdefault("operators", operators)
    settings.setdefault("seconds", seconds)
    if "precision" in settings:
        settings["precision"] = parse_precision(settings["precision"])
    if "device" in settings:
        settings["device"] = normalise_device(settings["device"])
    return CalibrationConfig(**settings)


@dataclass(frozen=True)
class CalibrationItem:
    """One micro-benchmark: an operator shape (or a module-call probe), with how often it occurs in the models."""

    kind: str
    op: str
    args: Any
    signature: str
    features: dict[str, float]
    weight: float = 1.0


# A timer takes the items and the config, and gives each item's median seconds (None: not reached before the time
# budget; NaN: the operator could not be replayed).
OperatorTimer = Callable[[Sequence[CalibrationItem], CalibrationConfig], list]


@dataclass
class Population:
    """Distinct operator shapes over some models and batch sizes, with their number of occurrences overall and
    in each traced forward pass (a model at a batch size)."""

    calls: dict[str, OperatorCall] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    passes: list[Counter] = field(default_factory=list)

    def add(self, calls: Sequence[OperatorCall]) -> None:
        this_pass: Counter = Counter()
        for call in calls:
            self.calls.setdefault(call.signature, call)
            this_pass[call.signature] += 1
        self.counts.update(this_pass)
        self.passes.append(this_pass)

    def by_kind(self) -> dict[str, list[str]]:
        kinds: dict[str, list[str]] = defaultdict(list)
        for signature, call in self.calls.items():
            kinds[call.kind].append(signature)
        return dict(kinds)


def operator_population(models: Sequence[str], batch_sizes: Sequence[int], precision: str = "fp32") -> Population:
    """The operators of each model's forward pass at its native input size, at each batch size (meta device)."""
    from ..devices import torch_dtype
    from ..measure.operators import trace_operators
    from ..zoo import build_model, get

    population = Population()
    dtype = torch_dtype(precision)
    for name in models:
        spec = get(name)
        net = build_model(spec, "meta").to(dtype)
        for batch in batch_sizes:
            population.add(trace_operators(net, spec.input_size, batch, dtype, spec.id).calls)
    return population


# Before an operator is timed its cost is guessed with a roofline of deliberately round figures: the guess only
# orders the sample (which shapes are worth a timing); the calibration measures the real times.
GUESS_CALL_S = 5e-6
GUESS_FLOPS_PER_S = 5e10
GUESS_BYTES_PER_S = 1e10
TIMING_OVERHEAD_S = 0.03  # warm-up and the stopping rule's minimum: what timing even the cheapest operator costs
FLOOR_PER_KIND = 6  # timings per kind before any kind gets more: what a regressor is fitted on for unseen shapes


def guessed_seconds(features: dict[str, float]) -> float:
    return (GUESS_CALL_S + features.get("flops", 0.0) / GUESS_FLOPS_PER_S
            + (features.get("in_bytes", 0.0) + features.get("out_bytes", 0.0)) / GUESS_BYTES_PER_S)


def coverage(population: Population) -> dict[str, float]:
    """Per shape, the share of each traced forward pass's (guessed) time it accounts for, summed over the passes.
    A shape that is a fifth of a small model counts as much as one that is a fifth of a large model, so every
    model gets the operators it spends its time in timed, not only the large models' convolutions."""
    guess = {s: guessed_seconds(c.features) for s, c in population.calls.items()}
    cover: dict[str, float] = defaultdict(float)
    for forward in population.passes:
        total = sum(guess[s] * n for s, n in forward.items()) or 1.0
        for s, n in forward.items():
            cover[s] += guess[s] * n / total
    return cover


def _spread(signatures: list[str], population: Population, count: int) -> list[str]:
    """`count` shapes evenly spaced over the kind's range of sizes (by FLOPs, then bytes), the extremes first."""
    size = sorted(signatures, key=lambda s: (population.calls[s].features["flops"],
                                             population.calls[s].features["in_bytes"], s))
    if count >= len(size):
        ranks = range(len(size))
    else:
        ranks = np.unique(np.round(np.linspace(0, len(size) - 1, count)).astype(int))
    chosen = [size[i] for i in ranks]
    return sorted(chosen, key=lambda s: s not in (size[0], size[-1]))


def sample_items(population: Population, total: int) -> list[CalibrationItem]:
    """The operators to time, in order (the timing stops at the calibration's budget): first a few shapes of every
    kind spread over its sizes, round-robin over kinds (what each kind's regressor is fitted on, so that shapes no
    model here has are predicted by interpolation); then the other shapes by how much of the models' time they
    cover per second of timing they cost (`coverage`), so that the operators the models spend their time in
    are looked up, not estimated."""
    kinds = population.by_kind()
    floors = {kind: _spread(signatures, population, FLOOR_PER_KIND) for kind, signatures in sorted(kinds.items())}
    order: list[str] = []
    for row in range(max((len(v) for v in floors.values()), default=0)):
        order += [chosen[row] for chosen in floors.values() if row < len(chosen)]
    cover = coverage(population)
    taken = set(order)
    rest = sorted((s for s in population.calls if s not in taken),
                  key=lambda s: (-cover[s] / (TIMING_OVERHEAD_S + 4 * guessed_seconds(population.calls[s].features)), s))
    items = []
    for signature in (order + rest)[:total]:
        call = population.calls[signature]
        items.append(CalibrationItem(call.kind, call.op, call.args, signature, call.features,
                                     float(population.counts[signature])))
    return items


def infer_call_items() -> list[CalibrationItem]:
    """The probe of an OpenVINO calibration: an infer request's own cost (each worker times it first, and takes
    it off each operator's time)."""
    return [CalibrationItem(INFER_CALL, INFER_CALL, {}, f"{INFER_CALL}:1", {"requests": 1.0})]


def probe_items(backend: str) -> list[CalibrationItem]:
    """What a model pays besides its operators, per backend: module calls (eager) or an infer request (openvino)."""
    return infer_call_items() if backend == "openvino" else module_call_items()


def module_call_items() -> list[CalibrationItem]:
    return [CalibrationItem(MODULE_CALL, MODULE_CALL, {"modules": n}, f"{MODULE_CALL}:{n}",
                            {"modules": float(n + 1)}) for n in MODULE_CALL_COUNTS]


class WorkerTimer:
    """Times items in isolated worker processes (`python -m dnnbench.run.calibrate_worker`), a chunk per worker,
    all under one deadline: items a worker had no time left for come back None."""

    def __init__(self, items_per_worker: int = ITEMS_PER_WORKER, progress: Callable[[int, int], None] | None = None,
                 group_size: int = GROUP_SIZE):
        self.items_per_worker = items_per_worker
        self.group_size = group_size
        self.progress = progress
        self.errors: dict[int, str] = {}  # item index -> why it could not be timed (the last call's)
        self.setup_s = 0.0  # seconds the workers spent converting and compiling (OpenVINO), not timing

    def __call__(self, items: Sequence[CalibrationItem], config: CalibrationConfig) -> list:
        deadline = time.time() + config.seconds
        times: list = [None] * len(items)
        self.errors, self.setup_s = {}, 0.0
        done = 0
        for start in range(0, len(items), self.items_per_worker):
            if time.time() >= deadline:
                break
            chunk = items[start:start + self.items_per_worker]
            job = {"device": config.device, "backend": config.backend, "precision": config.precision,
                   "threads": config.threads, "deadline": deadline, "group_size": self.group_size,
                   "sent_at": time.time(),
                   "items": [{"op": i.op, "args": i.args, "guess": guessed_seconds(i.features)} for i in chunk]}
            results, setup_s = self._run_worker(job, deadline)
            deadline += setup_s  # converting and compiling is not timing
            self.setup_s += setup_s
            for index, seconds, error in results:
                times[start + index] = seconds
                if error:
                    self.errors[start + index] = error
                done += 1
                if self.progress:
                    self.progress(done, len(items))
        return times

    @staticmethod
    def _run_worker(job: dict, deadline: float) -> tuple[list[tuple[int, float | None, str | None]], float]:
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        process = subprocess.Popen([sys.executable, "-m", "dnnbench.run.calibrate_worker"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # an OpenVINO worker moves its deadline on by its set-up time: allow for the conversions of a whole chunk
        slack = 60 + (2.0 * len(job["items"]) if job.get("backend") == "openvino" else 0)
        try:
            out, err = process.communicate(json.dumps(job), timeout=max(deadline - time.time(), 0) + slack)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results, setup_s = [], 0.0
        for line in out.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "setup_s" in row:
                setup_s += float(row["setup_s"])
                continue
            seconds = row.get("seconds")  # None with an error: an operator that cannot be replayed, kept as NaN
            results.append((int(row["index"]), math.nan if seconds is None else seconds, row.get("error")))
        if process.returncode not in (0, None) and not results:
            raise UsageError(f"the calibration worker failed (exit {process.returncode}): "
                             f"{(err.strip().splitlines() or ['no message'])[-1]}")
        return results, setup_s


@dataclass(frozen=True)
class CalibrationSummary:
    machine_id: str
    config: CalibrationConfig
    kinds: dict[str, int]  # kind -> operators timed
    sampled: int
    timed: int
    failed: int  # operators that could not be replayed
    distinct: int  # distinct operator shapes in the models
    wall_s: float
    unreached: int = 0  # operators the time budget ended before (their shapes are left to the regressors)
    # kinds none of whose operators could be timed (OpenVINO could not convert or run them) -> the first reason
    failed_kinds: dict[str, str] = field(default_factory=dict)
    setup_s: float = 0.0  # converting and compiling one-operator models (OpenVINO), besides the timing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(db: str | Path, config: CalibrationConfig, *, timer: OperatorTimer | None = None,
              machine_id: str | None = None, fingerprint: dict | None = None) -> CalibrationSummary:
    """Calibrate this machine (or `machine_id` with its `fingerprint`, for tests and remote nodes) for `config`
    and keep the timings in the store at `db`, replacing any earlier calibration of the same configuration."""

    started = time.perf_counter()
    if config.backend == "openvino":
        check_openvino(config.precision)
    items, population = calibration_items(config)
    timer = timer or WorkerTimer()
    times = timer(items, config)
    if machine_id is None:
        from ..env import collect_machine

        machine = collect_machine()
        machine_id, fingerprint = machine.machine_id, machine.to_dict()
    summary = keep_calibration(db, config, items, times, machine_id, fingerprint, len(population.calls), started)
    return replace(summary, failed_kinds=failed_kinds(items, times, getattr(timer, "errors", {})),
                   setup_s=getattr(timer, "setup_s", 0.0))


def check_openvino(precision: str) -> None:
    """Refuse an OpenVINO calibration this machine cannot run (no openvino, or a precision its CPU lacks)."""
    try:
        from ..measure.openvino_operators import precision_reason
    except ImportError as exc:
        raise UsageError(f"calibrate --backend openvino needs the openvino package ({exc}); pip install openvino") \
            from None
    reason = precision_reason(precision)
    if reason:
        raise UsageError(f"calibrate --backend openvino --precision {precision}: {reason}; use --precision fp32")


def failed_kinds(items: Sequence[CalibrationItem], times: Sequence, errors: dict[int, str]) -> dict[str, str]:
    """Kinds none of whose operators could be timed (each NaN), with the first reason given: the kinds a model
    using them cannot be predicted for, and why."""
    timed = {item.kind for item, t in zip(items, times) if t is not None and t > 0}
    failed: dict[str, str] = {}
    for i, (item, t) in enumerate(zip(items, times)):
        if t is not None and math.isnan(t) and item.kind not in timed:
            failed.setdefault(item.kind, errors.get(i, "could not be replayed"))
    return failed


def calibration_items(config: CalibrationConfig) -> tuple[list[CalibrationItem], Population]:
    """What a calibration of `config` times (the backend's probes first: they are cheap), and the population of
    operator shapes it was sampled from."""
    from ..zoo import list_models, resolve_models

    if config.models or config.suite:
        models = tuple(s.id for s in resolve_models(config.models, config.suite))
    else:
        models = tuple(list_models(suite="paper"))
    population = operator_population(models, config.batch_sizes, config.precision)
    return probe_items(config.backend) + sample_items(population, config.operators), population


def keep_calibration(db: str | Path, config: CalibrationConfig, items: Sequence[CalibrationItem], times: Sequence,
                     machine_id: str, fingerprint: dict | None, distinct: int, started: float) -> CalibrationSummary:
    """Store the items timed (`times[i]` None: not timed) as the calibration of `machine_id` for `config`,
    replacing any earlier one of the same configuration; `started` is the calibration's perf_counter start."""
    from ..store import Store

    now = time.time()
    rows = [{"kind": item.kind, "op": item.op, "signature": item.signature, "features": item.features,
             "seconds": float(t), "weight": item.weight, "measured_at": now}
            for item, t in zip(items, times) if t is not None and t > 0]
    with Store(db) as store:
        store.register_machine(machine_id, fingerprint or {})
        store.put_calibration(machine_id, config.device, config.backend, config.precision, config.threads, rows)
    return CalibrationSummary(machine_id, config, dict(Counter(r["kind"] for r in rows)), len(items), len(rows),
                              sum(1 for t in times if t is not None and math.isnan(t)), distinct,
                              time.perf_counter() - started, sum(1 for t in times if t is None))
