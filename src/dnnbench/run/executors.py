"""The executors a user can name (`--executor`, `benchmark(executor=...)`), made from their names.

Apart from `run.executor`, which the Ray executor builds on, so that neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from .executor import Executor, LocalExecutor
from .ray_executor import RayExecutor  # imports Ray only when one is made

EXECUTORS = ("local", "ray")


def make_executor(name: str, address: str | None = None, on: Sequence[str] = ()) -> Executor:
    """`local` or `ray` (with the cluster's address and the node kinds to measure on), checked now."""
    name = (name or "local").strip().lower()
    if name == "local":
        if on:
            raise UsageError("--on picks kinds of Ray cluster nodes: use it with --executor ray")
        if address:
            raise UsageError("--address is a Ray cluster's address: use it with --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address or "auto", on=tuple(on))
    raise UsageError(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}")
