"""Diffusers' pipeline conventions — what diffusers' own pipeline test suite asks of every pipeline — checked on
the unconditional, class-conditional and text-conditional `SlimDiffusionPipeline` alike, with tiny models: saving
and loading (safetensors by default, pickled .bin weights only when asked), variants and dtypes, dict and tuple
outputs, a batch against single calls, `num_images_per_prompt`, components and `from_pipe`, half precision,
attention slicing, step-end callbacks (the latents and the guidance scale), guidance, the progress bar.

Each kind of pipeline is one entry of KINDS. The checks that need an accelerator (moving to one, CPU offloading)
skip with that reason on a CPU-only machine; a text pipeline's own tokenizer and text encoder (`prompt=`,
`encode_prompt`) are checked at the end."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention_processor import Attention

from slimdiff.diffusion import training_scheduler
from slimdiff.errors import ModelError
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline

from .drawing import draw, gen

NO_ACCELERATOR = "needs a CUDA accelerator; this machine has none"
# Call keywords every diffusers pipeline takes, each with a default.
CONVENTIONAL = (
    "num_inference_steps",
    "num_images_per_prompt",
    "generator",
    "latents",
    "output_type",
    "return_dict",
)
EMBEDS = torch.randn(3, 4, 12, generator=torch.Generator().manual_seed(7))  # 3 "prompts" of 4 tokens


@dataclass(frozen=True)
class Kind:
    """A kind of pipeline: how to build one, and its call keywords for `n` conditions (unconditional: n samples)."""

    make: Callable[[], SlimDiffusionPipeline]
    rows: Callable[[int], dict]
    # every kind has the same components, the absent ones None (as StableDiffusionPipeline's safety checker)
    components: frozenset = frozenset({"unet", "scheduler", "vae", "tokenizer", "text_encoder"})
    # diffusers' UNet2DModel, which SlimUNet2DModel extends, has no sliced attention: slicing is a no-op there
    sliced_attention: bool = True


def _unconditional(request) -> Kind:
    tiny_pipeline, tiny_unet = (request.getfixturevalue(f) for f in ("tiny_pipeline", "tiny_unet"))
    return Kind(lambda: tiny_pipeline(tiny_unet()), lambda n: {"batch_size": n}, sliced_attention=False)


def _class(request) -> Kind:
    tiny_pipeline, unet = (request.getfixturevalue(f) for f in ("tiny_pipeline", "tiny_condition_unet"))
    return Kind(
        lambda: tiny_pipeline(unet()),
        lambda n: {"class_labels": list(range(1, n + 1)), "guidance_scale": 2.0},
    )


def _text(request) -> Kind:
    tiny_pipeline, unet = (request.getfixturevalue(f) for f in ("tiny_pipeline", "tiny_condition_unet"))
    negative = torch.zeros(1, *EMBEDS.shape[1:])
    return Kind(
        lambda: tiny_pipeline(unet(classes=None)),
        lambda n: {"prompt_embeds": EMBEDS[:n], "negative_prompt_embeds": negative, "guidance_scale": 2.0},
    )


def _prompts(request) -> Kind:
    """A text pipeline with its own tokenizer and text encoder, called with prompts."""
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = request.getfixturevalue("tiny_condition_unet")
    clip = request.getfixturevalue("tiny_clip")(request.getfixturevalue("tmp_path") / "clip")
    parts = {
        "tokenizer": CLIPTokenizer.from_pretrained(clip / "tokenizer"),
        "text_encoder": CLIPTextModel.from_pretrained(clip / "text_encoder"),
    }

    def make() -> SlimDiffusionPipeline:
        text_unet = unet(classes=None, cross_attention_dim=32)
        pipe = SlimDiffusionPipeline(unet=text_unet, scheduler=training_scheduler(), **parts)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    prompts = ["red brick", "green grass", "grey stone"]
    return Kind(make, lambda n: {"prompt": prompts[:n], "negative_prompt": "", "guidance_scale": 2.0})


KINDS = {"unconditional": _unconditional, "class": _class, "text": _text, "prompts": _prompts}
GUIDED = [name for name in KINDS if name != "unconditional"]


@pytest.fixture(params=list(KINDS))
def kind(request) -> Kind:
    return KINDS[request.param](request)


@pytest.fixture(params=GUIDED)
def guided(request) -> Kind:
    return KINDS[request.param](request)


_draw = partial(draw, num_inference_steps=2)


# --- the call -------------------------------------------------------------------------------------------------


def test_the_call_takes_the_conventional_keywords(kind):
    parameters = inspect.signature(SlimDiffusionPipeline.__call__).parameters
    assert all(parameters[name].default is not inspect.Parameter.empty for name in CONVENTIONAL)
    assert set(kind.rows(2)) <= set(parameters)


def test_dict_and_tuple_outputs_agree(kind, assert_outputs_close):
    pipe = kind.make()
    call = {"num_inference_steps": 2, "output_type": "pt", **kind.rows(2)}
    (as_tuple,) = pipe(generator=gen(), return_dict=False, **call)
    assert_outputs_close(as_tuple, pipe(generator=gen(), **call).images)


def test_every_condition_gives_num_images_per_prompt_images(kind):
    pipe = kind.make()
    for n in (1, 2):
        for per_prompt in (1, 2):
            assert _draw(pipe, **kind.rows(n), num_images_per_prompt=per_prompt).shape[0] == n * per_prompt


def test_a_batch_draws_what_a_single_call_draws(kind, assert_outputs_close):
    pipe = kind.make()
    batch = _draw(pipe, generator=[gen(i) for i in range(3)], **kind.rows(3))
    assert batch.shape[0] == 3
    assert_outputs_close(batch[:1], _draw(pipe, seed=0, **kind.rows(1)))


# --- components, saving and loading ----------------------------------------------------------------------------


def test_components_rebuild_the_pipeline_and_from_pipe_shares_them(kind, assert_same_pipeline):
    pipe = kind.make()
    assert set(pipe.components) == kind.components
    assert_same_pipeline(pipe, SlimDiffusionPipeline(**pipe.components), **kind.rows(2))
    shared = SlimDiffusionPipeline.from_pipe(pipe)
    assert all(shared.components[name] is part for name, part in pipe.components.items())
    assert_same_pipeline(pipe, shared, **kind.rows(2))


def test_saved_as_safetensors_and_loaded_back_by_every_loader(kind, tmp_path, assert_same_pipeline):
    pipe = kind.make()
    pipe.save_pretrained(tmp_path)
    weights = [p.name for p in tmp_path.rglob("*") if p.suffix in (".safetensors", ".bin")]
    assert "diffusion_pytorch_model.safetensors" in weights
    assert all(name.endswith(".safetensors") for name in weights)
    for loader in (SlimDiffusionPipeline.from_pretrained, DiffusionPipeline.from_pretrained, load_pipeline):
        loaded = loader(tmp_path)
        assert loaded.vae is None  # the optional component stays absent
        assert_same_pipeline(pipe, loaded, **kind.rows(2))
    mixed = SlimDiffusionPipeline.from_pretrained(
        tmp_path, dtype={"unet": torch.bfloat16, "default": torch.float16}
    )
    assert mixed.unet.dtype == torch.bfloat16


def test_pickled_weights_load_only_when_asked(kind, tmp_path, assert_same_pipeline):
    """A pickle can run code when loaded: a folder of .bin weights loads only with use_safetensors=False."""
    pipe = kind.make()
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.bin").is_file()
    for load in (SlimDiffusionPipeline.from_pretrained, load_pipeline):
        for asked in ({}, {"use_safetensors": True}, {"use_safetensors": None}):
            with pytest.raises(
                ModelError, match=r"unet holds only pickled \.bin.*use_safetensors=False"
            ) as error:
                load(tmp_path, **asked)
            assert "\n" not in str(error.value)
    assert_same_pipeline(
        pipe, SlimDiffusionPipeline.from_pretrained(tmp_path, use_safetensors=False), **kind.rows(2)
    )


def test_variants_load_the_same_weights(kind, tmp_path, assert_same_parameters):
    pipe = kind.make()
    pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    assert [p.name for p in (tmp_path / "fp16" / "unet").glob("*.safetensors")] == [
        "diffusion_pytorch_model.fp16.safetensors"
    ]
    assert_same_parameters(
        pipe.unet, SlimDiffusionPipeline.from_pretrained(tmp_path / "fp16", variant="fp16").unet
    )
    pipe.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="variant=fp16"):
        SlimDiffusionPipeline.from_pretrained(tmp_path / "plain", variant="fp16")


# --- precision, devices, memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_draws_and_round_trips_in_its_dtype(kind, dtype, tmp_path):
    pipe = kind.make()
    full = _draw(pipe, **kind.rows(2))
    pipe.to(dtype=dtype)
    assert pipe.unet.dtype == dtype
    half = _draw(pipe, **kind.rows(2))
    assert half.dtype == dtype
    # guidance (w = 2) amplifies rounding, and a pixel or two near the clip may move far (bf16: 0.41 seen), while
    # the mean stays at most 0.005 (measured); a broken half-precision path moves it by ~0.3
    assert (half.float() - full).abs().mean() < 0.02
    pipe.save_pretrained(tmp_path)
    loaded = SlimDiffusionPipeline.from_pretrained(tmp_path, dtype=dtype)
    assert loaded.unet.dtype == dtype
    # the same weights in the same dtype: at most one unit in the last place apart
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(_draw(loaded, **kind.rows(2)), half, atol=eps, rtol=0)


def test_attention_slicing_keeps_the_images(kind, assert_outputs_close):
    pipe = kind.make()
    whole = _draw(pipe, **kind.rows(2))
    for size in (1, 2):
        pipe.enable_attention_slicing(slice_size=size)
        processors = {type(m.processor).__name__ for m in pipe.unet.modules() if isinstance(m, Attention)}
        assert (processors == {"SlicedAttnProcessor"}) == kind.sliced_attention
        assert_outputs_close(_draw(pipe, **kind.rows(2)), whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_ACCELERATOR)
def test_an_accelerator_draws_the_images_the_cpu_draws(kind):
    pipe = kind.make()
    on_cpu = _draw(pipe, **kind.rows(2))
    pipe.to("cuda")
    assert pipe.unet.device.type == "cuda"
    # TF32 convolutions round like half precision, which guidance amplifies (see the half-precision check)
    assert (_draw(pipe, **kind.rows(2)).cpu() - on_cpu).abs().mean() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_ACCELERATOR)
@pytest.mark.parametrize("offload", ["enable_model_cpu_offload", "enable_sequential_cpu_offload"])
def test_cpu_offload_keeps_the_images(kind, offload):
    pipe = kind.make().to("cuda")
    resident = _draw(pipe, **kind.rows(2)).cpu()
    offloaded = kind.make()
    getattr(offloaded, offload)()
    assert offloaded._execution_device.type == "cuda"
    torch.testing.assert_close(_draw(offloaded, **kind.rows(2)).cpu(), resident, atol=2e-4, rtol=0)


# --- callbacks, guidance, progress -------------------------------------------------------------------------------


def test_step_end_callbacks_see_the_asked_tensors_and_may_replace_the_latents(kind):
    pipe = kind.make()
    seen = []

    def record(p, step, timestep, tensors):
        seen.append(set(tensors))
        return tensors

    for asked in ([], pipe._callback_tensor_inputs):
        seen.clear()
        _draw(pipe, **kind.rows(2), callback_on_step_end=record, callback_on_step_end_tensor_inputs=asked)
        assert seen == [set(asked)] * pipe.num_timesteps

    def zero_the_last(p, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])} if step == p.num_timesteps - 1 else tensors

    latents = _draw(pipe, **kind.rows(2), callback_on_step_end=zero_the_last, output_type="latent")
    assert latents.shape[0] == 2 and not latents.any()


def test_guidance_scale_changes_the_images(guided):
    pipe = guided.make()
    call = {**guided.rows(2), "latents": torch.randn(2, 3, 8, 8, generator=gen(3))}
    plain, strong = (_draw(pipe, **{**call, "guidance_scale": w}) for w in (1.0, 7.5))
    assert plain.shape == strong.shape and (plain - strong).abs().max() > 1e-3


def test_a_step_end_callback_may_change_the_guidance_scale(guided, assert_outputs_close):
    pipe = guided.make()
    w = guided.rows(1)["guidance_scale"]

    def raise_w(p, step, timestep, tensors):
        p._guidance_scale += 1.0
        return tensors

    def keep_w(p, step, timestep, tensors):
        p._guidance_scale = w
        return tensors

    raised = _draw(pipe, **guided.rows(2), num_inference_steps=3, callback_on_step_end=raise_w)
    assert pipe.guidance_scale == w + pipe.num_timesteps == w + 3
    constant = _draw(pipe, **guided.rows(2), num_inference_steps=3)
    assert pipe.guidance_scale == w
    assert_outputs_close(
        _draw(pipe, **guided.rows(2), num_inference_steps=3, callback_on_step_end=keep_w), constant
    )
    assert (raised - constant).abs().max() > 1e-3


def test_an_unconditional_pipeline_refuses_guidance(tiny_pipeline):
    with pytest.raises(ValueError, match="guidance_scale needs class_labels or prompt_embeds"):
        _draw(tiny_pipeline(), guidance_scale=2.0)


def test_the_progress_bar_follows_its_config(tiny_pipeline, capsys):
    pipe = tiny_pipeline()
    call = {
        "num_inference_steps": 3,
        "generator": gen(),
        "output_type": "pt",
    }  # not `draw`: it turns the bar off
    pipe.set_progress_bar_config(disable=False)
    pipe(**call)
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(**call)
    assert capsys.readouterr().err == ""


# --- prompts (the pipeline's own tokenizer and text encoder) -----------------------------------------------------


@pytest.fixture
def text_pipe(request) -> SlimDiffusionPipeline:
    return _prompts(request).make()


def test_the_call_takes_prompts():
    parameters = inspect.signature(SlimDiffusionPipeline.__call__).parameters
    assert {"prompt", "negative_prompt", "prompt_embeds", "negative_prompt_embeds"} <= set(parameters)


def test_encode_prompt_alone_gives_what_the_call_samples_with(text_pipe, assert_outputs_close):
    prompts, call = ["red brick", "green grass"], {"negative_prompt": "", "guidance_scale": 2.0}
    embeds, negative = text_pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt="")
    without_encoder = SlimDiffusionPipeline(unet=text_pipe.unet, scheduler=text_pipe.scheduler)
    by_embeds = _draw(
        without_encoder, prompt_embeds=embeds, negative_prompt_embeds=negative, guidance_scale=2.0
    )
    assert_outputs_close(by_embeds, _draw(text_pipe, prompt=prompts, **call))
    assert _draw(text_pipe, prompt=prompts, num_images_per_prompt=2, **call).shape[0] == 4
