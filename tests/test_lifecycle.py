"""The one run life cycle (run.lifecycle.RunLifecycle), without workers: machines registered, runs opened and
closed with the right status, results kept under their run, SIGTERM turned into an interrupt and the signal
handlers given back."""

import os
import signal
import time

import pytest

from dnnbench.run.executor import MachineInfo
from dnnbench.run.lifecycle import RunLifecycle, Terminated, exit_code
from dnnbench.store import ResultRecord, Store

MACHINES = [MachineInfo("m-a", {"cpu": "a"}, {"torch_version": "x"}), MachineInfo("m-b", {"cpu": "b"}, {})]


def complexity_record(model, machine_id=""):
    now = time.time()
    return ResultRecord(model, "complexity", {"batch_size": 1}, "error", None, "failed on purpose", now, now,
                        machine_id=machine_id)


def run_statuses(store):
    return {run["machine_id"]: run["status"] for run in store.runs()}


def test_a_run_per_machine_results_under_their_run_and_finished(tmp_path):
    cancelled = []
    with Store(tmp_path / "s.sqlite") as store:
        with RunLifecycle(store, MACHINES, ["test"], {"what": "lifecycle"}, "local", lambda: cancelled.append(1)) as runs:
            assert run_statuses(store) == {"m-a": "running", "m-b": "running"}
            runs.keep(complexity_record("here"))  # names no machine: the first one
            runs.keep(complexity_record("there", "m-b"))
        by_model = {r.model: r for r in store.results()}
        assert (by_model["here"].machine_id, by_model["here"].run_id) == ("m-a", runs.run_ids["m-a"])
        assert (by_model["there"].machine_id, by_model["there"].run_id) == ("m-b", runs.run_ids["m-b"])
        assert run_statuses(store) == {"m-a": "finished", "m-b": "finished"}
        assert set(store.machines()) == {"m-a", "m-b"}
        assert store.runs()[0]["software"]["executor"] == "local"
    assert not cancelled and not runs.interrupted


@pytest.mark.parametrize("raised, status, code", [(KeyboardInterrupt, "interrupted", 130),
                                                  (Terminated, "interrupted", 143),
                                                  (RuntimeError, "failed", None)])
def test_an_interrupt_stops_the_workers_and_marks_the_runs(tmp_path, raised, status, code):
    cancelled = []
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(raised) as caught:
            with RunLifecycle(store, MACHINES[:1], ["test"], {}, cancel=lambda: cancelled.append(1)) as runs:
                runs.keep(complexity_record("kept"))
                raise raised()
        assert run_statuses(store) == {"m-a": status}
        assert [r.model for r in store.results()] == ["kept"]  # finished cells stay
    assert cancelled == ([1] if code else [])
    if code:
        assert exit_code(caught.value) == code


def test_sigterm_is_an_interrupt_inside_and_the_old_handlers_come_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(Terminated):
            with RunLifecycle(store, MACHINES[:1], ["test"], {}):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
        assert run_statuses(store) == {"m-a": "interrupted"}
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
