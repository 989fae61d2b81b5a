"""`slimdiff distill CONFIG --teacher PATH_OR_ID [--to-steps N] [--student PATH] [--set key=value …]
[--resume latest|PATH]`."""

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
    to_steps: int | None = typer.Option(
        None,
        "--to-steps",
        help="step distillation: a student that samples in N calls (consistency distillation; sets distill.steps)",
    ),
    student: str | None = typer.Option(
        None, "--student", help="model folder whose UNet starts the student (sets distill.student)"
    ),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: str | None = typer.Option(None, "--resume", help=RESUME_HELP),
) -> None:
    """Distil a slim student from a teacher: L = L_ε + λ_s·L_spatial + λ_f·L_freq, in the training loop; with
    --to-steps N, a student that samples in N calls (consistency distillation)."""
    from slimdiff.config import DistillConfig, load_config
    from slimdiff.training.loop import train

    options = {"teacher": teacher, "steps": to_steps, "student": student}
    with user_errors(f"{config}: "):
        resolved = load_config(config, overrides)
        given = {k: v for k, v in options.items() if v is not None}
        # rebuilt, so that every rule of DistillConfig sees the options too
        resolved.distill = DistillConfig(**{**vars(resolved.distill or DistillConfig()), **given})
    if resolved.distill.teacher is None:
        fail("no teacher: pass --teacher PATH_OR_HUB_ID or set distill.teacher in the config")
    with user_errors():
        say(f"run folder: {train(resolved, resume=resume)}")
