"""Trajectory stitching: the slim model for the first fraction of the solver steps, a teacher for the rest.

The reverse process lays down coarse structure early and fine detail late, so the slim model can draw the
layout and a bigger model finish the high frequencies.
"""

from __future__ import annotations

from diffusers import SchedulerMixin

from slimdiff.sampling.guidance import Denoiser
from slimdiff.sampling.solvers import keeps_model_outputs


def _channels(model: Denoiser) -> tuple[int, int]:
    return model.config.in_channels, model.config.out_channels


def check_stitch(
    stitch: tuple[Denoiser, float], unet: Denoiser, scheduler: SchedulerMixin, name: str
) -> None:
    """Refuse stitching with a solver that mixes several model outputs in one update, or a teacher that works
    on another (latent) space than `unet`."""
    if keeps_model_outputs(scheduler):
        raise ValueError(
            "stitching needs a solver that keeps no earlier model outputs (ddpm, ddim, euler, euler-ancestral, "
            f"LCM, TCD); {name} would mix the two models' outputs in one update"
        )
    if _channels(stitch[0]) != _channels(unet):
        raise ValueError(
            f"stitch teacher maps {_channels(stitch[0])} channels but the model {_channels(unet)}; "
            "both must work on the same (latent) space"
        )


def stitch_plan(student: Denoiser, stitch: tuple[Denoiser, float] | None, steps: int) -> list[Denoiser]:
    """The model used at each of `steps` solver steps: the student for the first fraction, then the teacher."""
    if stitch is None:
        return [student] * steps
    teacher, fraction = stitch
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"stitch fraction must lie in [0, 1], got {fraction}")
    k = round(fraction * steps)
    return [student] * k + [teacher] * (steps - k)
