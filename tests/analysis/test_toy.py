import math

import pytest
import torch

from slimdiff.analysis.toy.denoiser import ToyConfig, mlp, sample_toy
from slimdiff.analysis.toy.experiment import measure, toy_experiment
from slimdiff.analysis.toy.signals import ALPHAS, LENGTH, signals


def test_signals_are_cosines_with_alpha_cycles():
    s = signals()
    assert s.shape == (len(ALPHAS), LENGTH)
    spectrum = torch.fft.rfft(s, dim=1).abs()
    assert spectrum.argmax(dim=1).tolist() == list(ALPHAS)
    assert s[:, 0].tolist() == [1.0] * len(ALPHAS)
    assert s[1, 5].item() == pytest.approx(math.cos(ALPHAS[1] * 2 * math.pi * 5 / LENGTH), abs=1e-6)


def test_mlp_has_the_papers_shape():
    net = mlp(64)
    assert [tuple(p.shape) for p in net.parameters()] == [(64, 41), (64,), (40, 64), (40,)]
    assert isinstance(net[1], torch.nn.Tanh)


def test_measure_on_the_clean_signals_is_perfect():
    rows = measure(signals().repeat(3, 1))
    for row, alpha in zip(rows, ALPHAS, strict=True):
        assert (
            row["alpha"] == alpha and row["share"] == pytest.approx(1 / 6) and row["dominant_is_alpha"] == 1.0
        )
        assert row["mse"] == pytest.approx(0.0, abs=1e-10) and row["power_kept"] == pytest.approx(1.0)


def test_measure_sees_lost_power():
    # Every signal at half amplitude: still nearest to its own clean signal and dominated by α, but only ¼
    # of the power at α is kept and the MSE is ¼ of the mean square ½ of a cosine.
    rows = measure(0.5 * signals())
    for row in rows:
        assert row["share"] == pytest.approx(1 / 6) and row["dominant_is_alpha"] == 1.0
        assert row["power_kept"] == pytest.approx(0.25, rel=1e-4) and row["mse"] == pytest.approx(
            0.125, rel=1e-4
        )


def test_small_training_run_learns_and_is_deterministic():
    cfg = ToyConfig(hidden=64, iterations=60, batch=256, samples=64, sampling_steps=20, seed=0)
    first, second = toy_experiment(cfg), toy_experiment(cfg)
    # Exact equality is the claim: both runs execute the same ops on the same thread in this one process, so
    # they agree bit for bit on any machine (only the numbers themselves may differ between machines).
    assert first["losses"] == second["losses"] and first["rows"] == second["rows"]
    assert first["losses"][-1] < 0.8 * first["losses"][0]
    assert sum(r["share"] for r in first["rows"]) == pytest.approx(1.0)


def test_sampling_stays_in_range():
    torch.manual_seed(0)
    samples = sample_toy(mlp(16), n=32, steps=10)
    assert samples.shape == (32, LENGTH) and samples.abs().max() < 5
