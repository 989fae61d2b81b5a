"""One denoiser step and classifier-free guidance: ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅), both branches in one batched call."""

from __future__ import annotations

from collections.abc import Callable

import torch

# Any callable (sample, timestep, **conditioning) → tensor or an object with `.sample`: a torch UNet or an
# onnxruntime session wrapper.
Denoiser = Callable[..., object]


def denoiser_output(model: Denoiser, x: torch.Tensor, t: torch.Tensor, conditioning: dict) -> torch.Tensor:
    """ε̂ (or whatever the model predicts) for the batch `x` at timestep `t`."""
    out = model(x, t.reshape(1).expand(x.shape[0]), **conditioning)
    return out.sample if hasattr(out, "sample") else out


def guided_output(
    model: Denoiser,
    x: torch.Tensor,
    t: torch.Tensor,
    conditioning: dict,
    unconditioning: dict,
    guidance_scale: float,
) -> torch.Tensor:
    """Classifier-free guidance ε̂_∅ + w (ε̂_c − ε̂_∅), both branches in one batched model call."""
    both = {k: torch.cat([unconditioning[k], conditioning[k]]) for k in conditioning}
    uncond, cond = denoiser_output(model, torch.cat([x, x]), t, both).chunk(2)
    return uncond + guidance_scale * (cond - uncond)
