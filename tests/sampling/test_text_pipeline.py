"""Text and class models as ordinary diffusers pipelines: the tokenizer and text encoder are components
(model_index.json, `DiffusionPipeline.from_pretrained`), `prompt` / `negative_prompt` / `encode_prompt` follow
`StableDiffusionPipeline`, class names stand for their numbers, and `height` / `width` / `timesteps` / `sigmas`
are taken as diffusers takes them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.callbacks import SDCFGCutoffCallback
from transformers import CLIPTextModel, CLIPTokenizer

import slimdiff  # noqa: F401  (registers slimdiff's classes with diffusers)
from slimdiff.diffusion import training_scheduler
from slimdiff.models.text_encoder import load_text_encoder
from slimdiff.sampling.conditions import class_names
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline

from .drawing import draw


@pytest.fixture(scope="module")
def clip(tmp_path_factory, tiny_clip):
    return load_text_encoder(tiny_clip(tmp_path_factory.mktemp("clip")))


@pytest.fixture(scope="module")
def text_pipe(clip, tiny_condition_unet):
    unet = tiny_condition_unet(classes=None, cross_attention_dim=clip.hidden_size)
    pipe = SlimDiffusionPipeline(
        unet=unet, scheduler=training_scheduler(), tokenizer=clip.tokenizer, text_encoder=clip.model
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def saved_text(text_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("text") / "pipe"
    text_pipe.save_pretrained(folder)
    return folder


def test_encode_prompt_is_the_clip_last_hidden_state_of_the_padded_tokens(text_pipe):
    tokens = text_pipe.tokenizer(
        ["a brick", "grass"], padding="max_length", max_length=text_pipe.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids  # fmt: skip
    with torch.no_grad():
        expected = text_pipe.text_encoder(tokens).last_hidden_state
        empty = text_pipe.text_encoder(text_pipe.tokenizer([""] * 2, padding="max_length", return_tensors="pt")
                                       .input_ids).last_hidden_state  # fmt: skip
    embeds, negative = text_pipe.encode_prompt(["a brick", "grass"], "cpu", 3, True)
    assert embeds.shape == (6, *expected.shape[1:])
    torch.testing.assert_close(embeds[::3], expected)  # k images per prompt, one after another
    torch.testing.assert_close(embeds[1::3], expected)
    torch.testing.assert_close(negative[::3], empty)  # the default negative prompt is the empty one
    assert text_pipe.encode_prompt("x", "cpu", 1, False)[1] is None


def test_prompt_equals_the_prompt_embeddings_path(text_pipe, clip):
    embeds, negative = clip(["a brick wall", ""]).split(1)  # the encoder itself: (prompt, empty negative)
    old = draw(
        text_pipe, prompt_embeds=embeds.expand(2, -1, -1), negative_prompt_embeds=negative, guidance_scale=2.0
    )
    new = draw(text_pipe, prompt="a brick wall", batch_size=2, guidance_scale=2.0)
    torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5)
    listed = draw(text_pipe, prompt=["a brick wall", "a brick wall"], negative_prompt="", guidance_scale=2.0)
    torch.testing.assert_close(listed, old, rtol=1e-4, atol=1e-5)
    # one prompt: prompt_embeds alone get the empty prompt as the negative; another negative prompt steers
    one = draw(text_pipe, prompt_embeds=embeds, negative_prompt_embeds=negative, guidance_scale=2.0)
    torch.testing.assert_close(
        draw(text_pipe, prompt_embeds=embeds, guidance_scale=2.0), one, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        draw(text_pipe, prompt="a brick wall", guidance_scale=2.0), one, rtol=1e-4, atol=1e-5
    )
    steered = draw(text_pipe, prompt="a brick wall", negative_prompt="grass", guidance_scale=2.0)
    assert (steered - one).abs().max() > 1e-3


def test_text_pipeline_round_trips_through_plain_diffusers(text_pipe, saved_text):
    index = json.loads((saved_text / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    loaded = DiffusionPipeline.from_pretrained(saved_text)
    assert isinstance(loaded, SlimDiffusionPipeline)
    assert isinstance(loaded.tokenizer, CLIPTokenizer) and isinstance(loaded.text_encoder, CLIPTextModel)
    for name, tensor in text_pipe.text_encoder.state_dict().items():
        assert torch.equal(loaded.text_encoder.state_dict()[name], tensor), name
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(draw(loaded, prompt="gravel"), draw(text_pipe, prompt="gravel"))


@pytest.mark.parametrize("entry", ["unlisted", "listed as none"])
def test_a_folder_with_the_encoder_beside_model_index_still_loads_it(text_pipe, saved_text, tmp_path, entry):
    old = tmp_path / "old"
    shutil.copytree(saved_text, old)
    index = json.loads((old / "model_index.json").read_text())
    if entry == "unlisted":  # slimdiff 0.1 saved them beside the pipeline
        del index["tokenizer"], index["text_encoder"]
    else:  # a pipeline saved without them, the two folders added beside it later
        index["tokenizer"] = index["text_encoder"] = [None, None]
    (old / "model_index.json").write_text(json.dumps(index))
    loaded = load_pipeline(old)
    assert loaded.text_encoder is not None
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(draw(loaded, prompt="gravel"), draw(text_pipe, prompt="gravel"))


@pytest.fixture(scope="module")
def sd_folder(clip, tiny_condition_unet, tiny_kl, tmp_path_factory):
    """A Stable Diffusion pipeline folder as diffusers saves it (tiny UNet2DConditionModel, KL autoencoder, the
    tiny CLIP, DDIM), and diffusers' own pipeline on it."""
    unet = tiny_condition_unet(
        classes=None, channels=4, size=4, cls=UNet2DConditionModel, cross_attention_dim=clip.hidden_size
    )
    scheduler = DDIMScheduler.from_config(training_scheduler().config, timestep_spacing="trailing")
    sd = StableDiffusionPipeline(
        vae=tiny_kl(), unet=unet, scheduler=scheduler, tokenizer=clip.tokenizer, text_encoder=clip.model,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    sd.set_progress_bar_config(disable=True)
    folder = tmp_path_factory.mktemp("sd") / "sd"
    sd.save_pretrained(folder)
    return folder, sd


def _sd_call(prompts: list[str], **call) -> dict:
    guided = {"prompt": prompts, "negative_prompt": [""] * len(prompts), "guidance_scale": 3.0}
    return {**guided, "num_inference_steps": 4, "output_type": "pt", **call}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # diffusers' own deprecations of the SD pipeline
def test_a_stable_diffusion_folder_loads_with_its_clip_and_draws_what_diffusers_draws(sd_folder, clip):
    folder, sd = sd_folder
    ours = SlimDiffusionPipeline.from_pretrained(folder)
    assert type(ours.text_encoder).__name__ == "CLIPTextModel" and ours.tokenizer is not None
    for name, tensor in clip.model.state_dict().items():
        assert torch.equal(ours.text_encoder.state_dict()[name], tensor), name
    call = _sd_call(["a brick", "grass"])
    theirs = sd(**call, generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(draw(ours, **call), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_diffusers_cfg_cutoff_callback_ends_guidance_as_in_diffusers(sd_folder):
    folder, sd = sd_folder
    ours = SlimDiffusionPipeline.from_pretrained(folder)
    cutoff = {"callback_on_step_end": SDCFGCutoffCallback(cutoff_step_ratio=None, cutoff_step_index=1)}
    theirs = sd(**_sd_call(["a brick"]), **cutoff, generator=torch.Generator().manual_seed(0)).images
    drawn = draw(ours, **_sd_call(["a brick"]), **cutoff)
    torch.testing.assert_close(drawn, theirs, rtol=1e-4, atol=1e-4)
    assert not ours.do_classifier_free_guidance  # guidance ended at the cutoff
    strong = _sd_call(
        ["a brick"], output_type="latent", guidance_scale=30.0
    )  # the tiny UNet barely reads text
    guided, cut = (draw(ours, **strong, **c) for c in ({}, cutoff))
    assert (guided - cut).abs().max() > 1e-2  # so the cutoff changed the image
    # a batch: each row as it is drawn alone (diffusers' callback itself is written for batch 1)
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    both = draw(ours, **_sd_call(["a brick", "grass"]), **cutoff, latents=latents)
    for row, prompt in enumerate(["a brick", "grass"]):
        alone = draw(ours, **_sd_call([prompt]), **cutoff, latents=latents[row : row + 1])
        torch.testing.assert_close(both[row : row + 1], alone, rtol=1e-4, atol=1e-4)


def test_prompt_embeds_of_a_wrong_size_from_a_callback_are_refused(text_pipe, tiny_pipeline):
    def returning(embeds):
        return lambda pipe, i, t, tensors: {"prompt_embeds": embeds(tensors)}

    asked = {"callback_on_step_end_tensor_inputs": ["prompt_embeds"]}
    call = {"prompt": ["a", "b"], "guidance_scale": 2.0, **asked}
    three_rows = returning(lambda tensors: tensors["prompt_embeds"][:3])
    with pytest.raises(ValueError, match="prompt_embeds with 3 rows for 2 images"):
        draw(text_pipe, **call, callback_on_step_end=three_rows)
    flat = returning(lambda tensors: torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"of shape \(2, 8\), not \(N, \*\(8, 32\)\)"):
        draw(text_pipe, **call, callback_on_step_end=flat)
    with pytest.raises(ValueError, match="returned prompt_embeds, but this model takes no text"):
        draw(tiny_pipeline(), callback_on_step_end=returning(lambda tensors: torch.zeros(1, 8, 32)))


def test_prompt_mistakes_are_one_clear_line(text_pipe, tiny_pipeline, tiny_condition_unet):
    with pytest.raises(ValueError, match="not text-conditional"):
        draw(tiny_pipeline(), prompt="a cat")
    with pytest.raises(ValueError, match="not text-conditional"):
        draw(tiny_pipeline(tiny_condition_unet()), prompt="a cat")  # a class model
    with pytest.raises(ValueError, match="no tokenizer and text_encoder"):
        draw(tiny_pipeline(tiny_condition_unet(classes=None)), prompt="a cat")
    with pytest.raises(ValueError, match="not both"):
        draw(text_pipe, prompt="a", prompt_embeds=torch.zeros(1, 8, 32))
    with pytest.raises(ValueError, match="needs prompt or prompt_embeds"):
        draw(text_pipe, negative_prompt="a")


def test_guidance_properties_follow_a_step_end_callback(text_pipe):
    seen = []

    def raise_guidance(pipe, i, t, tensors):
        seen.append(pipe.do_classifier_free_guidance)
        pipe._guidance_scale += 1.0
        return tensors

    draw(text_pipe, prompt="a", guidance_scale=2.0, callback_on_step_end=raise_guidance)
    assert text_pipe.guidance_scale == 2.0 + text_pipe.num_timesteps and seen == [True] * 3
    draw(text_pipe, prompt="a")
    assert text_pipe.guidance_scale is None and not text_pipe.do_classifier_free_guidance


@pytest.fixture(scope="module")
def named_class_pipe(tiny_pipeline, tiny_condition_unet, tmp_path_factory):
    pipe = SlimDiffusionPipeline(
        unet=tiny_condition_unet(classes=3),
        scheduler=training_scheduler(),
        class_names=["brick", "grass", "gravel"],
    )
    pipe.set_progress_bar_config(disable=True)
    folder = tmp_path_factory.mktemp("class") / "pipe"
    pipe.save_pretrained(folder)
    return pipe, folder


def test_a_class_name_draws_what_its_number_draws(named_class_pipe):
    pipe, folder = named_class_pipe
    torch.testing.assert_close(
        draw(pipe, class_labels="gravel", batch_size=2), draw(pipe, class_labels=2, batch_size=2)
    )
    torch.testing.assert_close(
        draw(pipe, class_labels=["grass", 0], guidance_scale=2.0),
        draw(pipe, class_labels=[1, 0], guidance_scale=2.0),
    )
    loaded = DiffusionPipeline.from_pretrained(folder)  # the names travel in model_index.json
    assert loaded.config.class_names == ["brick", "grass", "gravel"] == class_names(folder)
    with pytest.raises(ValueError, match="unknown class 'sneaker'; classes: brick, grass, gravel"):
        draw(pipe, class_labels="sneaker")


def test_class_names_json_of_an_older_folder_is_read(named_class_pipe, tmp_path, tiny_condition_unet):
    _, folder = named_class_pipe
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    index = json.loads((old / "model_index.json").read_text())
    (old / "class_names.json").write_text(json.dumps(index.pop("class_names")))
    (old / "model_index.json").write_text(json.dumps(index))
    assert load_pipeline(old).config.class_names == ["brick", "grass", "gravel"]
    unnamed = SlimDiffusionPipeline(unet=tiny_condition_unet(classes=3), scheduler=training_scheduler())
    with pytest.raises(ValueError, match="no class_names"):
        draw(unnamed, class_labels="brick")


def test_height_and_width_draw_other_sizes_of_a_convolutional_unet(tiny_pipeline, tiny_kl, tiny_unet):
    pipe = tiny_pipeline()
    assert draw(pipe, height=16, width=12).shape == (1, 3, 16, 12)
    torch.testing.assert_close(draw(pipe, height=8, width=8), draw(pipe))  # the trained size is the default
    with pytest.raises(ValueError, match="multiples of 2"):
        draw(pipe, height=9)
    latent = tiny_pipeline(tiny_unet(channels=4), tiny_kl())  # f2: 8 × 8 latents are 16 × 16 pixels
    assert draw(latent).shape == (1, 3, 16, 16)
    assert draw(latent, height=32, width=16).shape == (1, 3, 32, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        draw(latent, height=18)


def test_custom_timesteps_and_sigmas_are_the_schedulers_own(tiny_pipeline):
    pipe = tiny_pipeline()  # DDPM takes timesteps, Euler sigmas
    steps = [999, 600, 300, 50]
    seen = []
    draw(pipe, timesteps=steps, callback_on_step_end=lambda p, i, t, x: seen.append(int(t)) or x)
    assert seen == steps and pipe.num_timesteps == 4
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    sigmas, seen = [14.0, 5.0, 1.0, 0.2], []
    draw(pipe, sigmas=sigmas, callback_on_step_end=lambda p, i, t, x: seen.append(float(t)) or x)
    reference = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    reference.set_timesteps(sigmas=sigmas)
    assert seen == reference.timesteps.tolist()
    with pytest.raises(ValueError, match="Only one of `timesteps` or `sigmas`"):
        draw(pipe, timesteps=steps, sigmas=sigmas)
