"""`dnnbench models` and `dnnbench profile`: what the zoo holds, and what each model costs to run."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UsageError
from .options import (
    DB_HELP,
    DEFAULT_DB,
    FormatOpt,
    SuiteFileOpt,
    SuiteOpt,
    check_format,
    console,
    err_console,
    suite_files,
)

# Far beyond any real input, and small enough that the tensor sizes the counter builds fit in 64 bits.
MAX_SIDE = 2**15
MAX_BATCH = 2**20


def models(
    pattern: list[str] | None = typer.Argument(None, help="Names or fnmatch patterns to list, e.g. 'timm:convnext*', "
                                               "'torchvision:*', 'resnet*' (default: the whole suite)."),
    suite: str | None = SuiteOpt,
    family: str | None = typer.Option(None, "--family", "-f", help="Only this family (e.g. ResNet, Inception)."),
    suite_file: list[Path] | None = SuiteFileOpt,
    fmt: str = FormatOpt,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """List the zoo's models: the paper suite, another with --suite, or what patterns select (within --suite
    when both are given)."""
    from .. import zoo
    from ..zoo.families import of_family
    from . import render

    check_format(fmt)
    files = suite_files(suite_file)
    if pattern:
        where = f"suite {suite!r}" if suite else "the zoo"
        ids = [i for p in pattern for i in zoo.list_models(p, suite=suite, suite_files=files)] if suite else pattern
        if suite and not ids:
            raise UsageError(f"no model of {where} matches {' '.join(pattern)}; `dnnbench models --suite {suite}` "
                             f"lists them")
        specs = zoo.resolve_models(tuple(ids))
        title = f"{len(specs)} models of {where} matching {' '.join(pattern)}"
    else:
        chosen = zoo.get_suite(suite or "paper", files)
        specs = zoo.resolve_models(suite=chosen.name, suite_files=files)
        where = f"suite {chosen.name!r}"
        title = f"Suite {chosen.name!r}: {len(specs)} models" + (f" - {chosen.description}" if chosen.description else "")
    if family:
        specs = of_family(specs, family, where)
        title += f", family {family}"
    render.emit(console, render.model_rows(specs), render.models_table(specs, title), fmt, output)


def profile(
    model: list[str] | None = typer.Argument(None, help="Zoo names or aliases, timm:NAME / torchvision:NAME, or fnmatch "
                                             "patterns: 'timm:*', 'torchvision:*', 'timm:convnext*'."),
    suite: str | None = SuiteOpt,
    suite_file: list[Path] | None = SuiteFileOpt,
    input_size: int | None = typer.Option(None, "--input-size", min=1, max=MAX_SIDE,
                                          help="Square input side (default: each model's native size)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, max=MAX_BATCH,
                                   help="Batch size; totals are for the whole batch."),
    mode: str = typer.Option("standard", "--mode",
                             help="standard | extended | conv-only | bianco2018 (docs/METHODOLOGY.md)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16: the dtype weight bytes are given at."),
    per_layer: bool = typer.Option(False, "--per-layer", help="One row per module with its own params and MACs "
                                   "(counted here, not kept in the store)."),
    sort_by: str = typer.Option("order", "--sort-by", help="Per-layer order: order | macs | params | path | type."),
    top: int | None = typer.Option(None, "--top", min=1, help="Only the first N layers after sorting."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help=DB_HELP + " Counts are kept there and not counted again."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=0,
                                    help="Worker processes (default: the usable cores; 0: count in this process)."),
    force: bool = typer.Option(False, "--force", help="Count again the models the store has counted already."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Seconds one model may take to count."),
    fmt: str = FormatOpt,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (CSV unless --format json)."),
) -> None:
    """Parameters and operations (MACs; FLOPs = 2 x MACs), counted on the meta device by a pool of worker
    processes; each count is kept in the store, and models already counted there are not counted again."""
    from .. import zoo
    from ..devices import parse_precision, torch_dtype
    from ..measure.complexity import resolve_mode
    from . import render

    check_format(fmt)
    try:
        mode, note = resolve_mode(mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if note:
        typer.echo(f"note: {note}", err=True)
    if sort_by not in render.LAYER_SORTS:
        raise UsageError(f"unknown sort {sort_by!r}; choose one of {', '.join(render.LAYER_SORTS)}")
    if not model and not suite:
        raise UsageError("name at least one model, or a suite with --suite (e.g. --suite paper)")
    weight_dtype = torch_dtype(parse_precision(dtype))
    specs = zoo.resolve_models(tuple(model or ()), suite, suite_files(suite_file))
    if per_layer:
        from ..measure.complexity import complexity

        with err_console.status("counting") as status:
            results = []
            for spec in specs:
                status.update(f"counting {spec.id}")
                results.append(complexity(spec, input_size, batch_size, mode, weight_dtype))
        render.emit_layers(console, results, sort_by, top, fmt, output)
        return
    results, failed = _count(specs, input_size, batch_size, mode, parse_precision(dtype), db, jobs, timeout, force)
    if failed:
        _say_failures(failed, len(specs))
    if not results:
        first = failed[0]
        raise ProfileFailedError(f"could not count {first.model}: {first.reason}" if len(failed) == 1 else
                                 f"none of the {len(failed)} models could be counted; first: {first.model}: {first.reason}")
    render.emit(console, render.complexity_rows(results), render.complexity_table(results), fmt, output)


class ProfileFailedError(UsageError):
    """Not one of the models asked for could be counted (each one's reason is printed)."""


def _count(specs, input_size, batch_size, mode, dtype, db, jobs, timeout, force):
    """Counts of `specs` from the store or a pool of workers, in the order of `specs`, and the failures."""
    import sys

    from ..run.lifecycle import exit_code
    from ..run.zoo_profile import ProfileRequest, as_result, profile_models
    from ..store import Store
    from .progress import ProfileProgress

    request = ProfileRequest(input_size, batch_size, mode, dtype)
    progress = ProfileProgress(err_console)
    workers = jobs if jobs is not None else (0 if len(specs) == 1 else None)  # one model: no pool to start
    with Store(db) as store:
        try:
            outcome = profile_models(specs, store, request, workers=workers, argv=sys.argv, timeout_s=timeout, recount=force,
                                     on_start=progress.start, on_record=progress.record)
        except KeyboardInterrupt as interrupt:  # Ctrl-C (130) or SIGTERM (143): what was counted is kept
            err_console.print("interrupted; the models counted so far are in the store and are not counted again",
                              style="yellow")
            raise typer.Exit(exit_code(interrupt)) from None
        finally:
            progress.finish()
    return [as_result(v) for v in outcome.in_order(specs)], outcome.failed


def _say_failures(failed, total: int) -> None:
    from rich.markup import escape

    err_console.print(f"[yellow]{len(failed)} of {total} models could not be counted on the meta device:[/]")
    for f in failed:
        err_console.print(f"  {escape(f.model)} ({f.status}): {escape(f.reason)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `models` and `profile` to the `dnnbench` app."""
    from .options import user_errors

    for command in (models, profile):
        app.command(command.__name__)(user_errors(command))
