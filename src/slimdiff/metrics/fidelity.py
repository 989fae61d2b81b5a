"""How close a cheaper stand-in comes to the original it replaces: an int8 pipeline against the fp32 one
(`int8_cost`), a slim decoder against the full decoder (`decoder_quality`), both through `psnr`, SWD ×10³ and
the low/high spectrum error. Measuring only: making the stand-ins is `slimdiff.deploy`'s.

`int8_cost` measures
- **ε-prediction error vs fp32** per timestep bucket, split into low and high spatial frequencies (the
  eps-spectrum with the fp32 graph as the "teacher"), next to the fp32 model's own ε error on the same x_t,
  so the int8 error reads as a share of the error the model makes anyway;
- **samples from the same noise**, fp32 vs int8 graphs: PSNR of each pair, SWD ×10³ and the low/high
  spectrum error of the int8 set against the fp32 set, and PSNR of the int8 decoder alone on fp32 latents.
"""

from __future__ import annotations

import torch

from slimdiff.metrics.eps_spectrum import eps_error_spectrum
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models.inputs import sample_hw
from slimdiff.sampling.generate import generate


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), over the whole set."""
    mse = float((a.float() - b.float()).square().mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


@torch.no_grad()
def final_latents(pipe, n: int, seed: int, steps: int = 10) -> torch.Tensor:
    """The latents `pipe` hands its decoder after `steps` dpm++ steps from `n` seeded noises."""
    noise = torch.randn(
        n,
        pipe.unet.config.in_channels,
        *sample_hw(pipe.unet.config),
        generator=torch.Generator().manual_seed(seed + 10_000),
    )
    return pipe(
        batch_size=n, latents=noise, num_inference_steps=steps, sampler="dpm++", output_type="latent"
    ).images


def int8_cost(
    fp32, int8, x0: torch.Tensor, n: int = 8, steps: int = 10, seed: int = 0, buckets: int = 5
) -> dict:
    """Quality cost of the int8 pipeline `int8` against the fp32 pipeline `fp32` (both onnxruntime)."""
    common = {"buckets": buckets, "batch_size": 8, "seed": seed}
    own = eps_error_spectrum(fp32.unet, x0, fp32.scheduler, **common).summary()
    diff = eps_error_spectrum(int8.unet, x0, fp32.scheduler, teacher=fp32.unet, **common).summary()
    rows = []
    for a, b in zip(own["buckets"], diff["buckets"], strict=True):
        rows.append(
            {
                "t_from": a["t_from"],
                "t_to": a["t_to"],
                "int8_vs_fp32_low": b["low"],
                "int8_vs_fp32_high": b["high"],
                "fp32_own_error_low": a["low"],
                "fp32_own_error_high": a["high"],
            }
        )
    call = {"num_inference_steps": steps, "sampler": "dpm++"}
    a = generate(fp32, n, seed, batch=n, **call)
    b = generate(int8, n, seed, batch=n, **call)
    samples = {"psnr_db": psnr(a, b), "spectrum_error": spectrum_error(a, b)}
    if min(a.shape[-2:]) >= 16:
        samples["swd_x1e3"] = swd(a, b, patches_per_image=64)
    result = {
        "eps_error": {
            "cutoff": own["cutoff"],
            "buckets": rows,
            "int8_vs_fp32": {"low": diff["low"], "high": diff["high"]},
            "fp32_own_error": {"low": own["low"], "high": own["high"]},
        },
        "samples": {"n": n, "steps": steps, "sampler": "dpm++", **samples},
    }
    if fp32.vae is not None and int8.vae is not None:
        latents = final_latents(fp32, n, seed)
        result["decoder_psnr_db"] = psnr(fp32.decode(latents), int8.decode(latents))
    return result


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
