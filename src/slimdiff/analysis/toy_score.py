"""The toy experiment's score panels: the true score of the long-tailed mixture against the networks' estimates.

The data are point masses μ_k with weights π_k, so q(x_t) = Σ_k π_k N(√ᾱ μ_k, (1 − ᾱ) I) and its score is exact:

    ∇ log q(x_t) = −ε*(x_t) / √(1 − ᾱ),   ε*(x_t) = (x_t − √ᾱ E[x0 | x_t]) / √(1 − ᾱ),
    E[x0 | x_t] = Σ_k w_k μ_k,   w = softmax_k(log π_k − ‖x_t − √ᾱ μ_k‖² / (2(1 − ᾱ))).

A network predicting ε estimates the score as −ε̂/√(1 − ᾱ); its *score error* on a pattern is the excess
ε-error E‖ε̂ − ε*‖² / 40 on x_t drawn from that pattern, averaged over timesteps — the part of the ε-loss that a
perfect network would not have. The slice shows both scores along the line from the most common to the rarest
pattern, projected on that line, with the density of x_t there.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from slimdiff.analysis.toy import ALPHAS, LENGTH, predict_eps, signals
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


def plot_toy(results: dict[str, dict], path: str | Path) -> Path:
    """Four panels: data π vs generated shares per α; the score slice (true vs each width, density shaded); the
    score error per α; the samples' MSE to their clean signal per α."""
    from slimdiff.reporting.plots import figure, save

    fig, (ax_pi, ax_slice, ax_score, ax_mse) = figure(width=15.0, height=3.4, ncols=4)
    first = next(iter(results.values()))
    alphas = [r["alpha"] for r in first["rows"]]
    positions = torch.arange(len(alphas)).float()
    width = 0.8 / (len(results) + 1)
    ax_pi.bar(positions, [r["pi"] for r in first["rows"]], width, label="data π", color="0.6")
    for i, (name, result) in enumerate(results.items(), start=1):
        ax_pi.bar(positions + i * width, [r["share"] for r in result["rows"]], width, label=f"{name} samples")
        ax_score.plot(alphas, [r["score_error"] for r in result["rows"]], marker="o", label=name)
        mse = [r["mse"] if r["mse"] is not None else float("nan") for r in result["rows"]]
        ax_mse.plot(alphas, mse, marker="o", label=name)
        ax_slice.plot(result["slice"]["lambda"], result["slice"]["estimated"], label=f"{name} estimate")
    cut = first["slice"]
    ax_slice.plot(cut["lambda"], cut["true"], color="black", linewidth=2, label="true score")
    density = ax_slice.twinx()
    density.fill_between(cut["lambda"], cut["log_density"], min(cut["log_density"]), color="0.85", zorder=0)
    density.set_ylabel("log q(x_t)", fontsize=8)
    ax_slice.set_zorder(density.get_zorder() + 1)
    ax_slice.patch.set_visible(False)
    ax_pi.set_xticks(positions + width * len(results) / 2, [str(a) for a in alphas])
    ax_pi.set_xlabel("signal frequency α")
    ax_pi.set_ylabel("share")
    ax_pi.set_yscale("log")
    ax_slice.set_xlabel(f"λ: α={cut['from_alpha']} (0) → α={cut['to_alpha']} (1), t = {cut['t']}")
    ax_slice.set_ylabel("score along the slice")
    ax_score.set_xlabel("signal frequency α")
    ax_score.set_ylabel("score error E‖ε̂ − ε*‖²/40")
    ax_mse.set_xlabel("signal frequency α")
    ax_mse.set_ylabel("samples' MSE to the clean signal")
    for ax in (ax_score, ax_mse):
        ax.set_yscale("log")
    for ax in (ax_pi, ax_slice, ax_score, ax_mse):
        ax.legend(fontsize=7)
    return save(fig, path)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def toy_table(results: dict[str, dict]) -> list[str]:
    """Markdown rows: per α the data's π, and per width share · dominant = α · MSE · power kept · score error
    (all timesteps / late)."""
    names = list(results)
    head = "share · dominant = α · MSE · power kept · score err (late)"
    lines = [
        "| α | π | " + " | ".join(f"{n}: {head}" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    first = results[names[0]]["rows"]
    for i, row in enumerate(first):
        cells = []
        for name in names:
            r = results[name]["rows"][i]
            cells.append(
                f"{r['share']:.3f} · {_fmt(r['dominant_is_alpha'], 2)} · {_fmt(r['mse'])} · "
                f"{_fmt(r['power_kept'])} · {_fmt(r['score_error'])} ({_fmt(r['score_error_late'])})"
            )
        lines.append(f"| {row['alpha']} | {row['pi']:.3f} | " + " | ".join(cells) + " |")
    return lines
