"""Diffusers conformance, sampling: every diffusers scheduler a user sets is used as set (or refused with the
reason), the saved scheduler reproduces slimdiff's images in plain diffusers pipelines, the pipeline follows the
UNet's dtype, and `num_images_per_prompt` / `callback_on_step_end` behave as in diffusers."""

from __future__ import annotations

from functools import partial

import diffusers
import numpy as np
import pytest
import torch
from diffusers import (
    AutoModel,
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    TCDScheduler,
    UNet2DModel,
)
from diffusers.callbacks import PipelineCallback
from diffusers.configuration_utils import FrozenDict

from slimdiff.diffusion import training_scheduler
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

from .drawing import draw, gen

TRAINING = dict(training_scheduler().config)


_pt = partial(draw, num_inference_steps=4)


# --- every diffusers scheduler: used as set, or refused with the reason ------------------------------------------


class PointOracle:
    """The exact ε-prediction for data that is a single point x*: ε = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t). Any sampler
    that follows the model's noise schedule must bring pure noise to x*."""

    def __init__(self):
        self.config = FrozenDict(in_channels=3, out_channels=3, sample_size=8)
        self.target = torch.linspace(-0.8, 0.8, 3 * 8 * 8).reshape(1, 3, 8, 8)
        ᾱ = training_scheduler().alphas_cumprod.double()
        self.sigma = ((1 - ᾱ) / ᾱ).sqrt()  # Euler-type schedulers interpolate σ between integer timesteps

    def __call__(self, x, t):
        t = float(t.reshape(-1)[0])
        lo = min(int(t), len(self.sigma) - 2)
        sigma = self.sigma[lo] + (t - lo) * (self.sigma[lo + 1] - self.sigma[lo])
        ᾱ = float(1 / (1 + sigma**2))
        return (x - ᾱ**0.5 * self.target) / (1 - ᾱ) ** 0.5


# Schedulers that run the standard loop on the model's DDPM ᾱ schedule (the list among them).
ACCEPTED = {
    "DDIMScheduler",
    "DDIMParallelScheduler",
    "DDPMScheduler",
    "DDPMParallelScheduler",
    "DEISMultistepScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LCMScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "SASolverScheduler",
    "TCDScheduler",
    "UniPCMultistepScheduler",
}
ALL_SCHEDULERS = sorted(name for name in dir(diffusers) if name.endswith("Scheduler"))


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
def test_every_diffusers_scheduler_samples_the_model_schedule_or_is_refused_with_a_reason(name):
    try:
        scheduler = getattr(diffusers, name).from_config(TRAINING)
    except (ImportError, TypeError, ValueError) as error:  # needs torchsde, or a config unlike DDPM's
        assert name not in ACCEPTED or "torchsde" in str(error)
        pytest.skip(f"{name} cannot be built from a DDPM config here: {str(error).strip().splitlines()[0]}")
    oracle = PointOracle()
    pipe = SlimDiffusionPipeline(unet=oracle, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    try:
        x = pipe(num_inference_steps=25, generator=gen(), output_type="latent").images
    except ValueError as error:
        assert name not in ACCEPTED, f"{name} refused: {error}"
        assert str(error).startswith(name) and "pass sampler= one of ddpm" in str(error)
        return
    # within the last training noise level √(1 − ᾱ_0) ≈ 0.04, where some solvers stop
    rms = float((x - oracle.target).pow(2).mean().sqrt())
    assert rms < 0.06, f"{name} ends {rms:.3f} (RMS) from the point it should reach"


def test_stitching_knows_which_schedulers_combine_model_outputs():
    from slimdiff.sampling.solvers import SAMPLERS, build_scheduler, keeps_model_outputs

    for (
        sampler
    ) in SAMPLERS.values():  # the presets' flag (read by the CLI) and the rule for any scheduler agree
        assert keeps_model_outputs(build_scheduler(sampler, TRAINING)) is sampler.keeps_model_outputs
    for name, keeps in (
        ("HeunDiscreteScheduler", True),
        ("LMSDiscreteScheduler", True),
        ("LCMScheduler", False),
    ):
        assert keeps_model_outputs(getattr(diffusers, name).from_config(TRAINING)) is keeps


def test_the_user_scheduler_is_used_exactly_as_set(tiny_pipeline):
    """The issue's case: solver_order=3 with leading spacing is not replaced by the dpm++ preset."""
    pipe = tiny_pipeline()
    mine = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, solver_order=3, timestep_spacing="leading"
    )
    pipe.scheduler = mine
    noise = torch.randn(2, 3, 8, 8, generator=gen())
    got = _pt(pipe, batch_size=2, latents=noise, num_inference_steps=6)
    # the same scheduler in a hand-written diffusers loop
    scheduler = DPMSolverMultistepScheduler.from_config(mine.config)
    scheduler.set_timesteps(6)
    x = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(pipe.unet(x, t).sample, t, x).prev_sample
    torch.testing.assert_close(got, (x.clamp(-1, 1) + 1) / 2)
    assert not torch.allclose(
        got, _pt(pipe, batch_size=2, latents=noise, num_inference_steps=6, sampler="dpm++")
    )


def test_eta_is_only_passed_when_given():
    """TCD's step has its own eta (0.3): a call without eta keeps it."""
    oracle = PointOracle()
    pipe = SlimDiffusionPipeline(unet=oracle, scheduler=TCDScheduler.from_config(TRAINING))
    noise = torch.randn(1, 3, 8, 8, generator=gen())
    default, zero = (
        _pt(pipe, latents=noise, generator=gen(1), output_type="latent", eta=e) for e in (None, 0.0)
    )
    explicit = _pt(pipe, latents=noise, generator=gen(1), output_type="latent", eta=0.3)
    torch.testing.assert_close(default, explicit)
    assert not torch.allclose(default, zero)


# --- the saved scheduler reproduces slimdiff's images for plain diffusers clients --------------------------------


def test_saved_settings_are_the_ones_slimdiff_samples_with(tmp_path, tiny_pipeline, tiny_unet, tiny_kl):
    tiny_pipeline().save_pretrained(tmp_path / "pixel")
    tiny_pipeline(tiny_unet(channels=4), vae=tiny_kl()).save_pretrained(tmp_path / "latent")
    for space, clipped in (("pixel", True), ("latent", False)):
        config = DDPMScheduler.load_config(tmp_path / space / "scheduler")
        assert config["timestep_spacing"] == "trailing" and config["clip_sample"] is False
        # in pixel space the x0 clip as dynamic thresholding capped at 1: exactly a clip to [-1, 1]
        assert config["thresholding"] is clipped and config["sample_max_value"] == 1.0


@pytest.mark.parametrize("slim", [False, True])
def test_plain_ddpm_pipeline_draws_the_images_slimdiff_draws(tmp_path, tiny_pipeline, tiny_unet, slim):
    pipe = tiny_pipeline(tiny_unet(cls=UNet2DModel) if not slim else tiny_unet())
    pipe.save_pretrained(tmp_path)
    ours = SlimDiffusionPipeline.from_pretrained(tmp_path)
    ours.set_progress_bar_config(disable=True)
    # a plain diffusers client: the folder's UNet (AutoModel picks the class) and scheduler in DDPMPipeline
    plain = DDPMPipeline(
        unet=AutoModel.from_pretrained(str(tmp_path), subfolder="unet"),
        scheduler=DDPMScheduler.from_pretrained(tmp_path, subfolder="scheduler"),
    )
    plain.set_progress_bar_config(disable=True)
    call = {"batch_size": 2, "num_inference_steps": 5, "output_type": "np"}
    expected = ours(generator=gen(3), **call).images
    np.testing.assert_allclose(plain(generator=gen(3), **call).images, expected, atol=1e-5, rtol=0)
    # and the same images as slimdiff's ddpm preset (its own clipping, trailing spacing)
    np.testing.assert_allclose(
        ours(generator=gen(3), sampler="ddpm", **call).images, expected, atol=1e-5, rtol=0
    )


def test_a_scheduler_swapped_from_the_saved_config_matches_the_plain_pipeline(
    tmp_path, tiny_pipeline, tiny_unet
):
    pipe = tiny_pipeline(tiny_unet(cls=UNet2DModel))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    plain = DDIMPipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    plain.set_progress_bar_config(disable=True)
    call = {"batch_size": 2, "num_inference_steps": 5, "output_type": "np"}
    np.testing.assert_allclose(
        plain(generator=gen(1), **call).images, _pt(pipe, generator=gen(1), **call), atol=1e-5, rtol=0
    )


# --- dtype and device ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_pipeline_follows_the_unet_dtype(tiny_pipeline, tiny_kl, tiny_unet, dtype):
    for pipe in (tiny_pipeline(), tiny_pipeline(tiny_unet(channels=4), vae=tiny_kl())):
        reference = _pt(pipe, sampler="ddim")
        pipe.to(dtype)
        latents = _pt(pipe, sampler="ddim", output_type="latent")
        assert latents.dtype == dtype
        images = _pt(pipe, sampler="ddim", latents=torch.randn(1, *latents.shape[1:], generator=gen(5)))
        assert torch.isfinite(images.float()).all()
        torch.testing.assert_close(_pt(pipe, sampler="ddim").float(), reference, atol=0.1, rtol=0)
        drawn = generate(pipe, 3, seed=0, batch=2, num_inference_steps=2, sampler="dpm++")
        assert drawn.dtype == torch.float32 and drawn.abs().max() <= 1


def test_conditioning_follows_the_unet_dtype(tiny_pipeline, tiny_condition_unet):
    class_pipe = tiny_pipeline(tiny_condition_unet()).to(torch.bfloat16)
    assert _pt(class_pipe, class_labels=[1, 2], guidance_scale=2.0, sampler="ddim").shape == (2, 3, 8, 8)
    text_pipe = tiny_pipeline(tiny_condition_unet(classes=None)).to(torch.bfloat16)
    embeds = torch.randn(2, 5, 12, generator=gen())  # float32 embeddings are cast to the UNet's dtype
    images = _pt(
        text_pipe, prompt_embeds=embeds, negative_prompt_embeds=torch.zeros(1, 5, 12), guidance_scale=2.0
    )
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images.float()).all()


def test_stitching_a_low_precision_student_with_a_float32_teacher(tiny_pipeline, tiny_unet):
    pipe = tiny_pipeline().to(torch.bfloat16)
    teacher = tiny_unet(seed=1, slim=False)
    images = _pt(pipe, sampler="ddim", stitch=(teacher, 0.5))
    assert images.dtype == torch.bfloat16 and torch.isfinite(images.float()).all()
    torch.testing.assert_close(
        _pt(pipe, sampler="ddim", stitch=(teacher, 0.0)).float(),
        _pt(tiny_pipeline(teacher), sampler="ddim"),
        atol=0.1,
        rtol=0,
    )


# --- num_images_per_prompt and callback_on_step_end ------------------------------------------------------------


def test_num_images_per_prompt_repeats_every_condition(tiny_pipeline, tiny_condition_unet):
    pipe = tiny_pipeline(tiny_condition_unet())
    noise = torch.randn(6, 3, 8, 8, generator=gen())
    per_prompt = _pt(pipe, class_labels=[1, 3], num_images_per_prompt=3, latents=noise, sampler="ddim")
    spelled_out = _pt(pipe, class_labels=[1, 1, 1, 3, 3, 3], latents=noise, sampler="ddim")
    torch.testing.assert_close(per_prompt, spelled_out)
    assert _pt(tiny_pipeline(), batch_size=2, num_images_per_prompt=3).shape[0] == 6
    text = tiny_pipeline(tiny_condition_unet(classes=None))
    embeds, negative = torch.randn(2, 5, 12, generator=gen()), torch.zeros(1, 5, 12)
    call = {"prompt_embeds": embeds, "negative_prompt_embeds": negative, "guidance_scale": 3.0}
    assert _pt(text, num_images_per_prompt=2, **call).shape[0] == 4
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        _pt(pipe, class_labels=1, num_images_per_prompt=0)


def test_callback_on_step_end_sees_and_may_replace_the_latents(tiny_pipeline):
    pipe = tiny_pipeline()
    seen = []

    def record(p, step, timestep, tensors):
        assert p is pipe and set(tensors) == {"latents"}
        seen.append((step, int(timestep), tensors["latents"].clone()))
        return {}

    final = _pt(pipe, callback_on_step_end=record, sampler="ddim", output_type="latent")
    assert [s for s, _, _ in seen] == [0, 1, 2, 3] and pipe.num_timesteps == 4
    assert seen[0][1] == 999 and torch.equal(seen[-1][2], final)

    def zero_at_the_end(p, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])} if step == p.num_timesteps - 1 else {}

    assert torch.equal(
        _pt(pipe, callback_on_step_end=zero_at_the_end, output_type="latent"), torch.zeros(1, 3, 8, 8)
    )


def test_diffusers_callback_objects_and_interrupt(tiny_pipeline):
    pipe = tiny_pipeline()
    calls = []

    class StopAfterTwo(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            calls.append(step_index)
            if step_index == 1:
                pipeline._interrupt = True
            return callback_kwargs

    _pt(pipe, callback_on_step_end=StopAfterTwo())
    assert calls == [0, 1]
    with pytest.raises(ValueError, match="callback tensor inputs \\['noise'\\] unknown"):
        _pt(pipe, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise"])
