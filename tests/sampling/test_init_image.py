"""Image-to-image and inpainting (`sampling/init_image.py` through `SlimDiffusionPipeline`): the closed forms at
strength 0 and 1, the start timestep, the blended mask, latent models, and diffusers' own img2img and inpainting
pipelines as oracles for a text-conditional latent model."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
from PIL import Image

from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.slim_decoder import slim_decoder_for
from slimdiff.sampling.generate import generate
from slimdiff.sampling.init_image import drawn_size
from slimdiff.sampling.solvers import build_scheduler, get_sampler

from .drawing import gen


def _image(size: int = 8, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _mask(size: int = 8) -> Image.Image:
    """Black (keep) left half, white (repaint) right half: whole latent cells at any factor up to 4."""
    mask = np.zeros((size, size), np.uint8)
    mask[:, size // 2 :] = 255
    return Image.fromarray(mask)


def _pixels(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def _call(pipe, **kwargs):
    kwargs = {"num_inference_steps": 6, "sampler": "ddim", "generator": gen(), "output_type": "pt", **kwargs}
    return pipe(**kwargs).images


@pytest.fixture(scope="module")
def latent_pipe(tiny_pipeline, tiny_unet, tiny_kl):
    return tiny_pipeline(tiny_unet(channels=4, size=4), vae=tiny_kl())  # f2: 8×8 images, 4×4 latents


def test_strength_zero_gives_the_image_back(tiny_pipeline, latent_pipe):
    image = _image()
    out = _call(tiny_pipeline(), image=image, strength=0.0, output_type="np")
    assert np.abs(np.round(out[0] * 255) - np.array(image)).max() == 0  # through the 8-bit round trip
    # a latent model: no step runs, so the latents are the encoded image and the output its reconstruction
    x0 = Autoencoder.of(latent_pipe.vae).encode(_pixels(image) * 2 - 1)
    torch.testing.assert_close(_call(latent_pipe, image=image, strength=0.0, output_type="latent"), x0)
    reconstruction = latent_pipe.decode(x0) / 2 + 0.5
    torch.testing.assert_close(_call(latent_pipe, image=image, strength=0.0), reconstruction)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler", "dpm++"])
def test_strength_one_is_plain_sampling_with_the_same_generator(tiny_pipeline, latent_pipe, sampler):
    pipe = tiny_pipeline()
    plain = _call(pipe, sampler=sampler)
    torch.testing.assert_close(_call(pipe, sampler=sampler, image=_image(), strength=1.0), plain)
    # an all-white mask repaints everything: plain sampling too
    white = Image.new("L", (8, 8), 255)
    torch.testing.assert_close(_call(pipe, sampler=sampler, image=_image(), mask_image=white), plain)
    torch.testing.assert_close(
        _call(latent_pipe, sampler=sampler, image=_image(), strength=1.0), _call(latent_pipe, sampler=sampler)
    )


def _reference_ddim(
    pipe, image: Image.Image, noise: torch.Tensor, steps: int, strength: float
) -> torch.Tensor:
    """img2img by hand: x_t = √ᾱ x0 + √(1−ᾱ) ε at the first of the last ⌊N s⌋ trailing DDIM timesteps, then
    plain DDIM (η = 0) steps."""
    settings = {"timestep_spacing": "trailing", "clip_sample": False, "thresholding": False}
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **settings)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[steps - int(steps * strength) :]
    ᾱ = scheduler.alphas_cumprod[timesteps[0]]
    x = ᾱ.sqrt() * (_pixels(image) * 2 - 1) + (1 - ᾱ).sqrt() * noise
    for t in timesteps:
        x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x


def test_img2img_starts_at_the_timestep_strength_picks(tiny_pipeline):
    pipe = tiny_pipeline()
    noise = torch.randn(1, 3, 8, 8, generator=gen(3))
    seen = []

    def record(_pipe, i, t, tensors):
        seen.append((i, int(t)))
        return tensors

    x = _call(pipe, image=_image(), strength=0.45, num_inference_steps=10, latents=noise, clip_x0=False,
              output_type="latent", callback_on_step_end=record)  # fmt: skip
    # 10 trailing steps 999, 899, …, 99: ⌊10 · 0.45⌋ = 4 run, from the 7th
    assert seen == [(0, 399), (1, 299), (2, 199), (3, 99)] and pipe.num_timesteps == 4
    torch.testing.assert_close(x, _reference_ddim(pipe, _image(), noise, 10, 0.45), rtol=1e-5, atol=1e-5)


def test_inpainting_keeps_the_black_pixels_and_blends_them_at_every_step(tiny_pipeline, latent_pipe):
    pipe, image = tiny_pipeline(), _image()
    noise = torch.randn(1, 3, 8, 8, generator=gen(3))
    x0 = _pixels(image) * 2 - 1
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    scheduler.set_timesteps(6)
    kept = []

    def record(_pipe, i, t, tensors):
        kept.append(tensors["latents"][..., :4].clone())
        return tensors

    out = _call(
        pipe, image=image, mask_image=_mask(), strength=0.7, latents=noise, callback_on_step_end=record
    )
    # after step i the kept half is the image noised, with the same ε, to the next timestep; after the last, x0
    nexts = scheduler.timesteps[3:]  # ⌊6 · 0.7⌋ = 4 steps run: the 3rd to the 6th
    for x, t in zip(kept[:-1], nexts, strict=True):
        ᾱ = scheduler.alphas_cumprod[t]
        torch.testing.assert_close(x, (ᾱ.sqrt() * x0 + (1 - ᾱ).sqrt() * noise)[..., :4])
    torch.testing.assert_close(kept[-1], x0[..., :4])
    for model in (pipe, latent_pipe):
        out = _call(model, image=image, mask_image=_mask(), strength=0.7)
        torch.testing.assert_close(out[..., :4], _pixels(image)[..., :4], rtol=0, atol=1e-6)
        assert (out[..., 4:] - _pixels(image)[..., 4:]).abs().max() > 0.05  # the white half was repainted


def test_a_vq_model_with_three_latent_channels_takes_rgb_tensors(tiny_pipeline, tiny_unet, tiny_vq):
    """diffusers passes tensors with the latent channel count through as latents; LDM's VQ latents have 3."""
    pipe = tiny_pipeline(tiny_unet(channels=3, size=4), vae=tiny_vq(levels=2))
    pixels = _pixels(_image())
    x0 = Autoencoder.of(pipe.vae).encode(pixels * 2 - 1)
    torch.testing.assert_close(_call(pipe, image=pixels, strength=0.0, output_type="latent"), x0)
    assert _call(pipe, image=pixels, strength=0.5, mask_image=_mask()).shape == (1, 3, 8, 8)


def test_every_image_form_diffusers_takes_gives_the_same_samples(tiny_pipeline):
    pipe, image = tiny_pipeline(), _image()
    expected = _call(pipe, image=image, strength=0.6)
    forms = [np.array(image) / 255.0, _pixels(image)[0], _pixels(image), [image]]
    for form in forms:
        torch.testing.assert_close(_call(pipe, image=form, strength=0.6), expected)
    with pytest.warns(FutureWarning, match=r"\[-1,1\] is deprecated"):  # diffusers' word on [-1, 1] tensors
        torch.testing.assert_close(_call(pipe, image=_pixels(image) * 2 - 1, strength=0.6), expected)


def test_one_image_serves_every_sample_and_each_image_its_own(tiny_pipeline):
    pipe, a, b = tiny_pipeline(), _image(seed=1), _image(seed=2)
    three = _call(pipe, batch_size=3, image=a, strength=0.6)
    torch.testing.assert_close(_call(pipe, batch_size=3, image=[a, a, a], strength=0.6), three)
    four = _call(pipe, batch_size=4, image=[a, b], strength=0.6)  # a for samples 0, 1; b for 2, 3
    torch.testing.assert_close(four[:2], _call(pipe, batch_size=4, image=a, strength=0.6)[:2])
    torch.testing.assert_close(four[2:], _call(pipe, batch_size=4, image=b, strength=0.6)[2:])
    with pytest.raises(ValueError, match="image has 2 images for 3 samples; pass 1 or a divisor of 3"):
        _call(pipe, batch_size=3, image=[a, b])


def test_class_labels_and_guidance_work_with_an_image(tiny_pipeline, tiny_condition_unet):
    pipe = tiny_pipeline(tiny_condition_unet())
    call = {"image": _image(), "mask_image": _mask(), "class_labels": [1, 4], "guidance_scale": 2.0}
    out = _call(pipe, **call, num_images_per_prompt=2)
    assert out.shape == (4, 3, 8, 8)
    kept = _pixels(_image())[..., :4].expand(4, -1, -1, -1)
    torch.testing.assert_close(out[..., :4], kept, rtol=0, atol=1e-6)
    assert (out[1, ..., 4:] - out[2, ..., 4:]).abs().max() > 0.01  # class 1 and class 4 repaint differently


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"image": _image(), "strength": 1.5}, "strength must lie in [0, 1], got 1.5"),
        ({"image": _image(), "strength": -0.1}, "strength must lie in [0, 1], got -0.1"),
        ({"mask_image": _mask()}, "mask_image and strength need image="),
        ({"strength": 0.5}, "mask_image and strength need image="),
        ({"image": _image(6)}, "image is 6×6 (height×width) but this model draws 8×8 images; resize or crop"),
        ({"image": _image(), "mask_image": _mask(4)}, "mask_image is 4×4 with 1 channels, the image 8×8"),
        ({"image": torch.rand(1, 1, 8, 8)}, "image has 1 channels; pass RGB images"),
    ],
)
def test_bad_inputs_are_one_clear_line(tiny_pipeline, call, message):
    with pytest.raises(ValueError) as error:
        _call(tiny_pipeline(), **call)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_drawn_size_is_the_size_of_the_images_with_any_decoder(latent_pipe, tiny_pipeline):
    """The full autoencoder and its slim decoder draw the same size (a slim decoder cannot encode, but it
    decodes to pixels: its model draws 8×8 images, not the 4×4 latents)."""
    slim = tiny_pipeline(latent_pipe.unet, vae=slim_decoder_for(latent_pipe.vae))
    for pipe in (latent_pipe, slim, tiny_pipeline()):
        images = pipe(num_inference_steps=1, sampler="ddim", output_type="pt").images
        assert drawn_size(pipe.vae, pipe.unet.config) == tuple(images.shape[-2:]) == (8, 8)


def test_a_pipeline_without_an_encoder_says_so(latent_pipe, tiny_pipeline):
    slim = tiny_pipeline(latent_pipe.unet, vae=slim_decoder_for(latent_pipe.vae))
    with pytest.raises(ValueError, match="needs the autoencoder's encoder.*SlimDecoder.*--decoder full"):
        _call(slim, image=_image())


def test_generate_keeps_the_image_pixels_like_the_pipeline(latent_pipe):
    call = {"num_inference_steps": 4, "sampler": "ddim", "image": _image(), "mask_image": _mask()}
    drawn = generate(latent_pipe, 3, seed=5, batch=2, strength=0.6, **call)
    torch.testing.assert_close(
        drawn[..., :4], (_pixels(_image()) * 2 - 1)[..., :4].expand(3, -1, -1, -1), rtol=0, atol=1e-6
    )
    noise = torch.Generator().manual_seed(5)
    latents = torch.randn(16, 4, 4, 4, generator=noise)[:3]  # generate's noise stream (16 images a draw)
    direct = latent_pipe(batch_size=3, latents=latents, output_type="pt", strength=0.6, **call).images
    torch.testing.assert_close(drawn, direct * 2 - 1, rtol=1e-5, atol=1e-5)


# --- diffusers' own pipelines as oracles: a text-conditional latent model --------------------------------------


@pytest.fixture(scope="module")
def text_model(tiny_condition_unet, tiny_kl, tiny_pipeline):
    """A text-style UNet (12-wide context) on a KL f2 autoencoder, and (prompt, negative prompt) embeddings."""
    unet, vae = tiny_condition_unet(classes=None, channels=4, size=4), tiny_kl()
    with torch.no_grad():  # posterior σ = e^-15: diffusers' sampled latents are the mean slimdiff encodes
        vae.quant_conv.weight[4:] = 0
        vae.quant_conv.bias[4:] = -100
    return tiny_pipeline(unet, vae=vae), torch.randn(2, 5, 12, generator=gen(1)), torch.zeros(1, 5, 12)


def _diffusers(cls, pipe, prompts: torch.Tensor, negative: torch.Tensor, **call) -> torch.Tensor:
    """`cls` (a Stable Diffusion pipeline) run on our UNet, autoencoder and DDIM preset with 3.0 guidance."""
    scheduler = build_scheduler(get_sampler("ddim"), dict(pipe.scheduler.config))
    components = {"text_encoder": None, "tokenizer": None, "safety_checker": None, "feature_extractor": None}
    oracle = cls(
        vae=pipe.vae, unet=pipe.unet, scheduler=scheduler, requires_safety_checker=False, **components
    )
    oracle.set_progress_bar_config(disable=True)
    negative = negative.expand_as(prompts)
    guidance = {"prompt_embeds": prompts, "negative_prompt_embeds": negative, "guidance_scale": 3.0}
    return oracle(num_inference_steps=10, **guidance, **call).images


def _ours(pipe, prompts: torch.Tensor, negative: torch.Tensor, **call) -> torch.Tensor:
    guidance = {"prompt_embeds": prompts, "negative_prompt_embeds": negative, "guidance_scale": 3.0}
    return _call(pipe, num_inference_steps=10, **guidance, **call)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # diffusers' own deprecations (steps_offset, …)
def test_text_img2img_matches_diffusers_stable_diffusion_img2img(text_model):
    pipe, prompts, negative = text_model
    ours = _ours(pipe, prompts, negative, image=_image(), strength=0.55)
    x0 = Autoencoder.of(pipe.vae).encode(_pixels(_image()) * 2 - 1)  # diffusers takes 4-channel latents as is
    theirs = _diffusers(
        StableDiffusionImg2ImgPipeline, pipe, prompts, negative, image=x0, strength=0.55, generator=gen(),
        output_type="pt",
    )  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_text_inpainting_matches_diffusers_stable_diffusion_inpaint(text_model):
    """The blended mask as diffusers' inpainting runs it for a 4-channel UNet (its latents: it pastes nothing)."""
    pipe, prompts, negative = text_model
    call = {"image": _pixels(_image()), "mask_image": _pixels(_mask().convert("RGB"))[:, :1], "strength": 0.7}
    theirs = _diffusers(
        StableDiffusionInpaintPipeline, pipe, prompts, negative, generator=gen(), output_type="latent", **call
    )
    stream = gen()
    torch.randn(1, 4, 4, 4, generator=stream)  # diffusers draws the image's posterior sample first
    noise = torch.randn(2, 4, 4, 4, generator=stream)
    ours = _ours(pipe, prompts, negative, latents=noise, output_type="latent", **call)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
