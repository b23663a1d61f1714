"""Peaks in the store: the device's peak FLOP/s per precision and thread count, measured once per machine.
env.peak estimates (and never touches the store); this module decides when to measure and what the store
keeps, as `PeakValue`s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..env.peak import DEFAULT_SECONDS, PeakEstimate, estimate_peak, normalise_device, normalise_precision, resolve_threads
from ..store import Store
from ..store.values import PeakValue


def peak_value(estimate: PeakEstimate) -> PeakValue:
    return PeakValue.from_dict(estimate.to_dict())


def stored_peak(store: Store, machine_id: str, device: str, precision: str, threads: int) -> PeakValue | None:
    """The estimate the store holds for (machine, device, precision, threads), if any."""
    stored = store.peak(machine_id, device, precision, threads)
    return PeakValue.from_dict(stored["estimate"]) if stored is not None else None


def ensure_peak(store: Store, machine_id: str, device: str = "cpu", precision: str = "fp32",
                threads: int | None = None, seconds: float = DEFAULT_SECONDS, force: bool = False,
                remeasure_contended: bool = True) -> PeakValue:
    """The stored peak of (machine, device, precision, threads); measured and stored first if there is none.

    `threads` None means PyTorch's current intra-op thread count (CPU); ignored on other devices. The machine
    must be registered in the store. Measuring takes about `seconds` plus a short copy. A stored estimate measured
    while other processes used the CPU is measured again (`remeasure_contended`), and the new one replaces it
    unless it is itself contended and lower (contention only ever lowers a measured rate). `force` always
    measures and stores.
    """
    device, precision = normalise_device(device), normalise_precision(precision)
    used = resolve_threads(device, threads)
    old = stored_peak(store, machine_id, device, precision, used)
    if old is not None and not force and not (remeasure_contended and old.contended):
        return old
    estimate = peak_value(estimate_peak(device, precision, used or None, seconds))
    if force:
        store.put_peak(machine_id, estimate.to_dict())
        return estimate
    return _keep_better(store, machine_id, estimate)[0]


def _keep_better(store: Store, machine_id: str, estimate: PeakValue) -> tuple[PeakValue, bool]:
    """Store `estimate` unless it was measured under contention and the stored one of the same (device, precision,
    threads) is higher (contention only ever lowers a measured rate). Returns the estimate the store keeps, and
    whether it is the new one."""
    old = stored_peak(store, machine_id, estimate.device, estimate.precision, estimate.threads or 0)
    if old is not None and estimate.contended and (old.peak_flops or 0.0) > (estimate.peak_flops or 0.0):
        return old, False
    store.put_peak(machine_id, estimate.to_dict())
    return estimate, True


def keep_better(store: Store, machine_id: str, estimate: PeakEstimate | PeakValue) -> PeakValue:
    """`estimate` stored unless a higher one measured without contention is there already; returns what is kept."""
    return _keep_better(store, machine_id, estimate if isinstance(estimate, PeakValue) else peak_value(estimate))[0]


def keep_estimates(db: str | Path, estimates: Sequence[PeakEstimate]) -> tuple[str, list[tuple[PeakValue, bool]]]:
    """`dnnbench peak`: register this machine in the store at `db` and keep each estimate there (keep_better).
    Returns the machine's id and, per estimate, the one the store keeps and whether it is the new one."""
    from ..env import collect_machine

    machine = collect_machine()
    with Store(db) as store:
        store.register_machine(machine.machine_id, machine.to_dict())
        return machine.machine_id, [_keep_better(store, machine.machine_id, peak_value(e)) for e in estimates]
