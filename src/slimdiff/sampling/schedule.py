"""The noise schedule (README, "Presets and the paper's numbers") and the forward process q(x_t | x0).

1000 steps, LDM's "linear" β ramp (linear in √β, diffusers' `scaled_linear`), ε-prediction. The forward
process x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε is written once, here, for training, the ε-error spectrum and the
toy experiment alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers import DDPMScheduler

if TYPE_CHECKING:
    from slimdiff.config import TrainConfig

NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    # LDM's "linear" schedule is linear in sqrt(β), which diffusers calls scaled_linear.
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}


def training_scheduler(**overrides) -> DDPMScheduler:
    """The DDPM scheduler models are trained with; samplers are built from its config."""
    return DDPMScheduler(**{**NOISE_SCHEDULE, **overrides})


def run_scheduler(train: TrainConfig) -> DDPMScheduler:
    """The schedule a run trains with, for training, its teacher check and the model it exports: the training
    schedule ending at the run's `train.beta_end`."""
    return training_scheduler(beta_end=train.beta_end)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ·x0 + √(1 − ᾱ)·ε, with ᾱ one value per sample (shape (B,)), broadcast over the rest."""
    ᾱ = alpha_bar.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return ᾱ.sqrt() * x0 + (1 - ᾱ).sqrt() * noise
