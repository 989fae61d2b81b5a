"""Which worker of the ablation study (`benchmarks/ablation/`) does what: one claim file per run or teacher in
outputs/ablation/claims/, held with an advisory lock (flock) while its process lives.

The kernel drops a process's locks when it dies however it dies, so a crashed or killed worker's claims are free
at once, and a claim can never look held because an unrelated process got a stale pid after a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_held: dict[Path, IO] = {}  # this process's claims: claim file → the open file whose lock it holds


def _path(claims: Path, name: str) -> Path:
    return claims / f"{name}.claim"


def _try_lock(f: IO) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def claim(claims: Path, name: str) -> bool:
    """Take `name` for this process unless another live process holds it; True if this process holds it."""
    path = _path(claims, name)
    if path in _held:
        return True
    claims.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 — kept open: closing it drops the lock
    if not _try_lock(f):
        f.close()
        return False
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")  # for people looking at the folder; the lock is what counts
    f.flush()
    _held[path] = f
    return True


def held_elsewhere(claims: Path, name: str) -> bool:
    """Another live process holds `name`."""
    path = _path(claims, name)
    if path in _held or not path.is_file():
        return False
    with open(path) as f:
        if not _try_lock(f):
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def release(claims: Path, name: str) -> None:
    """Let `name` go (the file stays: removing it could hand one name to two processes)."""
    f = _held.pop(_path(claims, name), None)
    if f is not None:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def teacher_training(data: str) -> str:
    """The claim held while `data`'s teacher is trained and then evaluated (its record and cached ε̂, which
    every student's evaluation needs)."""
    return f"teacher-{data}-training"


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """A whole-host lock on `lock` (released when the process dies, too)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
