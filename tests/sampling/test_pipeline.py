import json
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from slimdiff.diffusion import training_scheduler
from slimdiff.models.loading import load_unet
from slimdiff.sampling.pipeline import (
    SlimDiffusionPipeline,
    denoiser_output,
    guided_output,
    load_pipeline,
    stitch_plan,
)

from .drawing import draw, gen

_pt = partial(draw, sampler="ddim")


# --- save / load -------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_identical(tmp_path, tiny_pipeline, assert_same_pipeline):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "SlimDiffusionPipeline"
    assert index["unet"][1] == "SlimUNet2DModel" and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (tmp_path / "vae").exists()
    loaded = SlimDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.vae is None
    for sampler in ("ddpm", "dpm++"):
        assert_same_pipeline(pipe, loaded, sampler=sampler)
    # The UNet of a pipeline folder is found by the shared loader too.
    assert type(load_unet(tmp_path)).__name__ == "SlimUNet2DModel"


def test_round_trip_from_a_fresh_process(
    tmp_path, tiny_pipeline, assert_same_parameters, assert_outputs_close
):
    """diffusers resolves custom component classes only from modules already imported: loading must not
    depend on anything the saving process had imported."""
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    expected = _pt(pipe).numpy()
    script = (
        "import sys, numpy, torch\n"
        "from slimdiff.sampling.pipeline import SlimDiffusionPipeline\n"
        "torch.set_num_threads(1)\n"
        "pipe = SlimDiffusionPipeline.from_pretrained(sys.argv[1])\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "torch.save(pipe.unet.state_dict(), sys.argv[3])\n"
        "images = pipe(num_inference_steps=3, sampler='ddim', generator=torch.Generator().manual_seed(0),"
        " output_type='pt').images\n"
        "numpy.save(sys.argv[2], images.numpy())\n"
    )
    paths = [tmp_path / "model", tmp_path / "x.npy", tmp_path / "unet.pt"]
    subprocess.run([sys.executable, "-c", script, *map(str, paths)], check=True)
    loaded = torch.load(tmp_path / "unet.pt", weights_only=True)
    assert_same_parameters(pipe.unet, loaded)  # the weights the other process loaded, bit for bit
    assert_outputs_close(np.load(tmp_path / "x.npy"), expected)  # its images, to rounding


def test_round_trip_with_autoencoder(tmp_path, tiny_pipeline, tiny_unet, tiny_kl, assert_same_pipeline):
    pipe = tiny_pipeline(tiny_unet(channels=4), vae=tiny_kl(scaling_factor=0.3))
    pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.vae.config.scaling_factor == 0.3
    assert_same_pipeline(pipe, loaded)
    assert _pt(loaded).shape == (1, 3, 16, 16)


def test_run_folder_and_bare_unet_folder_load(tmp_path, tiny_pipeline, tiny_unet, assert_same_pipeline):
    tiny_pipeline().save_pretrained(tmp_path / "run" / "model")
    assert isinstance(load_pipeline(tmp_path / "run"), SlimDiffusionPipeline)
    unet = tiny_unet(seed=3)
    unet.save_pretrained(tmp_path / "bare")
    bare = load_pipeline(tmp_path / "bare")
    assert bare.scheduler.config.beta_end == training_scheduler().config.beta_end
    bare.set_progress_bar_config(disable=True)
    assert_same_pipeline(tiny_pipeline(unet), bare)


# --- decoding and outputs ----------------------------------------------------------------------------------


def test_latents_are_decoded_with_the_scaling_factor(tiny_pipeline, tiny_unet, tiny_kl):
    vae = tiny_kl(scaling_factor=0.25)
    pipe = tiny_pipeline(tiny_unet(channels=4), vae=vae)
    latents = _pt(pipe, output_type="latent")
    with torch.no_grad():
        expected = (vae.decode(latents / 0.25).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(_pt(pipe), expected)


def test_output_types_agree(tiny_pipeline):
    pipe = tiny_pipeline()
    pt = _pt(pipe, batch_size=2)
    np_images = _pt(pipe, batch_size=2, output_type="np")
    pil = _pt(pipe, batch_size=2, output_type="pil")
    np.testing.assert_allclose(np_images, pt.permute(0, 2, 3, 1).numpy())
    assert len(pil) == 2 and isinstance(pil[0], Image.Image) and pil[0].size == (8, 8)
    with pytest.raises(ValueError, match="output_type"):
        _pt(pipe, output_type="jpeg")


def test_given_latents_are_the_initial_noise(tiny_pipeline):
    pipe = tiny_pipeline()
    noise = torch.randn(2, 3, 8, 8, generator=gen(5))
    assert torch.equal(_pt(pipe, batch_size=2, generator=gen(5)), _pt(pipe, batch_size=2, latents=noise))
    with pytest.raises(ValueError, match="latents must have shape"):
        _pt(pipe, latents=torch.randn(1, 3, 4, 4))


def test_progress_bar_counts_every_step(capsys, tiny_pipeline):
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=False)
    _pt(pipe, num_inference_steps=4)
    assert "4/4" in capsys.readouterr().err


# --- classifier-free guidance ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def class_pipe(tiny_pipeline, tiny_condition_unet):
    return tiny_pipeline(tiny_condition_unet())


def test_guidance_scale_one_is_the_conditional_model_alone(class_pipe):
    labels = [0, 3]
    conditional = _pt(class_pipe, batch_size=2, class_labels=labels)
    torch.testing.assert_close(
        _pt(class_pipe, batch_size=2, class_labels=labels, guidance_scale=1.0), conditional
    )
    # w = 0 is the unconditional model: the "no class" label K = 5.
    unconditional = _pt(class_pipe, batch_size=2, class_labels=[5, 5])
    torch.testing.assert_close(
        _pt(class_pipe, batch_size=2, class_labels=labels, guidance_scale=0.0), unconditional
    )
    assert not torch.allclose(
        _pt(class_pipe, batch_size=2, class_labels=labels, guidance_scale=3.0), conditional
    )


def test_guided_output_is_one_batched_call_of_the_cfg_formula(tiny_condition_unet):
    unet = tiny_condition_unet()
    calls = []
    unet.register_forward_hook(lambda module, args, kwargs: calls.append(args[0].shape[0]))
    x, t = torch.randn(2, 3, 8, 8, generator=gen(1)), torch.tensor(400)
    cond, uncond = {"class_labels": torch.tensor([1, 2])}, {"class_labels": torch.tensor([5, 5])}
    with torch.no_grad():
        guided = guided_output(unet, x, t, cond, uncond, 3.0)
        assert calls == [4]
        e_c = denoiser_output(unet, x, t, cond)
        e_u = denoiser_output(unet, x, t, uncond)
    torch.testing.assert_close(guided, e_u + 3.0 * (e_c - e_u), rtol=1e-5, atol=1e-5)


def test_text_guidance_with_prompt_embeddings(tiny_pipeline, tiny_condition_unet):
    pipe = tiny_pipeline(tiny_condition_unet(classes=None))
    prompt = torch.randn(2, 5, 12, generator=gen(2))
    negative = torch.randn(1, 5, 12, generator=gen(3))
    conditional = _pt(pipe, prompt_embeds=prompt)
    assert conditional.shape == (2, 3, 8, 8)
    guided = _pt(pipe, prompt_embeds=prompt, negative_prompt_embeds=negative, guidance_scale=1.0)
    torch.testing.assert_close(guided, conditional)
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        _pt(pipe, prompt_embeds=prompt, guidance_scale=2.0)


def test_conditioning_mistakes_are_clear_errors(class_pipe, tiny_pipeline):
    with pytest.raises(ValueError, match="guidance_scale needs class_labels or prompt_embeds"):
        _pt(class_pipe, guidance_scale=2.0)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 4\]"):
        _pt(class_pipe, class_labels=[7])
    with pytest.raises(ValueError, match="not class-conditional"):
        _pt(tiny_pipeline(), class_labels=[1])
    with pytest.raises(ValueError, match="not both"):
        _pt(class_pipe, class_labels=[1], prompt_embeds=torch.zeros(1, 1, 12))


# --- trajectory stitching ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student_teacher(tiny_pipeline, tiny_unet):
    # The teacher is wider and not wavelet-gated: a different-size UNet on the same space.
    return tiny_pipeline(tiny_unet(seed=1)), tiny_unet(seed=2, widths=(16, 32), slim=False)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler"])
def test_stitching_fraction_zero_is_the_teacher_and_one_the_student(student_teacher, sampler, tiny_pipeline):
    pipe, teacher = student_teacher
    # The same two model objects on the same batch as the stitched run: bitwise on any machine.
    student_alone = _pt(pipe, sampler=sampler, num_inference_steps=4)
    teacher_alone = _pt(tiny_pipeline(teacher), sampler=sampler, num_inference_steps=4)
    assert torch.equal(
        _pt(pipe, sampler=sampler, num_inference_steps=4, stitch=(teacher, 0.0)), teacher_alone
    )
    assert torch.equal(
        _pt(pipe, sampler=sampler, num_inference_steps=4, stitch=(teacher, 1.0)), student_alone
    )
    half = _pt(pipe, sampler=sampler, num_inference_steps=4, stitch=(teacher, 0.5))
    assert not torch.equal(half, student_alone) and not torch.equal(half, teacher_alone)


def test_stitch_plan_runs_the_student_first():
    assert stitch_plan("s", ("t", 0.25), 8) == ["s"] * 2 + ["t"] * 6
    assert stitch_plan("s", None, 3) == ["s"] * 3
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        stitch_plan("s", ("t", 1.5), 3)


def test_stitching_refuses_multistep_samplers_and_other_spaces(student_teacher, tiny_unet):
    pipe, teacher = student_teacher
    for sampler in ("dpm++", "unipc", "deis", "pndm"):
        with pytest.raises(ValueError, match=f"stitching needs .*ddpm, ddim, euler.*; {sampler}"):
            _pt(pipe, sampler=sampler, stitch=(teacher, 0.5))
    with pytest.raises(ValueError, match="same \\(latent\\) space"):
        _pt(pipe, stitch=(tiny_unet(channels=4), 0.5))


def test_a_diffusers_ldm_pipeline_folder_loads_with_unscaled_vq_latents(tmp_path, tiny_unet, tiny_vq):
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel

    vqvae = tiny_vq(levels=2)  # f2: 8×8 latents, 16×16 images
    unet = tiny_unet(cls=UNet2DModel)
    LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(clip_sample=False)).save_pretrained(tmp_path)
    assert vqvae.config.scaling_factor != 1.0  # diffusers' VQModel default; LDM trained unscaled
    pipe = load_pipeline(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.unet) is UNet2DModel and type(pipe.scheduler) is DDIMScheduler
    assert pipe.vae.config.scaling_factor == 1.0
    latents = _pt(pipe, output_type="latent")
    with torch.no_grad():
        expected = vqvae.decode(latents).sample.clamp(-1, 1)
    torch.testing.assert_close(pipe.decode(latents), expected)  # decode keeps [-1, 1]; __call__ gives [0, 1]
    assert _pt(pipe).shape == (1, 3, 16, 16)
