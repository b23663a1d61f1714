"""`dnnbench screen`: from whole model sources to a measured shortlist in one call.

    >>> from dnnbench.screen import screen
    >>> from dnnbench.analysis import Constraints
    >>> result = screen(["timm:*"], "results.sqlite", machine="3f2a", constraints=Constraints(max_latency_ms=30))
    >>> result.front()  # doctest: +SKIP

The stages, each narrowing the field before the next, dearer one (docs/SCREEN.md):

1. **Complexity**: every model the sources match is counted on the meta device by the profile pool
   (`run.zoo_profile`); counts already in the store are reused. Cheap rules screen out models that cannot
   meet the limits whatever the machine does: weights alone over the memory limit, a published top-1 under
   the accuracy floor, and, with a calibration, operations alone over the latency limit at the machine's
   fastest rate (its stored peak, or twice the fastest arithmetic operator of its calibration).
2. **Prediction**: the survivors' latency and memory on machine M from its calibration (`predict`), one
   trace per model, in worker processes that fit the calibration's regressors once. Without a calibration of
   M the screen stops after stage 1 and says so.
3. **Constraints and ranking**: a model is kept while its prediction interval reaches the limits (the
   interval's low end for latency, its high end for throughput; memory is the analytic estimate), ranked by
   published top-1 (models without one are kept, marked "accuracy unknown", ranked last).
4. **Measurement**: the best K are measured for real on this machine (`run.benchmark`, eager fp32 at the
   batch size and the calibration's thread count) and judged again on their measured figures.
5. **Pareto front** of top-1 against latency over the models that fit, each figure marked measured or
   predicted; with `report_dir`, the store's report with the screening section.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .analysis.pareto import pareto_mask
from .analysis.select import Constraints
from .errors import UsageError
from .zoo import ModelSpec
from .zoo.timm_results import UNKNOWN

MIB = 2**20
RATE_MARGIN = 2.0  # the calibration's fastest operator rate times this bounds what the machine can do
# operator kinds whose FLOPs are arithmetic done: a view (`slice`, `reshape`, `transpose`) counts elements in
# no time at all, which would make the machine's "fastest rate" absurd
ARITHMETIC_KINDS = ("conv", "linear", "mm", "addmm", "bmm", "baddbmm", "matmul")
DEFAULT_TIME_BUDGET_S = 2.0  # per measured cell: a shortlist measurement, not a sweep


@dataclass(frozen=True)
class ScreenedModel:
    """One model of the screen and how far it went. `stage`: where it stopped: "not counted" (its library
    could not build it on the meta device), "screened out" (a cheap rule: weights, top-1, operations),
    "not predicted" (no calibration, or the calibration lacks its operator kinds), "predicted",
    "measured"."""

    model: str
    name: str
    family: str
    in_paper: bool
    stage: str
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str = UNKNOWN
    params: float | None = None
    macs: float | None = None  # per image, at the model's native input size
    input_size: int | None = None
    predicted_ms: float | None = None
    predicted_low_ms: float | None = None
    predicted_high_ms: float | None = None
    predicted_memory_mb: float | None = None
    measured_ms: float | None = None
    measured_memory_mb: float | None = None
    fits: bool = False
    why_not: str = ""
    on_front: bool = False

    @property
    def latency_ms(self) -> float | None:
        return self.measured_ms if self.measured_ms is not None else self.predicted_ms

    @property
    def latency_source(self) -> str:
        return "measured" if self.measured_ms is not None else "predicted" if self.predicted_ms is not None else ""

    @property
    def memory_mb(self) -> float | None:
        return self.measured_memory_mb if self.measured_memory_mb is not None else self.predicted_memory_mb

    @property
    def memory_source(self) -> str:
        return ("measured" if self.measured_memory_mb is not None else
                "predicted" if self.predicted_memory_mb is not None else "")

    @property
    def accuracy_known(self) -> bool:
        return self.top1 is not None


FRAME_COLUMNS = ("model", "name", "family", "in_paper", "stage", "fits", "on_front", "top1", "top5",
                 "accuracy_source", "latency_ms", "latency_source", "predicted_ms", "predicted_low_ms",
                 "predicted_high_ms", "measured_ms", "memory_mb", "memory_source", "predicted_memory_mb",
                 "measured_memory_mb", "params", "gmacs", "input_size", "why_not")
NUMERIC_COLUMNS = ("top1", "top5", "latency_ms", "predicted_ms", "predicted_low_ms", "predicted_high_ms", "measured_ms",
                   "memory_mb", "predicted_memory_mb", "measured_memory_mb", "params", "gmacs", "input_size")


@dataclass
class ScreenResult:
    """What a screen found. `models` holds every model the sources matched, in rank order (the ones that fit
    first), none dropped; `calibration` is None when machine M has no calibration (the screen stopped after
    complexity, `message` says so)."""

    constraints: Constraints
    models: list[ScreenedModel]
    calibration: Any = None  # predict.CalibrationKey
    measured_on: str | None = None  # this machine's id, where the shortlist was measured
    message: str = ""
    rules: list[str] = field(default_factory=list)  # the rules applied, in words
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    report: Path | None = None

    @property
    def stopped_after_complexity(self) -> bool:
        return self.calibration is None

    def by_stage(self, stage: str) -> list[ScreenedModel]:
        return [m for m in self.models if m.stage == stage]

    def fitting(self) -> list[ScreenedModel]:
        return [m for m in self.models if m.fits]

    def front(self) -> list[ScreenedModel]:
        """The Pareto front of top-1 against latency (measured where measured, else predicted), fastest
        first."""
        return sorted((m for m in self.models if m.on_front), key=lambda m: m.latency_ms or 0.0)

    def frame(self) -> pd.DataFrame:
        """One row per model (FRAME_COLUMNS), in rank order; figures missing are NaN."""
        rows = [{**{k: getattr(m, k) for k in FRAME_COLUMNS if k != "gmacs"},
                 "gmacs": m.macs / 1e9 if m.macs is not None else None} for m in self.models]
        frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        for column in NUMERIC_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        return frame


@dataclass(frozen=True)
class ScreenProgress:
    """Callbacks for whoever watches a screen (the CLI's progress bars); each is optional."""

    stage: Callable[[str], None] = lambda text: None
    profile_start: Callable[[int, int], None] = lambda total, reused: None
    profile_record: Callable[[Any], None] = lambda record: None
    predicted: Callable[[int, int], None] = lambda done, total: None
    sweep: Any = None  # a run.runner.Progress for the measurement of the shortlist


# --- accuracy ---------------------------------------------------------------------------------------


def reported_accuracy(spec: ModelSpec) -> tuple[float | None, float | None, str]:
    """(top-1, top-5, source) as published: the 2018-era figure of a seed model, else its weights' publisher's
    (timm's shipped results for timm models, torchvision's weights metadata); (None, None, "accuracy
    unknown") where there is none."""
    reported = spec.published_accuracy
    if reported is None:
        return None, None, UNKNOWN
    return reported.top1, reported.top5, reported.source


# --- stage 1: complexity and the cheap rules -----------------------------------------------------------


def _complexity(specs: list[ModelSpec], store, workers: int | None, progress: ScreenProgress,
                argv: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Counts of `specs` (stored ones reused) and the reasons of the ones that could not be counted."""
    from .run.zoo_profile import ProfileRequest, profile_models

    outcome = profile_models(specs, store, ProfileRequest(), workers=workers, argv=argv,
                             on_start=progress.profile_start, on_record=progress.profile_record)
    return outcome.counted, {f.model: f"{f.status}: {f.reason}" for f in outcome.failed}


def fastest_rate(store, key) -> tuple[float | None, str]:
    """The FLOP/s no forward pass on the calibrated machine can beat, and where it comes from: the machine's
    stored peak at this precision and thread count, or RATE_MARGIN x the fastest arithmetic operator
    (ARITHMETIC_KINDS) of its calibration,
    whichever is higher (None: neither is known)."""
    peak = store.peak(key.machine_id, key.device, key.precision, key.threads)
    rates = [row["features"].get("flops", 0) / row["seconds"] for row in
             store.calibration(key.machine_id, key.device, key.backend, key.precision, key.threads)
             if row["kind"].startswith(ARITHMETIC_KINDS) and row["seconds"] and row["features"].get("flops")]
    fastest = RATE_MARGIN * max(rates) if rates else None
    candidates = [(peak["peak_flops"], "the machine's stored peak")] if peak and peak.get("peak_flops") else []
    if fastest:
        candidates.append((fastest, f"{RATE_MARGIN:g} x its fastest calibrated convolution or matrix product"))
    if not candidates:
        return None, ""
    return max(candidates)


def cheap_violations(macs: float | None, param_bytes: float | None, top1: float | None, limits: Constraints,
                     rate: float | None) -> list[str]:
    """What rules out a model before any prediction: weights alone over the memory limit, a published top-1
    under the floor, operations alone over the latency limit (or under the throughput floor) at `rate`."""
    out = []
    if limits.max_memory_mb is not None and param_bytes and param_bytes / MIB > limits.max_memory_mb:
        out.append(f"weights alone {param_bytes / MIB:.0f} MB > {limits.max_memory_mb:g} MB")
    if limits.min_top1 is not None and top1 is not None and top1 < limits.min_top1:
        out.append(f"published top-1 {top1:.2f}% < {limits.min_top1:g}%")
    if rate and macs:
        floor_ms = 2 * macs * limits.batch_size / rate * 1e3
        if limits.max_latency_ms is not None and floor_ms > limits.max_latency_ms:
            out.append(f"operations alone take at least {floor_ms:.1f} ms > {limits.max_latency_ms:g} ms")
        if limits.min_images_per_s is not None and limits.batch_size / floor_ms * 1e3 < limits.min_images_per_s:
            out.append(f"operations alone allow at most {limits.batch_size / floor_ms * 1e3:.1f} images/s < "
                       f"{limits.min_images_per_s:g}")
    return out


# --- stage 2: prediction ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _fit(db: str, key) -> Any:
    from .predict.predictor import fit_calibration
    from .store import Store

    with Store(db, create=False) as store:
        return fit_calibration(store, key)


def _init_worker(db: str, key) -> None:
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    _WORKER.update(model=_fit(db, key), key=key)


def predict_spec(spec: ModelSpec, latency_model, key, batch_size: int) -> tuple[Any, str]:
    """One model's Prediction, without its model-level band (or None and why not): `predict`'s path, the model
    built once and not kept (a zoo does not fit in memory)."""
    from .predict import MissingOperatorKinds
    from .predict.predictor import CalibratedPredictor

    try:
        return CalibratedPredictor(key, latency_model, keep_models=False).predict(spec, batch_size), ""
    except MissingOperatorKinds as exc:
        kinds = str(exc).split("operator kind(s) ", 1)[-1].split(" that", 1)[0]
        return None, f"the calibration has no timings of operator kind(s) {kinds}"
    except Exception as exc:  # a model the tracer cannot follow is that model's result, not the screen's end
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"could not be traced: {type(exc).__name__}: {first}"[:300]


def _predict_in_worker(spec: ModelSpec, batch_size: int) -> tuple[str, Any, str]:
    prediction, why = predict_spec(spec, _WORKER["model"], _WORKER["key"], batch_size)
    return spec.id, prediction, why


def predict_all(specs: Sequence[ModelSpec], db: str | Path, key, batch_size: int, workers: int,
                on_done: Callable[[int, int], None] = lambda done, total: None) -> dict[str, tuple[Any, str]]:
    """Predictions of `specs` on the calibration `key`: in `workers` spawned processes that fit the regressors
    once each (0: in this process). A pool that breaks (a worker killed) leaves the rest to this process. Each
    prediction's interval gets its model-level band as `predict` gives it (`add_model_bands`: from the other
    models measured on the machine at this batch size where the store holds enough, else the validation's)."""
    from .predict.predictor import add_model_bands, measured_cells
    from .store import Store

    results: dict[str, tuple[Any, str]] = {}
    total = len(specs)
    if workers > 0 and total > 1:
        import multiprocessing

        try:
            with ProcessPoolExecutor(min(workers, total), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(str(db), key)) as pool:
                futures = [pool.submit(_predict_in_worker, spec, batch_size) for spec in specs]
                for future in as_completed(futures):
                    model, prediction, why = future.result()
                    results[model] = (prediction, why)
                    on_done(len(results), total)
        except BrokenProcessPool:
            pass  # the models not predicted yet are predicted below, in this process
    rest = [s for s in specs if s.id not in results]
    if rest:
        latency_model = _fit(str(db), key)
        for spec in rest:
            results[spec.id] = predict_spec(spec, latency_model, key, batch_size)
            on_done(len(results), total)
    with Store(db, create=False) as store:
        measured = measured_cells(store, key, [s.id for s in specs])
    predicted = [replace(p, measured_s=measured.get((p.model, batch_size, p.input_size), (None,))[0])
                 for p, _ in results.values() if p is not None]
    for p in add_model_bands(predicted):
        results[p.model] = (p, "")
    return results


def predicted_violations(low_s: float, memory_bytes: int | None, limits: Constraints) -> list[str]:
    """The limits a prediction misses even at its interval's favourable end (low end of latency)."""
    out = []
    low_ms = low_s * 1e3
    if limits.max_latency_ms is not None and low_ms > limits.max_latency_ms:
        out.append(f"predicted latency at least {low_ms:.1f} ms > {limits.max_latency_ms:g} ms")
    if limits.min_images_per_s is not None and low_s > 0 and limits.batch_size / low_s < limits.min_images_per_s:
        out.append(f"predicted at most {limits.batch_size / low_s:.1f} images/s < {limits.min_images_per_s:g}")
    if limits.max_memory_mb is not None and memory_bytes and memory_bytes / MIB > limits.max_memory_mb:
        out.append(f"predicted memory {memory_bytes / MIB:.0f} MB > {limits.max_memory_mb:g} MB")
    return out


def measured_violations(latency_ms: float | None, memory_mb: float | None, limits: Constraints) -> list[str]:
    out = []
    if latency_ms is None:
        return ["no measured latency"]
    if limits.max_latency_ms is not None and latency_ms > limits.max_latency_ms:
        out.append(f"measured latency {latency_ms:.1f} ms > {limits.max_latency_ms:g} ms")
    if limits.min_images_per_s is not None and limits.batch_size / latency_ms * 1e3 < limits.min_images_per_s:
        out.append(f"measured {limits.batch_size / latency_ms * 1e3:.1f} images/s < {limits.min_images_per_s:g}")
    if limits.max_memory_mb is not None and memory_mb is not None and memory_mb > limits.max_memory_mb:
        out.append(f"measured memory {memory_mb:.0f} MB > {limits.max_memory_mb:g} MB")
    return out


# --- ranking and the front -------------------------------------------------------------------------------


def rank_key(m: ScreenedModel) -> tuple:
    """Models that fit first; then published top-1, best first (accuracy unknown last); then the fastest."""
    latency = m.latency_ms if m.latency_ms is not None else math.inf
    return (not m.fits, m.top1 is None, -(m.top1 or 0.0), latency, m.model)


def mark_front(models: list[ScreenedModel]) -> list[ScreenedModel]:
    """`on_front` for the models that fit, have a published top-1 and a latency, and that no other such model
    beats on both (more accurate and faster)."""
    eligible = [m for m in models if m.fits and m.top1 is not None and m.latency_ms is not None]
    if not eligible:
        return [replace(m, on_front=False) for m in models]
    frame = pd.DataFrame({"latency": [m.latency_ms for m in eligible], "top1": [m.top1 for m in eligible]})
    front = {m.model for m, on in zip(eligible, pareto_mask(frame, "latency", "top1")) if on}
    return [replace(m, on_front=m.model in front) for m in models]


# --- the screen ----------------------------------------------------------------------------------------


def screen(sources: Sequence[str], db: str | Path, *, suite: str | None = None, machine: str | None = None,
           constraints: Constraints = Constraints(), top: int = 10, threads: int | None = None,
           device: str = "cpu", backend: str = "eager", precision: str = "fp32", measure: bool = True,
           time_budget_s: float = DEFAULT_TIME_BUDGET_S, workers: int | None = None,
           report_dir: str | Path | None = None, progress: ScreenProgress = ScreenProgress(),
           argv: Sequence[str] = ("dnnbench.screen",)) -> ScreenResult:
    """Screen every model `sources` name (names, fnmatch patterns such as `timm:*`) for the limits of
    `constraints` on machine `machine` (an id prefix or host name of a calibrated machine; None: this machine
    or the only one calibrated), measure the best `top` here, and return every model with how far it went.
    `threads`: the calibration's thread count (None: the only one calibrated), also the thread count the
    shortlist is measured at. `workers`: processes for counting and predicting (None: the usable cores; 0:
    all in this process). `report_dir`: write the store's report there, with the screening section."""
    from .predict.predictor import resolve_calibration
    from .run.zoo_profile import usable_cores
    from .store import Store
    from .zoo import resolve_models

    if top < 1:
        raise UsageError(f"--top must be positive, not {top}")
    if constraints.max_joules_per_image is not None:
        raise UsageError("screen cannot predict energy; drop --max-joules-per-image, or measure energy with "
                         "`dnnbench run --metrics energy` and use `dnnbench select`")
    if not time_budget_s > 0:
        raise UsageError(f"--time-budget must be positive (seconds), not {time_budget_s}")
    if not sources and not suite:
        raise UsageError("name at least one source or model to screen, e.g. 'timm:*' or 'torchvision:*'")
    started = time.perf_counter()
    progress.stage(f"resolving {' '.join([*sources, *([f'suite {suite}'] if suite else [])])}")
    specs = resolve_models(tuple(sources), suite)
    seconds: dict[str, float] = {"resolve": time.perf_counter() - started}
    pool_size = usable_cores() if workers is None else workers
    result = ScreenResult(constraints, [])
    with Store(db) as store:
        # stage 1: complexity (counted once, kept in the store)
        mark = time.perf_counter()
        progress.stage(f"counting {len(specs)} models")
        counts, not_counted = _complexity(specs, store, min(pool_size, len(specs)), progress, argv)
        seconds["complexity"] = time.perf_counter() - mark
        try:
            key = resolve_calibration(store, machine, device, backend, precision, threads)
        except UsageError as exc:
            key, why_no_calibration = None, str(exc)
        rate, rate_source = fastest_rate(store, key) if key is not None else (None, "")
    rules = ["weights alone (parameter bytes) over --max-memory-mb: screened out",
             "published top-1 under --min-top1: screened out; no published top-1: kept, marked accuracy unknown"]
    if rate:
        rules.append(f"2 x MACs x batch / {rate / 1e9:.1f} GFLOP/s ({rate_source}) over --max-latency-ms: "
                     "screened out before prediction")
    models: list[ScreenedModel] = []
    survivors: list[ModelSpec] = []
    for spec in specs:
        top1, top5, source = reported_accuracy(spec)
        base = ScreenedModel(spec.id, spec.display_name, spec.family, spec.in_paper, "counted", top1, top5, source,
                             input_size=spec.input_size)
        count = counts.get(spec.id)
        if count is None:
            models.append(replace(base, stage="not counted", why_not=not_counted.get(spec.id, "not counted")))
            continue
        base = replace(base, params=count.params, macs=count.per_image("macs", 1))
        cheap = cheap_violations(base.macs, count.param_bytes, top1, constraints, rate)
        if cheap:
            models.append(replace(base, stage="screened out", why_not="; ".join(cheap)))
        else:
            models.append(base)
            survivors.append(spec)
    result.rules = rules
    if key is None:
        result.models = sorted([replace(m, stage="not predicted", fits=False,
                                        why_not="no calibration of the machine")
                                if m.stage == "counted" else m for m in models], key=rank_key)
        result.message = (f"stopped after complexity-based filtering: {why_no_calibration}. {len(survivors)} of "
                          f"{len(specs)} models pass the limits that need no calibration; calibrate the machine "
                          "(`dnnbench calibrate --quick` there, then `dnnbench merge` its store into this one) "
                          "to predict and measure them")
        result.seconds = {**seconds, "total": time.perf_counter() - started}
        return _finish(result, db, report_dir, constraints)
    result.calibration = key
    rules.append("predicted: kept while the 5-95% interval's low end meets --max-latency-ms (high end of "
                 "throughput for --min-fps); memory: the analytic estimate against --max-memory-mb")

    # stage 2: prediction of the survivors
    mark = time.perf_counter()
    progress.stage(f"predicting {len(survivors)} models on {key.describe()}")
    predictions = predict_all(survivors, db, key, constraints.batch_size, min(pool_size, len(survivors)),
                              progress.predicted) if survivors else {}
    seconds["predict"] = time.perf_counter() - mark
    judged = []
    for m in models:
        if m.stage != "counted":
            judged.append(m)
            continue
        prediction, why = predictions[m.model]
        if prediction is None:
            judged.append(replace(m, stage="not predicted", why_not=why))
            continue
        high = prediction.high * 1e3 if math.isfinite(prediction.high) else None
        memory = prediction.memory_bytes / MIB if prediction.memory_bytes else None
        missed = predicted_violations(prediction.low, prediction.memory_bytes, constraints)
        judged.append(replace(m, stage="predicted", predicted_ms=prediction.seconds * 1e3,
                              predicted_low_ms=prediction.low * 1e3, predicted_high_ms=high,
                              predicted_memory_mb=memory, fits=not missed, why_not="; ".join(missed)))
    judged.sort(key=rank_key)

    # stage 4: the best `top` measured here
    shortlist = [m for m in judged if m.fits][:top] if measure else []
    if shortlist:
        mark = time.perf_counter()
        progress.stage(f"measuring {len(shortlist)} models on this machine")
        measured, result.measured_on = measure_here([m.model for m in shortlist], db, constraints.batch_size,
                                                    key.threads, time_budget_s, progress.sweep)
        seconds["measure"] = time.perf_counter() - mark
        chosen = {m.model for m in shortlist}
        judged = [_with_measurement(m, measured.get(m.model), constraints) if m.model in chosen else m
                  for m in judged]
        judged.sort(key=rank_key)
    result.models = mark_front(judged)
    result.seconds = {**seconds, "total": time.perf_counter() - started}
    return _finish(result, db, report_dir, constraints)


def _with_measurement(m: ScreenedModel, measured: tuple[float | None, float | None, str] | None,
                      limits: Constraints) -> ScreenedModel:
    if measured is None:
        return replace(m, fits=False, why_not="not measured (no result came back)")
    latency_ms, memory_mb, failure = measured
    if failure:
        return replace(m, stage="measured", fits=False, why_not=f"measurement failed: {failure}")
    missed = measured_violations(latency_ms, memory_mb, limits)
    return replace(m, stage="measured", measured_ms=latency_ms, measured_memory_mb=memory_mb, fits=not missed,
                   why_not="; ".join(missed))


def measure_here(models: list[str], db: str | Path, batch_size: int, threads: int, time_budget_s: float,
                 progress: Any = None) -> tuple[dict[str, tuple[float | None, float | None, str]], str]:
    """Eager fp32 time and memory of `models` at one batch size and thread count on this machine, through
    `run.benchmark` (cells the store has are not measured again): model -> (latency ms, memory MB, failure)."""
    from .analysis import load_frames, performance
    from .run import benchmark

    summary = benchmark(models, db=db, device="cpu", backends="eager", precisions="fp32", batch_sizes=(batch_size,),
                        threads=(threads,), metrics=("time", "memory"), time_budget_s=time_budget_s,
                        measure_peak=False, progress=progress)
    perf = performance(load_frames(db))
    rows = perf[(perf["machine_id"] == summary.machine_id) & perf["model"].isin(models)
                & (perf["batch_size"] == batch_size) & (perf["backend"] == "eager") & (perf["dtype"] == "fp32")
                & (pd.to_numeric(perf["threads"], errors="coerce") == threads)]
    found: dict[str, tuple[float | None, float | None, str]] = {}
    for row in rows.itertuples(index=False):
        latency = None if pd.isna(row.latency_ms) else float(row.latency_ms)
        memory = None if pd.isna(row.memory_mb) else float(row.memory_mb)
        failure = "" if row.status == "ok" else f"{row.status}" + (
            f" ({str(row.error).splitlines()[0][:160]})" if isinstance(row.error, str) and row.error else "")
        found[row.model] = (latency, memory, failure)
    return found, summary.machine_id


def _finish(result: ScreenResult, db: str | Path, report_dir: str | Path | None,
            constraints: Constraints) -> ScreenResult:
    if report_dir is not None:
        from .report import ReportOptions, build_report

        built = build_report(db, report_dir, ReportOptions(batch_size=constraints.batch_size,
                                                           title="dnnbench screen"),
                             screening=screening_table(result))
        result.report = built.index
    return result


def screening_table(result: ScreenResult) -> tuple[pd.DataFrame, str]:
    """The screen as the report's screening section takes it: its frame and a one-paragraph summary."""
    key = result.calibration
    where = key.describe() if key is not None else "no calibrated machine"
    counts = pd.Series([m.stage for m in result.models]).value_counts()
    summary = (f"{len(result.models)} models screened for {result.constraints.describe()} on {where}: "
               + ", ".join(f"{int(n)} {stage}" for stage, n in counts.items())
               + f"; {len(result.fitting())} fit. " + (result.message + ". " if result.message else "")
               + "Rules: " + "; ".join(result.rules) + ".")
    return result.frame(), summary


__all__ = ["ScreenProgress", "ScreenResult", "ScreenedModel", "cheap_violations", "fastest_rate", "mark_front",
           "measure_here", "predict_all", "predict_spec", "rank_key", "reported_accuracy", "screen",
           "screening_table"]
