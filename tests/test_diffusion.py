"""The forward process (slimdiff.diffusion): add_noise against its closed form and diffusers, the training
schedule, and the (t, ε) draw of a micro-batch as a pure function of (seed, micro-step, process)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from slimdiff.config import TrainConfig
from slimdiff.diffusion import (
    NOISE_SCHEDULE,
    add_noise,
    ddim_step,
    micro_step_noise,
    predict_x0,
    training_scheduler,
)


def test_add_noise_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 2, 4, 5, generator=g)
    alpha_bar = torch.tensor([1.0, 0.25, 0.0], dtype=torch.float64)
    x_t = add_noise(x0, eps.double(), alpha_bar)
    torch.testing.assert_close(x_t[0], x0[0], rtol=0, atol=0)  # ᾱ = 1: clean
    torch.testing.assert_close(x_t[1], 0.5 * x0[1] + 0.75**0.5 * eps[1].double(), rtol=1e-15, atol=0)
    torch.testing.assert_close(x_t[2], eps[2].double(), rtol=0, atol=0)  # ᾱ = 0: pure noise


@pytest.mark.parametrize("beta_end", [NOISE_SCHEDULE["beta_end"], 0.0155])
def test_add_noise_matches_diffusers_on_the_run_schedule(beta_end):
    scheduler = training_scheduler(beta_end=beta_end)
    assert scheduler.config.beta_end == beta_end
    assert all(scheduler.config[k] == v for k, v in NOISE_SCHEDULE.items() if k != "beta_end")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 17, 500, 999])
    ours = add_noise(x0, eps, scheduler.alphas_cumprod[t])
    torch.testing.assert_close(ours, scheduler.add_noise(x0, eps, t))


@pytest.mark.parametrize("steps", [50, 4])
def test_ddim_step_is_diffusers_ddim_step_per_sample(steps):
    ddim = DDIMScheduler.from_config(training_scheduler().config, clip_sample=False)
    ddim.set_timesteps(steps)
    skip = 1000 // steps
    g = torch.Generator().manual_seed(2)
    x_t, eps = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([skip + 3, 500, 999])
    ᾱ = ddim.alphas_cumprod
    ours = ddim_step(x_t, eps, ᾱ[t], ᾱ[t - skip])
    for i in range(3):
        theirs = ddim.step(eps[i : i + 1], int(t[i]), x_t[i : i + 1])
        torch.testing.assert_close(ours[i : i + 1], theirs.prev_sample, rtol=1e-5, atol=1e-6)
        x0 = predict_x0(x_t[i : i + 1], eps[i : i + 1], ᾱ[t[i : i + 1]])
        torch.testing.assert_close(x0, theirs.pred_original_sample, rtol=1e-5, atol=1e-6)


def test_the_config_default_is_the_schedule_end():
    assert TrainConfig().beta_end == NOISE_SCHEDULE["beta_end"]


def test_micro_step_noise_is_a_pure_function_of_seed_step_and_process():
    shape = (5, 3, 4, 4)
    t, eps = micro_step_noise(shape, seed=7, micro_step=3, process=1, timesteps=1000)
    torch.manual_seed(123)  # the global generator plays no part
    again = micro_step_noise(shape, seed=7, micro_step=3, process=1, timesteps=1000)
    assert torch.equal(t, again[0]) and torch.equal(eps, again[1])
    assert t.shape == (5,) and t.dtype == torch.long and eps.shape == shape
    for other in ((8, 3, 1), (7, 4, 1), (7, 3, 0)):  # another seed, micro-step or process: another draw
        assert not torch.equal(eps, micro_step_noise(shape, *other, timesteps=1000)[1])
    many, _ = micro_step_noise((4096, 1), seed=0, micro_step=0, process=0, timesteps=10)
    assert many.min() == 0 and many.max() == 9
