"""`slimdiff distill CONFIG --teacher PATH_OR_ID [--set key=value …] [--resume latest|PATH]`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, fail
from slimdiff.cli.train import RESUME_HELP, SET_HELP, load_config_or_fail, train_or_fail
from slimdiff.distill import DistillConfig, load_teacher, make_objective


@app.command("distill")
def distill_command(
    config: Path = typer.Argument(
        ..., help="YAML run config with an optional distill: section (see configs/)"
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="teacher: slimdiff run/model folder, diffusers folder or hub id (overrides distill.teacher)",
    ),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: str | None = typer.Option(None, "--resume", help=RESUME_HELP),
) -> None:
    """Distil a slim student from a teacher: L = L_ε + λ_s·L_spatial + λ_f·L_freq, in the training loop."""
    resolved = load_config_or_fail(config, overrides, DistillConfig)
    if teacher is not None:
        resolved.distill.teacher = teacher
    source = resolved.distill.teacher
    if source is None:
        fail("no teacher: pass --teacher PATH_OR_HUB_ID or set distill.teacher in the config")
    try:
        frozen = load_teacher(source)
    except (OSError, ValueError) as error:
        fail(f"cannot load teacher {source}: {error}")
    run = train_or_fail(resolved, resume, make_objective(resolved.distill, frozen))
    typer.echo(f"run folder: {run}")
