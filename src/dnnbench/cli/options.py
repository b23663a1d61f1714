"""What every command shares: the consoles, the default store, common options and the error wrapper.

Command modules import this one; `app` imports the command modules; nothing here imports either (no cycle).
Only typer and rich are imported at start-up: a command imports the layers it calls (torch among them) when
it runs, so `--help`, `models`, `select`, `compare` and `export` start fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import rich.console
import typer
from rich.markup import escape
from rich.table import Table

from ..errors import DnnbenchError, UsageError

DEFAULT_DB = Path("results/dnnbench.sqlite")
DB_HELP = "The results store (SQLite); default results/dnnbench.sqlite."
MACHINE_HELP = "Machine: an id prefix or a fragment of its label (host name, CPU or GPU); optional with one machine."
FORMATS = ("table", "json", "csv")

# Off a terminal (a CI log, a pipe, a file) Rich would wrap at 80 columns and squeeze wide tables into cells
# of "v…"; there a console is this wide instead: tables keep their natural width and messages stay on one
# line (Rich pads nothing to the width). COLUMNS, when set, still wins.
PIPED_WIDTH = 1000


class Console(rich.console.Console):
    """Rich's console, readable off a terminal: wide (see PIPED_WIDTH), and table cells folded, never cut
    with an ellipsis, when even that width (or COLUMNS) is too narrow."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if not self.is_terminal and "COLUMNS" not in os.environ and "width" not in kwargs:
            self.width = PIPED_WIDTH

    def print(self, *objects: Any, **kwargs: Any) -> None:
        objects = tuple(printable(o) if isinstance(o, str) else o for o in objects)
        if not self.is_terminal:
            for table in (o for o in objects if isinstance(o, Table)):
                for column in table.columns:
                    if column.overflow == "ellipsis":
                        column.overflow = "fold"
        super().print(*objects, **kwargs)


def printable(text: str) -> str:
    """Text that any output encodes: a path or value given in bytes that are not UTF-8 reaches Python as lone
    surrogates, which would make printing it raise; they are shown as U+FFFD instead."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def user_errors(command: F) -> F:
    """Errors a user can act on are printed without a traceback, with their exit code; so are the file-system
    errors of writing outputs (a missing or read-only folder), which name the file."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DnnbenchError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # e.g. an output into a missing or read-only folder
            where = f"{exc.filename}: " if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}; check that the "
                              "folder exists and is writable (or choose another path), then run the command again",
                              highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


SUITE_HELP = "A named suite: paper, mobile, quick, or one from --suite-file."
SUITE_FILE_HELP = "TOML or YAML file defining more suites (repeatable)."
SuiteOpt = typer.Option(None, "--suite", "-s", help=SUITE_HELP)
SuiteFileOpt = typer.Option(None, "--suite-file", help=SUITE_FILE_HELP)
FormatOpt = typer.Option("table", "--format", help="table, json or csv.")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def model_names(model: list[str] | None, models: str | None) -> list[str]:
    """Models named as arguments, then those of a comma-separated --models."""
    return list(model or ()) + [m.strip() for m in (models or "").split(",") if m.strip()]


def suite_files(paths: list[Path] | None) -> tuple[str, ...]:
    return tuple(str(p) for p in paths or ())
