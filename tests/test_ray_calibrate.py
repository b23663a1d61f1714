"""`dnnbench calibrate --executor ray`: a calibration on every node of each kind of a Ray cluster, each stored under
its node's machine id. The cluster test (marker `ray`) runs on test_ray's loopback cluster, inside a
loopback-only network namespace (see test_ray)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from dnnbench.cli import options as cli_options
from dnnbench.cli.app import app
from dnnbench.measure.operators import MODULE_CALL
from dnnbench.store import Store
from test_ray import cluster  # noqa: F401 - the loopback cluster fixture

runner = CliRunner()
TINY = "python:dnnbench_test_models:tiny"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_options.console, "width", 200)
    monkeypatch.setattr(cli_options.err_console, "width", 200)


def test_calibrate_on_ray_without_ray_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    db = tmp_path / "c.sqlite"
    result = runner.invoke(app, ["calibrate", "--quick", "--models", TINY, "--executor", "ray", "--db", str(db)])
    assert result.exit_code == 2 and 'pip install "dnnbench[ray]"' in " ".join(result.output.split())
    assert not db.exists()
    result = runner.invoke(app, ["calibrate", "--quick", "--models", TINY, "--on", "machine=a", "--db", str(db)])
    assert result.exit_code == 2 and "use it with --executor ray" in result.output


@pytest.mark.ray
def test_every_node_of_each_kind_is_calibrated_under_its_own_machine_id(cluster, tmp_path):  # noqa: F811
    db = tmp_path / "cluster.sqlite"
    result = runner.invoke(app, ["calibrate", "--models", TINY, "--batch-sizes", "1", "--operators", "12",
                                 "--seconds", "60", "--executor", "ray", "--address", cluster.address,
                                 "--on", "machine=a", "--on", "machine=b", "--db", str(db)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Store(db, create=False) as store:
        calibrations = store.calibrations()
        machines = store.machines()
        rows = {c["machine_id"]: store.calibration(c["machine_id"], "cpu", "eager", "fp32", 1) for c in calibrations}
    names = {machines[c["machine_id"]]["fingerprint"].get("ray_node_name") for c in calibrations}
    assert names == {"head", "w1", "w2"}  # one calibration per node, each under the node's own machine id
    assert len({c["machine_id"] for c in calibrations}) == 3
    for machine_rows in rows.values():
        kinds = {r["kind"] for r in machine_rows}
        assert {"conv2d", "linear", MODULE_CALL} <= kinds
        assert all(r["seconds"] > 0 for r in machine_rows)
    for name in ("head", "w1", "w2"):
        assert f"on node {name}" in result.output
