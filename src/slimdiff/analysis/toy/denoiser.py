"""The toy's denoiser: an MLP [x_t, t/T] (41) → M → 40 with tanh predicting ε, trained with Adam on the
training noise schedule (optionally distilled from a frozen teacher, `distill.py`), and DDPM ancestral
sampling from pure noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from slimdiff.analysis.toy.distill import (
    ToyDistill,
    distillation_terms,
    grad_norm,
    gradient_norms,
    log_entry,
    toy_omega,
    weighted_terms,
)
from slimdiff.analysis.toy.signals import LENGTH, RARE, mixture_weights, signals
from slimdiff.diffusion import add_noise, training_scheduler


@dataclass(frozen=True)
class ToyConfig:
    hidden: int = 1024
    iterations: int = 10_000
    batch: int = 1000
    lr: float = 1e-3
    samples: int = 1000
    sampling_steps: int = 1000
    seed: int = 0
    tail: float = 2.0  # π ∝ rank^(−tail); 0: uniform
    rare: str = "high"  # which end of ALPHAS is rare

    def __post_init__(self):
        if self.tail < 0 or self.rare not in RARE:
            raise ValueError(
                f"tail must be ≥ 0 and rare one of {', '.join(RARE)}, got {self.tail}, {self.rare!r}"
            )


def mlp(hidden: int, length: int = LENGTH) -> nn.Module:
    """41 → M → 40 with tanh: the paper's toy denoiser (input: the noisy signal and t/T)."""
    return nn.Sequential(nn.Linear(length + 1, hidden), nn.Tanh(), nn.Linear(hidden, length))


def predict_eps(model: nn.Module, x_t: Tensor, t: Tensor, steps: int) -> Tensor:
    return model(torch.cat([x_t, (t.float() / steps)[:, None]], dim=1))


class ToyTraining(NamedTuple):
    model: nn.Module
    losses: list[float]  # L every 100 iterations and at the last
    log: list[dict]  # at the same iterations: each weighted term and its share of the gradient norm


def train_toy(
    cfg: ToyConfig,
    progress: Callable[[int, float], None] | None = None,
    distill: ToyDistill | None = None,
    device: str | torch.device = "cpu",
) -> ToyTraining:
    """Train the toy MLP to predict ε, distilled from `distill.teacher` when given (the teacher draws no
    random numbers: the seed fixes the same initialisation, data and noise with or without one). The numbers
    are drawn on the CPU on any `device`, so the streams are the same everywhere; the model stays there."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    scheduler = training_scheduler()
    T, ᾱ = scheduler.config.num_train_timesteps, scheduler.alphas_cumprod
    clean, weights = signals(), mixture_weights(cfg.tail, cfg.rare)
    ω = toy_omega(clean, distill.omega, distill.delta).to(device) if distill else None  # per pattern
    model = mlp(cfg.hidden).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses, log = [], []
    for it in range(cfg.iterations):
        pattern = torch.multinomial(weights, cfg.batch, replacement=True, generator=g)
        x0 = clean[pattern]
        t = torch.randint(T, (cfg.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        x_t = add_noise(x0, eps, ᾱ[t])
        x_t, eps, t, pattern = (v.to(device) for v in (x_t, eps, t, pattern))
        prediction = predict_eps(model, x_t, t, T)
        terms = {"eps": (prediction - eps).square().mean()}
        if distill:
            with torch.no_grad():
                teacher = predict_eps(distill.teacher, x_t, t, T)
            terms.update(distillation_terms(prediction, teacher, ω[pattern]))
        weighted = weighted_terms(terms, distill)
        loss = sum(weighted.values())
        logging = it % 100 == 0 or it == cfg.iterations - 1
        norms = gradient_norms(weighted, model.parameters()) if logging else {}
        optimiser.zero_grad()
        loss.backward()
        if logging:
            losses.append(loss.item())
            log.append(log_entry(it, loss.item(), weighted, norms, grad_norm(model.parameters())))
        optimiser.step()
        if logging and progress is not None:
            progress(it + 1, loss.item())
    return ToyTraining(model, losses, log)


@torch.no_grad()
def sample_toy(model: nn.Module, n: int, steps: int = 1000, seed: int = 0) -> Tensor:
    """DDPM ancestral sampling of `n` signals with `steps` steps of the training schedule; the x0 estimate is
    clipped to [-1, 1], the signals' range (as in pixel space)."""
    scheduler = training_scheduler(clip_sample=True, clip_sample_range=1.0)
    T = scheduler.config.num_train_timesteps
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, LENGTH, generator=g)
    for t in scheduler.timesteps:
        eps = predict_eps(model, x, torch.full((n,), int(t)), T)
        x = scheduler.step(eps, t, x, generator=g).prev_sample
    return x
