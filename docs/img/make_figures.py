"""Regenerate docs/img/spectra.png and docs/img/eps_spectrum.png (README, "Evaluation and analyses").

    .venv/bin/python docs/img/make_figures.py

The analysis figures come from their commands (see the README): `slimdiff analyze wiener|toy|blur`.
"""

from pathlib import Path

import torch

from slimdiff.analysis.blur import gaussian_blur
from slimdiff.analysis.wiener import linear_denoiser, mean_power_2d
from slimdiff.data.datasets import load_images
from slimdiff.metrics.eps_spectrum import eps_error_spectrum, plot_eps_spectrum
from slimdiff.metrics.spectrum import plot_spectra, spectrum_error
from slimdiff.diffusion import training_scheduler

HERE = Path(__file__).parent

photos = load_images("builtin:photos", 64, 256, seed=0)
textures = load_images("builtin:textures", 64, 256, seed=0)
blurred = gaussian_blur(photos, 1.0)
sets = {"photos": photos, "textures": textures, "photos, blurred σ²=1": blurred}
plot_spectra(sets, HERE / "spectra.png", title="Radial power spectrum (builtin sets, 64²)")
print("spectrum error of blurred photos vs photos:", spectrum_error(photos, blurred))

# The eps-spectrum of two reference "models" on held-out photos: the optimal linear (Wiener) denoiser built
# from the training half's spectrum, and the same denoiser fed images blurred before noising (it never
# sees the high frequencies, like a model that lost them).
scheduler = training_scheduler()
train, held_out = photos[:128], photos[128:]
wiener = linear_denoiser(mean_power_2d(train), scheduler.alphas_cumprod)


def blind(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return wiener(gaussian_blur(x_t, 1.0), t)


results = {
    name: eps_error_spectrum(model, held_out, scheduler, buckets=20, batch_size=128)
    for name, model in {"linear optimum": wiener, "linear optimum on blurred x_t": blind}.items()
}
plot_eps_spectrum(results, HERE / "eps_spectrum.png")
for name, result in results.items():
    print(name, {k: round(v, 4) for k, v in result.summary().items() if k in ("low", "high")})
