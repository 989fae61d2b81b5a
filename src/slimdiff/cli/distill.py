"""`slimdiff distill CONFIG --teacher PATH_OR_ID [--set key=value …] [--resume latest|PATH]`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import RESUME_HELP, SET_HELP, app, fail, say, user_errors


@app.command("distill")
def distill_command(
    config: Path = typer.Argument(
        ..., help="YAML run config, optionally with a distill: section (see configs/)"
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
    from slimdiff.config import DistillConfig, load_config
    from slimdiff.training.loop import train

    with user_errors(f"{config}: "):
        resolved = load_config(config, overrides)
    resolved.distill = resolved.distill or DistillConfig()
    if teacher is not None:
        resolved.distill.teacher = teacher
    if resolved.distill.teacher is None:
        fail("no teacher: pass --teacher PATH_OR_HUB_ID or set distill.teacher in the config")
    with user_errors():
        say(f"run folder: {train(resolved, resume=resume)}")
