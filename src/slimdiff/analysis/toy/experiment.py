"""One toy run: train a width, sample it and measure per α what the samples kept — the share of samples
nearest to each clean signal (which α they "chose"), the share whose dominant frequency (argmax of |rFFT|, DC
excluded) is α, their MSE to the clean signal, the power kept at α — and the network's score error against the
true score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import Tensor

from slimdiff.analysis.toy.denoiser import ToyConfig, sample_toy, train_toy
from slimdiff.analysis.toy.score import score_error, score_slice
from slimdiff.analysis.toy.signals import ALPHAS, mixture_weights, signals


def measure(samples: Tensor, alphas: tuple[int, ...] = ALPHAS) -> list[dict]:
    """Per α: share of samples nearest to its signal, share with dominant frequency α, their MSE to the
    clean signal and the power they keep at frequency α (1 = the clean signal's)."""
    clean = signals(alphas)
    nearest = torch.cdist(samples, clean).argmin(dim=1)
    spectrum = torch.fft.rfft(samples, dim=1).abs()
    dominant = spectrum[:, 1:].argmax(dim=1) + 1
    clean_peak = torch.fft.rfft(clean, dim=1).abs()
    rows = []
    for i, alpha in enumerate(alphas):
        mine = nearest == i
        count = int(mine.sum())
        row = {
            "alpha": alpha,
            "share": count / len(samples),
            "dominant_is_alpha": None,
            "mse": None,
            "power_kept": None,
        }
        if count:
            row["dominant_is_alpha"] = (dominant[mine] == alpha).float().mean().item()
            row["mse"] = (samples[mine] - clean[i]).square().mean().item()
            row["power_kept"] = (spectrum[mine, alpha].square().mean() / clean_peak[i, alpha].square()).item()
        rows.append(row)
    return rows


def toy_experiment(cfg: ToyConfig, progress: Callable[[int, float], None] | None = None) -> dict:
    """Train, sample and measure one hidden width; returns config, loss curve, the per-α table (with the
    data's π and the score error) and the score along the slice between the most common and the rarest
    pattern."""
    model, losses, _ = train_toy(cfg, progress)
    samples = sample_toy(model, cfg.samples, cfg.sampling_steps, seed=cfg.seed + 1)
    weights = mixture_weights(cfg.tail, cfg.rare)
    rows = measure(samples)
    for row, pi, error in zip(
        rows, weights.tolist(), score_error(model, weights, seed=cfg.seed + 2), strict=True
    ):
        row.update(pi=pi, **error)
    return {
        "config": asdict(cfg),
        "losses": losses,
        "rows": rows,
        "slice": score_slice(model, weights),
        "examples": samples[:4].tolist(),
    }
