"""The processes behind a store: who has its file open (to name who holds a lock), and whether the process of
a `running` run still lives (to mark the run `interrupted` when it does not)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This boot of this machine (Linux); a pid from another boot names another process."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (Linux): tells a pid from a later reuse of it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5), counted from the state (field 3)


@dataclass(frozen=True)
class ProcessIdentity:
    hostname: str
    boot_id: str | None
    pid: int
    started: str | None

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), boot_id(), pid, process_start(pid))

    def is_gone(self) -> bool:
        """True only when sure: this host, and another boot, or no such process, or the pid reused since.
        A process on another host is never declared gone from here."""
        if self.hostname != socket.gethostname():
            return False
        current_boot = boot_id()
        if self.boot_id and current_boot and self.boot_id != current_boot:
            return True
        if self.started is not None and Path("/proc").is_dir():
            started = process_start(self.pid)
            return started is None or started != self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def holders(path: str | Path) -> list[tuple[int, str]]:
    """(pid, command line) of the other processes that have `path` (or its -wal, -shm, -journal file) open,
    found through /proc/*/fd; [] where /proc is not readable."""
    base = os.path.realpath(path)
    targets = {base, base + "-wal", base + "-shm", base + "-journal"}
    me, found = os.getpid(), []
    try:
        entries = [p for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != me]
    except OSError:
        return []
    for proc in entries:
        try:
            if not any(os.readlink(fd) in targets for fd in (proc / "fd").iterdir()):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        found.append((int(proc.name), command))
    return sorted(found)


def describe_holders(path: str | Path, limit: int = 3) -> str:
    """'pid 12 (python -m dnnbench run ...)' for each process that has `path` open, for a one-line message."""
    found = holders(path)
    if not found:
        return "no process visible from here: another machine or container?"
    shown = [f"pid {pid} ({command[:80] + ('...' if len(command) > 80 else '') or '?'})"
             for pid, command in found[:limit]]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(shown) + more
