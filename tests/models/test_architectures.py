"""Fidelity to the paper (issue 15): the Church layout, gated res-block samplers, fixed head counts and the
table-literal conditional presets (the paper's literal ω: tests/training/test_omega.py)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D, Upsample2D

from slimdiff.models.gating import WGDown, WGUp
from slimdiff.models.presets import PRESETS
from slimdiff.models.unet import SlimUNet2DModel


def _samplers(model):
    downs = [s for b in model.down_blocks for s in (getattr(b, "downsamplers", None) or ())]
    ups = [s for b in model.up_blocks for s in (getattr(b, "upsamplers", None) or ())]
    return downs, ups


# --- presets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ldm-kl8", "lite-ldm-kl8"])
def test_church_teachers_use_res_block_samplers_at_every_level(name, on_meta):
    model, _ = on_meta(PRESETS[name])
    downs, ups = _samplers(model)
    assert len(downs) == len(ups) == 4
    assert all(type(s) is ResnetBlock2D and s.down for s in downs)
    assert all(type(s) is ResnetBlock2D and s.up for s in ups)  # none is a conv Upsample2D
    assert not any(isinstance(m, Upsample2D) and m.use_conv for m in model.modules())


@pytest.mark.parametrize("name", ["ldm-kl8", "lite-ldm-kl8", "sd-kl8"])
def test_church_attention_has_eight_heads_at_every_level(name, on_meta):
    model, _ = on_meta(PRESETS[name])
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(attentions) == 4 * 2 + 4 * 3 + 1  # down, up, middle
    assert {a.heads for a in attentions} == {8}
    assert all(a.scale == pytest.approx((a.inner_dim // 8) ** -0.5) for a in attentions)


def test_sd_kl8_gates_its_res_block_samplers_and_the_option_replaces_them(on_meta):
    gated, _ = on_meta(PRESETS["sd-kl8"])
    downs, ups = _samplers(gated)
    assert all(type(s) is ResnetBlock2D and isinstance(s.downsample, WGDown) for s in downs)
    assert all(type(s) is ResnetBlock2D and isinstance(s.upsample, WGUp) for s in ups)
    replaced, _ = on_meta(PRESETS["sd-kl8-replace"])
    downs, ups = _samplers(replaced)
    assert all(isinstance(s, WGDown) for s in downs) and all(isinstance(s, WGUp) for s in ups)
    config = {k: v for k, v in PRESETS["sd-kl8"].config.items() if k != "resnet_samplers"}
    assert config == {k: v for k, v in PRESETS["sd-kl8-replace"].config.items() if k != "resnet_samplers"}


def test_table_literal_conditional_presets_have_the_tables_widths():
    cin, txt = PRESETS["sd-cin-table"].config, PRESETS["sd-txt-table"].config
    assert cin["block_out_channels"] == (64, 128, 192, 256)
    assert txt["block_out_channels"] == (128, 256, 512, 512)
    # UNet2DConditionModel reads attention_head_dim as the number of heads: 32-channel heads at every level.
    assert all(
        w // h == 32 for w, h in zip(txt["block_out_channels"], txt["attention_head_dim"], strict=True)
    )
    assert PRESETS["sd-cin"].config["block_out_channels"][-1] == 320


def _small_church(**overrides) -> SlimUNet2DModel:
    torch.manual_seed(0)
    config = {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "down_block_types": ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("ResnetUpsampleBlock2D", "AttnUpBlock2D"),
        "layers_per_block": 1,
        "attention_head_dim": 4,
        "norm_num_groups": 4,
        "resnet_time_scale_shift": "scale_shift",
        "downsample_type": "resnet",
        "upsample_type": "resnet",
        "wavelet_gating": True,
        "resnet_samplers": "gate",
    }
    return SlimUNet2DModel(**{**config, **overrides}).eval()


def test_gated_res_block_samplers_train_and_survive_a_save_and_load(tmp_path, unet_inputs, assert_same_model):
    model = _small_church()
    inputs = unet_inputs(model)
    model.train()
    model(**inputs).sample.square().mean().backward()
    gate = model.down_blocks[0].downsamplers[0].downsample.gate
    assert gate.w2.weight.grad is not None and gate.w2.weight.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path / "m")
    loaded = SlimUNet2DModel.from_pretrained(tmp_path / "m")
    assert loaded.config.resnet_samplers == "gate"
    assert_same_model(model, loaded, inputs)


def test_unknown_res_block_sampler_mode_is_refused():
    with pytest.raises(ValueError, match="unknown resnet_samplers 'swap'"):
        _small_church(resnet_samplers="swap")


def test_a_fixed_head_count_equals_the_same_split_by_head_width(
    unet_inputs, unet_output, assert_outputs_close
):
    same = {"block_out_channels": (8, 8), "wavelet_gating": False}  # every attention layer 8 channels wide
    by_width = _small_church(attention_head_dim=4, **same)  # 8 / 4 = 2 heads
    by_count = _small_church(attention_head_dim=8, attention_heads=2, **same)
    one_head = _small_church(attention_head_dim=8, **same)
    with torch.no_grad():  # non-zero attention outputs, so the head split matters
        for module in by_width.modules():
            if isinstance(module, Attention):
                module.to_out[0].weight.normal_()
    by_count.load_state_dict(by_width.state_dict())
    one_head.load_state_dict(by_width.state_dict())
    inputs = unet_inputs(by_width)
    assert_outputs_close(unet_output(by_count, inputs), unet_output(by_width, inputs))
    assert not torch.allclose(unet_output(one_head, inputs), unet_output(by_width, inputs), atol=1e-4)


def test_attention_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        _small_church(attention_heads=3)
