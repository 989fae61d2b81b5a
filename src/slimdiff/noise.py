"""The training noise schedule (DESIGN §1): 1000 steps, LDM "linear" β ramp, ε-prediction."""

from __future__ import annotations

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
    """The DDPM scheduler models are trained with; samplers are built from its config."""
    return DDPMScheduler(**{**NOISE_SCHEDULE, **overrides})
