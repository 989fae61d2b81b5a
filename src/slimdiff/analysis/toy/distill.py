"""Distillation for the toy (docs/ablation.md, issue 26 part 1): a frozen teacher's ε̂_T beside the ε-loss,

    L = L_ε + λ_s · mean((ε̂_S − ε̂_T)²) + λ_f · mean(ω · |F(ε̂_S) − F(ε̂_T)|²),

F the orthonormal 1-D DFT over the 40 points, ω "uniform" (≡ 1, so the frequency term equals the spatial one
by Parseval) or "spectral" (normalise((|F(x0)| + δ)^−1), mean 1 per signal: slimdiff's ω in one dimension).
The losses and ω are training/distillation's, applied to the signals as (N, 1, 1, 40) images: the 2-D DFT
over a 1 × 40 grid is the 1-D DFT over the 40 points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimdiff.analysis.toy.signals import LENGTH
from slimdiff.errors import ConfigError
from slimdiff.training.distillation import frequency_loss, spatial_loss, spectral_weight

OMEGA_FORMS = ("uniform", "spectral")


@dataclass(frozen=True)
class ToyDistill:
    """What a toy student is distilled from, and how: a frozen teacher (an `mlp`), λ_s, λ_f, the ω form."""

    teacher: nn.Module
    lambda_s: float = 0.1
    lambda_f: float = 0.1
    omega: str = "uniform"
    delta: float = 1e-3  # δ: keeps ω finite at the frequencies a cosine does not have

    def __post_init__(self):
        if self.omega not in OMEGA_FORMS or self.lambda_s < 0 or self.lambda_f < 0 or not self.delta > 0:
            raise ConfigError(
                f"toy distillation needs ω in {', '.join(OMEGA_FORMS)}, λ_s, λ_f ≥ 0 and δ > 0; got "
                f"{self.omega!r}, {self.lambda_s}, {self.lambda_f}, {self.delta}"
            )
        self.teacher.requires_grad_(False).eval()


def _as_images(x: Tensor) -> Tensor:
    return x[:, None, None, :]  # (N, 40) → (N, 1, 1, 40)


def toy_omega(x0: Tensor, form: str, delta: float = 1e-3) -> Tensor:
    """ω per clean signal, (N, 40): ones ("uniform") or normalise((|F(x0)| + δ)^−1) ("spectral")."""
    if form == "uniform":
        return torch.ones_like(x0)
    return spectral_weight(_as_images(x0), (1, LENGTH), alpha=-1.0, delta=delta)[:, 0, 0, :]


def distillation_terms(student: Tensor, teacher: Tensor, omega: Tensor) -> dict[str, Tensor]:
    """The two unweighted distillation terms between ε-predictions (N, 40) with ω (N, 40)."""
    return {
        "spatial": spatial_loss(student, teacher),
        "frequency": frequency_loss(_as_images(student), _as_images(teacher), _as_images(omega)),
    }


def weighted_terms(terms: dict[str, Tensor], distill: ToyDistill | None) -> dict[str, Tensor]:
    """Each term as it enters L: L_ε as is, the spatial term × λ_s, the frequency term × λ_f."""
    weights = {"spatial": distill.lambda_s, "frequency": distill.lambda_f} if distill else {}
    return {name: value * weights[name] if name in weights else value for name, value in terms.items()}


def gradient_norms(weighted: dict[str, Tensor], parameters: Iterable[Tensor]) -> dict[str, float]:
    """‖∇_θ term‖ of each weighted term alone over the student's parameters θ (the graph is kept for the
    backward of their sum)."""
    parameters = list(parameters)
    norms = {}
    for name, term in weighted.items():
        grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
        norms[name] = math.sqrt(sum(g.square().sum().item() for g in grads if g is not None))
    return norms


def grad_norm(parameters: Iterable[Tensor]) -> float:
    """‖∇_θ L‖ from the parameters' .grad after the backward of L."""
    return math.sqrt(sum(p.grad.square().sum().item() for p in parameters if p.grad is not None))


def log_entry(
    iteration: int, loss: float, weighted: dict[str, Tensor], norms: dict[str, float], total: float
) -> dict:
    """One record of the log: L and each weighted term, each term's gradient norm, its share of the sum of
    those norms (the shares sum to 1), and ‖∇L‖ (≤ that sum, the triangle inequality)."""
    norm_sum = sum(norms.values())
    return {
        "iteration": iteration,
        "loss": loss,
        "terms": {name: value.item() for name, value in weighted.items()},
        "grad_norm": norms,
        "grad_share": {name: n / norm_sum if norm_sum > 0 else math.nan for name, n in norms.items()},
        "grad_norm_total": total,
    }
