"""The forward process q(x_t | x0) and its noise schedule (README, "Presets and the paper's numbers").

1000 steps, LDM's "linear" β ramp (linear in √β, diffusers' `scaled_linear`), ε-prediction. The forward
process x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε is written once, here, for training, the ε-error spectrum and the toy
experiment alike; so is the draw of (t, ε) for one training micro-batch. Everything here is a function of
its arguments, which is why it sits at the bottom of the import order: the config takes its defaults from
it, training noises with it, and sampling builds its schedulers from `training_scheduler().config`.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDPMScheduler

NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    # LDM's "linear" schedule is linear in sqrt(β), which diffusers calls scaled_linear.
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}


def training_scheduler(**overrides) -> DDPMScheduler:
    """The DDPM scheduler models are trained with; samplers are built from its config. A run passes its own
    `beta_end` (train.beta_end): that one scheduler then noises its batches, checks its teacher, draws its
    sample grids and is saved with its model."""
    return DDPMScheduler(**{**NOISE_SCHEDULE, **overrides})


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ·x0 + √(1 − ᾱ)·ε, with ᾱ one value per sample (shape (B,)), broadcast over the rest."""
    ᾱ = _per_sample(alpha_bar, x0)
    return ᾱ.sqrt() * x0 + (1 - ᾱ).sqrt() * noise


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The denoised x̂0 = (x_t − √(1 − ᾱ)·ε) / √ᾱ that an ε prediction implies (ᾱ one value per sample)."""
    ᾱ = _per_sample(alpha_bar, x_t)
    return (x_t - (1 - ᾱ).sqrt() * eps) / ᾱ.sqrt()


def ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_s: torch.Tensor
) -> torch.Tensor:
    """One deterministic DDIM step (η = 0) from ᾱ_t to ᾱ_s: x_s = √ᾱ_s·x̂0 + √(1 − ᾱ_s)·ε — the probability-flow
    ODE step the teacher takes to build a step-distillation target (diffusers' DDIMScheduler.step, per sample)."""
    ᾱ_s = _per_sample(alpha_bar_s, x_t)
    return ᾱ_s.sqrt() * predict_x0(x_t, eps, alpha_bar_t) + (1 - ᾱ_s).sqrt() * eps


def micro_step_noise(
    shape: tuple[int, ...], seed: int, micro_step: int, process: int, timesteps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, ε) for one training micro-batch of `shape`, drawn from a generator seeded by (seed, micro-step,
    process) alone: a resumed run draws what it would have drawn had it never stopped, and each process of a
    distributed run its own."""
    key = int(np.random.SeedSequence([seed, micro_step, process]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(key)
    t = torch.randint(0, timesteps, (shape[0],), generator=generator)
    return t, torch.randn(shape, generator=generator)
