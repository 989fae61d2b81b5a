"""One family of user-facing errors: what went wrong and what to do, in one line.

The command line turns a `SlimdiffError` into that line on stderr and exits with its `exit_code`; anything
else is a bug and keeps its traceback. See docs/architecture.md, "Errors".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

# What writing raises when the disk is full or read-only: safetensors reports its I/O errors as its own type.
WRITE_ERRORS = (OSError, SafetensorError)


def write_failure(error: Exception) -> str:
    """The reason a write failed, in a few words ("No space left on device")."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.split("I/O error: ")[-1]


# What diffusers, transformers, huggingface_hub, safetensors and json raise for a model they cannot read: missing
# files and hub failures (OSError), damaged weights (SafetensorError, which diffusers re-raises as OSError), a
# config that is not JSON or does not fit the class (ValueError), a config value of the wrong type (TypeError,
# from the model's constructor).
LOAD_ERRORS = (OSError, ValueError, TypeError, SafetensorError)


class SlimdiffError(Exception):
    """A problem the user can fix (a setting, a path, a data source); exit code 2 on the command line.

    Not a ValueError: an `except ValueError` written for a library's errors must not catch (and re-word) ours."""

    exit_code = 2


class ConfigError(SlimdiffError):
    """A configuration mistake: unknown key, wrong type, value out of range, settings that do not fit."""


class DataError(SlimdiffError):
    """A data source that cannot be used: missing, empty, or (under `strict`) holding a bad file."""


class ModelError(SlimdiffError):
    """A model, teacher or autoencoder that cannot be found, loaded or used as asked."""


class OutputError(SlimdiffError):
    """An output that cannot be written (a full or read-only disk; whatever was half written is removed), or an
    output folder that holds files slimdiff must not replace."""


class TrainingError(SlimdiffError):
    """A run that cannot start or continue (e.g. a checkpoint that does not fit it)."""


class TrainingDiverged(TrainingError):
    """The loss became NaN/Inf; the run stopped and its last good checkpoint is intact (exit code 1)."""

    exit_code = 1


class TrainingStopped(SlimdiffError):
    """SIGINT / SIGTERM stopped the run after writing a checkpoint; exit code 128 + the signal (130 / 143),
    so a stopped run never looks like a finished one."""

    def __init__(self, signum: int, step: int):
        import signal

        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} at step {step} after writing a checkpoint; resume with --resume latest"
        )
        self.exit_code = 128 + int(signum)


def check_output_folder(path: Path, name: str) -> None:
    """Refuse an output folder that is a file, lies under a file or cannot be written, before anything starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path} is a file; pass a folder")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{name} {path} lies under a file ({existing}); pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{name} {path} cannot be written ({existing} is not writable)")
    try:  # permission bits lie on /proc, /sys and read-only mounts (and to root): try a file that vanishes
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(
            f"{name} {path} cannot be written ({existing}: {error.strerror or error}); pass a normal folder"
        ) from None


@contextmanager
def loading(what: str, fix: str) -> Iterator[None]:
    """The one place where what the libraries raise while loading `what` (a model, autoencoder, text encoder,
    scheduler config) becomes a `ModelError` of one line: "cannot load <what>: <why>; <fix>". Our own errors
    inside pass through unchanged; the library's error stays attached as the cause."""
    try:
        yield
    except LOAD_ERRORS as error:
        raise ModelError(f"cannot load {what}: {load_failure(error)}; {fix}") from error


def load_failure(error: BaseException) -> str:
    """Why a load failed, in one line: safetensors' own reason for a damaged weights file (diffusers hides it
    behind "Unable to load weights from checkpoint file"), else the first line of the error."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, SafetensorError):
            return f"damaged safetensors file ({_first_line(cause)})"
        cause = cause.__cause__ or cause.__context__
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip(" .") if lines else type(error).__name__
