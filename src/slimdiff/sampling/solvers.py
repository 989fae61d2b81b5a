"""Samplers by name: diffusers schedulers built from the training noise schedule stored with a model.

Every sampler shares the stored ᾱ schedule (β range, β ramp, prediction type) and differs only in the
solver. All use "trailing" timestep spacing, so the first step starts from the last training step
(t = 999, pure noise) whatever the step count, and every timestep is an integer. The schedulers' own
clipping is switched off: the pipeline clips the x0 estimate itself, the same way for every solver
(`clip_prediction`), and only in pixel space.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

# Applied to every sampler whose class accepts the option.
SHARED_OVERRIDES = {"timestep_spacing": "trailing", "clip_sample": False, "thresholding": False}


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler_class: type[SchedulerMixin]
    description: str
    overrides: dict = field(default_factory=dict)
    # Multistep solvers keep previous model outputs, so they cannot switch models mid-trajectory.
    keeps_model_outputs: bool = False


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in [
        Sampler("ddpm", DDPMScheduler, "ancestral DDPM (stochastic)"),
        Sampler("ddim", DDIMScheduler, "DDIM; eta = 0 deterministic, eta = 1 DDPM-like"),
        # Without the Runge-Kutta warm-up every step costs one model evaluation, like the other solvers.
        Sampler(
            "pndm", PNDMScheduler, "PLMS (PNDM without Runge-Kutta warm-up)", {"skip_prk_steps": True}, True
        ),
        Sampler(
            "dpm++",
            DPMSolverMultistepScheduler,
            "multistep DPM-Solver++ (2nd order)",
            {"algorithm_type": "dpmsolver++", "solver_order": 2},
            True,
        ),
        Sampler("unipc", UniPCMultistepScheduler, "UniPC multistep predictor-corrector", {}, True),
        Sampler("deis", DEISMultistepScheduler, "DEIS multistep", {}, True),
        Sampler("euler", EulerDiscreteScheduler, "Euler (Karras et al. ODE form)"),
    ]
}


def get_sampler(name: str | None, stored: SchedulerMixin | None = None) -> Sampler:
    """The sampler called `name`; None means the kind of the `stored` scheduler."""
    if name is None:
        for sampler in SAMPLERS.values():
            if type(stored) is sampler.scheduler_class:
                return sampler
        raise ValueError(
            f"stored scheduler {type(stored).__name__} is not one slimdiff samples with; "
            f"pick one of {', '.join(SAMPLERS)}"
        )
    try:
        return SAMPLERS[name]
    except KeyError:
        raise KeyError(f"unknown scheduler {name!r}; valid: {', '.join(SAMPLERS)}") from None


def build_scheduler(sampler: Sampler, config: dict) -> SchedulerMixin:
    """A fresh scheduler of `sampler`'s kind on the noise schedule in `config` (a stored scheduler's config)."""
    cls = sampler.scheduler_class
    accepted = inspect.signature(cls.__init__).parameters
    overrides = {k: v for k, v in {**SHARED_OVERRIDES, **sampler.overrides}.items() if k in accepted}
    return cls.from_config(config, **overrides)


def clip_prediction(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The model output rewritten so that its implied x0 estimate lies in [-1, 1].

    x_t = √ᾱ x0 + √(1−ᾱ) ε. Every solver turns the output into x0 (or ε) by these relations, so clipping here
    equals the clip_sample/thresholding of the schedulers that have one, and gives it to those that do not.
    """
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return (x_t - a * ((x_t - s * output) / a).clamp(-1, 1)) / s
    if prediction_type == "sample":
        return output.clamp(-1, 1)
    if prediction_type == "v_prediction":
        return (a * x_t - (a * x_t - s * output).clamp(-1, 1)) / s
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected epsilon, sample or v_prediction")
