"""Who may write a run folder, and with which config: one process at a time (a lock the OS drops when the
process dies, so a crash never blocks a resume), and a resume only with the settings the run was started with,
apart from those that cannot change what is learned."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from slimdiff.config import Config, ConfigError, dotted_keys, load_config
from slimdiff.errors import TrainingError

LOCK = ".lock"
# What a resume may change: how long the run goes on, and how often it logs, samples and checkpoints.
RESUMABLE_CHANGES = {
    "train.steps",
    "run.log_every",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.sample_every",
    "run.sample_count",
    "run.sample_steps",
    "data.num_workers",
}


def check_resume_config(run_dir: Path, config: Config) -> None:
    """Refuse a resume whose config differs from the run's `config.yaml` in a setting a resume cannot change;
    one line names the key and both values. Reads only: a refusal leaves the run folder as it was."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return  # a checkpoint named directly, outside any run folder: nothing to compare with
    try:
        saved = dotted_keys(load_config(saved_path, cls=type(config)).to_dict())
    except ConfigError as error:
        raise TrainingError(f"cannot resume: the run's {saved_path} is damaged ({error})") from None
    asked = dotted_keys(config.to_dict())
    for key in sorted(saved.keys() | asked.keys()):
        if key in RESUMABLE_CHANGES or saved.get(key) == asked.get(key):
            continue
        allowed = ", ".join(sorted(RESUMABLE_CHANGES))
        raise TrainingError(
            f"cannot resume: {key} was {saved.get(key)!r} when the run started ({saved_path}), "
            f"now {asked.get(key)!r}; "
            f"a resume may change only {allowed} (start a new run.dir for other settings)"
        )


@contextlib.contextmanager
def hold_run_folder(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for this process while the block runs; a second process gets one line naming the holder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "another process"
            raise TrainingError(
                f"{run_dir} is in use by a training process (pid {holder}); wait for it to finish, stop it, "
                "or choose another run.dir"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(handle)  # closing drops the lock; so does the process dying
