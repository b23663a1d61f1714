"""Trials: a time cell measured in several fresh worker processes, every trial kept in its value.

The worker measures one trial and knows nothing of the others; the runner folds each new trial into the
stored value (`add_trial`) the moment it arrives, so that a sweep stopped between trials resumes with the
next one (`stored_trials` says how many a stored cell has). The headline becomes the median over trial
medians, with a t-interval over them (measure.stats.trials_interval), which carries the between-process
variance a single process cannot see.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

from ..measure.stats import trials_interval
from ..store import ResultRecord
from ..store.values import IntervalInfo, TimeValue, TrialSummary


def trial_of(value: TimeValue) -> TrialSummary:
    """One worker's measurement as a trial (values of any layout: an old cell is one trial)."""
    st = value.stats
    low, high, method = value.within_trial_ci
    return TrialSummary(
        median_s=value.median_s if value.median_s is not None else (st.median if st else None),
        n=value.sample_count, ci_low=low, ci_high=high, ci_method=method or None, stop_reason=value.stop_reason,
        converged=value.converged, contended=bool(value.contention and value.contention.contended),
        timed_s=value.timed_s, sustained_images_per_s=value.sustained_images_per_s or _sustained(value),
        samples_s=value.samples_s)


def stored_trials(record: ResultRecord | None) -> int:
    """How many trials a stored time cell has: 0 unless it is `ok`; an old single-trial cell has one."""
    if record is None or record.status != "ok" or not isinstance(record.values, TimeValue):
        return 0
    return record.values.trial_count


def add_trial(stored: TimeValue | None, new: TimeValue, ci_level: float = 0.95) -> TimeValue:
    """`new` (one worker's trial) folded into `stored` (the cell so far, or None for its first trial). The
    deployment facts (set-up, output check, backend) stay those of the first trial; the figures are recomputed
    over all trials."""
    trials = tuple(stored.trials or (trial_of(stored),)) if stored is not None else ()
    trials += tuple(new.trials) if new.trials else (trial_of(new),)
    base = stored if stored is not None else new
    medians = [t.median_s for t in trials if t.median_s is not None]
    if not medians:
        return replace(base, trials=trials)
    headline = trials_interval(medians, ci_level)
    within = [(t.ci_high - t.ci_low) / 2 / t.median_s for t in trials
              if t.ci_low is not None and t.ci_high is not None and t.median_s]
    if headline.k >= 2:
        interval = IntervalInfo(level=ci_level, low_s=headline.low, high_s=headline.high, method=headline.method,
                                trials=headline.k, between_cv=headline.between_cv,
                                within_rel=statistics.median(within) if within else None)
    else:  # one trial: its within-trial interval is all there is
        only = trials[0]
        interval = IntervalInfo(level=ci_level, low_s=only.ci_low, high_s=only.ci_high, method=only.ci_method,
                                trials=1, within_rel=within[0] if within else None)
    batch = base.batch_size or 1
    images = sum(batch * (t.n or 0) for t in trials)
    timed = sum(t.timed_s or 0.0 for t in trials)
    reasons = sorted({t.stop_reason for t in trials if t.stop_reason})
    median = headline.median
    return replace(
        base, trials=trials, interval=interval, median_s=median,
        ms_per_image=median / batch * 1e3, images_per_s=batch / median if median > 0 else None,
        sustained_images_per_s=images / timed if timed > 0 else None,
        converged=all(bool(t.converged) for t in trials),
        stop_reason=reasons[0] if len(reasons) == 1 else "mixed: " + "/".join(reasons) if reasons else None,
        timed_s=timed)


def _sustained(value: TimeValue) -> float | None:
    n, timed = value.sample_count, value.timed_s
    if not n or not timed or not math.isfinite(timed):
        return None
    return (value.batch_size or 1) * n / timed
