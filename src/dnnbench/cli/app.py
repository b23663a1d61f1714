"""The `dnnbench` command: a thin layer over the Python API."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer
from rich.console import Console

from ..errors import DnnbenchError, UsageError
from . import render

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark image-recognition networks on this machine (Bianco et al., IEEE Access 2018).")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def user_errors(command: F) -> F:
    """Errors a user can act on are printed without a traceback, with their exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DnnbenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


SuiteOpt = typer.Option(None, "--suite", "-s", help="A named suite: paper, mobile, quick, or one from --suite-file.")
SuiteFileOpt = typer.Option(None, "--suite-file", help="TOML or YAML file defining more suites (repeatable).")


def _check_format(fmt: str) -> None:
    if fmt not in render.FORMATS:
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(render.FORMATS)}")


@app.command()
@user_errors
def models(
    suite: Optional[str] = SuiteOpt,
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only this family (e.g. ResNet, Inception)."),
    suite_file: Optional[List[Path]] = SuiteFileOpt,
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """List the zoo's models (the paper suite unless --suite says otherwise)."""
    from .. import zoo

    _check_format(fmt)
    files = tuple(str(p) for p in suite_file or ())
    chosen = zoo.get_suite(suite or "paper", files)
    specs = zoo.resolve_models(suite=chosen.name, suite_files=files)
    if family:
        families = sorted({s.family for s in specs})
        specs = [s for s in specs if s.family.lower() == family.lower()]
        if not specs:
            raise UsageError(f"no model of family {family!r} in suite {chosen.name!r}; families: {', '.join(families)}")
    title = f"Suite {chosen.name!r}: {len(specs)} models" + (f" - {chosen.description}" if chosen.description else "")
    render.emit(console, render.model_rows(specs), render.models_table(specs, title), fmt, output)


@app.command()
@user_errors
def profile(
    model: Optional[List[str]] = typer.Argument(None, help="Zoo names or aliases, or timm:NAME / torchvision:NAME."),
    suite: Optional[str] = SuiteOpt,
    suite_file: Optional[List[Path]] = SuiteFileOpt,
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Square input side (default: each model's native size)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Batch size; totals are for the whole batch."),
    mode: str = typer.Option("standard", "--mode", help="standard | extended | paper (see docs/METHODOLOGY.md)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16: the dtype weight bytes are given at."),
    per_layer: bool = typer.Option(False, "--per-layer", help="One row per module with its own params and MACs."),
    sort_by: str = typer.Option("order", "--sort-by", help="Per-layer order: order | macs | params | path | type."),
    top: Optional[int] = typer.Option(None, "--top", help="Only the first N layers after sorting."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (CSV unless --format json)."),
) -> None:
    """Parameters and operations (MACs; FLOPs = 2 x MACs), counted on the meta device."""
    from .. import zoo
    from ..measure.complexity import MODES, complexity
    from ..run.config import parse_dtype

    _check_format(fmt)
    if mode not in MODES:
        raise UsageError(f"unknown counting mode {mode!r}; modes: {', '.join(MODES)}")
    if sort_by not in render.LAYER_SORTS:
        raise UsageError(f"unknown sort {sort_by!r}; choose one of {', '.join(render.LAYER_SORTS)}")
    if not model and not suite:
        raise UsageError("name at least one model, or a suite with --suite (e.g. --suite paper)")
    torch_dtype = parse_dtype(dtype)
    specs = zoo.resolve_models(tuple(model or ()), suite, tuple(str(p) for p in suite_file or ()))
    results = []
    with console.status("counting") as status:
        for spec in specs:
            status.update(f"counting {spec.id}")
            results.append(complexity(spec, input_size, batch_size, mode, torch_dtype))
    if per_layer:
        rows = []
        for result in results:
            layers = render.sorted_layers(result.layers, sort_by)[:top]
            rows += render.layer_rows(result, layers)
            if fmt == "table" and output is None:
                console.print(render.layers_table(result, layers))
        if fmt != "table" or output is not None:
            render.emit(console, rows, None, fmt, output)
        return
    render.emit(console, render.complexity_rows(results), render.complexity_table(results), fmt, output)


def main() -> None:
    app()
