"""`dnnbench export`: the results store as CSV, Parquet or JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import DEFAULT_DB, console, user_errors


def export(
    output: Path = typer.Argument(..., help="File to write: .csv, .parquet or .json."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="The results store (SQLite)."),
    fmt: str | None = typer.Option(None, "--format", help="csv | parquet | json (default: from the suffix)."),
) -> None:
    """Export the results store to CSV, Parquet or JSON."""
    from ..store import Store

    with Store(db, create=False) as store:
        store.export(output, fmt)
    console.print(f"wrote {output}", style="dim")


def register(app: typer.Typer) -> None:
    """Add `export` to the `dnnbench` app."""
    app.command("export")(user_errors(export))
