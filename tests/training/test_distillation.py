"""Spectrum-aware distillation: losses against closed forms, hooks, gradients, teacher loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from slimdiff.config import DISTILL_POSITIONS, DistillConfig
from slimdiff.errors import ConfigError, ModelError
from slimdiff.models.loading import load_teacher
from slimdiff.training.distillation import (
    SpectralDistillation,
    frequency_loss,
    spatial_loss,
    spectral_weight,
    tap_module,
)
from slimdiff.training.objectives import EpsilonObjective, Objective

SIZE = 16
# Enough levels for every distillation position (feat-up2 needs three); the teacher twice as wide.
TEACHER = {"size": SIZE, "widths": (32, 32, 64, 64), "cls": UNet2DModel}


@pytest.fixture(scope="module")
def pair(tiny_unet):
    # in training mode, as the distillation objective gets them
    teacher = tiny_unet(**TEACHER).train()
    student = tiny_unet(size=SIZE, widths=(16, 16, 32, 32)).train()
    return teacher, student


def batch(seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
    noise = torch.randn(n, 3, SIZE, SIZE, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    sched = DDPMScheduler(1000, 0.0015, 0.0195, "scaled_linear")
    return x0, sched.add_noise(x0, noise, t), t, noise


def test_frequency_loss_equals_spatial_loss_when_alpha_is_zero():
    """Parseval: with the orthonormal FFT and ω ≡ 1 the two losses are the same number."""
    g = torch.Generator().manual_seed(1)
    s, t, x0 = (torch.randn(3, 5, 8, 12, generator=g, dtype=torch.float64) for _ in range(3))
    omega = spectral_weight(x0, (8, 12), alpha=0.0)
    assert torch.equal(omega, torch.ones_like(omega))
    torch.testing.assert_close(frequency_loss(s, t, omega), spatial_loss(s, t), rtol=1e-12, atol=0)


def test_omega_is_largest_where_the_clean_spectrum_is_smallest():
    g = torch.Generator().manual_seed(2)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    smooth = torch.cos(2 * np.pi * xx / SIZE) + 0.5 * torch.cos(2 * np.pi * 2 * yy / SIZE)
    x0 = (smooth + 0.01 * torch.randn(2, 3, SIZE, SIZE, generator=g)).double()
    omega = spectral_weight(x0, (SIZE, SIZE), alpha=-1.0, delta=1e-3)
    magnitude = np.abs(np.fft.fft2(x0.numpy(), norm="ortho")).mean(axis=1)  # numpy as the oracle
    for b in range(2):
        # a real signal's spectrum is conjugate-symmetric, so compare values, not (tied) indices
        assert magnitude[b].flat[omega[b, 0].argmax().item()] == pytest.approx(magnitude[b].min())
        assert magnitude[b].flat[omega[b, 0].argmin().item()] == pytest.approx(magnitude[b].max())
        expected = (magnitude[b] + 1e-3) ** -1.0
        np.testing.assert_allclose(omega[b, 0].numpy(), expected / expected.mean(), rtol=1e-5)
    torch.testing.assert_close(omega.mean(dim=(-2, -1)), torch.ones(2, 1, dtype=omega.dtype))
    assert not omega.requires_grad


def test_mean_omega_is_ours_from_the_batch_mean_spectrum_and_uniform_is_ones():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    omega = spectral_weight(x0, (SIZE, SIZE), alpha=-1.0, delta=1e-3, form="mean")
    magnitude = np.abs(np.fft.fft2(x0.numpy(), norm="ortho")).mean(axis=(0, 1))  # numpy as the oracle
    expected = (magnitude + 1e-3) ** -1.0
    assert omega.shape == (1, 1, SIZE, SIZE)
    np.testing.assert_allclose(omega[0, 0].numpy(), expected / expected.mean(), rtol=1e-10)
    uniform = spectral_weight(x0, (4, 4), form="uniform")
    assert uniform.shape == (1, 1, 4, 4) and torch.equal(uniform, torch.ones_like(uniform))
    s, t = torch.randn(2, 4, 3, 4, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(frequency_loss(s, t, uniform), spatial_loss(s, t), rtol=1e-6, atol=0)


def test_omega_resizes_x0_to_the_feature_size():
    x0 = torch.randn(2, 3, SIZE, SIZE)
    assert spectral_weight(x0, (4, 4)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_taps_have_the_expected_shapes_at_every_position(pair, role):
    unet = pair[0] if role == "teacher" else pair[1]
    c = unet.config.block_out_channels
    levels = len(c)
    expected = {  # up block i works at channels c[levels-1-i]; its up-sampler doubles the size
        "feat-up1": (c[1], SIZE, SIZE),
        "feat-up2": (c[2], SIZE // 2, SIZE // 2),
        "feat-down4": (c[levels - 2], SIZE // 2 ** (levels - 1), SIZE // 2 ** (levels - 1)),
    }
    seen = {}
    handles = [
        tap_module(unet, p).register_forward_hook(lambda m, a, out, p=p: seen.__setitem__(p, out.shape[1:]))
        for p in expected
    ]
    with torch.no_grad():
        out = unet(batch()[1], batch()[2]).sample
    for h in handles:
        h.remove()
    assert out.shape == (2, 3, SIZE, SIZE)
    assert {p: tuple(s) for p, s in seen.items()} == expected


def test_gradients_reach_student_and_projectors_never_teacher(pair):
    teacher, student = pair
    objective = SpectralDistillation(student, teacher, DistillConfig(positions=DISTILL_POSITIONS))
    assert set(objective.projectors) == {"feat-up1", "feat-up2", "feat-down4"}
    assert not any(
        k.startswith("teacher") for k in objective.state_dict()
    )  # teacher stays out of checkpoints
    student.train()
    loss, terms = objective(student, *batch())
    loss.backward()
    assert all(terms[k] > 0 for k in ("loss_eps", "loss_spatial", "loss_freq"))
    student_grads = [p.grad for p in student.parameters()]
    assert all(g is not None for g in student_grads) and any(g.abs().sum() > 0 for g in student_grads)
    for p in objective.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    student.zero_grad()
    objective.remove_hooks()
    assert not any(m._forward_hooks for m in (*student.modules(), *teacher.modules()))


def test_total_loss_combines_terms_with_lambdas(pair):
    teacher, student = pair
    objective = SpectralDistillation(student, teacher, DistillConfig(lambda_spatial=0.3, lambda_freq=0.7))
    with torch.no_grad():
        loss, terms = objective(student, *batch(seed=3))
    objective.remove_hooks()
    expected = terms["loss_eps"] + 0.3 * terms["loss_spatial"] + 0.7 * terms["loss_freq"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    off = SpectralDistillation(student, teacher, DistillConfig(lambda_spatial=0.0, lambda_freq=0.0))
    with torch.no_grad():
        plain, _ = off(student, *batch(seed=3))
        x0, x_t, t, noise = batch(seed=3)
        direct = torch.nn.functional.mse_loss(student(x_t, t).sample, noise)
    off.remove_hooks()
    assert plain.item() == pytest.approx(direct.item(), rel=1e-6)


def test_mismatched_latent_space_is_a_clear_error(pair, tiny_unet):
    _, student = pair
    other = tiny_unet(**TEACHER, channels=4)
    with pytest.raises(ModelError, match="in_channels"):
        SpectralDistillation(student, other)
    with pytest.raises(ConfigError, match=r"distill.positions \['feat-up9'\] must be taken from"):
        DistillConfig(positions=("feat-up9",))  # checked once, where the setting is read


def _save_pipeline_folder(teacher: UNet2DModel, folder: Path, prediction: str = "epsilon") -> None:
    teacher.save_pretrained(folder / "unet")
    DDPMScheduler(prediction_type=prediction).save_pretrained(folder / "scheduler")


def test_teacher_from_local_folders_and_hub_cache_gives_identical_outputs(pair, tmp_path, assert_same_model):
    teacher = pair[0].eval()
    x0, x_t, t, _ = batch()
    teacher.save_pretrained(tmp_path / "bare")
    _save_pipeline_folder(teacher, tmp_path / "pipe")
    # A hub id resolves through the hub cache: lay one out by hand and load with local_files_only.
    commit = "0123abcd" * 5
    snapshot = tmp_path / "hub" / "models--tiny--teacher" / "snapshots" / commit
    _save_pipeline_folder(teacher, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    loaded = [
        load_teacher(tmp_path / "bare"),
        load_teacher(tmp_path / "pipe"),
        load_teacher("tiny/teacher", cache_dir=tmp_path / "hub", local_files_only=True),
    ]
    for model in loaded:
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert_same_model(teacher, model, {"sample": x_t, "timestep": t})


def test_a_teacher_with_another_noise_schedule_is_refused_unless_the_run_uses_it(
    pair, tmp_path, micro_config
):
    from slimdiff.config import Config, from_dict
    from slimdiff.diffusion import NOISE_SCHEDULE, training_scheduler
    from slimdiff.training.run import build_objective

    church = tmp_path / "church"
    pair[0].save_pretrained(church / "unet")
    DDPMScheduler(**{**NOISE_SCHEDULE, "beta_end": 0.0155}).save_pretrained(church / "scheduler")

    def objective(**train):
        config = micro_config(tmp_path / "run", distill={"teacher": str(church)}, train=train)
        run = from_dict(Config, config)
        return build_objective(run.distill, pair[1], training_scheduler(beta_end=run.train.beta_end))

    with pytest.raises(
        ModelError,
        match=r"\(scaled_linear β 0.0015 → 0.0155, 1000 steps\) than this run's \(.*→ 0.0195, .*set train.beta_end",
    ):
        objective()
    assert isinstance(objective(beta_end=0.0155), SpectralDistillation)
    assert not load_teacher(church).training  # without a schedule to compare (e.g. for evaluation) it loads


def test_teacher_with_other_prediction_type_or_missing_is_refused(pair, tmp_path, monkeypatch):
    _save_pipeline_folder(pair[0], tmp_path / "v", prediction="v_prediction")
    with pytest.raises(ModelError, match="v_prediction"):
        load_teacher(tmp_path / "v")
    with pytest.raises(ModelError, match="neither a model folder nor a hub id"):
        load_teacher(tmp_path / "missing" / "deeper")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError, match="no folder runs/tiny-sd .*a typo"):
        load_teacher("runs/tiny-sd")  # looks like a hub id, but runs/ is a local folder: never ask the hub
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no UNet"):
        load_teacher(tmp_path / "empty")
    assert json.loads((tmp_path / "v" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]


def test_every_objective_returns_a_tensor_loss_and_detached_tensor_terms(pair):
    teacher, student = pair
    distillation = SpectralDistillation(student, teacher, DistillConfig(positions=DISTILL_POSITIONS))
    for objective in (distillation, EpsilonObjective()):
        assert isinstance(objective, Objective)
        loss, terms = objective(student, *batch(seed=4))
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.requires_grad
        assert terms and all(
            isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in terms.values()
        )
    distillation.remove_hooks()
    # the objective's own parameters are its projectors, never the teacher's or the student's
    projectors = list(distillation.projectors.parameters())
    assert projectors and [id(p) for p in distillation.trainable_parameters()] == [id(p) for p in projectors]
    assert set(distillation.trainable_state()) == {
        f"projectors.{name}" for name, _ in distillation.projectors.named_parameters()
    }
    assert EpsilonObjective().trainable_parameters() == []
