"""`dnnbench calibrate --executor ray`: the calibration on every node of each kind of a Ray cluster, like a sweep.

The driver picks the nodes as a sweep does (`RayExecutor.targets`: the kinds asked for with `--on`, the nodes
that lend the device to timing) and samples the operators once (meta-device traces do not depend on the
hardware). Each node then times the same items in a Ray task that holds its timing slot for the device, so a
calibration never shares a node with a timed job of a sweep, and the task times them exactly as `dnnbench
calibrate` does on a machine: `WorkerTimer`, isolated `python -m dnnbench.run.calibrate_worker` processes, one time
budget. Each node's calibration is stored under that node's machine id (the fingerprint taken on the node),
replacing an earlier calibration of the same configuration there. A node that fails or is lost costs its own
calibration only; the others are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .calibrate import (
    CalibrationConfig,
    CalibrationItem,
    CalibrationSummary,
    WorkerTimer,
    calibration_items,
    keep_calibration,
)


@dataclass(frozen=True)
class NodeCalibration:
    """The outcome on one node: its summary, or why it has none."""

    machine_id: str
    where: str  # the node's name or address
    summary: CalibrationSummary | None
    error: str = ""


def calibrate_on_ray(db: str | Path, config: CalibrationConfig, executor) -> list[NodeCalibration]:
    """Calibrate every node of `executor`'s kinds (a `RayExecutor`) for `config`; keep each in the store at `db`.
    The executor is closed afterwards."""
    from .config import Scope, SweepConfig
    from .ray_executor import import_ray

    ray = import_ray()
    try:
        scope = Scope(device=executor.resolve_device(config.device), metrics=("time",))
        targets = executor.targets(SweepConfig(scope=scope))  # the nodes, checked before anything is traced
        machines = list({m.machine_id: m for target in targets for m in target.machines}.values())
        started = time.perf_counter()
        items, population = calibration_items(config)
        remote = ray.remote(_time_on_node)
        refs = [remote.options(**executor.timed_task_options(m.machine_id)).remote(items, config) for m in machines]
        outcomes = []
        for machine, ref in zip(machines, refs):
            try:
                times = ray.get(ref)
            except ray.exceptions.RayError as exc:
                last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:500]
                outcomes.append(NodeCalibration(machine.machine_id, machine.where, None,
                                                f"not calibrated: {type(exc).__name__}: {last}"))
                continue
            summary = keep_calibration(db, config, items, times, machine.machine_id, dict(machine.fingerprint),
                                       len(population.calls), started)
            outcomes.append(NodeCalibration(machine.machine_id, machine.where, summary))
        return outcomes
    finally:
        executor.close()


def _time_on_node(items: Sequence[CalibrationItem], config: CalibrationConfig) -> list:
    """On the node: the items timed in isolated worker processes, with the node's own thread settings."""
    from .ray_executor import _restore_worker_environment

    _restore_worker_environment()
    return WorkerTimer()(items, config)
