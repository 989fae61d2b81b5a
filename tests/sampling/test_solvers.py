import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from slimdiff.diffusion import training_scheduler
from slimdiff.sampling.solvers import SAMPLERS, build_scheduler, check_scheduler, clip_prediction, get_sampler

TRAINING = dict(training_scheduler().config)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
    return tiny_pipeline()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_gives_finite_images_of_the_model_size(pipe, name):
    images = pipe(
        batch_size=2, num_inference_steps=3, sampler=name, generator=gen(0), output_type="np"
    ).images
    assert images.shape == (2, 8, 8, 3)
    assert np.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_same_seed_same_images_other_seed_other_images(pipe, name):
    def run(s):
        return pipe(
            batch_size=2, num_inference_steps=3, sampler=name, generator=gen(s), output_type="pt"
        ).images

    first = run(7)
    assert torch.equal(first, run(7))  # one pipeline, one batch, the same ops: bitwise on any machine
    assert not torch.allclose(first, run(8))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_share_the_training_noise_schedule(name):
    scheduler = build_scheduler(get_sampler(name), TRAINING)
    torch.testing.assert_close(scheduler.alphas_cumprod, training_scheduler().alphas_cumprod)
    scheduler.set_timesteps(10)
    # Trailing spacing: the first step starts from the last training step (pure noise), all integers.
    assert int(scheduler.timesteps[0]) == 999
    assert torch.equal(scheduler.timesteps, scheduler.timesteps.round())


def test_unknown_sampler_lists_the_valid_names(pipe):
    with pytest.raises(KeyError, match="valid: ddpm, ddim, pndm, dpm\\+\\+, unipc, deis, euler"):
        pipe(num_inference_steps=2, sampler="heun")


def test_a_scheduler_is_accepted_when_it_samples_the_ddpm_schedule():
    # sampler=None samples with the pipeline's own scheduler as set (tests/test_diffusers_schedulers.py: all of them)
    from diffusers import EDMEulerScheduler, LMSDiscreteScheduler

    check_scheduler(LMSDiscreteScheduler.from_config(TRAINING))
    with pytest.raises(ValueError, match="EDMEulerScheduler has no ᾱ noise schedule"):
        check_scheduler(EDMEulerScheduler.from_config(TRAINING))


def test_dpmpp_is_the_multistep_dpm_solver_plus_plus():
    scheduler = build_scheduler(get_sampler("dpm++"), TRAINING)
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.solver_order == 2


def _x0(eps, x_t, alpha_bar):
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


@pytest.mark.parametrize("t", [999, 500, 20])
def test_clipped_epsilon_implies_the_clamped_x0(t):
    g = torch.Generator().manual_seed(t)
    alpha_bar = training_scheduler().alphas_cumprod[t]
    x_t, eps = torch.randn(2, 3, 8, 8, generator=g), 3 * torch.randn(2, 3, 8, 8, generator=g)
    clipped = clip_prediction(eps, x_t, alpha_bar, "epsilon")
    torch.testing.assert_close(_x0(clipped, x_t, alpha_bar), _x0(eps, x_t, alpha_bar).clamp(-1, 1))


def test_clipped_v_prediction_implies_the_clamped_x0():
    g = torch.Generator().manual_seed(0)
    a = training_scheduler().alphas_cumprod[300]
    x_t, v = torch.randn(2, 3, 8, 8, generator=g), 3 * torch.randn(2, 3, 8, 8, generator=g)
    x0 = lambda out: a.sqrt() * x_t - (1 - a).sqrt() * out  # noqa: E731
    torch.testing.assert_close(x0(clip_prediction(v, x_t, a, "v_prediction")), x0(v).clamp(-1, 1))
    torch.testing.assert_close(clip_prediction(v, x_t, a, "sample"), v.clamp(-1, 1))
    with pytest.raises(ValueError, match="prediction_type"):
        clip_prediction(v, x_t, a, "flow")


@pytest.mark.parametrize("cls", [DDIMScheduler, DDPMScheduler])
def test_clipping_equals_the_diffusers_clip_sample(cls):
    """Oracle: diffusers' own clip_sample on the raw ε gives the same step as our clipping + no clip_sample
    (for DDIM with use_clipped_model_output, which re-derives ε from the clipped x0 as our clipping does)."""
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(1, 3, 8, 8, generator=g), 4 * torch.randn(1, 3, 8, 8, generator=g)
    steps = []
    for clip_sample in (True, False):
        scheduler = cls.from_config(TRAINING, clip_sample=clip_sample, timestep_spacing="trailing")
        scheduler.set_timesteps(10)
        t = scheduler.timesteps[3]
        out = eps if clip_sample else clip_prediction(eps, x, scheduler.alphas_cumprod[t], "epsilon")
        extra = {"use_clipped_model_output": True} if cls is DDIMScheduler else {}
        steps.append(
            scheduler.step(out, t, x, generator=torch.Generator().manual_seed(0), **extra).prev_sample
        )
    torch.testing.assert_close(steps[0], steps[1])


def _latents(pipe, **kwargs):
    return pipe(
        num_inference_steps=3, sampler="ddim", generator=gen(0), output_type="latent", **kwargs
    ).images


def test_pixel_space_clips_by_default_latent_space_does_not(tiny_pipeline, tiny_unet, tiny_kl):
    pixel = tiny_pipeline()
    assert torch.equal(_latents(pixel), _latents(pixel, clip_x0=True))
    assert not torch.equal(_latents(pixel), _latents(pixel, clip_x0=False))
    latent = tiny_pipeline(tiny_unet(channels=4), vae=tiny_kl())
    assert torch.equal(_latents(latent), _latents(latent, clip_x0=False))
    assert not torch.equal(_latents(latent), _latents(latent, clip_x0=True))
