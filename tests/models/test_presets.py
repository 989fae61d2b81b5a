"""Presets against the paper's params and MACs (DESIGN §1), and what every preset must provide.

Big presets are built on the meta device: exact parameter counts and MACs without memory or time.
The paper's MACs line up with convolutions + linear layers only (attention matmuls not counted): with that
convention every f4 and cin preset lands within 1%, so that is what is compared here; the attention
matmuls are reported next to them in the README.
"""

from __future__ import annotations

import pytest
import torch

from slimdiff.models.gating import WGDown, WGUp
from slimdiff.models.presets import PRESETS, get_preset
from slimdiff.models.size import count_params
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel

# Deviation from the paper in % (params, conv + linear MACs), as measured; a change of the architecture
# shows up as a change here. Why they are what they are is in the README ("Presets and the paper's numbers").
RECORDED_DEVIATION = {
    "ldm-f4": (-0.02, -0.09),
    "lite-ldm-f4": (0.05, -0.65),
    "sd-f4": (-0.24, -0.64),
    # CompVis Church exactly (res-block up-sampler at the attention-free level too)
    "ldm-kl8": (-0.01, -0.32),
    "lite-ldm-kl8": (0.08, -1.22),
    "sd-kl8": (-1.88, -1.19),  # the res-block samplers stay, one wavelet gate each
    "sd-kl8-replace": (-18.12, -25.95),  # gates replace the res-block samplers
    "ldm-cin": (0.13, -0.03),
    "lite-ldm-cin": (1.15, -0.02),
    "sd-cin": (1.08, -0.80),
    "sd-cin-table": (-22.09, -7.47),  # the widths of the paper's table (deepest 256), not its count
    "sd-txt": (-0.24, None),  # the paper gives no MACs for its text model
    "sd-txt-table": (73.98, None),  # 128/256/512/512 with 32-dim heads, as the paper's table
}
RECORD_TOLERANCE = 0.05  # percentage points
F4 = ("ldm-f4", "lite-ldm-f4", "sd-f4")
PAPER = [name for name, p in PRESETS.items() if p.params_paper is not None]


def _deviation(ours: float, paper: float) -> float:
    return 100 * (ours - paper) / paper


@pytest.fixture(scope="module")
def measured(on_meta, macs_by_kind) -> dict[str, tuple[int, int, int]]:
    """(params, conv + linear MACs, attention MACs) of every preset at batch 1."""
    out = {}
    for name, preset in PRESETS.items():
        model, inputs = on_meta(preset)
        out[name] = (count_params(model), *macs_by_kind(model, inputs))
    return out


def test_every_paper_preset_has_a_recorded_deviation():
    assert sorted(PAPER) == sorted(RECORDED_DEVIATION)


@pytest.mark.parametrize("name", F4)
def test_f4_presets_match_the_paper(measured, name):
    preset = PRESETS[name]
    params, macs, _ = measured[name]
    assert abs(_deviation(params, preset.params_paper)) <= 1.0
    assert abs(_deviation(macs, preset.macs_paper)) <= 3.0


@pytest.mark.parametrize("name", PAPER)
def test_deviation_from_the_paper_stays_as_recorded(measured, name):
    preset = PRESETS[name]
    params, macs, _ = measured[name]
    params_dev, macs_dev = RECORDED_DEVIATION[name]
    assert _deviation(params, preset.params_paper) == pytest.approx(params_dev, abs=RECORD_TOLERANCE)
    if preset.macs_paper is None:
        assert macs_dev is None
    else:
        assert _deviation(macs, preset.macs_paper) == pytest.approx(macs_dev, abs=RECORD_TOLERANCE)


def test_design_figures_for_f4(measured):
    # DESIGN §1: 274.06M / 96.0G, 22.41M / 7.85G, about 21.05M / 6.66G.
    assert measured["ldm-f4"][0] == pytest.approx(274.06e6, rel=1e-4)
    assert measured["lite-ldm-f4"][:2] == pytest.approx((22.41e6, 7.85e9), rel=2e-3)
    assert measured["sd-f4"][:2] == pytest.approx((21.05e6, 6.66e9), rel=2e-3)


def test_slim_presets_are_their_lite_presets_with_gating():
    for family in ("f4", "kl8", "cin"):
        lite, slim = PRESETS[f"lite-ldm-{family}"].config, PRESETS[f"sd-{family}"].config
        assert lite["wavelet_gating"] is False and slim["wavelet_gating"] is True
        slim_only = ("wavelet_gating", "resnet_samplers")
        assert {k: v for k, v in lite.items() if k not in slim_only} == {
            k: v for k, v in slim.items() if k not in slim_only
        }
    assert PRESETS["ldm-f4"].config["block_out_channels"] == (224, 448, 672, 896)
    assert PRESETS["lite-ldm-f4"].config["block_out_channels"] == (64, 128, 192, 256)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_with_matching_example_inputs(name, on_meta):
    preset = PRESETS[name]
    model, inputs = on_meta(preset, batch=3)
    assert isinstance(model, SlimUNet2DConditionModel if preset.conditional else SlimUNet2DModel)
    cfg = preset.config
    assert inputs["sample"].shape == (3, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
    assert inputs["timestep"].shape == (3,)
    gated = any(isinstance(m, WGDown | WGUp) for m in model.modules())
    assert gated == cfg["wavelet_gating"]
    if "num_context_classes" in cfg:
        assert inputs["class_labels"].shape == (3,) and "encoder_hidden_states" not in inputs
    elif preset.conditional:
        assert inputs["encoder_hidden_states"].shape == (3, preset.context_tokens, cfg["cross_attention_dim"])
    assert model(**inputs).sample.shape == inputs["sample"].shape


def test_text_preset_takes_a_clip_context():
    preset = PRESETS["sd-txt"]
    assert preset.context_tokens == 77 and preset.config["cross_attention_dim"] == 768


@pytest.mark.parametrize("name", ["tiny-teacher", "tiny-lite", "tiny-sd"])
def test_tiny_presets_run_on_cpu(name, unet_inputs, unet_output):
    torch.manual_seed(0)
    model = PRESETS[name].build().eval()
    inputs = unet_inputs(model)
    assert model.config.sample_size == 32 and model.config.in_channels == 3
    eps = unet_output(model, inputs)
    assert eps.shape == (2, 3, 32, 32) and torch.isfinite(eps).all()


def test_tiny_sizes_are_ordered(measured):
    assert measured["tiny-sd"][0] < measured["tiny-lite"][0] < measured["tiny-teacher"][0]
    assert measured["tiny-sd"][1] < measured["tiny-lite"][1]


def test_sd_f4_runs_on_cpu(unet_output):
    torch.manual_seed(0)
    model = get_preset("sd-f4").build().eval()
    inputs = get_preset("sd-f4").example_inputs(1)
    assert unet_output(model, inputs).shape == (1, 3, 64, 64)


def test_build_overrides_change_the_config():
    model = get_preset("tiny-sd").build(sample_size=16, wavelet_up="split")
    assert model.config.sample_size == 16 and model.config.wavelet_up == "split"
    assert get_preset("tiny-sd").config["sample_size"] == 32  # the preset itself is untouched


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(
        KeyError, match="unknown preset 'sd-f5'; valid: ldm-f4, lite-ldm-f4, sd-f4, .*tiny-sd"
    ):
        get_preset("sd-f5")


def test_example_inputs_follow_a_rectangular_sample_size():
    from slimdiff.models.presets import Preset

    preset = Preset("rect", "", {**get_preset("tiny-sd").config, "sample_size": (16, 32)})
    inputs = preset.example_inputs(2)
    assert inputs["sample"].shape == (2, 3, 16, 32)
    assert preset.build()(**inputs).sample.shape == (2, 3, 16, 32)
