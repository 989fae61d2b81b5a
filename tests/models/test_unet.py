"""Slim UNets are genuine diffusers models: gating swap, save/load round trip, schedulers, `load_unet`."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNet2DModel
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D

from slimdiff.diffusion import training_scheduler
from slimdiff.errors import ModelError
from slimdiff.models.gating import WGDown, WGUp
from slimdiff.models.loading import load_unet
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel


def _samplers(model) -> tuple[list, list]:
    down = [s for b in model.down_blocks if b.downsamplers is not None for s in b.downsamplers]
    up = [s for b in model.up_blocks if b.upsamplers is not None for s in b.upsamplers]
    return down, up


def test_gating_replaces_every_sampler(tiny_unet):
    down, up = _samplers(tiny_unet())
    assert len(down) == 1 and all(isinstance(s, WGDown) for s in down)
    assert len(up) == 1 and all(isinstance(s, WGUp) and s.mode == "repeat" for s in up)
    down, up = _samplers(tiny_unet(slim=False))
    assert all(isinstance(s, Downsample2D) for s in down) and all(isinstance(s, Upsample2D) for s in up)


def test_gating_replaces_resnet_samplers_of_kl8_style_blocks(tiny_unet, unet_inputs, unet_output):
    model = tiny_unet(downsample_type="resnet", upsample_type="resnet", resnet_time_scale_shift="scale_shift")
    down, up = _samplers(model)
    assert all(isinstance(s, WGDown) for s in down) and all(isinstance(s, WGUp) for s in up)
    inputs = unet_inputs(model)
    assert unet_output(model, inputs).shape == inputs["sample"].shape


def test_without_gating_it_is_exactly_the_diffusers_model(
    tiny_unet, unet_inputs, unet_output, assert_same_parameters, assert_outputs_close
):
    ours, theirs = tiny_unet(slim=False), tiny_unet(cls=UNet2DModel)
    assert_same_parameters(ours, theirs)  # the same modules under the same names, initialised alike
    inputs = unet_inputs(ours)
    assert_outputs_close(unet_output(ours, inputs), unet_output(theirs, inputs))


def test_output_shape_and_timestep_dependence(tiny_unet, unet_inputs, unet_output):
    model = tiny_unet()
    inputs = unet_inputs(model)
    eps = unet_output(model, inputs)
    assert eps.shape == inputs["sample"].shape and torch.isfinite(eps).all()
    later = unet_output(model, {**inputs, "timestep": inputs["timestep"] + 400})
    assert not torch.allclose(eps, later)


@pytest.mark.parametrize("up_mode", ["repeat", "split"])
def test_unconditional_round_trip_is_bit_identical(
    tmp_path, up_mode, tiny_unet, unet_inputs, assert_same_model
):
    model = tiny_unet(wavelet_up=up_mode, gate_reduction=2)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "SlimUNet2DModel"
    assert (config["wavelet_gating"], config["wavelet_up"], config["gate_reduction"]) == (True, up_mode, 2)
    loaded = SlimUNet2DModel.from_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert_same_model(model, loaded, unet_inputs(model))
    assert loaded.up_blocks[0].upsamplers[0].mode == up_mode


def test_class_context_round_trip_is_bit_identical(
    tmp_path, tiny_condition_unet, unet_inputs, assert_same_model
):
    model = tiny_condition_unet()
    assert model.class_context.weight.shape == (6, 12)  # 5 classes + the "no class" row
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "SlimUNet2DConditionModel"
    assert config["num_context_classes"] == 5 and config["wavelet_gating"] is True
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert_same_model(model, SlimUNet2DConditionModel.from_pretrained(tmp_path), unet_inputs(model))


def test_class_labels_select_the_context_row(tiny_condition_unet, unet_inputs, unet_output):
    model = tiny_condition_unet()
    inputs = unet_inputs(model)
    by_label = unet_output(model, inputs)
    context = model.class_context(inputs["class_labels"])[:, None]
    by_context = unet_output(
        model, {"sample": inputs["sample"], "timestep": inputs["timestep"], "encoder_hidden_states": context}
    )
    assert torch.equal(by_label, by_context)  # one model, one batch, the same ops: bitwise on any machine
    other = unet_output(model, {**inputs, "class_labels": inputs["class_labels"] + 1})
    assert not torch.allclose(by_label, other)


def test_condition_model_input_errors(tiny_condition_unet, unet_inputs):
    model = tiny_condition_unet()
    inputs = unet_inputs(model)
    with pytest.raises(ValueError, match="either class_labels or encoder_hidden_states"):
        model(**inputs, encoder_hidden_states=torch.zeros(2, 1, 12))
    with pytest.raises(ValueError, match="needs encoder_hidden_states"):
        model(inputs["sample"], inputs["timestep"])


def test_ddim_step_with_the_model_matches_the_closed_form(tiny_unet, unet_inputs, unet_output):
    model = tiny_unet()
    scheduler = DDIMScheduler.from_config(training_scheduler().config, clip_sample=False)
    scheduler.set_timesteps(10)
    x = unet_inputs(model, batch=1)["sample"]
    t, t_prev = scheduler.timesteps[0], scheduler.timesteps[1]
    eps = unet_output(model, {"sample": x, "timestep": t})
    x_prev = scheduler.step(eps, t, x).prev_sample
    ab, ab_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[t_prev]
    x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    torch.testing.assert_close(x_prev, ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheduler_class", [DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_runs_a_short_sampling_loop_with_diffusers_schedulers(
    scheduler_class, tiny_unet, unet_inputs, unet_output
):
    model = tiny_unet()
    scheduler = scheduler_class.from_config(training_scheduler().config)
    scheduler.set_timesteps(3)
    x = unet_inputs(model, batch=1)["sample"] * scheduler.init_noise_sigma
    start = x.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(
            unet_output(model, {"sample": scheduler.scale_model_input(x, t), "timestep": t}), t, x
        ).prev_sample
    assert x.shape == start.shape and torch.isfinite(x).all() and not torch.allclose(x, start)


def test_load_unet_from_a_bare_model_folder(tmp_path, tiny_unet, unet_inputs, assert_same_model):
    model = tiny_unet()
    model.save_pretrained(tmp_path)
    assert_same_model(model, load_unet(tmp_path), unet_inputs(model))


def test_load_unet_from_a_pipeline_folder(tmp_path, tiny_condition_unet, unet_inputs, assert_same_model):
    model = tiny_condition_unet()
    model.save_pretrained(tmp_path / "unet")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DiffusionPipeline"}))
    assert_same_model(model, load_unet(str(tmp_path)), unet_inputs(model))


def test_load_unet_keeps_plain_diffusers_models(tmp_path, tiny_unet, unet_inputs, assert_same_model):
    plain = tiny_unet(cls=UNet2DModel)
    plain.save_pretrained(tmp_path)
    assert_same_model(plain, load_unet(tmp_path), unet_inputs(plain))


def test_output_tolerance_catches_one_wrong_weight(
    tmp_path, tiny_unet, unet_inputs, unet_output, assert_outputs_close, assert_same_model
):
    """The round-trip checks compare outputs to a tolerance (1e-5): one weight of a loaded UNet off by 1e-3
    must still fail them, through the outputs and not only through the bitwise parameter comparison."""
    model = tiny_unet()
    model.save_pretrained(tmp_path)
    loaded = load_unet(tmp_path)
    inputs = unet_inputs(model)
    assert_same_model(model, loaded, inputs)
    with torch.no_grad():
        loaded.down_blocks[0].resnets[0].conv1.weight[0, 0, 1, 1] += 1e-3  # moves the output by ~2e-4
    with pytest.raises(AssertionError):
        assert_outputs_close(unet_output(loaded, inputs), unet_output(model, inputs))
    with pytest.raises(AssertionError):
        assert_same_model(model, loaded, inputs)


def test_load_unet_errors_are_clear(tmp_path):
    with pytest.raises(ModelError, match="neither a model folder nor a hub id"):
        load_unet(tmp_path / "missing")
    with pytest.raises(ModelError, match=r"holds no UNet \(no config.json in it, in unet/, in model/unet/\)"):
        load_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ModelError, match="'AutoencoderKL' is not a supported UNet"):
        load_unet(tmp_path)
