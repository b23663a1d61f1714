"""`dnnbench backends`: which deployment backends and precisions run on this machine, and why not."""

from __future__ import annotations

import typer
from rich.table import Table


def backends(
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
) -> None:
    """Deployment backends on this machine: available or why not, and the precisions each runs here."""
    import torch

    from ..backends import BACKENDS, PRECISIONS, BackendUnavailable, search_precisions
    from ..devices import resolve_device
    from .options import console

    device = resolve_device(device)
    table = Table(title=f"Backends on {device} (a best-deployment search tries {', '.join(search_precisions(device))})",
                  title_justify="left")
    for header in ("backend", "available", *PRECISIONS, "note"):
        table.add_column(header)
    for name, backend_type in BACKENDS.items():
        reason = backend_type.unavailable_reason(torch.device(device))
        if reason:
            table.add_row(name, "no", *["-"] * len(PRECISIONS), reason)
            continue
        marks = []
        for precision in PRECISIONS:
            try:
                why = backend_type(torch.device(device), precision, None).unsupported_reason()
            except BackendUnavailable as exc:
                why = str(exc)
            marks.append("yes" if why is None else "no")
        table.add_row(name, "yes", *marks, " ".join((backend_type.__doc__ or "").split()).split(". ")[0])
    console.print(table)


def register(app: typer.Typer) -> None:
    from .options import user_errors

    app.command("backends")(user_errors(backends))
