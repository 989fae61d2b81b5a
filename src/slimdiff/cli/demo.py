"""`slimdiff demo`: tiny teacher → distilled SD student → samples, metrics and a report, on built-in data."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, console, user_errors
from slimdiff.demo.recipe import DemoSettings

_DEFAULT = DemoSettings()  # one owner of the demo's defaults; the options below show them


@app.command("demo")
def demo_command(
    out: Path = typer.Option(_DEFAULT.out, "--out", help="folder for the runs and the report"),
    teacher: str | None = typer.Option(
        None, "--teacher", help="use this teacher (model folder or hub id) instead of the shipped tiny one"
    ),
    teacher_steps: int = typer.Option(
        _DEFAULT.teacher_steps, min=1, max=1_000_000, help="steps, when a teacher is trained here"
    ),
    student_steps: int = typer.Option(
        _DEFAULT.student_steps, min=1, max=1_000_000, help="distillation steps for the student"
    ),
    train_students: bool = typer.Option(
        False,
        "--train-students",
        help="train the students here (~1 h on 2 cores) even where the shipped ones are the same recipe",
    ),
    few_step_calls: int = typer.Option(
        _DEFAULT.few_step_calls,
        min=0,
        max=50,
        help="calls of the step-distilled student (0: no step distillation)",
    ),
    few_step_training: int = typer.Option(
        _DEFAULT.few_step_training,
        min=1,
        max=1_000_000,
        help="step-distillation (consistency) training steps",
    ),
    positions: str = typer.Option(
        ",".join(_DEFAULT.positions),
        help="distillation positions, comma-separated, from output, feat-up1, feat-up2, feat-down4",
    ),
    baseline: bool = typer.Option(
        _DEFAULT.baseline,
        help="also the same slim model trained without a teacher, for comparison (the shipped one)",
    ),
    samples: int = typer.Option(
        _DEFAULT.samples, min=8, max=50_000, help="images sampled per model for the metrics"
    ),
    sample_steps: int = typer.Option(_DEFAULT.sample_steps, min=1, max=1000, help="DDIM steps per sample"),
    eta: float = typer.Option(
        _DEFAULT.eta,
        min=0.0,
        max=1.0,
        help="DDIM's η for every model (1: ancestral; 0: deterministic, see the report)",
    ),
    seed: int = typer.Option(_DEFAULT.seed, min=0, help="seed for sampling noise and evaluation data"),
) -> None:
    """Run the whole method on built-in textures: distil a slim student and report what it keeps."""
    from slimdiff.demo import run_demo

    check_out_folder(out, overwrite=True)  # a re-run replaces its own earlier outputs
    with user_errors():
        settings = DemoSettings(
            out=out,
            teacher=teacher,
            teacher_steps=teacher_steps,
            student_steps=student_steps,
            train_students=train_students or None,
            few_step_calls=few_step_calls,
            few_step_training=few_step_training,
            positions=tuple(p.strip() for p in positions.split(",") if p.strip()),
            baseline=baseline,
            samples=samples,
            sample_steps=sample_steps,
            eta=eta,
            seed=seed,
        )
        run_demo(settings, console)
