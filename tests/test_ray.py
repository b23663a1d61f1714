"""Sweeps over a Ray cluster: placement by node kind, one timed job per node, each result under the machine
id of the node that measured it, lost nodes, Ctrl-C, and the errors a user sees.

The cluster tests (marker `ray`) start a small Ray cluster on loopback (ray.cluster_utils.Cluster: a head
and worker nodes, one CPU each). They run only inside a loopback-only network namespace, where Ray cannot
go looking for a public address; `make test` runs them so:

    ip netns add dnb; ip netns exec dnb ip link set lo up
    ip netns exec dnb .venv/bin/pytest -q -m ray
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from dnnbench import zoo
from dnnbench.errors import UsageError
from dnnbench.run.config import SweepConfig, build_sweep_config
from dnnbench.run.plan import plan
from dnnbench.run.runner import NoProgress, run_sweep
from dnnbench.store import Store

TESTS = Path(__file__).resolve().parent
FAST = dict(device="cpu", batch_sizes=(1, 2), threads=(1,), input_size=32, time_budget_s=0.3, min_samples=3,
            warmup_iters=1, warmup_s=0.0, measure_peak=False)  # the local comparison sweep skips the peak probe


def on_cuda(config: SweepConfig) -> SweepConfig:
    """The sweep on the nodes' cuda:0, which this machine need not have."""
    return replace(config, scope=replace(config.scope, device="cuda:0"))


SMALL_NODE = dict(num_cpus=1, object_store_memory=80 * 2**20)
MARK = "DNNBENCH_RAY_TEST"  # in the environment of every process the test cluster starts


def loopback_only() -> bool:
    """No network interface but loopback has an address (a fresh `ip netns`)."""
    import psutil

    inet = (socket.AF_INET, socket.AF_INET6)
    return all(name == "lo" for name, addresses in psutil.net_if_addrs().items()
               if any(a.family in inet for a in addresses))


def cluster_skip_reason() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return 'Ray is not installed (pip install "dnnbench[ray]")'
    if not loopback_only():
        return ("the Ray cluster tests run in a loopback-only network namespace, where Ray cannot probe a public "
                "address: `make test` runs them with `ip netns exec` (needs root and iproute2)")
    return None


def model(name):
    return zoo.get(f"python:dnnbench_test_models:{name}")


def node_resources(kind, name):
    return {"dnnbench_slot_cpu": 1, f"machine={kind}": 1, f"dnnbench_node={name}": 1}


def by_cell(records):
    return {(r.model.rsplit(":", 1)[-1], r.metric, r.config.get("batch_size")): r for r in records}


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


# --- without a cluster ---------------------------------------------------------------------------


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from dnnbench.cli.app import app
    from dnnbench.run.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(UsageError, match=r'pip install "dnnbench\[ray\]"'):
        make_executor("ray")
    db = tmp_path / "r.sqlite"
    result = CliRunner().invoke(app, ["run", "python:dnnbench_test_models:tiny", "--executor", "ray", "--db", str(db)])
    assert result.exit_code == 2
    assert 'pip install "dnnbench[ray]"' in " ".join(result.output.split())
    assert not db.exists()


def test_kinds_and_executor_options_are_checked():
    from dnnbench.run.executors import make_executor
    from dnnbench.run.ray_executor import parse_kind

    assert parse_kind("machine=jetson-orin").name == "machine=jetson-orin"
    assert parse_kind(" machine=dgx , gpu=H100").tags == (("gpu", "H100"), ("machine", "dgx"))
    for bad in ("jetson", "machine=", "=x", "machine=a,"):
        with pytest.raises(UsageError, match="KEY=VALUE"):
            parse_kind(bad)
    with pytest.raises(UsageError, match="use it with --executor ray"):
        make_executor("local", on=["machine=a"])
    with pytest.raises(UsageError, match="executors: local, ray"):
        make_executor("slurm")


def test_an_address_where_nothing_answers_fails_within_seconds():
    pytest.importorskip("ray")
    from dnnbench.run.ray_executor import RayExecutor

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UsageError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        RayExecutor(address=f"127.0.0.1:{port}").targets(build_sweep_config(**FAST))
    assert time.monotonic() - started < 10


# --- on a loopback cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    import ray
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", MARK)}
    # the nodes' workers import the test models, and their worker processes must find them too
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]]))
    os.environ[MARK] = uuid.uuid4().hex
    # a lost node is noticed within a few seconds, not the default half minute
    system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={**SMALL_NODE, "include_dashboard": False,
                                                           "resources": node_resources("a", "head"),
                                                           "_system_config": system})
    cluster.add_node(**SMALL_NODE, resources=node_resources("b", "w1"))
    cluster.add_node(**SMALL_NODE, resources=node_resources("b", "w2"))
    # the tests' driver joins now, before nodes come and go (it must not sit on a node a test removes)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="warning")
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def executor(cluster, *kinds):
    from dnnbench.run.ray_executor import RayExecutor

    return RayExecutor(address=cluster.address, on=kinds)


def spawned_workers():
    """Benchmark worker processes started by this test's cluster that are still alive."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "spawn_main" in " ".join(process.info["cmdline"] or ()) and \
                    process.environ().get(MARK) == os.environ[MARK]:
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.ray
def test_each_kind_measures_every_cell_once_on_its_own_nodes(cluster, tmp_path):
    specs = [model(n) for n in ("tiny", "hungry", "segfaulting")]
    config = build_sweep_config(**FAST)
    with Store(tmp_path / "ray.sqlite") as store:
        summary = run_sweep(specs, config, store, executor(cluster, "machine=a", "machine=b"))
        records, machines, runs = store.results(), store.machines(), store.runs()
    with Store(tmp_path / "local.sqlite") as store:
        local = by_cell(run_sweep(specs, config, store).records)

    names = {mid: m["fingerprint"]["ray_node_name"] for mid, m in machines.items()}
    assert sorted(names.values()) == ["head", "w1", "w2"]  # one machine per node, told apart by its name
    assert set(summary.machine_ids) == set(names) and len(runs) == 3
    assert {r["status"] for r in runs} == {"finished"}
    assert {r["software"]["executor"] for r in runs} == {"ray"}
    assert {r["software"]["ray"]["node_id"] for r in runs} and all(r.run_id for r in records)
    kind_a = [r for r in records if names[r.machine_id] == "head"]
    kind_b = [r for r in records if names[r.machine_id] in ("w1", "w2")]
    planned = {c.digest for job in plan(specs, config) for c in job.cells}
    assert len(planned) == 15
    for measured in (kind_a, kind_b):  # every cell exactly once per kind, as the local executor measures them
        assert sorted(r.cell_key.digest for r in measured) == sorted(planned)
        assert {k: r.status for k, r in by_cell(measured).items()} == {k: r.status for k, r in local.items()}
    cells = by_cell(kind_b)
    assert cells["segfaulting", "time", 2].status == "crash" and "SIGSEGV" in cells["segfaulting", "time", 2].error
    assert cells["tiny", "complexity", 1].values.macs == 8 * 8 * 8 * 27 + 80
    assert cells["tiny", "time", 2].values.stats.median > 0
    # a node times one job at a time: the spans of its jobs' timed cells never overlap
    for machine_id in names:
        spans = {}
        for r in records:
            if r.machine_id == machine_id and r.metric != "complexity":
                start, end = spans.get(r.model, (r.started_at, r.finished_at))
                spans[r.model] = (min(start, r.started_at), max(end, r.finished_at))
        ordered = sorted(spans.values())
        assert all(earlier[1] <= later[0] for earlier, later in zip(ordered, ordered[1:])), (names[machine_id], ordered)


@pytest.mark.ray
def test_resume_skips_cells_any_node_of_the_kind_has(cluster, tmp_path):
    specs = [model("tiny")]
    config = build_sweep_config(**{**FAST, "batch_sizes": (1,), "metrics": ("complexity",)})
    db = tmp_path / "resume.sqlite"
    with Store(db) as store:
        first = run_sweep(specs, config, store, executor(cluster, "machine=b"))
        again = run_sweep(specs, config, store, executor(cluster, "machine=b"))
        assert len(store.results()) == 1
    assert first.counts == {"ok": 1}
    assert again.records == [] and again.already_done == again.planned == 1


@pytest.mark.ray
def test_a_kind_no_node_has_is_refused_with_the_kinds_there_are(cluster, tmp_path):
    with pytest.raises(UsageError) as error:
        executor(cluster, "machine=jetson-orin").targets(build_sweep_config(**FAST))
    message = str(error.value)
    assert "no node" in message and "machine=jetson-orin" in message
    assert "kinds the cluster has: machine=a, machine=b" in message
    with pytest.raises(UsageError, match="lends cuda:0 to timing"):
        executor(cluster, "machine=a").targets(on_cuda(build_sweep_config(**FAST)))


@pytest.mark.ray
def test_ctrl_c_cancels_the_cluster_jobs_and_keeps_finished_cells(cluster, tmp_path):
    db = tmp_path / "r.sqlite"
    names = ",".join(f"python:dnnbench_test_models:{n}" for n in ("tiny", "sleeping"))
    args = ["--models", names, "--batch-sizes", "1", "--device", "cpu", "--threads", "1", "--input-size", "32",
            "--time-budget", "0.3", "--min-samples", "3", "--warmup-iters", "1", "--warmup-s", "0",
            "--executor", "ray", "--address", cluster.address, "--on", "machine=b"]
    env = {**os.environ, "COLUMNS": "200"}
    # SIGINT's default for the runner, as in a terminal: a shell without job control starts background commands
    # (and so these tests) with SIGINT ignored, which Python keeps (the same as test_run.run_cli)
    runner = subprocess.Popen([sys.executable, "-m", "dnnbench", "run", *args, "--db", str(db)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def stored():
        with Store(db) as store:
            return store.results()

    # tiny's 3 cells and sleeping's complexity cell, on w1 and w2 at once; then sleeping sleeps
    wait_for(lambda: db.exists() and len(stored()) >= 4, 120, "4 results")
    time.sleep(2)
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert "finished cells are kept" in err and "Traceback" not in err
    with Store(db) as store:
        records, runs = store.results(), store.runs()
    assert {r.status for r in records} == {"ok"} and len(records) == 4
    assert {r["status"] for r in runs} == {"interrupted"}
    wait_for(lambda: not spawned_workers(), 20, "the sleeping worker to be stopped")


@pytest.mark.ray
def test_a_lost_node_gets_its_cells_requeued_once_then_lost_and_nothing_twice(cluster, tmp_path):
    nodes = {name: cluster.add_node(**SMALL_NODE, resources=node_resources("c", name)) for name in ("c1", "c2")}
    events = []

    class Watch(NoProgress):
        def job_started(self, job, where=""):
            events.append(("started", job.model.rsplit(":", 1)[-1], where))

        def cell_done(self, record, job=None, where=""):
            events.append((record.metric, record.model.rsplit(":", 1)[-1], where))

    specs = [model("sleeping"), model("tiny")]
    config = build_sweep_config(**{**FAST, "batch_sizes": (1,)}, cell_timeout_s=300)
    db = tmp_path / "lost.sqlite"
    outcome = {}

    def sweep():
        try:
            with Store(db) as store:
                outcome["summary"] = run_sweep(specs, config, store, executor(cluster, "machine=c"), progress=Watch())
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    # sleeping's complexity cell is in: its worker now sleeps in the timed cell. Kill that node.
    first = wait_for(lambda: next((e[2] for e in events if e[:2] == ("complexity", "sleeping")), None), 120,
                     "sleeping's complexity cell")
    time.sleep(1)
    cluster.remove_node(nodes[first], allow_graceful=False)
    # the rest of the job goes once more, to the other node of the kind; kill that one too
    second = wait_for(lambda: next((e[2] for e in events if e[:2] == ("started", "sleeping") and e[2] != first), None),
                      120, "sleeping to be re-queued")
    time.sleep(2)
    cluster.remove_node(nodes[second], allow_graceful=False)
    thread.join(120)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert {first, second} == {"c1", "c2"}
    with Store(db) as store:
        records = store.results()
        names = {mid: m["fingerprint"]["ray_node_name"] for mid, m in store.machines().items()}
    digests = [r.cell_key.digest for r in records]
    assert len(digests) == len(set(digests)) == 2 * 3  # every cell once: measured, or lost
    cells = by_cell(records)
    assert cells["sleeping", "complexity", 1].status == "ok" and names[cells["sleeping", "complexity", 1].machine_id] == first
    for metric in ("time", "memory"):
        lost = cells["sleeping", metric, 1]
        assert lost.status == "lost" and names[lost.machine_id] == second
        assert "lost while measuring" in lost.error and "re-queued once already" in lost.error
        assert cells["tiny", metric, 1].status == "ok"
    assert [e for e in events if e[:2] == ("started", "sleeping")] == [("started", "sleeping", first),
                                                                       ("started", "sleeping", second)]
    # the killed nodes' benchmark workers died with them
    wait_for(lambda: not spawned_workers(), 20, "the killed nodes' workers to be gone")
    # lost cells are not final: --retry-failed measures them again
    from dnnbench.run.config import ResumePolicy
    from dnnbench.run.plan import plan
    from dnnbench.run.runner import pending_jobs

    lost_digests = {r.cell_key.digest for r in records if r.status == "lost"}
    with Store(db) as store:
        again = pending_jobs(store, list(names), plan(specs, config), ResumePolicy(retry_failed=True))
    assert lost_digests and lost_digests <= {c.digest for job in again for c in job.cells}
