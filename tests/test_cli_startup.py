"""Commands that need no model start without importing torch (about 2.5 s saved on every call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_analysis import fill_store

# Runs one command in a fresh interpreter; a finder first on sys.meta_path notes the dnnbench modules on the
# stack when torch is first imported, so a failure names the import chain.
PROBE = r"""
import json, sys, traceback
from importlib.abc import MetaPathFinder

chain = []

class Watch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not chain:
            frames = [f for f in traceback.extract_stack() if "/dnnbench/" in f.filename]
            chain.extend(f"{f.filename.split('/src/')[-1]}:{f.lineno}" for f in frames)
        return None

sys.meta_path.insert(0, Watch())
from typer.testing import CliRunner
from dnnbench.cli.app import app

result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "torch": "torch" in sys.modules,
                  "pandas": "pandas" in sys.modules, "chain": chain}))
"""

SRC = Path(__file__).resolve().parents[1] / "src"


def start(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fill_store(tmp_path_factory.mktemp("startup") / "results.sqlite")


@pytest.mark.parametrize("command", [
    pytest.param(["--help"], id="help"),
    pytest.param(["models"], id="models"),
    pytest.param(["select", "--db", "{db}", "--machine", "alpha"], id="select"),
    pytest.param(["compare", "--db", "{db}"], id="compare"),
    pytest.param(["export", "{out}", "--db", "{db}"], id="export"),
])
def test_command_starts_without_torch(command, db, tmp_path):
    args = [a.format(db=db, out=tmp_path / "out.csv") for a in command]
    result = start(*args)
    assert result["exit_code"] in (0, 1), result["output"]  # select exits 1 when no model fits
    assert not result["torch"], "torch imported by: " + " -> ".join(result["chain"])
    if command[0] in ("--help", "models"):  # nothing tabular to compute: not even pandas
        assert not result["pandas"]


def test_cli_modules_import_one_way():
    """options <- command modules <- app: no cli module imports app, options imports no cli module, and the
    cli modules' imports (those inside functions too) form no cycle."""
    import ast

    cli = SRC / "dnnbench" / "cli"
    edges = {}
    for path in cli.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names.update([node.module] if node.module else [a.name for a in node.names])
        edges[path.stem] = {n.split(".")[0] for n in names if (cli / f"{n.split('.')[0]}.py").exists()}
    assert not edges["options"]
    assert not [m for m, targets in edges.items() if "app" in targets]

    def visit(module, stack):
        assert module not in stack, "import cycle: " + " -> ".join([*stack, module])
        for target in edges[module]:
            visit(target, [*stack, module])

    for module in edges:
        visit(module, [])
