"""The life cycle of a run, the same for every kind (timing sweeps, accuracy): register the machines, open
one run per machine, keep every result under its run the moment it exists, and close the runs as
finished, interrupted or failed.

Ctrl-C and SIGTERM end a run the same way: the workers are stopped, the cells finished so far stay in
the store, the runs are marked `interrupted`, and the interrupt goes on to the caller (`Terminated`, a
KeyboardInterrupt, for SIGTERM; the CLI exits 130 or 143). A second signal while that happens leaves at
once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from ..store import ResultRecord, Store


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C. `exit_code` is what a command line exits with (128 + the signal)."""

    exit_code = 128 + signal.SIGTERM


INTERRUPT_EXIT = 128 + signal.SIGINT  # what a command line exits with after Ctrl-C


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return getattr(interrupt, "exit_code", INTERRUPT_EXIT)


class Machine(Protocol):
    """What the life cycle needs of a machine that measures (run.executor.MachineInfo)."""

    machine_id: str
    fingerprint: Mapping[str, Any]
    software: Mapping[str, Any]


class Finishing(Protocol):
    def finish(self) -> None: ...


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


class RunLifecycle:
    """A context manager around one sweep of any kind:

        with RunLifecycle(store, machines, argv, config, executor.name, cancel=executor.cancel) as runs:
            ... runs.keep(record) for every result ...

    On entry the machines are registered and one run per machine is started; on exit the runs are
    finished ("finished"), or after Ctrl-C/SIGTERM the workers are stopped (`cancel`) and the runs marked
    "interrupted", or after any other error "failed"; the exception goes on either way.
    """

    def __init__(self, store: Store, machines: Sequence[Machine], argv: Sequence[str], config: Mapping[str, Any],
                 executor: str = "local", cancel: Callable[[], None] = lambda: None,
                 progress: Finishing | None = None):
        self.store = store
        self.machines = {m.machine_id: m for m in machines}
        self.argv = list(argv)
        self.config = dict(config)
        self.executor = executor
        self.cancel = cancel
        self.progress = progress
        self.run_ids: dict[str, str] = {}
        self.interrupted = False
        self._previous: dict[int, Any] = {}

    @property
    def first_machine(self) -> str:
        return next(iter(self.machines))

    def __enter__(self) -> RunLifecycle:
        for machine in self.machines.values():
            self.store.register_machine(machine.machine_id, dict(machine.fingerprint))
        self._on_signal(signal.SIGTERM, _raise_terminated)
        try:
            for machine_id, machine in self.machines.items():
                self.run_ids[machine_id] = self.store.start_run(
                    machine_id, self.argv, self.config, {**machine.software, "executor": self.executor})
        except BaseException:
            self._finish_all("failed")
            self._restore()
            raise
        return self

    def keep(self, record: ResultRecord) -> None:
        """Commit `record` under the run of the machine that measured it (this machine when it names none)."""
        record.machine_id = record.machine_id or self.first_machine
        record.run_id = self.run_ids.get(record.machine_id, self.run_ids[self.first_machine])
        self.store.put_result(record)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self._finish_all("finished")
                self._progress_finish()
            elif issubclass(kind, KeyboardInterrupt):
                # from now on a second Ctrl-C or SIGTERM leaves at once; finished cells are already committed
                code = exit_code(exc)  # type: ignore[arg-type]
                self._on_signal(signal.SIGINT, lambda *_: os._exit(code))
                self._on_signal(signal.SIGTERM, lambda *_: os._exit(code))
                self.interrupted = True
                self.cancel()
                self._finish_all("interrupted")
                self._progress_finish()
            else:
                self._finish_all("failed")
        finally:
            self._restore()

    def _finish_all(self, status: str) -> None:
        for run_id in self.run_ids.values():
            self.store.finish_run(run_id, status)

    def _progress_finish(self) -> None:
        if self.progress is not None:
            self.progress.finish()

    def _on_signal(self, signum: int, handler: Callable[[int, Any], Any]) -> None:
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return
        self._previous.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, handler)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
