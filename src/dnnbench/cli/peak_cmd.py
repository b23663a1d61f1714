"""`dnnbench peak`: the device's peak FLOP/s per precision (spec and measured), stored for % of peak."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import UsageError

PRECISION_HELP = ("fp32 | bf16 | fp16 | tf32 (CUDA) | int8 (spec only), or several: fp32,bf16. Default: fp32, plus "
                  "bf16 where the CPU has bf16 instructions; on CUDA fp32, tf32, fp16 and bf16.")


def _default_db() -> Path:
    from .options import DEFAULT_DB

    return DEFAULT_DB


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--threads must be whole numbers separated by commas, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--threads must be at least 1, not {text!r}")
    return tuple(dict.fromkeys(values))


def default_precisions(device: str) -> tuple[str, ...]:
    from ..env.peak import collect_cpu_info

    if device != "cpu":
        return ("fp32", "tf32", "fp16", "bf16")
    flags = collect_cpu_info().flags
    return ("fp32", "bf16") if flags & {"avx512_bf16", "amx_bf16", "bf16"} else ("fp32",)


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:,.1f}"


def show_estimates(console, estimates: list, device: str) -> None:
    """The estimates as a table, then how each was reached: its basis and every kernel measured."""
    table = Table(title=f"Peak of {estimates[0].device_name or device}, GFLOP/s (int8: GOP/s); * measured while "
                        "other processes used the CPU", title_justify="left")
    for header in ("precision", "threads", "spec", "matmul", "conv3x3", "copy GB/s", "peak", "basis"):
        table.add_column(header, justify="left" if header in ("precision", "basis") else "right")
    for e in estimates:
        kernels = {k.kernel: k for k in e.kernels}
        table.add_row(e.precision, str(e.threads) if e.device == "cpu" else "-",
                      _g(e.theoretical_flops), _g(kernels["matmul"].rate) if "matmul" in kernels else "-",
                      _g(kernels["conv3x3"].rate) if "conv3x3" in kernels else "-", _g(e.bandwidth_bytes_per_s),
                      _g(e.peak_flops), e.basis.replace("measured ", "") + ("*" if e.contended else ""))
    console.print(table)
    for e in estimates:
        console.print(f"{e.precision}, {e.threads if e.device == 'cpu' else '-'} thread(s): {e.basis_detail}",
                      highlight=False)
        for k in e.kernels:
            console.print(f"  {k.kernel}: {k.op}, {k.shape}, best of {k.calls} calls {k.rate / 1e9:,.1f} G/s "
                          f"(median {k.median_rate / 1e9:,.1f})", highlight=False)


def peak(
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    precision: str | None = typer.Option(None, "--precision", "--dtype", help=PRECISION_HELP),
    threads: str | None = typer.Option(None, "--threads", help="Intra-op threads (CPU), e.g. 1 or 1,2. "
                                          "Default: PyTorch's."),
    seconds: float = typer.Option(2.0, "--seconds", help="Timed seconds per precision (half matrix product, half "
                                  "convolution), after shapes are chosen."),
    spec_only: bool = typer.Option(False, "--spec-only", help="Only the spec estimate; measure nothing."),
    db: Path | None = typer.Option(None, "--db", help="The results store (SQLite); default "
                                      "results/dnnbench.sqlite."),
    no_store: bool = typer.Option(False, "--no-store", help="Print only; store nothing."),
) -> None:
    """Estimate this machine's peak FLOP/s per precision: cores x FLOP/cycle x clock from the CPU's flags (or the
    GPU's SMs and compute capability), checked against a measured matrix product and 3x3 convolution; the higher
    is the peak that reports divide achieved GFLOP/s by. Stored in the results store."""
    from ..env.peak import normalise_device, normalise_precision
    from .options import console

    device = normalise_device(device)
    if not seconds > 0:
        raise UsageError(f"--seconds must be positive, not {seconds}")
    precisions = (tuple(dict.fromkeys(normalise_precision(p) for p in precision.split(",") if p.strip()))
                  if precision else default_precisions(device))
    if not precisions:
        raise UsageError("no precision given")
    counts: tuple[int | None, ...] = _ints(threads) if threads and device == "cpu" else (None,)
    if threads and device != "cpu":
        console.print("[yellow]--threads applies to the CPU; ignored on a GPU[/]", highlight=False)
    estimates = _estimate(device, precisions, counts, seconds, measure=not spec_only)
    show_estimates(console, estimates, device)
    if any(e.contended for e in estimates):
        console.print("[yellow]other processes used the CPU while measuring: the measured rates may be low[/]",
                      highlight=False)
    if not no_store:
        _keep(db or _default_db(), estimates)


def _estimate(device: str, precisions: tuple[str, ...], counts: tuple[int | None, ...], seconds: float,
              measure: bool) -> list:
    """Every precision at every thread count, with a status line saying which is being measured."""
    from ..env.peak import estimate_peak
    from .options import console

    estimates = []
    with console.status("measuring dense kernels") as status:
        for count in counts:
            for p in precisions:
                status.update(f"measuring {device} {p}" + (f", {count} thread(s)" if count else ""))
                estimates.append(estimate_peak(device, p, count, seconds, measure=measure))
    return estimates


def _keep(path: Path, estimates: list) -> None:
    """Stores the estimates (a stored better one of a contended measurement stays) and says what was kept."""
    import torch

    from ..run.peak import keep_estimates
    from .options import console

    machine_id, kept = keep_estimates(path, estimates)
    for k, is_new in kept:
        if not is_new:
            console.print(f"[yellow]kept the stored {k.precision} peak of {k.threads} thread(s), "
                          f"{k.peak_flops / 1e9:,.1f} G{k.unit}[/]: this one was measured under contention and is "
                          "lower", highlight=False)
    stored = sum(is_new for _, is_new in kept)
    console.print(f"stored {stored} peak estimate(s) for machine {machine_id[:8]} in {path} "
                  f"(torch {torch.__version__})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `dnnbench peak` to the app."""
    from .options import user_errors

    app.command("peak")(user_errors(peak))
