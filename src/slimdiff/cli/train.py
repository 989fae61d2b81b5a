"""`slimdiff train CONFIG [--set key=value …] [--resume latest|PATH]`.

`load_config_or_fail` and `train_or_fail` are the shared run machinery: `slimdiff distill` loads its own
config class and passes an objective to the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from torch import nn

from slimdiff.cli.app import app, fail
from slimdiff.config import Config, ConfigError, load_config

SET_HELP = "override a config value, e.g. --set model=tiny-sd --set train.steps=200 (repeatable)"
RESUME_HELP = "continue a run: 'latest' (newest checkpoint in run.dir) or a checkpoint folder"


def load_config_or_fail(path: Path | None, overrides: list[str], cls: type[Config] = Config) -> Config:
    try:
        return load_config(path, overrides, cls)
    except ConfigError as error:
        fail(f"{path or 'config'}: {error}")


def train_or_fail(
    config: Config, resume: str | None, make_objective: Callable[[nn.Module], nn.Module] | None = None
) -> Path:
    """Run the training loop; user-fixable problems end in one line, a NaN loss in exit code 1."""
    from slimdiff.data import DataError
    from slimdiff.train import TrainingError, train

    try:
        return train(config, make_objective=make_objective, resume=resume)
    except (ConfigError, DataError) as error:
        fail(str(error))
    except TrainingError as error:
        fail(str(error), code=1 if "NaN" in str(error) else 2)


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="YAML run config (see configs/)"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: str | None = typer.Option(None, "--resume", help=RESUME_HELP),
) -> None:
    """Train a diffusion UNet (teacher or slim) from a config; checkpoints, samples, logs go to run.dir."""
    resolved = load_config_or_fail(config, overrides)
    run = train_or_fail(resolved, resume)
    typer.echo(f"run folder: {run}")
