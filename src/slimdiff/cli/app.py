"""The `slimdiff` typer application and the helpers every command shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="slimdiff",
    help="Slim diffusion models that keep high-frequency detail (Spectral Diffusion, CVPR 2023).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (logs, CI) is not cut to rich's 80-column default, so wide tables stay whole.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop a command on a user mistake: one line on stderr (what is wrong, what to do), no traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse an `--out` that is a file, or a non-empty folder unless `overwrite`: nothing is lost by mistake."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        fail(f"--out {out} is not empty; pick a new folder or pass --overwrite")


def _print_version(value: bool) -> None:
    if value:
        from slimdiff import __version__

        console.print(f"slimdiff {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Slim diffusion models that keep high-frequency detail (Spectral Diffusion, CVPR 2023)."""
