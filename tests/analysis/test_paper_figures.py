"""The toy experiment on long-tailed data with its score panels, and the blur experiment on the same images
(issue 15)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from slimdiff.analysis.blur import blur_sensitivity
from slimdiff.analysis.toy.denoiser import ToyConfig
from slimdiff.analysis.toy.experiment import toy_experiment
from slimdiff.analysis.toy.report import plot_toy, toy_table
from slimdiff.analysis.toy.score import _log_terms, optimal_eps, score_error, score_slice
from slimdiff.analysis.toy.signals import ALPHAS, LENGTH, mixture_weights, signals
from slimdiff.cli import app
from slimdiff.diffusion import training_scheduler

runner = CliRunner()
ALPHA_BAR = training_scheduler().alphas_cumprod


def test_mixture_weights_are_long_tailed_towards_the_rare_end():
    high, low, uniform = mixture_weights(2.0, "high"), mixture_weights(2.0, "low"), mixture_weights(0.0)
    for w in (high, low, uniform):
        assert w.sum().item() == pytest.approx(1.0)
    assert (high[:-1] > high[1:]).all() and torch.equal(low, high.flip(0))
    assert high[0] / high[-1] == pytest.approx(36.0)  # rank 6 vs rank 1 at tail 2
    torch.testing.assert_close(uniform, torch.full((6,), 1 / 6))
    with pytest.raises(ValueError, match="rare one of high, low"):
        ToyConfig(rare="middle")


def test_optimal_eps_is_the_true_score_of_the_mixture():
    weights, clean = mixture_weights(2.0), signals()
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([5, 200, 500, 900])
    alpha_bar = ALPHA_BAR[t].double()
    x = (alpha_bar.sqrt()[:, None] * clean[[0, 5, 2, 3]] + torch.randn(4, LENGTH, generator=g)).double()
    x.requires_grad_(True)
    log_q = _log_terms(x, alpha_bar, weights, clean).logsumexp(dim=1).sum()
    (score,) = torch.autograd.grad(log_q, x)
    expected = -score * (1 - alpha_bar).sqrt()[:, None]
    torch.testing.assert_close(
        optimal_eps(x.detach().float(), alpha_bar, weights), expected.float(), atol=2e-5, rtol=1e-4
    )


def test_with_one_pattern_the_optimal_eps_is_the_noise_itself():
    clean, eps = signals()[:1], torch.randn(3, LENGTH, generator=torch.Generator().manual_seed(1))
    alpha_bar = ALPHA_BAR[torch.tensor([10, 400, 990])].double()
    x = (alpha_bar.sqrt()[:, None] * clean + (1 - alpha_bar).sqrt()[:, None] * eps).float()
    torch.testing.assert_close(optimal_eps(x, alpha_bar, torch.ones(1), clean), eps, atol=1e-4, rtol=1e-4)


class Oracle(nn.Module):
    """A 'network' that predicts ε*: its score error is zero."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def forward(self, inputs):
        x, t = inputs[:, :LENGTH], (inputs[:, LENGTH] * 1000).round().long()
        return optimal_eps(x, ALPHA_BAR[t].double(), self.weights)


def test_score_error_and_slice_of_an_oracle_and_of_a_zero_network():
    weights = mixture_weights(2.0)
    oracle = score_error(Oracle(weights), weights, samples=4, timesteps=(10, 300, 700))
    assert len(oracle) == len(ALPHAS) and all(r["score_error"] < 1e-8 for r in oracle)
    zero = nn.Linear(LENGTH + 1, LENGTH)
    nn.init.zeros_(zero.weight), nn.init.zeros_(zero.bias)
    errors = score_error(zero, weights, samples=50, timesteps=(10, 300, 700))
    assert all(0.2 < r["score_error"] < 1.5 for r in errors)  # ≈ E‖ε*‖²/40
    cut = score_slice(Oracle(weights), weights, points=9)
    assert (cut["from_alpha"], cut["to_alpha"]) == (1, 16) and len(cut["lambda"]) == 9
    torch.testing.assert_close(
        torch.tensor(cut["estimated"]), torch.tensor(cut["true"]), atol=1e-4, rtol=1e-4
    )
    assert max(cut["log_density"]) == pytest.approx(cut["log_density"][2], abs=1e-6)  # λ = 0: the common mode


def test_a_tiny_toy_run_reports_pi_score_error_and_the_slice(tmp_path):
    cfg = ToyConfig(hidden=16, iterations=30, batch=128, samples=32, sampling_steps=5, tail=1.0, rare="low")
    result = toy_experiment(cfg)
    rows = result["rows"]
    assert [r["pi"] for r in rows] == pytest.approx(mixture_weights(1.0, "low").tolist())
    assert all(r["score_error"] > 0 and r["score_error_late"] > 0 for r in rows)
    assert (result["slice"]["from_alpha"], result["slice"]["to_alpha"]) == (16, 1)
    table = toy_table({"M=16": result})
    assert len(table) == 2 + len(ALPHAS) and table[2].startswith("| 1 | ")
    assert plot_toy({"M=16": result}, tmp_path / "toy.png").read_bytes()[:4] == b"\x89PNG"


def test_blur_on_the_same_images_is_zero_at_sigma2_zero_and_the_halves_floor_is_not(white_noise):
    x = white_noise(8, size=16).float()
    gap = {"gap": lambda a, b: (a - b).abs().mean().item() if a.shape == b.shape else float("nan")}
    same = blur_sensitivity(x, gap, (0.0, 0.5, 2.0))
    assert same[0]["gap"] == 0.0 and 0 < same[1]["gap"] < same[2]["gap"]
    halves = blur_sensitivity(x, gap, (0.0,), pairing="halves")[0]
    assert halves["gap"] > same[1]["gap"]
    with pytest.raises(ValueError, match="unknown pairing 'pairs'"):
        blur_sensitivity(x, gap, (0.0,), pairing="pairs")


def test_analyze_blur_uses_the_same_images_and_adds_the_floor(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "b"
    args = [
        "analyze",
        "blur",
        "builtin:textures",
        "-n",
        "8",
        "--size",
        "16",
        "--sigma2",
        "0",
        "--sigma2",
        "1",
    ]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "blur.json").read_text())
    assert data["pairing"] == "same" and [r["sigma2"] for r in data["rows"]] == [0.0, 1.0]
    assert data["rows"][0]["SWD mean"] == pytest.approx(0.0, abs=1e-9) and data["floor"]["SWD mean"] > 0
    assert "| floor: two halves, σ² = 0 |" in (out / "blur.md").read_text()
    bad = runner.invoke(app, [*args, "--pairing", "pairs", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "unknown --pairing 'pairs'" in bad.output


def test_analyze_toy_takes_the_tail_options(tmp_path):
    args = ["--iterations", "10", "--batch", "32", "--samples", "8", "--sampling-steps", "3", "--hidden", "8"]
    out = tmp_path / "t"
    result = runner.invoke(app, ["analyze", "toy", *args, "--tail", "1", "--rare", "low", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["tail"] == 1.0 and config["rare"] == "low" and config["hidden"] == [8]
    bad = runner.invoke(app, ["analyze", "toy", *args, "--rare", "middle", "--out", str(tmp_path / "u")])
    assert bad.exit_code == 2 and "rare one of high, low" in bad.output
