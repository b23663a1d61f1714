"""Which models fit a deployment: constraints on latency, throughput, memory, energy and accuracy, and why the
best models that do not fit were left out.

Two constraints come from the scenario cells (docs/SCENARIOS.md, analysis/scenarios.py): a floor on the best
offline images/s of a deployment, and a bound on its server p99 at an offered rate. A deployment without the
figure such a constraint needs is never dropped silently: it fails it "not measured in that scenario" (or why
its cells gave no figure), and `Selection.not_measured` lists every such deployment."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..errors import UsageError


@dataclass(frozen=True)
class Constraints:
    """Limits a model must meet at one batch size; None means no limit."""

    batch_size: int = 1
    max_latency_ms: float | None = None  # median time of one batch
    min_images_per_s: float | None = None  # throughput (frames per second at batch size 1)
    max_memory_mb: float | None = None  # the memory index of docs/REPORT.md, in MiB
    min_top1: float | None = None  # percent
    max_joules_per_image: float | None = None  # the energy cell's figure (`--metrics energy`), idle power subtracted
    # the scenarios: the deployment's best offline images/s (any streams and batch size), and its server p99 (ms)
    # at offered rate `at_rate` (requests/s), judged at the smallest measured rate >= at_rate
    min_offline_images_per_s: float | None = None
    max_p99_ms: float | None = None
    at_rate: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"the batch size must be positive, not {self.batch_size}")
        for name in ("max_latency_ms", "min_images_per_s", "max_memory_mb", "max_joules_per_image",
                     "min_offline_images_per_s", "max_p99_ms", "at_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{SCENARIO_FLAGS.get(name, name.replace('_', ' '))} must be positive, not {value}")
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 100:
            raise UsageError(f"min top-1 is a percentage in [0, 100], not {self.min_top1}")
        if self.at_rate is not None and self.max_p99_ms is None:
            raise UsageError(f"--at-rate {self.at_rate:g} says where a server p99 is judged; give the bound with "
                             "--max-p99-ms MS")
        if self.max_p99_ms is not None and self.at_rate is None:
            raise UsageError(f"--max-p99-ms {self.max_p99_ms:g} bounds the server p99 at an offered rate; give the "
                             "rate with --at-rate REQUESTS_PER_S")

    @property
    def scenario_limits(self) -> bool:
        """Whether any constraint needs offline or server cells."""
        return self.min_offline_images_per_s is not None or self.max_p99_ms is not None

    def describe(self) -> str:
        parts = [f"batch size {self.batch_size}"]
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        if self.min_images_per_s is not None:
            parts.append(f">= {self.min_images_per_s:g} images/s")
        if self.max_memory_mb is not None:
            parts.append(f"memory <= {self.max_memory_mb:g} MB")
        if self.min_top1 is not None:
            parts.append(f"top-1 >= {self.min_top1:g}%")
        if self.max_joules_per_image is not None:
            parts.append(f"energy <= {self.max_joules_per_image:g} J/image")
        if self.min_offline_images_per_s is not None:
            parts.append(f"offline >= {self.min_offline_images_per_s:g} images/s")
        if self.max_p99_ms is not None:
            parts.append(f"server p99 <= {self.max_p99_ms:g} ms at {self.at_rate:g} requests/s")
        return ", ".join(parts)


# the flags of the scenario constraints, named in errors as the user typed them
SCENARIO_FLAGS = {"min_offline_images_per_s": "--min-throughput", "max_p99_ms": "--max-p99-ms",
                  "at_rate": "--at-rate"}


@dataclass(frozen=True)
class Violation:
    """One constraint a candidate fails, and by how much (`value` None: the figure is missing)."""

    constraint: str  # "latency", "throughput", "memory", "top-1", "measurement"
    limit: float | None
    value: float | None
    unit: str
    upper_bound: bool = True  # the limit is a maximum
    reason: str = ""  # for a missing figure or a failed cell
    note: str = ""  # how the value was judged (a predicted value: at its interval's pessimistic end)

    @property
    def excess(self) -> float | None:
        """How far past the limit, in the constraint's unit (always positive)."""
        if self.value is None or self.limit is None:
            return None
        return self.value - self.limit if self.upper_bound else self.limit - self.value

    @property
    def relative_excess(self) -> float | None:
        return None if self.excess is None or not self.limit else self.excess / self.limit

    def describe(self) -> str:
        if self.value is None or self.limit is None:
            return self.reason or f"no {self.constraint} figure"
        sign = ">" if self.upper_bound else "<"
        by = f"{'+' if self.upper_bound else '-'}{_fmt(self.excess)} {self.unit}"
        if self.unit != "%":
            by += f", {'+' if self.upper_bound else '-'}{100 * self.relative_excess:.0f}%"
        return (f"{self.constraint} {_fmt(self.value)} {sign} {_fmt(self.limit)} {self.unit} ({by})"
                + (f" [{self.note}]" if self.note else ""))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "unbounded"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


@dataclass(frozen=True)
class Candidate:
    """One model measured in one setup at the constraints' batch size."""

    model: str
    name: str
    family: str
    machine_id: str
    setup: str
    batch_size: int
    input_size: int | None
    status: str
    latency_ms: float | None
    images_per_s: float | None
    memory_mb: float | None
    top1: float | None
    top5: float | None
    accuracy_source: str
    error: str = ""
    joules_per_image: float | None = None
    latency_source: str = "measured"  # or "predicted" (from a calibration: `dnnbench calibrate`)
    latency_low_ms: float | None = None  # the latency's interval: measured (confidence) or predicted (5-95%)
    latency_high_ms: float | None = None

    @property
    def predicted(self) -> bool:
        return self.latency_source == "predicted"
    # a quantized (int8) setup: its note ("int8 quantized: accuracy not measured", or top-1 and drop); top1 is the
    # deployment's own measured top-1 when there is one, else the model's, which no top-1 constraint accepts
    quantization: str = ""
    accuracy_measured: bool = True
    # the scenarios (None: no such figure, `*_reason` says why); filled only when a scenario constraint is given
    offline_images_per_s: float | None = None
    offline_streams: int | None = None
    offline_batch_size: int | None = None
    offline_reason: str = ""
    server_p99_ms: float | None = None
    server_rate: float | None = None  # the measured rate the p99 was judged at (>= the constraint's rate)
    server_reason: str = ""
    # the figure came from a cell measured under contention: conservative (slower than the machine is)
    offline_contended: bool = False
    server_contended: bool = False

    @property
    def scenario_note(self) -> str:
        """Which scenario figures were measured under contention (they pass a limit they meet; see violations)."""
        which = [w for w, flag in (("offline", self.offline_contended), ("server", self.server_contended)) if flag]
        return f"{' and '.join(which)} measured while contended (conservative)" if which else ""

    @property
    def offline_point(self) -> str:
        """`2 streams x batch 4`, where the best offline figure was measured."""
        if self.offline_streams is None:
            return ""
        return f"{self.offline_streams} stream{'s' if self.offline_streams != 1 else ''} x batch {self.offline_batch_size}"


@dataclass(frozen=True)
class Rejection:
    candidate: Candidate  # the model's setup closest to passing
    violations: tuple[Violation, ...]

    def describe(self) -> str:
        return "; ".join(v.describe() for v in self.violations)


@dataclass(frozen=True)
class Selection:
    constraints: Constraints
    chosen: tuple[Candidate, ...]  # ranked: top-1 first, then speed; at most `top`
    rejected: tuple[Rejection, ...]  # every model that fits no setup, ranked the same way
    eligible: int  # how many models fit (chosen is the first `top` of them)
    # every deployment (model x setup) without a figure a scenario constraint needs, with why
    not_measured: tuple[Rejection, ...] = ()


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def candidate_from_row(row: pd.Series) -> Candidate:
    input_size = _number(row.get("input_size"))
    quantized = bool(row.get("quantized")) if _number(row.get("quantized")) is not None else False
    quantized_top1 = _number(row.get("quantized_top1")) if quantized else None
    top1 = quantized_top1 if quantized_top1 is not None else _number(row.get("top1"))
    return Candidate(
        model=row["model"], name=row["name"], family=row["family"], machine_id=row["machine_id"],
        setup=row["setup"], batch_size=int(row["batch_size"]), input_size=int(input_size) if input_size else None,
        status=row["status"], latency_ms=_number(row.get("latency_ms")), images_per_s=_number(row.get("images_per_s")),
        memory_mb=_number(row.get("memory_mb")), top1=top1, top5=None if quantized else _number(row.get("top5")),
        accuracy_source=str(row.get("accuracy_source") or "none"), error=str(row.get("error") or ""),
        joules_per_image=_number(row.get("joules_per_image")),
        latency_source=str(row.get("latency_source") or "measured"),
        latency_low_ms=_number(row.get("latency_low_ms")), latency_high_ms=_number(row.get("latency_high_ms")),
        quantization=str(row.get("quantization") or "") if quantized else "",
        accuracy_measured=not quantized or quantized_top1 is not None,
    )


def _judged_speed(c: Candidate) -> tuple[float | None, float | None, str]:
    """The latency and throughput a limit is judged on, and how. A measured cell: its median. A predicted one: the
    pessimistic end of its 5-95% interval (an open interval, from a calibration too small to bound its error, meets
    no limit), so that a predicted answer holds even where the prediction errs to that end."""
    if not c.predicted or c.latency_ms is None:
        return c.latency_ms, c.images_per_s, ""
    high = c.latency_high_ms if c.latency_high_ms is not None else math.inf
    note = (f"predicted {_fmt(c.latency_ms)} ms, 5-95% interval up to {_fmt(high)} ms: judged at its upper end"
            if math.isfinite(high) else f"predicted {_fmt(c.latency_ms)} ms with an open interval (calibration too "
                                        "small to bound its error): recalibrate at the default size")
    return high, (c.batch_size * 1e3 / high if high > 0 else math.inf), note


def violations(c: Candidate, limits: Constraints) -> tuple[Violation, ...]:
    """Every constraint the candidate fails; a failed cell fails every constraint that needs its figures."""
    out: list[Violation] = []
    if c.status != "ok" and (c.latency_ms is None or c.memory_mb is None):
        first_line = c.error.splitlines()[0][:120] if c.error else ""
        out.append(Violation("measurement", None, None, "", reason=f"cell {c.status}" + (f": {first_line}" if
                                                                                       first_line else "")))
    latency, images_per_s, how = _judged_speed(c)
    checks = [("latency", limits.max_latency_ms, latency, "ms", True),
              ("throughput", limits.min_images_per_s, images_per_s, "images/s", False),
              ("memory", limits.max_memory_mb, c.memory_mb, "MB", True),
              ("top-1", limits.min_top1, c.top1, "%", False),
              ("energy", limits.max_joules_per_image, c.joules_per_image, "J/image", True)]
    for name, limit, value, unit, upper in checks:
        if limit is None:
            continue
        if name == "top-1" and not c.accuracy_measured:
            out.append(Violation(name, limit, None, unit, upper, reason=f"{c.quantization}: measure it with "
                                 "`dnnbench accuracy --backend BACKEND --dtype int8`"))
            continue
        if value is None:
            if not out or name in ("top-1", "energy"):  # a failed cell already explains missing speed and memory
                reason = f"no {name} figure" + (" (measure with --metrics energy)" if name == "energy" else "")
                out.append(Violation(name, limit, None, unit, upper, reason=reason))
        elif (value > limit) if upper else (value < limit):
            out.append(Violation(name, limit, value, unit, upper, note=how if name in ("latency", "throughput")
                                 else ""))
    return tuple(out) + _scenario_violations(c, limits)


CONTENDED = "measured while contended, which only slows it: measure again with `dnnbench run --scenario {} --force`"


def _scenario_violations(c: Candidate, limits: Constraints) -> tuple[Violation, ...]:
    """A figure measured under contention is conservative: it passes a limit it meets; where it fails one, the
    violation says that the machine was busy."""
    out = []
    if limits.min_offline_images_per_s is not None:
        limit = limits.min_offline_images_per_s
        if c.offline_images_per_s is None:
            out.append(Violation("offline throughput", limit, None, "images/s", False, reason=c.offline_reason
                                 or "not measured in the offline scenario"))
        elif c.offline_images_per_s < limit:
            out.append(Violation("offline throughput", limit, c.offline_images_per_s, "images/s", False,
                                 note=f"best point {c.offline_point}" + (
                                     "; " + CONTENDED.format("offline") if c.offline_contended else "")))
    if limits.max_p99_ms is not None:
        if c.server_p99_ms is None:
            out.append(Violation("server p99", limits.max_p99_ms, None, "ms", True,
                                 reason=c.server_reason or "not measured in the server scenario"))
        elif c.server_p99_ms > limits.max_p99_ms:
            out.append(Violation("server p99", limits.max_p99_ms, c.server_p99_ms, "ms", True,
                                 note=f"at {c.server_rate:g} requests/s offered" + (
                                     "; " + CONTENDED.format("server") if c.server_contended else "")))
    return tuple(out)


def _missing_scenario(c: Candidate, limits: Constraints) -> bool:
    return ((limits.min_offline_images_per_s is not None and c.offline_images_per_s is None)
            or (limits.max_p99_ms is not None and c.server_p99_ms is None))


def _rank_key(c: Candidate) -> tuple:
    # best top-1 first (models without accuracy last), then the fastest
    return (c.top1 is None, -(c.top1 or 0.0), c.latency_ms if c.latency_ms is not None else math.inf, c.model)


def select_models(perf: pd.DataFrame, limits: Constraints, top: int | None = 5, machine_id: str | None = None,
                  setups: Sequence[str] | None = None, scenarios: pd.DataFrame | None = None) -> Selection:
    """The models that meet `limits` (each in its fastest setup that does), ranked by top-1 then speed.

    `scenarios`: the deployments' scenario figures (analysis.scenarios.scenario_figures), needed by the scenario
    constraints; a deployment with scenario cells but no time cell at the batch size is a candidate too."""
    if top is not None and top < 1:
        raise UsageError(f"--top must be positive, not {top}")
    rows = perf if machine_id is None else perf[perf["machine_id"] == machine_id]
    extra = _scenario_only_rows(rows, scenarios, limits, machine_id, setups)
    if setups is not None:
        rows = rows[rows["setup"].isin(list(setups))]
    if rows.empty and extra.empty:
        raise UsageError("no timed cells to choose from" + (" on this machine" if machine_id else "")
                         + "; measure with `dnnbench run` first")
    at_batch = rows[rows["batch_size"] == limits.batch_size]
    if at_batch.empty and not limits.scenario_limits:
        sizes = ", ".join(str(b) for b in sorted(rows["batch_size"].unique()))
        raise UsageError(f"nothing was measured at batch size {limits.batch_size}; batch sizes measured: {sizes}")
    if len(extra):
        at_batch = pd.concat([at_batch, extra], ignore_index=True) if len(at_batch) else extra
    figures = _figures_by_deployment(scenarios) if limits.scenario_limits else {}
    chosen, rejected, not_measured = [], [], []
    for _, model_rows in at_batch.groupby("model", sort=False):
        candidates = [candidate_from_row(r) for _, r in model_rows.iterrows()]
        if limits.scenario_limits:
            candidates = [_with_scenario(c, figures.get((c.machine_id, c.model, c.setup))) for c in candidates]
        judged = [(c, violations(c, limits)) for c in candidates]
        not_measured += [Rejection(c, v) for c, v in judged if _missing_scenario(c, limits)]
        passing = [c for c, v in judged if not v]
        if passing:
            chosen.append(min(passing, key=lambda c: _fastest_key(c, limits)))
        else:
            closest = min(judged, key=lambda cv: (len(cv[1]), _fastest_key(cv[0], limits)))
            rejected.append(Rejection(*closest))
    chosen.sort(key=_rank_key)
    rejected.sort(key=lambda r: _rank_key(r.candidate))
    not_measured.sort(key=lambda r: (_rank_key(r.candidate), r.candidate.setup))
    return Selection(limits, tuple(chosen[:top] if top else chosen), tuple(rejected), len(chosen),
                     tuple(not_measured))


def _fastest_key(c: Candidate, limits: Constraints) -> tuple:
    """Which passing setup of a model to show: the best on the scenario asked about, else the lowest latency."""
    latency = c.latency_ms if c.latency_ms is not None else math.inf
    if limits.min_offline_images_per_s is not None:
        return -(c.offline_images_per_s or 0.0), latency
    if limits.max_p99_ms is not None:
        return c.server_p99_ms if c.server_p99_ms is not None else math.inf, latency
    return (latency,)


def _scenario_only_rows(rows: pd.DataFrame, scenarios: pd.DataFrame | None, limits: Constraints,
                        machine_id: str | None, setups: Sequence[str] | None) -> pd.DataFrame:
    """Deployments measured in a scenario but without a time row at the batch size, as candidate rows."""
    if not limits.scenario_limits or scenarios is None or scenarios.empty:
        return pd.DataFrame()
    mine = scenarios if machine_id is None else scenarios[scenarios["machine_id"] == machine_id]
    if setups is not None:
        mine = mine[mine["setup"].isin(list(setups))]
    timed = rows[rows["batch_size"] == limits.batch_size]
    have = set(zip(timed["machine_id"], timed["model"], timed["setup"]))
    mine = mine[[k not in have for k in zip(mine["machine_id"], mine["model"], mine["setup"])]]
    return mine.assign(batch_size=limits.batch_size, status="ok", error="")


def _figures_by_deployment(scenarios: pd.DataFrame | None) -> dict[tuple, pd.Series]:
    if scenarios is None or scenarios.empty:
        return {}
    return {(r["machine_id"], r["model"], r["setup"]): r for _, r in scenarios.iterrows()}


def _with_scenario(c: Candidate, figures: pd.Series | None) -> Candidate:
    from dataclasses import replace

    if figures is None:
        return replace(c, offline_reason="not measured in the offline scenario (`dnnbench run --scenario offline`)",
                       server_reason="not measured in the server scenario (`dnnbench run --scenario server`)")
    count = _number(figures.get("offline_streams"))
    batch = _number(figures.get("offline_batch_size"))
    return replace(c, offline_images_per_s=_number(figures.get("offline_images_per_s")),
                   offline_streams=int(count) if count is not None else None,
                   offline_batch_size=int(batch) if batch is not None else None,
                   offline_reason=str(figures.get("offline_reason") or ""),
                   server_p99_ms=_number(figures.get("server_p99_ms")), server_rate=_number(figures.get("server_rate")),
                   server_reason=str(figures.get("server_reason") or ""),
                   offline_contended=bool(figures.get("offline_contended")),
                   server_contended=bool(figures.get("server_contended")))


DEFAULT_FPS_LEVELS = (15.0, 30.0, 60.0)
DEFAULT_MEMORY_LEVELS_MB = (512.0, 1024.0, 2048.0)
GRID_COLUMNS = ("max_memory_mb", "min_images_per_s", "rank", "model", "name", "family", "top1", "accuracy_source",
                "images_per_s", "memory_mb", "setup")


def constraint_grid(perf: pd.DataFrame, machine_id: str, fps_levels: Sequence[float] = DEFAULT_FPS_LEVELS,
                    memory_levels_mb: Sequence[float] = DEFAULT_MEMORY_LEVELS_MB, batch_size: int = 1,
                    top: int = 5) -> pd.DataFrame:
    """The best `top` models (by top-1) under each pair (memory <= M, images/s >= F), as in the 2018
    study's Table: one row per (memory level, FPS level, rank). Models without accuracy are left out."""
    rows = []
    for memory in memory_levels_mb:
        for fps in fps_levels:
            limits = Constraints(batch_size=batch_size, min_images_per_s=fps, max_memory_mb=memory, min_top1=0.0)
            try:
                selection = select_models(perf, limits, top=top, machine_id=machine_id)
            except UsageError:
                continue
            for rank, c in enumerate(selection.chosen, 1):
                rows.append({"max_memory_mb": memory, "min_images_per_s": fps, "rank": rank, "model": c.model,
                             "name": c.name, "family": c.family, "top1": c.top1,
                             "accuracy_source": c.accuracy_source, "images_per_s": c.images_per_s,
                             "memory_mb": c.memory_mb, "setup": c.setup})
    return pd.DataFrame(rows, columns=list(GRID_COLUMNS))


def _candidate_row(c: Candidate, rank: int | None, why_not: str) -> dict:
    return {"rank": rank, "model": c.model, "name": c.name, "family": c.family, "top1": c.top1, "top5": c.top5,
            "accuracy_source": c.accuracy_source, "latency_ms": c.latency_ms, "images_per_s": c.images_per_s,
            "memory_mb": c.memory_mb, "joules_per_image": c.joules_per_image, "config": c.setup,
            "quantization": c.quantization,
            "batch_size": c.batch_size, "fits": not why_not,
            "offline_images_per_s": c.offline_images_per_s, "offline_point": c.offline_point,
            "server_p99_ms": c.server_p99_ms, "server_rate": c.server_rate, "scenario_note": c.scenario_note,
            "why_not": why_not, "latency_source": c.latency_source, "latency_low_ms": c.latency_low_ms,
            # an open interval (None): JSON has no infinity
            "latency_high_ms": c.latency_high_ms if c.latency_high_ms is None or math.isfinite(c.latency_high_ms)
            else None}


def selection_rows(selection: Selection, top: int) -> list[dict]:
    """The selection as flat rows (CSV, JSON): the chosen models ranked, then the first `top` excluded ones
    with why they do not fit, then (scenario constraints) every deployment not measured in that scenario, with
    `not_measured` true."""
    listed = {(r.candidate.model, r.candidate.setup) for r in selection.rejected[:top]}
    rows = ([_candidate_row(c, i, "") for i, c in enumerate(selection.chosen, 1)]
            + [_candidate_row(r.candidate, None, r.describe()) for r in selection.rejected[:top]])
    if selection.constraints.scenario_limits:
        for row in rows:
            row["not_measured"] = False
        rows += [{**_candidate_row(r.candidate, None, r.describe()), "not_measured": True}
                 for r in selection.not_measured if (r.candidate.model, r.candidate.setup) not in listed]
    else:  # no scenario constraint: the columns of before
        for row in rows:
            for key in ("offline_images_per_s", "offline_point", "server_p99_ms", "server_rate", "scenario_note"):
                del row[key]
    if all(row["joules_per_image"] is None for row in rows):  # no energy cells: the columns of before
        for row in rows:
            del row["joules_per_image"]
    if all(row["latency_source"] == "measured" for row in rows):  # nothing predicted: the columns of before
        for row in rows:
            for key in ("latency_source", "latency_low_ms", "latency_high_ms"):
                del row[key]
    if not any(row["quantization"] for row in rows):  # no quantized setup: the columns of before
        for row in rows:
            del row["quantization"]
    return rows
