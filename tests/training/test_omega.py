"""The paper's literal ω beside ours (issue 15): closed forms, the δ floor, the validated option reaching the
objective."""

from __future__ import annotations

import pytest
import torch

from slimdiff.config import DistillConfig, load_config
from slimdiff.errors import ConfigError
from slimdiff.training.distillation import SpectralDistillation, frequency_loss, spectral_weight


def _x0(batch=2, channels=3, size=8, seed=0):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_paper_omega_is_the_literal_spectrum_power_per_channel():
    x0 = _x0()
    omega = spectral_weight(x0, (8, 8), alpha=-1.0, form="paper", channels=3)
    expected = torch.fft.fft2(x0, norm="ortho").abs() ** -1.0
    torch.testing.assert_close(omega, expected)
    assert omega.shape == (2, 3, 8, 8)
    assert omega.mean().item() != pytest.approx(1.0, abs=0.05)  # not normalised


def test_paper_omega_averages_channels_for_features_and_floors_at_delta():
    x0 = _x0()
    x0[1] = 0.0  # an all-zero image: |F| = 0 everywhere
    omega = spectral_weight(x0, (8, 8), alpha=-1.0, delta=1e-2, form="paper", channels=64)
    assert omega.shape == (2, 1, 8, 8)
    torch.testing.assert_close(omega[1], torch.full((1, 8, 8), 100.0))
    per_channel = torch.fft.fft2(x0[:1], norm="ortho").abs().clamp_min(1e-2) ** -1.0
    torch.testing.assert_close(omega[:1], per_channel.mean(dim=1, keepdim=True))


def test_our_omega_is_unchanged_and_has_mean_one():
    x0 = _x0()
    omega = spectral_weight(x0, (4, 4))
    assert omega.shape == (2, 1, 4, 4)
    torch.testing.assert_close(omega.mean(dim=(-2, -1)), torch.ones(2, 1))


def test_distill_omega_is_validated_and_reaches_the_objective(tiny_unet):
    assert DistillConfig().omega == "ours"
    with pytest.raises(ConfigError, match="distill.omega must be ours or paper"):
        DistillConfig(omega="literal")
    config = load_config(None, ["distill.teacher=t", "distill.omega=paper"])
    assert config.distill.omega == "paper"
    teacher, student = tiny_unet(seed=1, slim=False), tiny_unet(seed=2)
    objective = SpectralDistillation(student, teacher, DistillConfig(positions=("output",), omega="paper"))
    x0, noise = _x0(channels=3), _x0(channels=3, seed=1)
    t = torch.tensor([10, 500])
    _, terms = objective(student, x0, noise, t, noise)
    with torch.no_grad():
        s, tt = student(noise, t).sample, teacher(noise, t).sample
    expected = frequency_loss(s, tt, torch.fft.fft2(x0, norm="ortho").abs().clamp_min(1e-3) ** -1.0)
    assert float(terms["loss_freq"]) == pytest.approx(expected.item(), rel=1e-5)
    objective.remove_hooks()
