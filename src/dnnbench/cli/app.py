"""The `dnnbench` command: a thin layer over the Python API. This module only creates the Typer app and adds
each command group's commands; the shared options and consoles are in `options`."""

from __future__ import annotations

import typer

from . import accuracy_cmd, backends_cmd, peak_cmd, predict_cmd, report_cmd, run_cmd, screen_cmd, store_cmd, zoo_cmd

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark image-recognition networks on this machine (Bianco et al., IEEE Access 2018).")

for group in (zoo_cmd, run_cmd, store_cmd, accuracy_cmd, backends_cmd, report_cmd, peak_cmd, predict_cmd,
              screen_cmd):
    group.register(app)


def main() -> None:
    app()
