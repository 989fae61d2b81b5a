"""The sections of a run config as dataclasses, each checking its own values when it is built.

Every rule about a setting lives here, once: the training and distillation code take these sections as they
are, without checking them again. A `distill:` section turns a run into distillation
(`training.run.build_objective`), so a distillation config can never train plain ε by accident.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

import yaml

from slimdiff.diffusion import NOISE_SCHEDULE
from slimdiff.errors import ConfigError

# Where distillation reads features (README, "Distillation"): ε, after the last / second last up-sampler,
# after the last down-sampler.
DISTILL_POSITIONS = ("output", "feat-up1", "feat-up2", "feat-down4")
# ω of the frequency loss: ours (normalised, channel mean, + δ), the paper's |F(resize(x0))|^α literally, ours
# from the batch's mean spectrum (one ω for every image: the data set's spectrum, estimated), or ω ≡ 1 (the
# frequency term is then the spatial one, by Parseval: the control for ω itself).
OMEGA_FORMS = ("ours", "paper", "mean", "uniform")
# Timesteps a step-distilled (consistency) student is trained on and samples from: LCMScheduler's
# original_inference_steps, so distill.steps can be at most this.
CONSISTENCY_GRID = 50
# The learning rate after the warm-up (diffusers' get_scheduler: linear, cosine, constant_with_warmup).
LR_SCHEDULES = ("linear", "cosine", "constant")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class DataConfig:
    source: str = "builtin:textures"  # folder, HF dataset name / dir, builtin:photos, builtin:textures
    size: int = 32  # image side in pixels
    image_column: str = "image"  # HF datasets only
    label_column: str | None = None  # HF datasets: class labels, for conditioning.kind class
    caption_column: str | None = None  # HF datasets: captions, for conditioning.kind text
    strict: bool = False  # a bad image file stops the run instead of being skipped
    length: int | None = None  # cap on images (folder / HF) or number of crops (builtin)
    seed: int = 0  # built-in crops
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self):
        check(8 <= self.size <= 4096, f"data.size must lie in [8, 4096], got {self.size}")
        check(self.length is None or self.length >= 1, f"data.length must be positive, got {self.length}")
        check(0 <= self.num_workers <= 64, f"data.num_workers must lie in [0, 64], got {self.num_workers}")


@dataclass
class AutoencoderConfig:
    kind: str = "identity"  # identity (pixel space), vq (VQModel, f4), kl (AutoencoderKL, f8)
    source: str | None = None  # local folder or hub id
    scaling_factor: float | None = None  # None: the model's own for kl, 1.0 for vq
    cache: bool = False  # encode the data set once and keep the latents on disk
    cache_dir: str | None = None  # default: <run.dir>/../.latent-cache

    def __post_init__(self):
        from slimdiff.models.autoencoders import KINDS

        check(self.kind in KINDS, f"autoencoder.kind {self.kind!r} is not one of {', '.join(KINDS)}")
        check(
            (self.source is None) == (self.kind == "identity"),
            "autoencoder.source is needed for kind vq / kl and not allowed for identity",
        )
        check(
            self.scaling_factor is None or self.scaling_factor > 0,
            f"autoencoder.scaling_factor must be positive, got {self.scaling_factor}",
        )


@dataclass
class TrainConfig:
    steps: int = 3000  # optimiser steps
    batch_size: int = 32  # per process and micro-step
    grad_accum: int = 1  # micro-steps per optimiser step
    base_lr: float = 2.5e-5  # lr = base_lr × total batch (batch_size × grad_accum × processes)
    warmup_steps: int = 100  # linear warm-up, then the lr_schedule
    # after the warm-up: "linear" decay to 0 at `steps`, "cosine" to 0, or "constant" (a run can then be
    # lengthened on resume and train exactly as if it had been asked for the longer run from the start)
    lr_schedule: str = "linear"
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    ema_decay: float = 0.999  # reached after an EMA warm-up (decay 1 − (1 + step)^(−2/3))
    mixed_precision: str = "no"  # no, fp16, bf16
    # end of the √β-linear noise schedule from β_start 0.0015 (LDM Church: 0.0155)
    beta_end: float = NOISE_SCHEDULE["beta_end"]
    seed: int = 0

    def __post_init__(self):
        check(self.steps >= 1, f"train.steps must be at least 1, got {self.steps}")
        check(
            1 <= self.batch_size <= 65536, f"train.batch_size must lie in [1, 65536], got {self.batch_size}"
        )
        check(self.grad_accum >= 1, f"train.grad_accum must be at least 1, got {self.grad_accum}")
        check(0 < self.base_lr < 1, f"train.base_lr must lie in (0, 1), got {self.base_lr}")
        check(self.warmup_steps >= 0, f"train.warmup_steps must be ≥ 0, got {self.warmup_steps}")
        check(
            self.lr_schedule in LR_SCHEDULES,
            f"train.lr_schedule must be {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
        )
        check(self.weight_decay >= 0, f"train.weight_decay must be ≥ 0, got {self.weight_decay}")
        check(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"train.adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}",
        )
        check(self.grad_clip >= 0, f"train.grad_clip must be ≥ 0, got {self.grad_clip}")
        check(0 <= self.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {self.ema_decay}")
        check(
            self.mixed_precision in ("no", "fp16", "bf16"),
            f"train.mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}",
        )
        start = NOISE_SCHEDULE["beta_start"]
        check(start < self.beta_end < 1, f"train.beta_end must lie in ({start}, 1), got {self.beta_end}")


@dataclass
class RunConfig:
    dir: str = "runs/tiny"  # run folder: config.yaml, checkpoints/, samples/, logs/, model/
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3  # the last K checkpoints are kept
    sample_every: int = 500  # steps between sample grids; 0 turns them off
    sample_count: int = 16  # images per grid
    sample_steps: int = 50  # DDIM steps per sample
    log_every: int = 10  # steps between tensorboard scalars

    def __post_init__(self):
        check(self.checkpoint_every >= 1, f"run.checkpoint_every must be ≥ 1, got {self.checkpoint_every}")
        check(self.keep_checkpoints >= 1, f"run.keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}")
        check(self.sample_every >= 0, f"run.sample_every must be ≥ 0, got {self.sample_every}")
        check(
            1 <= self.sample_count <= 1024, f"run.sample_count must lie in [1, 1024], got {self.sample_count}"
        )
        check(
            1 <= self.sample_steps <= 1000, f"run.sample_steps must lie in [1, 1000], got {self.sample_steps}"
        )
        check(self.log_every >= 1, f"run.log_every must be ≥ 1, got {self.log_every}")


@dataclass
class ConditioningConfig:
    """What the UNet is conditioned on; a class model learns a null class and a text model the empty prompt
    (classifier-free guidance)."""

    kind: str | None = None  # none, class, text; None: what the preset takes
    cond_dropout: float = 0.1  # share of samples trained on the null class / empty prompt
    # the CLIP text model + tokenizer (hub id or folder), frozen
    text_encoder: str = "openai/clip-vit-large-patch14"

    def __post_init__(self):
        kinds = ("none", "class", "text")
        check(
            self.kind is None or self.kind in kinds,
            f"conditioning.kind must be one of {', '.join(kinds)}, got {self.kind!r}",
        )
        check(
            0 <= self.cond_dropout < 1,
            f"conditioning.cond_dropout must lie in [0, 1), got {self.cond_dropout}",
        )


@dataclass
class DistillConfig:
    """L = L_ε + λ_s·L_spatial + λ_f·L_freq against a frozen teacher (README, "Distillation")."""

    teacher: str | None = None  # slimdiff run/model folder, local diffusers folder or hub id
    positions: tuple[str, ...] = ("output", "feat-up1")  # from DISTILL_POSITIONS
    lambda_spatial: float = 0.1  # λ_s; 0 switches the spatial term off
    lambda_freq: float = 0.1  # λ_f; 0 switches the frequency term off
    alpha: float = -1.0  # α: exponent of the clean spectrum in ω (< 0 lifts high frequencies)
    delta: float = 1e-3  # δ: keeps ω finite where the spectrum vanishes
    omega: str = "ours"  # ω: from OMEGA_FORMS
    # step distillation: the student samples in this many calls (consistency distillation; README)
    steps: int | None = None
    student: str | None = None  # a model folder whose UNet starts the student (the config's model preset)

    def __post_init__(self):
        check(
            self.omega in OMEGA_FORMS,
            f"distill.omega must be {' or '.join(OMEGA_FORMS)}, got {self.omega!r}",
        )
        unknown = [p for p in self.positions if p not in DISTILL_POSITIONS]
        check(
            not unknown and bool(self.positions),
            f"distill.positions {list(self.positions)} must be taken from {', '.join(DISTILL_POSITIONS)}",
        )
        for name in ("lambda_spatial", "lambda_freq"):
            check(getattr(self, name) >= 0, f"distill.{name} must be ≥ 0, got {getattr(self, name)}")
        check(self.delta > 0, f"distill.delta must be positive, got {self.delta}")
        if self.steps is None:
            return
        check(
            isinstance(self.steps, int) and 1 <= self.steps <= CONSISTENCY_GRID,
            f"distill.steps must be a whole number in [1, {CONSISTENCY_GRID}] (the consistency grid), "
            f"got {self.steps!r}",
        )
        check(
            tuple(self.positions) == ("output",),
            f"distill.steps distils the output only; set distill.positions to [output], got {list(self.positions)}",
        )
        check(
            self.lambda_spatial + self.lambda_freq > 0,
            "distill.steps needs lambda_spatial or lambda_freq above 0 (its loss is λ_s·L_spatial + λ_f·L_freq)",
        )


@dataclass
class Config:
    model: str = "tiny-teacher"  # a preset name (slimdiff profile all lists them)
    model_overrides: dict = field(default_factory=dict)  # preset config fields to change
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    distill: DistillConfig | None = None  # present: distil from distill.teacher instead of plain ε

    def __post_init__(self):
        from slimdiff.models.presets import PRESETS

        check(self.model in PRESETS, f"model {self.model!r} is not a preset{suggest(self.model, PRESETS)}")

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def plain(value):
    """Tuples → lists so the YAML stays plain and loads back to the same values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def suggest(key: str, valid, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {prefix + close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
