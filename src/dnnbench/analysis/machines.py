"""Machines of a results store: readable labels from their fingerprints, and selection by a user's words."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import UsageError

GIB = 2**30


@dataclass(frozen=True)
class Machine:
    """One machine of the store. `label` is unique within the store it was read from."""

    machine_id: str
    label: str
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    software: Mapping[str, Any] = field(default_factory=dict)  # of the machine's latest run

    @property
    def short_id(self) -> str:
        return self.machine_id[:8]


def _gpu_names(fingerprint: Mapping[str, Any]) -> list[str]:
    gpus = fingerprint.get("gpus") or []
    return [str(g.get("name")) for g in gpus if isinstance(g, Mapping) and g.get("name")]


def hardware_summary(fingerprint: Mapping[str, Any]) -> str:
    """`AMD EPYC` or `AMD EPYC + 2x NVIDIA H100`: the CPU, and the GPUs when there are any."""
    cpu = str(fingerprint.get("cpu_model") or fingerprint.get("arch") or "unknown CPU")
    counts = Counter(_gpu_names(fingerprint))
    gpus = [name if n == 1 else f"{n}x {name}" for name, n in counts.items()]
    return " + ".join([cpu, *gpus])


def machine_label(fingerprint: Mapping[str, Any], machine_id: str = "") -> str:
    """hostname (hardware); falls back on the id when the fingerprint names nothing."""
    host = fingerprint.get("hostname") or (machine_id[:8] if machine_id else "unknown host")
    return f"{host} ({hardware_summary(fingerprint)})"


def build_machines(fingerprints: Mapping[str, Mapping[str, Any]],
                   software: Mapping[str, Mapping[str, Any]] | None = None) -> list[Machine]:
    """Machines with unique labels: twins (same host name and hardware) get their id prefix appended."""
    software = software or {}
    labels = {mid: machine_label(fp, mid) for mid, fp in fingerprints.items()}
    repeated = {label for label, n in Counter(labels.values()).items() if n > 1}
    return [
        Machine(mid, f"{labels[mid]} [{mid[:8]}]" if labels[mid] in repeated else labels[mid],
                dict(fingerprints[mid]), dict(software.get(mid, {})))
        for mid in sorted(fingerprints)
    ]


def resolve_machine(selector: str, machines: Iterable[Machine]) -> Machine:
    """The one machine whose id equals or starts with `selector`, or whose label contains it (any case)."""
    machines = list(machines)
    if not machines:
        raise UsageError("the results store holds no machine yet; measure with `dnnbench run` first")
    wanted = selector.strip()
    if not wanted:
        raise UsageError("empty machine selector; " + _listing(machines))
    for rule in (lambda m: m.machine_id == wanted,
                 lambda m: m.machine_id.startswith(wanted.lower()),
                 lambda m: wanted.lower() in m.label.lower()):
        hits = [m for m in machines if rule(m)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UsageError(f"machine {selector!r} is ambiguous: it matches "
                             + "; ".join(f"{m.short_id} {m.label}" for m in hits)
                             + ". Give a longer id prefix or label fragment.")
    raise UsageError(f"no machine matches {selector!r}; " + _listing(machines))


def resolve_machines(selectors: Iterable[str] | None, machines: Iterable[Machine]) -> list[Machine]:
    """Selected machines in the order given; all of them when nothing is selected."""
    machines = list(machines)
    chosen = [resolve_machine(s, machines) for s in selectors or ()]
    return list({m.machine_id: m for m in chosen}.values()) if chosen else machines


def default_machine(selector: str | None, machines: Iterable[Machine]) -> Machine:
    """The selected machine; without a selector the store must hold exactly one."""
    machines = list(machines)
    if selector is not None:
        return resolve_machine(selector, machines)
    if len(machines) == 1:
        return machines[0]
    if not machines:
        raise UsageError("the results store holds no machine yet; measure with `dnnbench run` first")
    raise UsageError(f"the store holds {len(machines)} machines: choose one with --machine. " + _listing(machines))


def _listing(machines: list[Machine]) -> str:
    return "machines in the store: " + "; ".join(f"{m.short_id} {m.label}" for m in machines)


def two_machines(selectors: list[str], machines: list[Machine]) -> tuple[Machine, Machine]:
    """(A, B) for a comparison: both named, or one named and the store's only other machine, or the store's
    only two."""
    listing = "; ".join(f"{m.short_id} {m.label}" for m in machines)
    if len(selectors) > 2:
        raise UsageError("compare takes two machines: --machine A --machine B")
    if len(machines) < 2:
        raise UsageError(f"compare needs two machines and the store holds {len(machines)}; merge the results of "
                         "another machine with `dnnbench merge`")
    if len(selectors) == 2:
        a, b = (default_machine(s, machines) for s in selectors)
        if a.machine_id == b.machine_id:
            raise UsageError(f"--machine {selectors[0]!r} and --machine {selectors[1]!r} are the same machine "
                             f"({a.label})")
        return a, b
    if len(selectors) == 1:
        a = default_machine(selectors[0], machines)
        others = [m for m in machines if m.machine_id != a.machine_id]
        if len(others) == 1:
            return a, others[0]
        raise UsageError(f"name machine B too: --machine A --machine B. Machines in the store: {listing}")
    if len(machines) == 2:
        return machines[0], machines[1]
    raise UsageError(f"name both machines: --machine A --machine B. Machines in the store: {listing}")
