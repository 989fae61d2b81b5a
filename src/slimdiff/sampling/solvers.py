"""Samplers: diffusers schedulers, either a preset by name or the scheduler a pipeline holds, used as set.

A named sampler (`SAMPLERS`) is built from the noise schedule stored with a model (β range, β ramp, prediction
type) and differs from the others only in the solver. All presets use "trailing" timestep spacing, so the first
step starts from the last training step (t = 999, pure noise) whatever the step count, and every timestep is an
integer. Their own clipping is switched off: the pipeline clips the x0 estimate itself, the same way for every
preset (`clip_prediction`), and only in pixel space.

Without a name the pipeline samples with its own scheduler exactly as configured (`sampling_copy`): any
diffusers scheduler that runs the standard loop on the model's ᾱ schedule, checked by `check_scheduler`, which
refuses the others with the reason. `sampling_defaults` is the scheduler slimdiff saves with a model: the
training schedule with the settings slimdiff samples with, so that plain diffusers clients reproduce its images.
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
    LCMScheduler,
    PNDMScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

from slimdiff.config import CONSISTENCY_GRID

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
        # Only for step-distilled (consistency) students, which save it as their own scheduler anyway; named so
        # that `slimdiff sample` / `eval` / `serve` can sample them.
        Sampler(
            "lcm",
            LCMScheduler,
            "multistep consistency sampling, for step-distilled students (1-50 steps)",
            {"original_inference_steps": CONSISTENCY_GRID},
        ),
    ]
}


def get_sampler(name: str) -> Sampler:
    """The preset called `name`."""
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


def sampling_defaults(config: dict, pixel_space: bool) -> DDPMScheduler:
    """The scheduler slimdiff keeps (and saves) with a model: DDPM on the noise schedule in `config`, with the
    settings slimdiff samples with — trailing spacing and, in pixel space only, the x0 estimate clipped to [-1, 1].
    The clip is written as dynamic thresholding with a maximum of 1 (exactly a clip to [-1, 1]), which, unlike
    clip_sample, carries over to DDIM, DPM-Solver, UniPC, DEIS and SA-Solver built from this config."""
    return DDPMScheduler.from_config(
        config, timestep_spacing="trailing", clip_sample=False, thresholding=pixel_space, sample_max_value=1.0
    )


def consistency_scheduler(config: dict) -> LCMScheduler:
    """LCMScheduler on the noise schedule in `config` (a model's saved sampling settings, pixel-space clipping
    included): multistep consistency sampling on the `CONSISTENCY_GRID` a consistency student was distilled
    on. Its c_skip / c_out are the boundary condition of that student's consistency function
    (`training/steps.py`)."""
    return LCMScheduler.from_config(
        _taken_by(LCMScheduler, config), original_inference_steps=CONSISTENCY_GRID
    )


def _taken_by(cls: type[SchedulerMixin], config) -> dict:
    """The settings of `config` that `cls` takes: diffusers warns about the others on every build (DDPM's
    variance_type for LCMScheduler, LCM's original_inference_steps for DDPMScheduler)."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in dict(config).items() if k in accepted}


def is_bare_noise_schedule(scheduler: SchedulerMixin) -> bool:
    """A DDPMScheduler left at diffusers' sampling defaults (leading spacing, clip_sample on, no thresholding):
    what `training_scheduler()` builds and what slimdiff 0.1 saved to carry only the noise schedule."""
    c = scheduler.config
    return (
        type(scheduler) is DDPMScheduler
        and c.timestep_spacing == "leading"
        and c.clip_sample
        and c.clip_sample_range == 1.0
        and not c.thresholding
    )


def sampling_scheduler(scheduler: SchedulerMixin, pixel_space: bool) -> SchedulerMixin:
    """The scheduler a pipeline samples with: slimdiff's sampling defaults on a bare noise schedule (see
    `is_bare_noise_schedule`), any other scheduler as it is."""
    if is_bare_noise_schedule(scheduler):
        return sampling_defaults(scheduler.config, pixel_space=pixel_space)
    return scheduler


def check_scheduler(scheduler: SchedulerMixin) -> None:
    """Raise ValueError, with the reason, unless `scheduler` can sample a model trained on a DDPM noise schedule
    with the standard loop (set_timesteps, scale_model_input, model, step)."""
    name = type(scheduler).__name__
    why = None
    step = getattr(scheduler, "step", None)
    if "Inverse" in name:
        why = "runs from an image to noise (inversion); it does not draw samples"
    elif not torch.is_tensor(getattr(scheduler, "alphas_cumprod", None)) or not hasattr(
        scheduler, "init_noise_sigma"
    ):
        why = "has no ᾱ noise schedule (it works on its own σ, flow-matching or discrete schedule, not the DDPM one)"
    elif step is None or not hasattr(scheduler, "scale_model_input"):
        why = "has no step / scale_model_input for the standard sampling loop"
    elif needs := [
        p.name
        for p in list(inspect.signature(step).parameters.values())[3:]
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]:
        why = f"needs {', '.join(needs)} at every step besides the model output, timestep and sample"
    elif not _same_schedule(scheduler):
        why = "rescales the ᾱ schedule its config describes, so its timesteps do not match the model's"
    if why is not None:
        raise ValueError(
            f"{name} {why}; set a scheduler that samples the model's DDPM noise schedule (e.g. "
            f"EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)) or pass sampler= one of "
            f"{', '.join(SAMPLERS)}"
        )


def _same_schedule(scheduler: SchedulerMixin) -> bool:
    try:
        reference = DDPMScheduler.from_config(_taken_by(DDPMScheduler, scheduler.config)).alphas_cumprod
    except (ValueError, NotImplementedError):  # a β ramp DDPM does not know: nothing to compare with
        return True
    ᾱ = scheduler.alphas_cumprod
    return ᾱ.shape == reference.shape and torch.allclose(ᾱ.float(), reference)


def sampling_copy(scheduler: SchedulerMixin) -> SchedulerMixin:
    """A fresh scheduler with every setting of `scheduler` (so calls never share solver state), once
    `check_scheduler` accepts it."""
    check_scheduler(scheduler)
    return type(scheduler).from_config(scheduler.config)


def keeps_model_outputs(scheduler: SchedulerMixin) -> bool:
    """Whether a step of `scheduler` combines several model outputs — earlier steps' (multistep solvers: DPM-Solver,
    UniPC, DEIS, PNDM, LMS, SA-Solver) or two evaluations (Heun, KDPM2): it cannot switch models mid-trajectory."""
    return getattr(scheduler, "order", 1) > 1 or any(
        hasattr(scheduler, state) for state in ("model_outputs", "ets", "derivatives")
    )


def alpha_bar_at(scheduler: SchedulerMixin, t: torch.Tensor) -> torch.Tensor:
    """ᾱ at timestep `t`, linearly interpolated where a scheduler (Euler-type, "linspace") steps between integers."""
    ᾱ = scheduler.alphas_cumprod
    t = min(max(float(t), 0.0), len(ᾱ) - 1.0)
    lo = int(t)
    hi = min(lo + 1, len(ᾱ) - 1)
    return ᾱ[lo] + (t - lo) * (ᾱ[hi] - ᾱ[lo])


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
