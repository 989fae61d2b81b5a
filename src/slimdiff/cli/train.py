"""`slimdiff train CONFIG [--set key=value …] [--resume latest|PATH]`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import RESUME_HELP, SET_HELP, app, say, user_errors


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="YAML run config (see configs/)"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: str | None = typer.Option(None, "--resume", help=RESUME_HELP),
) -> None:
    """Train a diffusion UNet (teacher or slim) from a config; a `distill:` section makes it distil.
    Checkpoints, samples and logs go to run.dir."""
    from slimdiff.config import load_config
    from slimdiff.training.loop import train

    with user_errors(f"{config}: "):
        resolved = load_config(config, overrides)
    with user_errors():
        say(f"run folder: {train(resolved, resume=resume)}")
