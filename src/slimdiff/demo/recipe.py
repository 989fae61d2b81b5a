"""The demo's recipe: its data, the shipped models, its settings and the run configs it trains with — what
`benchmarks/step_study.py` repeats per seed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from slimdiff.config import DISTILL_POSITIONS, Config, DataConfig, DistillConfig, RunConfig, TrainConfig
from slimdiff.errors import ConfigError

DATA = "builtin:textures"
SIZE = 32
ASSETS = resources.files("slimdiff") / "assets"
# Shipped teacher: `slimdiff train configs/tiny.yaml` (3000 steps), its model/ folder copied here.
SHIPPED_TEACHER = ASSETS / "tiny-teacher"
# Shipped students: `slimdiff demo --train-students` with the default settings (800 steps each, from the shipped
# teacher), their model/ folders copied here with their run's config as training-config.yaml. Training them
# takes most of an hour on a 2-core CPU; the demo's live work is the step distillation and the measuring.
SHIPPED_STUDENTS = {"student": ASSETS / "tiny-sd-student", "baseline": ASSETS / "tiny-sd-baseline"}


@dataclass
class DemoSettings:
    out: Path = Path("outputs/demo")
    teacher: str | None = None  # None: the shipped teacher, or train one when none is shipped
    teacher_steps: int = 1500  # only when a teacher is trained here
    student_steps: int = 800
    # None: the shipped students where they are what this run would train (the shipped teacher and the
    # default student_steps, positions, batch_size), else trained here; True: always trained here
    train_students: bool | None = None
    # Distilled at the output only: with feat-up1 as well (the paper's default) the 800-step student's ε-error
    # rose 10% above the plain student's and its SWD to 2.2× the teacher's; at the output only it matched the
    # plain student (docs/demo/output-and-feat-up1/report.md). The ablation's position sweep measures this with seeds.
    positions: tuple[str, ...] = ("output",)
    batch_size: int = 32
    # also the same slim model trained without a teacher, for comparison (off by default: it costs the 15-min
    # budget two minutes; README, The demo, has its numbers)
    baseline: bool = False
    samples: int = 128
    sampler: str = "ddim"
    sample_steps: int = 100
    eta: float = 1.0  # DDIM's η for every model: 1 = ancestral (see the module docstring)
    seed: int = 0
    timing_seconds: float = 1.0  # per steps/s and seconds-per-image measurement
    # step distillation of the distilled student: configs/steps-tiny.yaml's settings, 150 steps rather than 400
    # so that the demo stays within 15 min on a 2-core CPU; 0 calls: skipped
    few_step_calls: int = 4
    few_step_training: int = 150

    def __post_init__(self):
        unknown = [p for p in self.positions if p not in DISTILL_POSITIONS]
        if unknown or not self.positions:
            raise ConfigError(
                f"--positions {unknown or '(none)'}: choose from {', '.join(DISTILL_POSITIONS)}"
            )


def run_config(
    model: str, train: TrainConfig, folder: Path, distill: DistillConfig | None = None, source: str = DATA
) -> Config:
    return Config(
        model=model,
        data=DataConfig(source=source, size=SIZE),
        train=train,
        run=RunConfig(dir=str(folder), checkpoint_every=train.steps, keep_checkpoints=1, sample_every=0),
        distill=distill,
    )


def from_scratch(steps: int, batch: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, warmup_steps=min(100, steps // 10), seed=seed)


def fine_tuning(steps: int, batch: int, seed: int = 0) -> TrainConfig:
    """Step distillation starts from a trained student: lr 1e-4, a short warm-up, a fast EMA."""
    warmup = min(20, steps // 10)
    return TrainConfig(
        steps=steps, batch_size=batch, base_lr=1e-4 / batch, warmup_steps=warmup, ema_decay=0.99, seed=seed
    )


def step_distillation(
    section: DistillConfig, calls: int, student: Path, lambda_freq: float = 0.0
) -> DistillConfig:
    """`section` turned into the demo's step distillation of `student` to `calls` calls: the output only,
    λ_s = 1 (the consistency loss) and `lambda_freq` (0: the plain variant)."""
    return replace(
        section,
        positions=("output",),
        lambda_spatial=1.0,
        lambda_freq=lambda_freq,
        steps=calls,
        student=str(student),
    )


def uses_shipped_students(settings: DemoSettings) -> bool:
    """Whether the shipped students are exactly what `settings` would train (see DemoSettings)."""
    if settings.train_students or settings.teacher is not None:
        return False
    recipe = DemoSettings()
    same = all(
        getattr(settings, k) == getattr(recipe, k) for k in ("student_steps", "positions", "batch_size")
    )
    return same and all(folder.is_dir() for folder in SHIPPED_STUDENTS.values())
