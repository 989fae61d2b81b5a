"""How close a slim decoder comes to the full decoder it was distilled from: PSNR, SWD ×10³ and the
low/high spectrum error of its images against the full decoder's, on held-out images of the data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from slimdiff.metrics.int8_cost import psnr
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.training.decoder_distillation import DecoderDistillSettings, distill_decoder, held_out_pairs


@torch.no_grad()
def decoder_quality(slim, latents: torch.Tensor, reference: torch.Tensor, batch: int = 8) -> dict:
    """Slim decoder images of scaled `latents` against the full decoder's `reference` images ([-1, 1])."""
    images = torch.cat([slim(z).clamp(-1, 1) for z in latents.split(batch)])
    result = {
        "n": len(images),
        "psnr_db": psnr(images, reference),
        "spectrum_error": spectrum_error(reference, images),
    }
    if min(images.shape[-2:]) >= 16:
        result["swd_x1e3"] = swd(reference, images, patches_per_image=64)
    return result


def distill_and_measure(
    vae: str | Path,
    data: str,
    out: str | Path,
    settings: DecoderDistillSettings | None = None,
    n_eval: int = 32,
    progress: Callable[[int, dict], None] | None = None,
) -> dict:
    """`distill_decoder`, then its quality on `n_eval` held-out images, added to `out/distill.json`."""
    settings = settings or DecoderDistillSettings()
    slim, record = distill_decoder(vae, data, out, settings, progress)
    _, latents, reference = held_out_pairs(vae, data, settings.size, n_eval, settings.seed)
    record["quality_vs_full_decoder"] = decoder_quality(slim, latents, reference)
    (Path(out) / "distill.json").write_text(json.dumps(record, indent=2))
    return record
