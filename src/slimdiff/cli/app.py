"""The `slimdiff` typer application and the helpers every command shares."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from slimdiff.errors import SlimdiffError, check_output_folder
from slimdiff.sampling.solvers import SAMPLERS

# diffusers still passes a deprecated argument to huggingface_hub on every local load; it is not the user's concern.
warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning on the command line is one line for the user, not the library's file and source line."""
    return f"warning: {message}\n"


warnings.formatwarning = _warning_line

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


SET_HELP = "override a config value, e.g. --set model=tiny-sd --set train.steps=200 (repeatable)"
RESUME_HELP = "continue a run: 'latest' (newest intact checkpoint in run.dir) or a checkpoint folder"
SCHEDULER_HELP = "solver: " + ", ".join(SAMPLERS) + " (README: Picking a solver)"


def say(message: str, style: str = "", stderr: bool = False) -> None:
    """Print `message` verbatim: paths and hints may hold [brackets], which rich would read as markup."""
    (err_console if stderr else console).print(Text(message, style=style), highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop a command on a user mistake: one line on stderr (what is wrong, what to do), no traceback."""
    err_console.print(Text("error: ", style="bold red") + Text(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Turn a SlimdiffError raised inside into `fail` with the exit code its type carries."""
    try:
        yield
    except SlimdiffError as error:
        fail(prefix + str(error), error.exit_code)


def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse an `--out` that is a file, or a non-empty folder unless `overwrite`: nothing is lost by mistake."""
    with user_errors():
        check_output_folder(out, "--out")
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
