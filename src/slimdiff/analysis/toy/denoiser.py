"""The toy's denoiser: an MLP [x_t, t/T] (41) → M → 40 with tanh predicting ε, trained with Adam on the
training noise schedule, and DDPM ancestral sampling from pure noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

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


def train_toy(
    cfg: ToyConfig, progress: Callable[[int, float], None] | None = None
) -> tuple[nn.Module, list[float]]:
    """Train the toy MLP to predict ε; returns the model and the loss every 100 iterations."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    scheduler = training_scheduler()
    T, ᾱ = scheduler.config.num_train_timesteps, scheduler.alphas_cumprod
    clean, weights = signals(), mixture_weights(cfg.tail, cfg.rare)
    model = mlp(cfg.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for it in range(cfg.iterations):
        x0 = clean[torch.multinomial(weights, cfg.batch, replacement=True, generator=g)]
        t = torch.randint(T, (cfg.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = (predict_eps(model, add_noise(x0, eps, ᾱ[t]), t, T) - eps).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if it % 100 == 0 or it == cfg.iterations - 1:
            losses.append(loss.item())
            if progress is not None:
                progress(it + 1, loss.item())
    return model, losses


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
