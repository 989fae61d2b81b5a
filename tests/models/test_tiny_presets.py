"""Students that can learn (issue 12): GroupNorm groups that scale with the width of the tiny presets, and the
CompVis zero initialisation of output layer, residual branches and attention outputs."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D

from slimdiff.demo import SHIPPED_TEACHER
from slimdiff.models.loading import load_unet
from slimdiff.models.presets import (
    PAPER_NORM_GROUPS,
    PRESETS,
    TINY_CHANNELS_PER_GROUP,
    get_preset,
    tiny_norm_groups,
)
from slimdiff.models.unet import zero_init_residuals

TINY = [name for name in PRESETS if name.startswith("tiny-")]


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_keep_four_channels_per_group_at_every_width(name):
    config = PRESETS[name].config
    base = config["block_out_channels"][0]
    assert config["norm_num_groups"] * TINY_CHANNELS_PER_GROUP == base
    assert all(width % config["norm_num_groups"] == 0 for width in config["block_out_channels"])


def test_the_students_no_longer_have_two_channels_per_group():
    assert get_preset("tiny-sd").config["norm_num_groups"] == 4
    assert get_preset("tiny-lite").config["norm_num_groups"] == 4
    assert tiny_norm_groups(56) == 14
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny_norm_groups(18)


def test_paper_presets_keep_compvis_32_groups():
    for name, preset in PRESETS.items():
        if not name.startswith("tiny-"):
            assert preset.config["norm_num_groups"] == PAPER_NORM_GROUPS, name


def test_the_shipped_teacher_still_matches_its_preset_and_loads():
    stored = json.loads((SHIPPED_TEACHER / "unet" / "config.json").read_text())
    preset = get_preset("tiny-teacher").config
    assert stored["norm_num_groups"] == preset["norm_num_groups"] == 8
    assert tuple(stored["block_out_channels"]) == preset["block_out_channels"]
    unet = load_unet(str(SHIPPED_TEACHER))
    assert unet.conv_out.weight.abs().sum() > 0  # trained weights, not a fresh zero-initialised model


def test_a_fresh_preset_predicts_zero_and_every_residual_branch_starts_at_zero():
    unet = get_preset("tiny-sd").build()
    x = torch.randn(2, 3, 32, 32)
    assert unet(x, torch.tensor([10, 900])).sample.abs().max() == 0
    resnets = [m for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    assert resnets and all(m.conv2.weight.abs().max() == 0 for m in resnets)
    # The attention output projections too; the gates and the first layers are random.
    assert unet.mid_block.attentions[0].to_out[0].weight.abs().max() == 0
    assert unet.conv_in.weight.abs().max() > 0


def test_zero_init_gives_gradients_and_learns_from_the_first_steps():
    torch.manual_seed(0)
    unet = get_preset("tiny-sd").build(sample_size=16)
    x, t = torch.randn(4, 3, 16, 16), torch.tensor([1, 200, 500, 999])
    unet(x, t).sample.square().mean().backward()  # prediction 0: the loss is zero here …
    target = torch.randn_like(x)
    unet.zero_grad()
    (unet(x, t).sample - target).square().mean().backward()  # … but not against a real target
    assert unet.conv_out.weight.grad.abs().sum() > 0


def test_cross_attention_models_zero_the_transformer_output_but_not_its_inner_attention(tiny_condition_unet):
    unet = tiny_condition_unet(classes=None, size=16, cross_attention_dim=8)
    zero_init_residuals(unet)
    transformer = unet.down_blocks[1].attentions[0]
    assert transformer.proj_out.weight.abs().max() == 0
    assert transformer.transformer_blocks[0].attn1.to_out[0].weight.abs().max() > 0
