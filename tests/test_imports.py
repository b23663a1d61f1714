"""The import rules of docs/ARCHITECTURE.md, checked on the source: imports go one way, zoo -> measure -> run
-> store -> analysis -> report with the cli on top, and no two modules import each other, even through
others. Every import counts, at module level or inside a function (relative ones resolved); an import under
`if TYPE_CHECKING:` counts for the layers but not for cycles (it never runs)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# layer -> layers it must never import
FORBIDDEN = {
    **{low: ("store", "run", "predict", "analysis", "report", "screen", "cli")
       for low in ("measure", "env", "zoo", "data", "backends")},
    "store": ("measure", "backends", "run", "predict", "analysis", "report", "screen", "cli"),
    # predict reads the store and traces with measure; it runs nothing (run) and analysis does not import it
    "predict": ("backends", "run", "analysis", "report", "screen", "cli"),
    "analysis": ("measure", "backends", "run", "predict", "report", "screen", "cli"),
    "report": ("run", "screen", "cli"),
    "run": ("predict", "analysis", "report", "screen", "cli"),
    # screen orchestrates run, predict, analysis and report; only the cli sits above it
    "screen": ("cli",),
    **{vocabulary: ("zoo", "measure", "env", "data", "backends", "run", "store", "predict", "analysis", "report",
                    "screen", "cli")
       for vocabulary in ("devices", "errors", "files")},
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    runtime: bool  # False: under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.source} imports {self.target} (line {self.line})"


def modules(src: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `src`, by dotted name (a package's __init__ under the package's name)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module `name` is or lies in (`a.b.C` -> `a.b` when C is a class of module a.b)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(src: Path, package: str) -> list[Edge]:
    """Every import from one module of `package` to another."""
    known = modules(src, package)
    edges = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = _type_checking_lines(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from . import zoo` imports the module dnnbench.zoo; `from .x import name` the module .x
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
            for target in dict.fromkeys(targets):
                owner = _owner(target, known)
                if owner and owner != module:
                    edges.append(Edge(module, owner, node.lineno, node.lineno not in typing_only))
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(edges: list[Edge]) -> list[str]:
    return [str(e) for e in edges if _layer(e.target) in FORBIDDEN.get(_layer(e.source), ())]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group of modules (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.runtime:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # recursive: its depth is at most the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for group in groups:
        start = min(group)
        parent: dict[str, str] = {start: start}
        queue = [start]  # breadth first inside the group: the shortest way back to `start`
        while queue:
            v = queue.pop(0)
            if start in graph[v]:
                path = [v]
                while path[0] != start:
                    path.insert(0, parent[path[0]])
                found.append(path + [start])
                break
            for w in sorted(graph[v] & group):
                if w not in parent:
                    parent[w] = v
                    queue.append(w)
    return found


def problems(src: Path, package: str) -> list[str]:
    edges = imports(src, package)
    return layer_violations(edges) + ["import cycle: " + " -> ".join(c) for c in cycles(edges)]


def test_dnnbench_keeps_its_import_rules():
    found = problems(SRC, "dnnbench")
    assert not found, "\n".join(found)


def test_the_checker_finds_a_forbidden_edge_and_a_cycle(tmp_path):
    files = {
        "fake/__init__.py": "",
        "fake/errors.py": "",
        "fake/store/__init__.py": "from .sqlite import Store\n",
        "fake/store/sqlite.py": "from ..errors import *\nclass Store: ...\n",
        "fake/measure/__init__.py": "",
        # a forbidden edge hidden in a function, relative, through the package
        "fake/measure/latency.py": "def keep():\n    from ..store import Store\n",
        "fake/measure/ok.py": "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import cyc_a\n",
        # a cycle of three, one of its edges inside a function and absolute
        "fake/measure/cyc_a.py": "from . import cyc_b\n",
        "fake/measure/cyc_b.py": "from .cyc_c import thing\n",
        "fake/measure/cyc_c.py": "def thing():\n    import fake.measure.cyc_a\n",
        "fake/analysis/__init__.py": "",
        "fake/analysis/frames.py": "from fake.measure.latency import keep\nfrom fake.store import Store\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = problems(tmp_path, "fake")
    assert found == [
        "fake.analysis.frames imports fake.measure.latency (line 1)",
        "fake.measure.latency imports fake.store (line 2)",
        "import cycle: fake.measure.cyc_a -> fake.measure.cyc_b -> fake.measure.cyc_c -> fake.measure.cyc_a",
    ]
    # the TYPE_CHECKING import makes no cycle, a plain one does
    (tmp_path / "fake/measure/cyc_a.py").write_text("from . import ok\n")
    (tmp_path / "fake/measure/ok.py").write_text("from . import cyc_a\n")
    assert problems(tmp_path, "fake")[2:] == ["import cycle: fake.measure.cyc_a -> fake.measure.ok -> fake.measure.cyc_a"]
