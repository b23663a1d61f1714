"""Sweeps over a Ray cluster: each job on a node of the kind asked for, never beside another timed job.

Nodes say what they are, and which devices they lend to timing, with Ray custom resources (labels work
too where Ray has them, `ray start --labels machine=xeon`):

    ray start --head --resources '{"dnnbench_slot_cpu": 1, "machine=xeon": 1}'
    ray start --address HEAD:6379 --resources '{"dnnbench_slot_cpu": 1, "dnnbench_slot_cuda:0": 1, "gpu=H100": 1}'

A kind is a set of KEY=VALUE tags (`--on machine=xeon`, `--on gpu=H100,machine=dgx`); a node is of that
kind when it has every tag, as a label or as a resource named `KEY=VALUE`. Each `--on` is one target:
the sweep's cells are measured once on some node of each kind (none given: once on any node with a
slot). `dnnbench_slot_DEVICE: 1` is the node's one benchmark slot for that device: a job that times
anything on DEVICE holds it for the whole job, so two timed jobs never share a device; complexity-only
jobs time nothing and need no slot (they still keep off a node while it times, whose CPU they would
disturb).

The driver schedules: it fingerprints every node of the requested kinds once (`collect_machine()` run on
the node; a node named with the tag `dnnbench_node=NAME` gets that name in its machine identity, which
tells apart nodes sharing one host), sends each job to a chosen node (node affinity plus the slot
resource, so that another driver sharing the cluster waits for the slot too), and reads the job's
results back as they come (a Ray streaming generator). On the node the job runs in a `LocalExecutor`,
so a crash, an out-of-memory or a timeout there is recorded exactly as locally. A node lost mid-job
(killed, disconnected) gets the job's unfinished cells re-queued once on another node of the same kind;
where there is none, or it is lost again, those cells are stored as `lost` (re-measured with
--retry-failed).

Ray is imported only when a `RayExecutor` is made: the package works without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..devices import spell_device
from ..errors import UsageError
from ..store import ResultRecord
from .config import SweepConfig
from .executor import Executor, LocalExecutor, MachineInfo, Placed, PlacedEvent, PlacedRecord, Target
from .plan import Cell, WorkerJob
from .worker import record

SLOT_PREFIX = "dnnbench_slot_"
NODE_NAME_KEY = "dnnbench_node"
INSTALL_HINT = 'pip install "dnnbench[ray]"'
CONNECT_TIMEOUT_S = 5.0
FINGERPRINT_TIMEOUT_S = 180.0  # a node's first task imports PyTorch
CANCEL_GRACE_S = 15.0
# what Ray changes in its workers' environment and a benchmark worker must not inherit
RAY_WORKER_ENV = ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, on this machine and on every node of the cluster: "
                         f"{INSTALL_HINT}") from None
    return ray


def slot_resource(device: str) -> str:
    """The custom resource a node lends `device` to timing with: dnnbench_slot_cpu, dnnbench_slot_cuda:0."""
    return SLOT_PREFIX + device


def node_machine_id(base_machine_id: str, node_name: str | None) -> str:
    """A node's machine id: its hardware's, told apart by the node's dnnbench_node name when it has one."""
    if not node_name:
        return base_machine_id
    return hashlib.sha256(json.dumps([base_machine_id, node_name]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Kind:
    """A kind of node: every KEY=VALUE tag must be the node's (as a label, or a resource named KEY=VALUE)."""

    tags: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.tags) or "any"

    def matches(self, node: _Node) -> bool:
        return all(node.offers(k, v) for k, v in self.tags)


def parse_kind(text: str) -> Kind:
    """`machine=jetson-orin` or `gpu=H100,machine=dgx` (all of them)."""
    tags = []
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not (equals and key and value):
            raise UsageError(f"--on takes KEY=VALUE tags, several joined with commas (e.g. machine=jetson-orin "
                             f"or gpu=H100,machine=dgx), not {text!r}")
        tags.append((key, value))
    return Kind(tuple(sorted(set(tags))))


@dataclass(eq=False)
class _Node:
    """One node of the cluster as the driver sees it, with the jobs this driver runs there."""

    node_id: str
    address: str
    resources: dict[str, float]
    labels: dict[str, str]
    order: int = 0
    alive: bool = True
    label: str = ""  # its name in progress and messages
    machine: MachineInfo | None = None
    timed: int = 0  # jobs of ours holding its slot
    untimed: int = 0  # complexity-only jobs of ours

    @classmethod
    def from_ray(cls, info: dict[str, Any], order: int) -> _Node:
        return cls(info["NodeID"], str(info.get("NodeManagerAddress") or info.get("NodeName") or "?"),
                   dict(info.get("Resources") or {}), {str(k): str(v) for k, v in (info.get("Labels") or {}).items()},
                   order, bool(info.get("Alive")))

    def offers(self, key: str, value: str) -> bool:
        return self.labels.get(key) == value or self.resources.get(f"{key}={value}", 0) > 0

    @property
    def name(self) -> str | None:
        if self.labels.get(NODE_NAME_KEY):
            return self.labels[NODE_NAME_KEY]
        prefix = NODE_NAME_KEY + "="
        return next((r[len(prefix):] for r, n in sorted(self.resources.items()) if r.startswith(prefix) and n > 0), None)

    def tags(self) -> list[str]:
        labels = {f"{k}={v}" for k, v in self.labels.items() if not k.startswith("ray.io/") and k != NODE_NAME_KEY}
        resources = {r for r, n in self.resources.items()
                     if "=" in r and n > 0 and not r.startswith(NODE_NAME_KEY + "=")}
        return sorted(labels | resources)

    def slots(self) -> list[str]:
        return sorted(r[len(SLOT_PREFIX):] for r, n in self.resources.items() if r.startswith(SLOT_PREFIX) and n >= 1)

    @property
    def has_gpu(self) -> bool:
        return self.resources.get("GPU", 0) > 0 or any(not slot.startswith("cpu") for slot in self.slots())

    @property
    def cpus(self) -> int:
        return max(1, int(self.resources.get("CPU", 1)))

    def describe(self) -> str:
        name = f"{self.name} at {self.address}" if self.name else self.address
        return f"{name} (tags: {', '.join(self.tags()) or 'none'}; slots: {', '.join(self.slots()) or 'none'})"

    def can_take(self, timed: bool) -> bool:
        if not self.alive or self.timed:
            return False
        return self.untimed == 0 if timed else self.untimed < self.cpus


@dataclass(eq=False)
class _Work:
    """A job waiting for a node: the cells still to measure, how often it was lost, where not to go."""

    placed: Placed
    job: WorkerJob
    tries: int = 0
    avoid: frozenset[str] = frozenset()
    lost_on: _Node | None = None
    reason: str = ""

    @property
    def timed(self) -> bool:
        return any(c.metric != "complexity" for c in self.job.cells)


@dataclass(eq=False)
class _Attempt:
    work: _Work
    node: _Node
    pending: dict[str, Cell] = field(default_factory=dict)


class RayExecutor(Executor):
    """Runs a sweep's jobs on the nodes of a Ray cluster, several at once (see the module's doc)."""

    name = "ray"
    measures_here = False

    def __init__(self, address: str | None = "auto", on: Sequence[str] = (), *, retries: int = 1,
                 poll_s: float = 0.1, refresh_s: float = 2.0, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self._ray = import_ray()
        self.address = (address or "auto").strip()
        kinds = [parse_kind(text) for text in on] or [Kind()]
        self.kinds = list({k.name: k for k in kinds}.values())
        self.retries, self.poll_s, self.refresh_s, self.connect_timeout_s = retries, poll_s, refresh_s, connect_timeout_s
        self._connected_here = False
        self._targets: list[Target] | None = None
        self._targets_key: tuple | None = None
        self._nodes: dict[str, _Node] = {}
        self._kind_nodes: dict[str, list[_Node]] = {}
        self._slot = slot_resource("cpu")
        self._running: dict[Any, _Attempt] = {}
        self._last_refresh = 0.0

    @staticmethod
    def resolve_device(name: str) -> str:
        """The device on the nodes, spelt as their slots are: this machine's devices do not matter."""
        return spell_device(name)

    # --- the cluster -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster (unless this process already has): a clear error within seconds when no
        cluster answers at the address."""
        ray = self._ray
        if ray.is_initialized():
            return
        address, probe = self._resolve_address()
        host, _, port = probe.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self.connect_timeout_s):
                pass
        except (OSError, ValueError) as exc:
            raise UsageError(f"no Ray cluster answers at {probe} ({exc.strerror or exc}); start one with "
                             f"`ray start --head` (docs/SCALE-OUT.md) or give --address HOST:PORT") from None
        try:
            ray.init(address=address, namespace="dnnbench", log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"could not join the Ray cluster at {address}: {exc}") from None
        self._connected_here = True

    def _resolve_address(self) -> tuple[str, str]:
        """(what ray.init gets, the HOST:PORT to check first)."""
        address = self.address
        if address.startswith("ray://"):
            return address, address[len("ray://"):].rstrip("/")
        if address == "auto":
            try:
                from ray._private.services import canonicalize_bootstrap_address

                found = canonicalize_bootstrap_address("auto")
            except ImportError:
                found = os.environ.get("RAY_ADDRESS") or None
            except Exception:  # noqa: BLE001 - Ray says "no running instance" in several ways
                found = None
            if not found:
                raise UsageError("no Ray cluster found from this machine (--address auto): start one with "
                                 "`ray start --head` (docs/SCALE-OUT.md), or give --address HOST:PORT")
            return found, found
        if ":" not in address:
            raise UsageError(f"a Ray address is auto, HOST:PORT or ray://HOST:PORT, not {address!r}")
        return address, address

    def _alive_nodes(self) -> list[_Node]:
        return [_Node.from_ray(info, i) for i, info in enumerate(self._ray.nodes()) if info.get("Alive")]

    def targets(self, config: SweepConfig) -> list[Target]:
        """One target per kind asked for: its nodes (those lending config.device to timing when the sweep
        times anything), each fingerprinted on the node. Resume counts a cell as done for a kind when any of
        its nodes' machines has it."""
        device = config.scope.device
        needs_slot = any(m != "complexity" for m in config.scope.metrics)
        key = (device, needs_slot)
        if self._targets is not None and self._targets_key == key:
            return self._targets
        self.connect()
        self._slot = slot_resource(device)
        nodes = self._alive_nodes()
        kind_nodes: dict[str, list[_Node]] = {}
        for kind in self.kinds:
            matching = [n for n in nodes if kind.matches(n)]
            eligible = [n for n in matching if not needs_slot or n.resources.get(self._slot, 0) >= 1]
            if not eligible:
                raise UsageError(self._no_node_message(kind, matching, nodes, device, needs_slot))
            kind_nodes[kind.name] = eligible
        chosen = {n.node_id: n for ns in kind_nodes.values() for n in ns}
        self._identify(list(chosen.values()))
        by_machine: dict[str, list[_Node]] = {}
        for node in chosen.values():
            by_machine.setdefault(node.machine.machine_id, []).append(node)
        twins = [ns for ns in by_machine.values() if len(ns) > 1]
        if twins:
            listed = "; ".join(" and ".join(n.describe() for n in ns) for ns in twins)
            raise UsageError(f"several nodes are one machine (same fingerprint): {listed}. Timed jobs on them would "
                             f"share the hardware; lend the slot on one node per machine only, or (on purpose) name "
                             f"each node with the resource {NODE_NAME_KEY}=NAME")
        self._nodes, self._kind_nodes = chosen, kind_nodes
        self._targets = [Target(kind.name, tuple(n.machine for n in kind_nodes[kind.name])) for kind in self.kinds]
        self._targets_key = key
        return self._targets

    def timed_task_options(self, machine_id: str) -> dict[str, Any]:
        """Ray task options that run a timed task (not a sweep's job: a calibration) on the node of `machine_id`,
        one of `targets`' machines, holding the node's slot for the device as a timed job does."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = next((n for n in self._nodes.values() if n.machine and n.machine.machine_id == machine_id), None)
        if node is None:
            raise ValueError(f"machine {machine_id} is no node of this executor's targets; call targets() first")
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False), "num_cpus": 0,
                "resources": {self._slot: 1}, "max_retries": 0}

    def _no_node_message(self, kind: Kind, matching: list[_Node], nodes: list[_Node], device: str,
                         needs_slot: bool) -> str:
        cluster = f"the Ray cluster at {self.address}"
        slot = slot_resource(device)
        if matching and needs_slot:
            head = (f"no node of kind {kind.name} in {cluster} lends {device} to timing (resource {slot}); "
                    f"its nodes of that kind: {'; '.join(n.describe() for n in matching)}")
        elif kind.tags:
            kinds = sorted({t for n in nodes for t in n.tags()})
            head = f"no node of {cluster} is of kind {kind.name}; kinds the cluster has: {', '.join(kinds) or 'none'}"
        else:
            head = f"no node of {cluster} lends {device} to timing (resource {slot})"
        return (f"{head}. Nodes: {'; '.join(n.describe() for n in nodes) or 'none'}. A node says what it is when "
                f"started: ray start ... --resources '{{\"{slot}\": 1, \"machine=NAME\": 1}}' (docs/SCALE-OUT.md)")

    def _identify(self, nodes: list[_Node]) -> None:
        """Fingerprint each node once, on the node."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(num_cpus=0, max_retries=1)(_identify_node)
        # on a GPU node the Ray worker exits afterwards (max_calls=1), with whatever CUDA state probing left in it
        gpu_remote = ray.remote(num_cpus=0, max_retries=1, max_calls=1)(_identify_node)
        refs = [(gpu_remote if n.has_gpu else remote).options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(n.name)
                for n in nodes]
        try:
            answers = ray.get(refs, timeout=FINGERPRINT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UsageError(f"cluster nodes did not answer within {FINGERPRINT_TIMEOUT_S:.0f} s: "
                             + "; ".join(n.describe() for n in nodes)) from None
        except ray.exceptions.RayError as exc:
            raise UsageError(f"could not fingerprint the cluster's nodes (is dnnbench installed on each, in the "
                             f"same version?): {str(exc).strip().splitlines()[-1][:500]}") from None
        labels = [n.name or n.address for n in nodes]
        for node, label, (machine_id, fingerprint, software) in zip(nodes, labels, answers):
            node.label = label if labels.count(label) == 1 else f"{label}/{node.node_id[:6]}"
            software = {**software, "ray": {"version": ray.__version__, "node_id": node.node_id,
                                            "address": node.address, "tags": node.tags()}}
            node.machine = MachineInfo(machine_id, fingerprint, software, node.label)

    def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_refresh < self.refresh_s:
            return
        self._last_refresh = time.monotonic()
        try:
            alive = {info["NodeID"] for info in self._ray.nodes() if info.get("Alive")}
        except Exception:  # noqa: BLE001 - the GCS busy for a moment: keep what we knew
            return
        for node in self._nodes.values():
            node.alive = node.alive and node.node_id in alive

    # --- running jobs ------------------------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[Placed], on_record: PlacedRecord, on_job_started: PlacedEvent,
                 on_job_done: PlacedEvent) -> None:
        if not jobs:
            return
        if self._targets is None:
            self.targets(jobs[0].job.config)
        unknown = {p.target for p in jobs} - set(self._kind_nodes)
        if unknown:
            raise ValueError(f"jobs placed on {sorted(unknown)}, but this executor's targets are {sorted(self._kind_nodes)}")
        ray = self._ray
        self._remote = ray.remote(_measure_on_node)
        work_queue = deque(_Work(p, p.job) for p in jobs)
        self._running = {}
        while work_queue or self._running:
            self._refresh()
            self._dispatch(work_queue, on_record, on_job_started)
            if not self._running:
                time.sleep(self.poll_s)
                continue
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=self.poll_s)
            for stream in ready:
                self._advance(stream, work_queue, on_record, on_job_done)

    def _dispatch(self, work_queue: deque, on_record: PlacedRecord, on_job_started: PlacedEvent) -> None:
        for work in list(work_queue):
            candidates = [n for n in self._kind_nodes[work.placed.target] if n.alive and n.node_id not in work.avoid]
            if not candidates:
                work_queue.remove(work)
                reason = work.reason or "its nodes left the cluster"
                self._record_all(work.placed, work.job.cells, "lost", work.lost_on,
                                 f"not measured: {reason}; no other node of kind {work.placed.target} is left", on_record)
                continue
            free = [n for n in candidates if n.can_take(work.timed)]
            if free:
                work_queue.remove(work)
                self._submit(work, min(free, key=lambda n: (n.timed + n.untimed, n.order)), on_job_started)

    def _submit(self, work: _Work, node: _Node, on_job_started: PlacedEvent) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {"num_returns": "streaming", "max_retries": 0,
                                   "scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False)}
        if work.timed:  # the node's slot for the device, held for the whole job
            options.update(num_cpus=0, resources={self._slot: 1})
        else:
            options.update(num_cpus=1 if node.resources.get("CPU", 0) >= 1 else 0)
        stream = self._remote.options(**options).remote(work.job)
        self._running[stream] = _Attempt(work, node, {c.digest: c for c in work.job.cells})
        if work.timed:
            node.timed += 1
        else:
            node.untimed += 1
        on_job_started(work.placed, node.label)

    def _release(self, stream) -> _Attempt:
        attempt = self._running.pop(stream)
        if attempt.work.timed:
            attempt.node.timed -= 1
        else:
            attempt.node.untimed -= 1
        return attempt

    def _advance(self, stream, work_queue: deque, on_record: PlacedRecord, on_job_done: PlacedEvent) -> None:
        ray = self._ray
        attempt = self._running[stream]
        try:
            result = ray.get(next(stream))
        except StopIteration:  # the node's LocalExecutor reported every cell its worker reached; the rest
            self._finish(stream, None, "", on_record, on_job_done)  # were never attempted: left unwritten
            return
        except ray.exceptions.TaskCancelledError:
            self._finish(stream, None, "", on_record, on_job_done)
            return
        except ray.exceptions.RayTaskError as exc:  # dnnbench's own code failed on the node: a bug, said so
            message = f"the job failed on node {attempt.node.label}: {str(exc).strip().splitlines()[-1][:1500]}"
            self._finish(stream, "error", message, on_record, on_job_done)
            return
        except ray.exceptions.RayError as exc:  # the node, its Ray worker or the result was lost
            self._lost(stream, exc, work_queue, on_record, on_job_done)
            return
        if not isinstance(result, ResultRecord):
            return
        if attempt.pending.pop(result.cell_key.digest, None) is None:
            return  # not a cell of this job, or one already reported
        result.machine_id = attempt.node.machine.machine_id
        on_record(attempt.work.placed, result)

    def _finish(self, stream, status: str | None, message: str, on_record: PlacedRecord,
                on_job_done: PlacedEvent) -> None:
        attempt = self._release(stream)
        if status:
            self._record_all(attempt.work.placed, attempt.pending.values(), status, attempt.node, message, on_record)
        on_job_done(attempt.work.placed, attempt.node.label)

    def _lost(self, stream, exc: Exception, work_queue: deque, on_record: PlacedRecord,
              on_job_done: PlacedEvent) -> None:
        attempt = self._release(stream)
        node, work = attempt.node, attempt.work
        self._refresh(force=True)
        reason = f"node {node.label} was lost while measuring ({type(exc).__name__})"
        on_job_done(work.placed, node.label)
        remaining = tuple(attempt.pending.values())
        if not remaining:
            return
        avoid = work.avoid | {node.node_id}
        others = [n for n in self._kind_nodes[work.placed.target] if n.alive and n.node_id not in avoid]
        if work.tries < self.retries and others:  # once more, on another node of the kind, before anything else
            work_queue.appendleft(_Work(work.placed, replace(work.job, cells=remaining), work.tries + 1, avoid, node,
                                        reason))
            return
        why = "it was re-queued once already" if work.tries else f"no other node of kind {work.placed.target}"
        self._record_all(work.placed, remaining, "lost", node, f"not measured: {reason}; {why}", on_record)

    def _record_all(self, placed: Placed, cells, status: str, node: _Node | None, message: str,
                    on_record: PlacedRecord) -> None:
        machine = node.machine if node is not None else self._kind_nodes[placed.target][0].machine
        for cell in list(cells):
            result = record(cell, status, error=message)
            result.machine_id = machine.machine_id
            on_record(placed, result)

    def cancel(self) -> None:
        """Ctrl-C: cancel every job in flight (each stops its worker process on its node), wait a little for
        them to end, then end the rest by force. Cells in flight get no result."""
        ray = self._ray
        left = set(self._running)
        for stream in left:
            try:
                ray.cancel(stream)
            except Exception:  # noqa: BLE001 - already finished
                pass
        deadline = time.monotonic() + CANCEL_GRACE_S
        # a job has ended when its task has (`completed()`: cancelled, failed or done), never judged by reading its
        # stream: `next` on a stream blocks until the task yields again, and a task the graceful cancel cannot
        # interrupt (its worker ignores SIGINT, as processes started in the background by a shell do) then held
        # the runner for good after Ctrl-C
        ends = {stream.completed(): stream for stream in left}
        while ends and time.monotonic() < deadline:
            ready, _ = ray.wait(list(ends), num_returns=len(ends), timeout=0.5)
            for end in ready:
                left.discard(ends.pop(end))
        for stream in left:
            try:
                ray.cancel(stream, force=True)
            except Exception:  # noqa: BLE001
                pass
        for stream in list(self._running):
            self._release(stream)

    def close(self) -> None:
        """Forget the nodes; leave the cluster if this executor joined it."""
        self._targets, self._targets_key, self._nodes, self._kind_nodes = None, None, {}, {}
        if self._connected_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._connected_here = False


# --- what runs on the nodes ------------------------------------------------------------------------


def _restore_worker_environment() -> None:
    """Ray sets OMP_NUM_THREADS=1 (and, before 2.49, CUDA_VISIBLE_DEVICES="" for tasks without a GPU) in its
    workers. The benchmark worker gets the node's own values, as `dnnbench run` on the node would."""
    try:
        raw = Path("/proc/self/environ").read_bytes().decode(errors="replace")
    except OSError:
        return
    original = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    for key in RAY_WORKER_ENV:
        if key in original:
            os.environ[key] = original[key]
        else:
            os.environ.pop(key, None)


def _identify_node(node_name: str | None) -> tuple[str, dict, dict]:
    """On the node: its machine id, fingerprint and software."""
    _restore_worker_environment()
    from ..env import collect_machine, collect_runtime, collect_software

    machine = collect_machine()
    fingerprint = machine.to_dict()
    machine_id = node_machine_id(machine.machine_id, node_name)
    if node_name:
        fingerprint.update(machine_id=machine_id, ray_node_name=node_name, hardware_machine_id=machine.machine_id)
    return machine_id, fingerprint, {**collect_software().to_dict(), "runtime": collect_runtime().to_dict()}


_END = "dnnbench:end-of-job"


def _measure_on_node(job: WorkerJob):
    """On the node: the job in a LocalExecutor (its own process, crashes and timeouts recorded as results),
    each result yielded the moment it exists. Cancelled (Ctrl-C on the driver), it stops the worker."""
    _restore_worker_environment()
    results: queue.Queue = queue.Queue()
    local = LocalExecutor()

    def run() -> None:
        try:
            local.run_job(job, results.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the task, which fails with it
            results.put(exc)
        finally:
            results.put(_END)

    thread = threading.Thread(target=run, name="dnnbench-job", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = results.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(item, str) and item == _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        local.cancel()
        thread.join(timeout=30)
