"""Distil an autoencoder's decoder into a slim decoder (`slimdiff distill-decoder --vae SOURCE --data DATA`).

The targets are the full decoder's own images of the data's latents (not the data itself): the slim decoder
learns to reproduce the decoder the diffusion model was trained with. The loss is a pixel term plus the
project's frequency-weighted term (the one spectrum-aware distillation uses, `training/distillation.py`):

    L = mean((D_slim(z) − D(z))²) + λ_f · mean(ω · |F(D_slim(z)) − F(D(z))|²),   ω = normalise((|F(D(z))| + δ)^α)

with α = −1, so the rare high frequencies — the detail a small decoder loses first — count as much as the
strong low ones. Training runs on random latent crops (`crop` latent pixels a side, their images the matching
crops of the full decoder's output): the slim decoder is a local conv stack, so crops teach it what whole
images would, at a fraction of the cost. `distill_and_measure` is the whole workflow of `slimdiff
distill-decoder`: train, then measure the slim decoder against the full one on held-out images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from slimdiff.data.datasets import held_out_images, load_images
from slimdiff.errors import ConfigError, ModelError
from slimdiff.metrics.fidelity import decoder_quality
from slimdiff.models.autoencoders import CLASS_KINDS, Autoencoder, load_autoencoder
from slimdiff.models.size import count_params
from slimdiff.models.slim_decoder import SlimDecoder, slim_decoder_for
from slimdiff.training.distillation import frequency_loss, spectral_weight


@dataclass
class DecoderDistillSettings:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    images: int = 256  # training images encoded once
    size: int = 256  # image side
    crop: int = 16  # latent crop side used for training (0: whole latents)
    lambda_freq: float = 1.0
    alpha: float = -1.0
    seed: int = 0

    def check(self) -> None:
        for name in ("steps", "batch_size", "images", "size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.lambda_freq < 0 or self.crop < 0:
            raise ConfigError("lr must be positive, lambda_freq and crop non-negative")


def find_autoencoder(source: str | Path) -> Autoencoder:
    """The VQ or KL autoencoder in `source`: its folder, a pipeline folder (`vqvae/` or `vae/`), a run folder
    (`model/vae`); the kind is read from its config.json."""
    path = Path(source)
    for folder in (path, path / "vqvae", path / "vae", path / "model" / "vae", path / "model" / "vqvae"):
        config = folder / "config.json"
        if config.is_file():
            name = json.loads(config.read_text()).get("_class_name")
            if name in CLASS_KINDS:
                # the scale stored with the autoencoder is the one the pipeline divides by before decoding
                scale = float(json.loads(config.read_text()).get("scaling_factor") or 1.0)
                return load_autoencoder(CLASS_KINDS[name], str(folder), scaling_factor=scale)
    raise ModelError(
        f"no VQModel or AutoencoderKL found in {source} (looked for config.json there, in vqvae/ and vae/)"
    )


@torch.no_grad()
def decoder_pairs(autoencoder: Autoencoder, images: torch.Tensor, batch: int = 8):
    """(scaled latents, full decoder images in [-1, 1]) of `images`."""
    latents = torch.cat([autoencoder.encode(x) for x in images.split(batch)])
    targets = torch.cat([autoencoder.decode(z).clamp(-1, 1) for z in latents.split(batch)])
    return latents, targets


def _crops(latents, targets, factor: int, crop: int, batch: int, g: torch.Generator):
    index = torch.randint(0, len(latents), (batch,), generator=g)
    z, x = latents[index], targets[index]
    h, w = z.shape[-2:]
    if not crop or crop >= min(h, w):
        return z, x
    zs, xs = [], []
    for i in range(batch):
        top = int(torch.randint(0, h - crop + 1, (1,), generator=g))
        left = int(torch.randint(0, w - crop + 1, (1,), generator=g))
        zs.append(z[i, :, top : top + crop, left : left + crop])
        xs.append(x[i, :, top * factor : (top + crop) * factor, left * factor : (left + crop) * factor])
    return torch.stack(zs), torch.stack(xs)


def decoder_loss(student, target, lambda_freq: float, alpha: float) -> tuple[torch.Tensor, dict]:
    pixel = F.mse_loss(student, target)
    omega = spectral_weight(target, tuple(target.shape[-2:]), alpha=alpha)
    freq = frequency_loss(student, target, omega)
    return pixel + lambda_freq * freq, {"pixel": pixel.item(), "freq": freq.item()}


def distill_decoder(
    vae: str | Path,
    data: str,
    out: str | Path,
    settings: DecoderDistillSettings | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[SlimDecoder, dict]:
    """Train a slim decoder for the autoencoder in `vae` on the latents of `data`; write it to `out`
    (config.json, safetensors, distill.json) and return it with its record."""
    settings = settings or DecoderDistillSettings()
    settings.check()
    autoencoder = find_autoencoder(vae)
    torch.manual_seed(settings.seed)
    start = time.perf_counter()
    latents, targets = decoder_pairs(
        autoencoder, load_images(data, settings.size, settings.images, settings.seed)
    )
    student = slim_decoder_for(autoencoder.model).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.lr, total_steps=settings.steps, pct_start=0.05
    )
    g = torch.Generator().manual_seed(settings.seed)
    logs: dict = {}
    for step in range(1, settings.steps + 1):
        z, x = _crops(latents, targets, autoencoder.factor, settings.crop, settings.batch_size, g)
        loss, logs = decoder_loss(student(z), x, settings.lambda_freq, settings.alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if not torch.isfinite(loss):
            raise ModelError(f"the slim decoder's loss became {float(loss)} at step {step}; lower --lr")
        if progress is not None:
            progress(step, logs)
    student.eval()
    record = {
        "vae": str(vae),
        "kind": autoencoder.kind,
        "data": data,
        "settings": asdict(settings),
        "final_loss": logs,
        "params": count_params(student),
        "seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(out)
    student.save_pretrained(str(out), safe_serialization=True)
    (out / "distill.json").write_text(json.dumps(record, indent=2))
    return student, record


def held_out_pairs(vae: str | Path, data: str, size: int, n: int, seed: int = 0):
    """(autoencoder, scaled latents, full decoder images) of `n` held-out images, for measuring a slim decoder."""
    autoencoder = find_autoencoder(vae)
    return (autoencoder, *decoder_pairs(autoencoder, held_out_images(data, size, n, seed)))


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
