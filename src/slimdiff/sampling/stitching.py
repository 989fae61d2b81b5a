"""Trajectory stitching: the slim model for the first fraction of the solver steps, a teacher for the rest.

The reverse process lays down coarse structure early and fine detail late, so the slim model can draw the
layout and a bigger model finish the high frequencies.
"""

from __future__ import annotations

from slimdiff.sampling.guidance import Denoiser


def stitch_plan(student: Denoiser, stitch: tuple[Denoiser, float] | None, steps: int) -> list[Denoiser]:
    """The model used at each of `steps` solver steps: the student for the first fraction, then the teacher."""
    if stitch is None:
        return [student] * steps
    teacher, fraction = stitch
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"stitch fraction must lie in [0, 1], got {fraction}")
    k = round(fraction * steps)
    return [student] * k + [teacher] * (steps - k)
