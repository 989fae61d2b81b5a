"""The paper's toy experiment: can a small denoiser learn high-frequency signals?

Data: 40-sample signals cos(α·2πx) on x = 0, 1/40, …, 39/40, one per α in `ALPHAS` (a mixture of point
masses, drawn uniformly). Denoiser: an MLP [x_t, t/T] (41) → M → 40 with tanh, predicting ε, trained with
Adam (lr 1e-3, batch 1000, 10k iterations at paper scale) on the training noise schedule. Then DDPM
ancestral sampling from pure noise (x0 estimate clipped to [-1, 1]), and for every generated signal: its nearest clean signal (which α it
"chose") and its dominant frequency (argmax of |rFFT|, DC excluded). Per α we report the share of samples,
the share whose dominant frequency equals α, the mean squared error to the clean signal, and the power the
samples keep at frequency α relative to the clean signal's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from slimdiff.sampling.schedule import add_noise, training_scheduler

ALPHAS = (1, 2, 4, 8, 12, 16)
LENGTH = 40


@dataclass(frozen=True)
class ToyConfig:
    hidden: int = 1024
    iterations: int = 10_000
    batch: int = 1000
    lr: float = 1e-3
    samples: int = 1000
    sampling_steps: int = 1000
    seed: int = 0


def signals(alphas: tuple[int, ...] = ALPHAS, length: int = LENGTH) -> Tensor:
    """(len(alphas), length) clean signals cos(α·2πx)."""
    x = torch.arange(length, dtype=torch.float32) / length
    return torch.stack([torch.cos(a * 2 * math.pi * x) for a in alphas])


def mlp(hidden: int, length: int = LENGTH) -> nn.Module:
    """41 → M → 40 with tanh: the paper's toy denoiser (input: the noisy signal and t/T)."""
    return nn.Sequential(nn.Linear(length + 1, hidden), nn.Tanh(), nn.Linear(hidden, length))


def _predict(model: nn.Module, x_t: Tensor, t: Tensor, steps: int) -> Tensor:
    return model(torch.cat([x_t, (t.float() / steps)[:, None]], dim=1))


def train_toy(
    cfg: ToyConfig, progress: Callable[[int, float], None] | None = None
) -> tuple[nn.Module, list[float]]:
    """Train the toy MLP to predict ε; returns the model and the loss every 100 iterations."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    scheduler = training_scheduler()
    T, ᾱ = scheduler.config.num_train_timesteps, scheduler.alphas_cumprod
    clean = signals()
    model = mlp(cfg.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for it in range(cfg.iterations):
        x0 = clean[torch.randint(len(clean), (cfg.batch,), generator=g)]
        t = torch.randint(T, (cfg.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = (_predict(model, add_noise(x0, eps, ᾱ[t]), t, T) - eps).square().mean()
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
        eps = _predict(model, x, torch.full((n,), int(t)), T)
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
    """Train, sample and measure one hidden width; returns config, loss curve and the per-α table."""
    model, losses = train_toy(cfg, progress)
    samples = sample_toy(model, cfg.samples, cfg.sampling_steps, seed=cfg.seed + 1)
    return {
        "config": asdict(cfg),
        "losses": losses,
        "rows": measure(samples),
        "examples": samples[:4].tolist(),
    }


def plot_toy(results: dict[str, dict], path: str | Path) -> Path:
    """Per α and hidden width: share of samples whose dominant frequency is α, and MSE to the clean signal."""
    from slimdiff.reporting.plots import figure, save

    fig, (ax_ok, ax_mse) = figure(width=8.0, height=3.2, ncols=2)
    for name, result in results.items():
        alphas = [r["alpha"] for r in result["rows"]]
        ax_ok.plot(alphas, [r["dominant_is_alpha"] or 0.0 for r in result["rows"]], marker="o", label=name)
        ax_mse.plot(
            alphas,
            [r["mse"] if r["mse"] is not None else float("nan") for r in result["rows"]],
            marker="o",
            label=name,
        )
    ax_ok.set_xlabel("signal frequency α")
    ax_ok.set_ylabel("samples with dominant frequency α")
    ax_ok.set_ylim(-0.05, 1.05)
    ax_mse.set_xlabel("signal frequency α")
    ax_mse.set_ylabel("MSE to the clean signal")
    ax_mse.set_yscale("log")
    for ax in (ax_ok, ax_mse):
        ax.legend(fontsize=8)
    return save(fig, path)
