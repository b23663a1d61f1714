"""`dnnbench export`: the results store as CSV, Parquet or JSON."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .options import DEFAULT_DB, console, err_console, printable, user_errors


def export(
    output: Path = typer.Argument(..., help="File to write: .csv, .parquet or .json."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="The results store (SQLite)."),
    fmt: str | None = typer.Option(None, "--format", help="csv | parquet | json (default: from the suffix)."),
    salvage: bool = typer.Option(False, "--salvage", help="Leave out cells whose stored text is damaged, and list them."),
) -> None:
    """Export the results store to CSV, Parquet or JSON (written whole, or not at all). JSON holds everything;
    CSV and Parquet hold the results, and the operator calibrations go beside them in NAME.calibrations.SUFFIX."""
    from ..store import Store, calibrations_path

    with Store(db, create=False) as store:
        damaged = store.export(output, fmt, salvage=salvage)
        calibrated = bool(store.calibrations())
    console.print(f"wrote {output}", style="dim")
    if calibrated and calibrations_path(output).exists() and (fmt or output.suffix.lstrip(".")) != "json":
        console.print(f"wrote {calibrations_path(output)} (the operator calibrations)", style="dim")
    for cell in damaged:
        err_console.print(f"left out, damaged: {escape(printable(cell))}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `export` to the `dnnbench` app."""
    app.command("export")(user_errors(export))
