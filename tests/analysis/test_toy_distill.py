"""The toy's distillation (analysis/toy/distill.py and train_toy's teacher): the losses against closed forms,
ω, the gradient-share log, and the no-teacher run against the training loop as it was before."""

from __future__ import annotations

import math

import pytest
import torch

from slimdiff.analysis.toy.denoiser import ToyConfig, mlp, predict_eps, train_toy
from slimdiff.analysis.toy.distill import ToyDistill, distillation_terms, toy_omega
from slimdiff.analysis.toy.signals import ALPHAS, LENGTH, mixture_weights, signals
from slimdiff.diffusion import add_noise, training_scheduler
from slimdiff.errors import ConfigError

SMALL = ToyConfig(hidden=8, iterations=150, batch=32, seed=5)


def test_frequency_term_is_the_1d_orthonormal_dft_and_equals_the_spatial_term_with_uniform_omega():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(7, LENGTH, generator=g), torch.randn(7, LENGTH, generator=g)
    omega = torch.rand(7, LENGTH, generator=g)
    direct = (
        omega * (torch.fft.fft(student, norm="ortho") - torch.fft.fft(teacher, norm="ortho")).abs() ** 2
    ).mean()
    assert distillation_terms(student, teacher, omega)["frequency"].item() == pytest.approx(
        direct.item(), rel=1e-5
    )
    uniform = distillation_terms(student, teacher, toy_omega(student, "uniform"))
    mse = (student - teacher).square().mean().item()
    assert uniform["spatial"].item() == pytest.approx(mse, rel=1e-6)
    assert uniform["frequency"].item() == pytest.approx(mse, rel=1e-5)  # Parseval


def test_spectral_omega_has_mean_one_per_signal_and_drops_the_signals_own_frequency():
    omega = toy_omega(signals(), "spectral", delta=1e-3)
    assert omega.shape == (len(ALPHAS), LENGTH)
    assert torch.allclose(omega.mean(dim=1), torch.ones(len(ALPHAS)), atol=1e-6)
    # A cosine of amplitude 1 has |F| = 20/√40 = √10 at ±α and 0 elsewhere: ω ∝ 1/(√10 + δ) there, 1/δ elsewhere.
    raw_peak, raw_rest = 1 / (math.sqrt(10) + 1e-3), 1 / 1e-3
    mean = (2 * raw_peak + 38 * raw_rest) / 40
    for row, alpha in zip(omega, ALPHAS, strict=True):  # float32 leaves |F| ~ 1e-6 in the empty bins: ~0.1 %
        assert row[alpha].item() == pytest.approx(raw_peak / mean, rel=5e-3)
        assert row[LENGTH - alpha].item() == pytest.approx(raw_peak / mean, rel=5e-3)
        assert row[0].item() == pytest.approx(raw_rest / mean, rel=5e-3)
    assert torch.equal(toy_omega(signals(), "uniform"), torch.ones(len(ALPHAS), LENGTH))


def _old_train_toy(cfg: ToyConfig) -> tuple[torch.nn.Module, list[float]]:
    """train_toy's loop as it was before distillation was added (the oracle of the no-teacher run)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    scheduler = training_scheduler()
    T, alpha_bar = scheduler.config.num_train_timesteps, scheduler.alphas_cumprod
    clean, weights = signals(), mixture_weights(cfg.tail, cfg.rare)
    model = mlp(cfg.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for it in range(cfg.iterations):
        x0 = clean[torch.multinomial(weights, cfg.batch, replacement=True, generator=g)]
        t = torch.randint(T, (cfg.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = (predict_eps(model, add_noise(x0, eps, alpha_bar[t]), t, T) - eps).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if it % 100 == 0 or it == cfg.iterations - 1:
            losses.append(loss.item())
    return model, losses


def _bitwise_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_run_without_teacher_is_the_old_training_loop_bit_for_bit():
    old_model, old_losses = _old_train_toy(SMALL)
    run = train_toy(SMALL)
    assert run.losses == old_losses and len(run.losses) == 3
    assert _bitwise_equal(run.model, old_model)
    assert [e["grad_share"] for e in run.log] == [{"eps": 1.0}] * 3  # one term: all of the gradient


def test_a_teacher_with_zero_weights_changes_nothing_it_draws_no_random_numbers():
    teacher = mlp(16)
    distilled = train_toy(SMALL, distill=ToyDistill(teacher, lambda_s=0.0, lambda_f=0.0, omega="spectral"))
    plain = train_toy(SMALL)
    assert _bitwise_equal(distilled.model, plain.model)
    assert not any(p.requires_grad for p in teacher.parameters())  # frozen


def test_the_log_holds_each_term_and_gradient_shares_that_sum_to_one():
    run = train_toy(SMALL, distill=ToyDistill(mlp(16), lambda_s=0.1, lambda_f=0.1, omega="uniform"))
    assert [e["iteration"] for e in run.log] == [0, 100, 149]
    for entry in run.log:
        assert set(entry["terms"]) == set(entry["grad_share"]) == {"eps", "spatial", "frequency"}
        assert sum(entry["grad_share"].values()) == pytest.approx(1.0)
        assert entry["loss"] == pytest.approx(sum(entry["terms"].values()), rel=1e-5)
        # ω ≡ 1: the frequency term is the spatial one (Parseval), and so is its gradient
        assert entry["terms"]["frequency"] == pytest.approx(entry["terms"]["spatial"], rel=1e-4)
        assert entry["grad_share"]["frequency"] == pytest.approx(entry["grad_share"]["spatial"], rel=1e-3)
        assert entry["grad_norm_total"] <= sum(entry["grad_norm"].values()) * (1 + 1e-6)  # triangle
        assert entry["grad_norm"]["eps"] > 0 and entry["grad_norm"]["spatial"] > 0


def test_gradient_norm_of_a_term_is_its_own_gradient():
    # The log's ‖∇ L_ε‖ at iteration 0 equals a fresh backward of L_ε alone on the same batch.
    run = train_toy(
        ToyConfig(hidden=8, iterations=1, batch=32, seed=2), distill=ToyDistill(mlp(16), 0.5, 0.5)
    )
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(2)
    scheduler = training_scheduler()
    model = mlp(8)
    x0 = signals()[torch.multinomial(mixture_weights(), 32, replacement=True, generator=g)]
    t = torch.randint(1000, (32,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    loss = (
        (predict_eps(model, add_noise(x0, eps, scheduler.alphas_cumprod[t]), t, 1000) - eps).square().mean()
    )
    loss.backward()
    expected = math.sqrt(sum(p.grad.square().sum().item() for p in model.parameters()))
    assert run.log[0]["grad_norm"]["eps"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("bad", [{"omega": "paper"}, {"lambda_s": -0.1}, {"lambda_f": -1.0}, {"delta": 0.0}])
def test_bad_distillation_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="toy distillation needs"):
        ToyDistill(mlp(4), **bad)
