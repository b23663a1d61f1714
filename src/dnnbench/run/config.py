"""What a user asks to measure, parsed and checked once, before any work starts.

A `SweepConfig` is composed of the measuring layer's own dataclasses: what is measured (`Scope`), how
precisely (`measure.stats.StoppingRule`, `measure.latency.WarmupPolicy`), the worker's limits
(`WorkerLimits`) and which stored cells are measured again (`ResumePolicy`). Each default lives in one of
those dataclasses. `build_sweep_config` turns the user's vocabulary (`backends="best"`, `"fp32,bf16"`,
`"1,2,8"`) into one; the CLI's `run` and `dnnbench.run.benchmark()` both call it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..devices import DEFAULT_CALIBRATION_SAMPLES, PRECISIONS, parse_precisions, resolve_device, torch_dtype
from ..errors import UsageError
from ..measure.latency import WarmupPolicy
from ..measure.scenarios import OfflineRules, ServerRules
from ..measure.stats import StoppingRule

if TYPE_CHECKING:
    from .executor import Executor

METRICS = ("time", "memory", "complexity", "energy")
# energy only when asked for: it adds a timed block per cell
DEFAULT_METRICS = ("time", "memory", "complexity")
PAPER_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# single-stream: one request at a time (time/memory/energy cells); offline and server: one cell each per
# deployment, metric named after the scenario (measure/scenarios.py, docs/SCENARIOS.md)
SCENARIOS = ("single-stream", "offline", "server")
SCENARIO_METRICS = ("offline", "server")
MIN_MEMORY_LIMIT_MB = 256  # below this a worker cannot even import PyTorch: every cell would be a start-up crash

# kept for callers that still import them from here; the vocabulary lives in dnnbench.devices
parse_dtype = torch_dtype
__all__ = ["DEFAULT_METRICS", "METRICS", "PAPER_BATCH_SIZES", "SCENARIOS", "SCENARIO_METRICS",
           "ResumePolicy", "Scope", "SweepConfig", "WorkerLimits",
           "build_sweep_config", "parse_backend_option", "parse_dtype", "parse_int_list", "parse_metrics",
           "resolve_device"]


def parse_int_list(text: str | Iterable[int], what: str) -> tuple[int, ...]:
    """`1,2,8` (or a sequence) -> (1, 2, 8); every value a positive integer, in the order given, no repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    values = []
    for item in items:
        if isinstance(item, bool) or isinstance(item, float) and not item.is_integer():
            raise UsageError(f"{what} must be positive integers, not {item!r}")
        try:
            value = int(item.strip() if isinstance(item, str) else item)
        except (TypeError, ValueError):
            raise UsageError(f"{what} must be positive integers separated by commas, "
                             f"not {item!r} in {text!r}") from None
        if value < 1:
            raise UsageError(f"{what} must be positive, not {value}")
        values.append(value)
    if not values:
        raise UsageError(f"no {what} given")
    return tuple(dict.fromkeys(values))


def parse_metrics(text: str | Iterable[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    metrics = tuple(dict.fromkeys(str(m).strip() for m in items if str(m).strip()))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UsageError(f"unknown metrics {unknown or text!r}; metrics: {', '.join(METRICS)}")
    return metrics


def parse_backend_option(text: str | Sequence[str]) -> tuple[str, str, str]:
    """`compile.mode=max-autotune` -> ("compile", "mode", "max-autotune"); a 3-tuple is taken as it is."""
    if not isinstance(text, str):
        if len(text) != 3:
            raise UsageError(f"a backend option is (backend, option, value), not {text!r}")
        return str(text[0]).strip().lower(), str(text[1]).strip(), str(text[2]).strip()
    target, equals, value = text.partition("=")
    backend, dot, key = target.partition(".")
    if not (equals and dot and backend.strip() and key.strip()):
        raise UsageError(f"a backend option is BACKEND.OPTION=VALUE (e.g. compile.mode=max-autotune), not {text!r}")
    return backend.strip().lower(), key.strip(), value.strip()


def _coerce(value: str, kind: type, what: str):
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{what} is true or false, not {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{what} must be {kind.__name__}, not {value!r}") from None


def _positive_ints(values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)


@dataclass(frozen=True)
class Scope:
    """What a sweep measures: every model x batch size x thread count x backend x precision."""

    device: str = "cpu"  # as resolved: cpu, cuda:N, mps
    precisions: tuple[str, ...] = ("fp32",)  # each backend at each precision; the first is the complexity cell's
    batch_sizes: tuple[int, ...] = PAPER_BATCH_SIZES
    threads: tuple[int, ...] = ()  # intra-op threads per cell; () = PyTorch's default here, recorded
    metrics: tuple[str, ...] = DEFAULT_METRICS
    input_size: int | None = None  # None: each model's native size
    backends: tuple[str, ...] = ("eager",)  # deployment backends, each timed (see dnnbench.backends)
    backend_options: tuple[tuple[str, str, str], ...] = ()  # (backend, option, value), e.g. compile mode
    best_search: bool = False  # `backends="best"`: every available backend, the fastest valid one marked
    tf32: bool = False  # CUDA: allow TF32 matmuls and convolutions (fp32 means fp32 otherwise)
    measure_peak: bool = True  # the device's peak FLOP/s, once per store (efficiency = achieved / peak)
    # quantized precisions (int8): the calibration images, a folder in any layout `accuracy` reads (None: the
    # synthetic set, backends.quantization), and how many of them
    calibration_data: str | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    # the scenario (SCENARIOS): offline searches `streams` (() = 1, 2, 4, ... the cores) x batch_sizes; server
    # serves batch_sizes[0] on streams[0] streams (() = one per core) and searches the highest Poisson rate with
    # p99 <= p99_ms (None: 4x the single-stream median measured first)
    scenario: str = "single-stream"
    streams: tuple[int, ...] = ()
    p99_ms: float | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario {self.scenario!r}; scenarios: {', '.join(SCENARIOS)}")
        if not _positive_ints(self.streams):
            raise UsageError(f"--streams must be positive integers, not {self.streams}")
        if self.p99_ms is not None and not (isinstance(self.p99_ms, (int, float)) and 0 < self.p99_ms < math.inf):
            raise UsageError(f"--p99-ms: the p99 latency bound must be a positive number of milliseconds, "
                             f"not {self.p99_ms!r}")
        if self.p99_ms is not None and self.scenario != "server":
            raise UsageError(f"--p99-ms bounds the server scenario's latency; give it with --scenario server, "
                             f"not {self.scenario}")
        if self.scenario == "server" and len(self.streams) > 1:
            raise UsageError(f"--scenario server serves on one stream count, not {self.streams}: give one --streams")
        if not self.batch_sizes or not _positive_ints(self.batch_sizes):
            raise UsageError(f"batch sizes must be positive integers, not {self.batch_sizes}")
        if not _positive_ints(self.threads):
            raise UsageError(f"thread counts must be positive integers, not {self.threads}")
        if self.input_size is not None and not _positive_ints((self.input_size,)):
            raise UsageError(f"the input size must be a positive integer, not {self.input_size}")
        parse_metrics(self.metrics)
        if not _positive_ints((self.calibration_samples,)):
            raise UsageError(f"--calibration-samples must be an integer >= 1, not {self.calibration_samples!r}")
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions):
            raise UsageError(f"unknown precisions {self.precisions}; precisions: {', '.join(PRECISIONS)}")
        from ..backends import BACKENDS

        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise UsageError(f"unknown backends {unknown or '(none)'}; backends: {', '.join(BACKENDS)}")
        self.options_for("eager")  # checks every backend option now, not in a worker

    @property
    def scenario_metric(self) -> str | None:
        """The metric of this sweep's scenario cells (None: single-stream, the time/memory/energy cells)."""
        return self.scenario if self.scenario in SCENARIO_METRICS else None

    @property
    def dtype(self) -> str:
        """The precision complexity is counted at (weight bytes): the first one asked for."""
        return self.precisions[0]

    @property
    def thread_counts(self) -> tuple[int | None, ...]:
        return self.threads or (None,)

    def options_for(self, backend: str):
        """The options dataclass of `backend` with this sweep's backend options applied."""
        from ..backends import BACKENDS

        options = {}
        for name, key, value in self.backend_options:
            if name not in BACKENDS:
                raise UsageError(f"--backend-option for unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
            known = {f.name: f for f in fields(BACKENDS[name].options_type)}
            if key not in known:
                raise UsageError(f"backend {name!r} has no option {key!r}; its options: {', '.join(known) or 'none'}")
            if name == backend:
                options[key] = _coerce(value, type(getattr(BACKENDS[name].options_type(), key)), f"{name}.{key}")
        return replace(BACKENDS[backend].options_type(), **options)


@dataclass(frozen=True)
class WorkerLimits:
    """What each isolated worker process may use."""

    cell_timeout_s: float | None = None  # None: derived from the budget (SweepConfig.timeout_s)
    memory_limit_mb: int | None = None  # address-space cap of each CPU worker; past it a cell is `oom`
    interop_threads: int | None = None  # None: PyTorch's default

    def __post_init__(self) -> None:
        timeout = self.cell_timeout_s
        if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise UsageError(f"the cell timeout (--cell-timeout) must be a positive number of seconds, not {timeout}")
        if self.interop_threads is not None and not _positive_ints((self.interop_threads,)):
            raise UsageError(f"inter-op threads (--interop-threads) must be a positive integer, not "
                             f"{self.interop_threads}; leave it out for PyTorch's default")
        limit = self.memory_limit_mb
        if limit is not None and not (_positive_ints((limit,)) and limit >= MIN_MEMORY_LIMIT_MB):
            raise UsageError(f"the memory limit (--memory-limit-mb) must be at least {MIN_MEMORY_LIMIT_MB} MB, not "
                             f"{limit}: below that a worker cannot even import PyTorch; leave it out for no limit")


@dataclass(frozen=True)
class ResumePolicy:
    """Which cells the store already has are measured again. By default none, except a `skipped` cell whose
    cause is gone (the smaller batch size that ran out of memory is no longer `oom`)."""

    force: bool = False  # every cell again
    retry_failed: bool = False  # every cell whose status is not ok (crash, timeout, oom, error, skipped, lost, ...)
    remeasure_contended: bool = False  # timed cells flagged as measured under contention


@dataclass(frozen=True)
class TrialPolicy:
    """How many fresh worker processes measure each timed cell (trials, interleaved across the sweep). Like the
    stopping rule it decides how precisely a quantity is measured, so it is not part of the cell key; a cell
    is done once it has `repeats` trials."""

    repeats: int = 1

    def __post_init__(self) -> None:
        if not _positive_ints((self.repeats,)):
            raise UsageError(f"--repeats: the number of trials must be an integer >= 1, not {self.repeats!r}")


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: what is measured, how precisely, within which limits, and what is measured again."""

    scope: Scope = field(default_factory=Scope)
    stopping: StoppingRule = field(default_factory=StoppingRule)
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    limits: WorkerLimits = field(default_factory=WorkerLimits)
    resume: ResumePolicy = field(default_factory=ResumePolicy)
    trials: TrialPolicy = field(default_factory=TrialPolicy)
    offline: OfflineRules = field(default_factory=OfflineRules)  # how long each offline point is timed
    server: ServerRules = field(default_factory=ServerRules)  # how many requests each offered rate gets

    def __post_init__(self) -> None:
        for name, kind in (("scope", Scope), ("stopping", StoppingRule), ("warmup", WarmupPolicy),
                           ("limits", WorkerLimits), ("resume", ResumePolicy), ("trials", TrialPolicy),
                           ("offline", OfflineRules), ("server", ServerRules)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"SweepConfig.{name} must be a {kind.__name__}, not {getattr(self, name)!r}; "
                                "build one with build_sweep_config(...)")
        if not self.stopping.ci_target < 1:
            raise UsageError(f"the CI target (--ci-target) is a relative half-width in (0, 1), e.g. 0.02, "
                             f"not {self.stopping.ci_target}")
        if self.limits.memory_limit_mb is not None and self.scope.device != "cpu":
            raise UsageError(f"--memory-limit-mb caps a CPU worker's address space; on {self.scope.device} it would "
                             "cap the device driver's mappings instead: leave it out")

    @property
    def timeout_s(self) -> float:
        """A cell that runs past this is killed and recorded as `timeout`; generous, since a slow model
        still has to finish its minimum samples after the budget is spent."""
        if self.limits.cell_timeout_s is not None:
            return self.limits.cell_timeout_s
        scenario = {"offline": self.offline.max_search_s + 2 * self.offline.max_point_s,
                    "server": self.server.max_search_s + 2 * self.server.max_point_s}.get(self.scope.scenario, 0.0)
        return max(300.0, 30 * (self.stopping.time_budget_s + self.warmup.min_seconds), 2 * scenario)

    def to_dict(self) -> dict:
        """What the store keeps with each run."""
        stopping = {f.name: getattr(self.stopping, f.name) for f in fields(StoppingRule) if f.init}
        return {"scope": asdict(self.scope), "stopping": stopping, "warmup": asdict(self.warmup),
                "limits": asdict(self.limits), "resume": asdict(self.resume), "trials": asdict(self.trials),
                **({"offline": asdict(self.offline), "server": asdict(self.server)}
                   if self.scope.scenario != "single-stream" else {})}


def _given(**values: Any) -> dict[str, Any]:
    """The arguments a caller gave (None: the dataclass's own default)."""
    return {k: v for k, v in values.items() if v is not None}


def _flag_error(flag: str, what: str, value: Any, requirement: str) -> UsageError:
    return UsageError(f"{flag}: {what} must be {requirement}, not {value!r}")


def build_sweep_config(
    *,
    executor: Executor | None = None,
    device: str | None = None,
    backends: str | Sequence[str] | None = None,
    precisions: str | Sequence[str] | None = None,
    dtype: str | None = None,
    batch_sizes: str | Sequence[int] | None = None,
    threads: str | Sequence[int] | None = None,
    metrics: str | Sequence[str] | None = None,
    input_size: int | None = None,
    backend_options: Sequence[str | Sequence[str]] = (),
    best_search: bool | None = None,
    tf32: bool | None = None,
    measure_peak: bool | None = None,
    calibration_data: str | Path | None = None,
    calibration_samples: int | None = None,
    time_budget_s: float | None = None,
    ci_target: float | None = None,
    min_samples: int | None = None,
    max_samples: int | None = None,
    warmup_iters: int | None = None,
    warmup_s: float | None = None,
    warmup_settle_s: float | None = None,
    cell_timeout_s: float | None = None,
    memory_limit_mb: int | None = None,
    interop_threads: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    remeasure_contended: bool = False,
    repeats: int | None = None,
    scenario: str | None = None,
    streams: str | Sequence[int] | None = None,
    p99_ms: float | None = None,
    scenario_min_s: float | None = None,
) -> SweepConfig:
    """The sweep a user asks for, in the user's words; every value checked now, before any work.

    `device`: cpu | cuda | cuda:N | mps | auto (resolved by `executor`: this machine's devices, or for a
    cluster the nodes' spelling). `backends`: a name, several (`"eager,onnxruntime"` or a list), or
    `"best"`/`"all"`: every backend available there, the fastest valid one marked. `precisions` (alias
    `dtype`): `"fp32,bf16"` or a list; none given: fp32, or with `best` fp32 and the reduced precisions
    the device runs natively. `calibration_data`: the folder of images int8 is calibrated on (any layout
    `accuracy` reads; checked now), `calibration_samples` how many (default: the synthetic set, 32).
    `repeats`: fresh worker processes (trials) per timed cell. `scenario`: single-stream (default) | offline |
    server, with `streams` (offline: the stream counts searched; server: the one stream count), `p99_ms` (server's
    bound; default 4x the single-stream median) and `scenario_min_s` (each offline point's and offered rate's
    minimum duration, default 2 s; the searches' caps scale with it). `batch_sizes`, `threads`, `metrics`:
    `"1,2,8"` or a sequence. None anywhere: the default of the dataclass that holds it."""
    from ..backends import parse_backends, search_precisions

    # the user-level numbers first, each named as the user typed it
    if time_budget_s is not None and not time_budget_s > 0:
        raise _flag_error("--time-budget", "the time budget", time_budget_s, "positive (seconds)")
    if ci_target is not None and not 0 < ci_target < 1:
        raise _flag_error("--ci-target", "the CI target", ci_target, "a relative half-width in (0, 1), e.g. 0.02")
    if min_samples is not None and not _positive_ints((min_samples,)):
        raise _flag_error("--min-samples", "the minimum sample count", min_samples, "an integer >= 1")
    if warmup_iters is not None and not _positive_ints((warmup_iters,)):
        raise _flag_error("--warmup-iters", "the warm-up iteration count", warmup_iters,
                          "an integer >= 1 (the first, cold call is a warm-up call: warm-up needs at least one)")
    if warmup_s is not None and not 0 <= warmup_s < math.inf:
        raise _flag_error("--warmup-s", "the warm-up time", warmup_s, "0 or more seconds")
    if warmup_settle_s is not None and not 0 <= warmup_settle_s < math.inf:
        raise _flag_error("--warmup-settle-s", "the warm-up settling budget", warmup_settle_s, "0 or more seconds")
    if dtype is not None and precisions is not None and parse_precisions(dtype)[:1] != parse_precisions(precisions)[:1]:
        raise UsageError(f"dtype {dtype!r} and precisions {precisions!r} disagree: give one of them")
    # limits and resume first: cheap checks before any device is looked at
    limits = WorkerLimits(**_given(cell_timeout_s=cell_timeout_s, memory_limit_mb=memory_limit_mb,
                                   interop_threads=interop_threads))
    trials = TrialPolicy(**_given(repeats=repeats))
    resume = ResumePolicy(force=bool(force), retry_failed=bool(retry_failed),
                          remeasure_contended=bool(remeasure_contended))
    stopping = StoppingRule(**_given(time_budget_s=time_budget_s, ci_target=ci_target, min_samples=min_samples,
                                     max_samples=max_samples))
    warmup = WarmupPolicy(**_given(min_iters=warmup_iters, min_seconds=warmup_s, settle_budget_s=warmup_settle_s))
    offline_rules, server_rules = scenario_rules(scenario_min_s)

    wanted = device if device is not None else Scope.device
    device = executor.resolve_device(wanted) if executor is not None else resolve_device(wanted)
    here = executor is None or executor.measures_here
    chosen, searched = None, False
    if backends is not None:
        text = backends if isinstance(backends, str) else ",".join(backends)
        chosen, searched = parse_backends(text, device, here=here)
    asked = precisions if precisions is not None else dtype
    if asked is not None:
        chosen_precisions = parse_precisions(asked)
    else:
        chosen_precisions = search_precisions(device) if searched else None
    scope = Scope(**_given(
        device=device, backends=chosen, precisions=chosen_precisions,
        best_search=searched if best_search is None else bool(best_search),
        batch_sizes=parse_int_list(batch_sizes, "batch sizes") if batch_sizes is not None else None,
        threads=parse_int_list(threads, "thread counts") if threads not in (None, "", ()) else None,
        metrics=parse_metrics(metrics) if metrics is not None else None,
        input_size=input_size, tf32=tf32, measure_peak=measure_peak,
        calibration_data=calibration_folder(calibration_data), calibration_samples=calibration_samples,
        backend_options=tuple(parse_backend_option(o) for o in backend_options) or None,
        scenario=scenario.strip().lower() if isinstance(scenario, str) else scenario,
        streams=parse_int_list(streams, "stream counts (--streams)") if streams not in (None, "", ()) else None,
        p99_ms=p99_ms))
    return SweepConfig(scope, stopping, warmup, limits, resume, trials, offline_rules, server_rules)


def scenario_rules(min_s: float | None) -> tuple[OfflineRules, ServerRules]:
    """The offline and server rules with each point's minimum duration `min_s` (None: the defaults); the caps on a
    point and on a search keep their ratio to it."""
    if min_s is None:
        return OfflineRules(), ServerRules()
    if not (isinstance(min_s, (int, float)) and 0 < min_s < math.inf):
        raise _flag_error("--scenario-min-s", "the scenario's minimum duration", min_s, "a positive number of seconds")
    offline, server = OfflineRules(), ServerRules()
    scale_offline, scale_server = min_s / offline.min_duration_s, min_s / server.min_duration_s
    return (replace(offline, min_duration_s=min_s, warmup_s=offline.warmup_s * scale_offline,
                    max_point_s=offline.max_point_s * scale_offline, max_search_s=offline.max_search_s * scale_offline),
            replace(server, min_duration_s=min_s, max_point_s=server.max_point_s * scale_server,
                    max_search_s=server.max_search_s * scale_server))


def calibration_folder(folder: str | Path | None) -> str | None:
    """The calibration folder as an absolute path, checked now (its layout, its labels) rather than in a worker."""
    if folder is None:
        return None
    from ..data.imagenet import open_imagenet

    open_imagenet(folder)  # raises DatasetLayoutError (a UsageError) naming the folder and the layouts read
    return str(Path(folder).resolve())
