"""The paper's toy experiment: can a small denoiser learn high-frequency signals?

Data: 40-sample signals cos(α·2πx) on x = 0, 1/40, …, 39/40, one per α in `ALPHAS` (a mixture of point
masses). The paper's point is long-tailed data, so the patterns are drawn with probabilities π ∝ rank^(−tail)
(`mixture_weights`): with `rare="high"` the highest frequency is the rarest, with `rare="low"` the lowest (which
separates "rare" from "high-frequency"); tail 0 is uniform. Denoiser: an MLP [x_t, t/T] (41) → M → 40 with tanh,
predicting ε, trained with Adam (lr 1e-3, batch 1000, 10k iterations at paper scale) on the training noise
schedule. Then DDPM ancestral sampling from pure noise (x0 estimate clipped to [-1, 1]), and for every generated
signal: its nearest clean signal (which α it "chose") and its dominant frequency (argmax of |rFFT|, DC
excluded). Per α we report the share of samples, the share whose dominant frequency equals α, the mean squared
error to the clean signal, the power the samples keep at frequency α relative to the clean signal's, and the
network's score error against the true score of the mixture (`slimdiff.analysis.toy_score`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from slimdiff.diffusion import add_noise, training_scheduler

ALPHAS = (1, 2, 4, 8, 12, 16)
LENGTH = 40


RARE = ("high", "low")


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


def mixture_weights(tail: float = 2.0, rare: str = "high", count: int = len(ALPHAS)) -> Tensor:
    """π over the patterns in ALPHAS order: ∝ rank^(−tail), rank 1 the most common (the lowest α when rare is
    "high", the highest when "low")."""
    ranks = torch.arange(1, count + 1, dtype=torch.float64)
    weights = ranks ** (-tail)
    weights = weights if rare == "high" else weights.flip(0)
    return (weights / weights.sum()).float()


def signals(alphas: tuple[int, ...] = ALPHAS, length: int = LENGTH) -> Tensor:
    """(len(alphas), length) clean signals cos(α·2πx)."""
    x = torch.arange(length, dtype=torch.float32) / length
    return torch.stack([torch.cos(a * 2 * math.pi * x) for a in alphas])


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
    """Train, sample and measure one hidden width; returns config, loss curve, the per-α table (with the data's
    π and the score error) and the score along the slice between the most common and the rarest pattern."""
    from slimdiff.analysis.toy_score import score_error, score_slice

    model, losses = train_toy(cfg, progress)
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
