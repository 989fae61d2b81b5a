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
    ᾱ = alpha_bar.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return ᾱ.sqrt() * x0 + (1 - ᾱ).sqrt() * noise


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
