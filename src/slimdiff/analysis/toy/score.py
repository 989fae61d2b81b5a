"""The toy's exact score: the true score of the long-tailed mixture against the networks' estimates.

The data are point masses μ_k with weights π_k, so q(x_t) = Σ_k π_k N(√ᾱ μ_k, (1 − ᾱ) I) and its score
is exact:

    ∇ log q(x_t) = −ε*(x_t) / √(1 − ᾱ),   ε*(x_t) = (x_t − √ᾱ E[x0 | x_t]) / √(1 − ᾱ),
    E[x0 | x_t] = Σ_k w_k μ_k,   w = softmax_k(log π_k − ‖x_t − √ᾱ μ_k‖² / (2(1 − ᾱ))).

A network predicting ε estimates the score as −ε̂/√(1 − ᾱ); its *score error* on a pattern is the excess
ε-error E‖ε̂ − ε*‖² / 40 on x_t drawn from that pattern, averaged over timesteps — the part of the ε-loss that
a perfect network would not have. The slice shows both scores along the line from the most common to the
rarest pattern, projected on that line, with the density of x_t there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from slimdiff.analysis.toy.denoiser import predict_eps
from slimdiff.analysis.toy.signals import ALPHAS, LENGTH, signals
from slimdiff.diffusion import training_scheduler

SCORE_TIMESTEPS = tuple(range(10, 1000, 20))  # 50 timesteps spread over the whole process
LATE = 250  # "late": the last quarter of the reverse process, where the detail is settled
SLICE_T = 300  # the slice's timestep: two well separated modes


def _alpha_bar(t: Tensor) -> Tensor:
    return training_scheduler().alphas_cumprod[t].double()


def _log_terms(x_t: Tensor, alpha_bar: Tensor, weights: Tensor, clean: Tensor) -> Tensor:
    """log π_k + log N(x_t; √ᾱ μ_k, (1 − ᾱ) I) for every row and pattern: (N, K)."""
    a = alpha_bar.double().reshape(-1, 1, 1)
    squared = (x_t.double()[:, None] - a.sqrt() * clean.double()[None]).square().sum(-1)
    variance = 1 - a[:, 0]
    normaliser = 0.5 * x_t.shape[-1] * torch.log(2 * math.pi * variance)
    return weights.double().log()[None] - squared / (2 * variance) - normaliser


def optimal_eps(x_t: Tensor, alpha_bar: Tensor, weights: Tensor, clean: Tensor | None = None) -> Tensor:
    """ε*(x_t): the ε-prediction of the exact posterior of the mixture (`alpha_bar` one value per row)."""
    clean = signals() if clean is None else clean
    posterior = _log_terms(x_t, alpha_bar, weights, clean).softmax(dim=1)
    a = alpha_bar.double().reshape(-1, 1)
    mean_x0 = posterior @ clean.double()
    return ((x_t.double() - a.sqrt() * mean_x0) / (1 - a).sqrt()).float()


@torch.no_grad()
def score_error(
    model: nn.Module, weights: Tensor, samples: int = 100, seed: int = 0, timesteps=SCORE_TIMESTEPS
) -> list[dict[str, float]]:
    """Per pattern (ALPHAS order): excess ε-error E‖ε̂ − ε*‖²/40 over all `timesteps` ("score_error") and over
    those below LATE ("score_error_late"), on `samples` draws of x_t from that pattern at each timestep."""
    g = torch.Generator().manual_seed(seed)
    clean, T = signals(), training_scheduler().config.num_train_timesteps
    t = torch.tensor(timesteps).repeat_interleave(samples)
    alpha_bar = _alpha_bar(t)
    rows = []
    for k in range(len(clean)):
        eps = torch.randn(len(t), LENGTH, generator=g)
        x_t = (alpha_bar.sqrt()[:, None] * clean[k] + (1 - alpha_bar).sqrt()[:, None] * eps).float()
        error = (
            (predict_eps(model, x_t, t, T) - optimal_eps(x_t, alpha_bar, weights, clean)).square().mean(dim=1)
        )
        late = t < LATE
        rows.append({"score_error": error.mean().item(), "score_error_late": error[late].mean().item()})
    return rows


@torch.no_grad()
def score_slice(model: nn.Module, weights: Tensor, t: int = SLICE_T, points: int = 81) -> dict[str, list]:
    """True and estimated score along x(λ) = √ᾱ((1 − λ)μ_a + λμ_b), λ ∈ [−0.5, 1.5], projected on the unit
    direction from the most common pattern a to the rarest b; with log q(x(λ))."""
    clean, T = signals(), training_scheduler().config.num_train_timesteps
    a, b = int(weights.argmax()), int(weights.argmin())
    lam = torch.linspace(-0.5, 1.5, points)
    alpha_bar = _alpha_bar(torch.full((points,), t))
    x = (alpha_bar.sqrt()[:, None] * ((1 - lam[:, None]) * clean[a] + lam[:, None] * clean[b])).float()
    direction = (clean[b] - clean[a]) / (clean[b] - clean[a]).norm()
    sigma = (1 - alpha_bar).sqrt().float()[:, None]
    true = -optimal_eps(x, alpha_bar, weights, clean) / sigma
    estimated = -predict_eps(model, x, torch.full((points,), t), T) / sigma
    return {
        "t": t,
        "from_alpha": ALPHAS[a],
        "to_alpha": ALPHAS[b],
        "lambda": lam.tolist(),
        "log_density": _log_terms(x, alpha_bar, weights, clean).logsumexp(dim=1).tolist(),
        "true": (true @ direction).tolist(),
        "estimated": (estimated @ direction).tolist(),
    }
