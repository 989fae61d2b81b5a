"""Named architectures with the paper's figures (README, "Presets and the paper's numbers").

Each preset is a diffusers config for `SlimUNet2DModel` (unconditional) or `SlimUNet2DConditionModel`
(class or text context) plus the params / MACs the paper reports for it, so `slimdiff profile` can show
ours next to theirs. Teachers follow the CompVis latent-diffusion configs; "lite" models are the same
with base channels 64; "sd" models are the lite ones with wavelet-gated down/up-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import ModelMixin

from slimdiff.errors import ConfigError
from slimdiff.models.architectures import (
    PAPER_NORM_GROUPS,  # noqa: F401 (re-exported)
    cin_config,
    f4_config,
    kl8_config,
    txt_config,
)
from slimdiff.models.architectures import unet_config as _unet_config
from slimdiff.models.inputs import CONTEXT_TOKENS, example_inputs
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel, zero_init_residuals

# GroupNorm in the CPU-sized presets: a fixed number of channels per group, so the groups scale with the width
# (tiny-teacher, base 32: 8 groups; the base-16 students: 4). With a fixed 8 groups the 16-channel students had
# 2 channels per group and could not learn to remove a uniform colour offset from x_t (issue 12; docs/demo/).
# The paper presets keep CompVis' 32 groups at every width (`normalization()` = GroupNorm32(32, ·)): that is the
# architecture the paper's LDM / Lite-LDM / SD numbers were measured with.
TINY_CHANNELS_PER_GROUP = 4


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: dict
    conditional: bool = False
    context_tokens: int = 0  # length of the cross-attention context fed while profiling
    params_paper: float | None = None  # parameters, as reported in the paper
    macs_paper: float | None = None  # MACs of one UNet step, as reported in the paper
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Zero-initialise the output layer, residual branches and attention outputs, as CompVis / ADM do.
    zero_init: bool = True

    @classmethod
    def of_model(cls, name: str, model: ModelMixin) -> Preset:
        """A preset describing an existing UNet (for profiling): its config, a 77-token context if conditional.
        A plain diffusers UNet is the slim class without gates."""
        config = {"wavelet_gating": False, **dict(model.config)}
        conditional = config.get("cross_attention_dim") is not None
        return cls(name, "local model", config, conditional, context_tokens=77 if conditional else 0)

    @property
    def model_class(self) -> type[ModelMixin]:
        return SlimUNet2DConditionModel if self.conditional else SlimUNet2DModel

    def build(self, **overrides) -> ModelMixin:
        """A freshly initialised model; `overrides` change config fields (e.g. sample_size)."""
        model = self.model_class(**{**self.config, **overrides})
        return zero_init_residuals(model) if self.zero_init else model

    def example_inputs(self, batch: int = 1, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Inputs of one UNet step at this preset's native size, for profiling."""
        return example_inputs(self.config, batch, tokens=self.context_tokens or CONTEXT_TOKENS, device=device)


def _tiny(base: int, slim: bool) -> dict:
    # CPU-sized, 32×32 pixel space: used by tests, the demo and the small-scale study.
    return {
        **_unet_config(
            base, (1, 2, 2), (False, False, True), sample_size=32, channels=3, heads=base, slim=slim
        ),
        "norm_num_groups": tiny_norm_groups(base),
    }


def _tiny_conditional(base: int, slim: bool, context: str) -> dict:
    # The tiny layout with cross-attention at the attention level, 16-dim heads. A class model's table starts
    # with 10 classes and a text model's context with CLIP-L's width: a run re-sizes both to its data / encoder.
    mult = (1, 2, 2)
    config = _unet_config(
        base,
        mult,
        (False, False, True),
        sample_size=32,
        channels=3,
        heads=tuple(base * m // 16 for m in mult),
        slim=slim,
        conditional=True,
        cross_attention_dim=64 if context == "class" else 768,
    )
    extra = {"num_context_classes": 10} if context == "class" else {}
    return {**config, **extra, "norm_num_groups": tiny_norm_groups(base)}


def tiny_norm_groups(base: int) -> int:
    """GroupNorm groups of a tiny preset of base width `base`: TINY_CHANNELS_PER_GROUP channels per group."""
    if base % TINY_CHANNELS_PER_GROUP:
        raise ValueError(f"tiny presets need a base width divisible by {TINY_CHANNELS_PER_GROUP}, got {base}")
    return base // TINY_CHANNELS_PER_GROUP


G = 1e9
M = 1e6
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "ldm-f4",
            "LDM teacher, VQ-f4 64×64×3",
            f4_config(224, False),
            params_paper=274.1 * M,
            macs_paper=96.1 * G,
        ),
        Preset(
            "lite-ldm-f4",
            "LDM, base 64, VQ-f4",
            f4_config(64, False),
            params_paper=22.4 * M,
            macs_paper=7.9 * G,
        ),
        Preset(
            "sd-f4",
            "Spectral Diffusion, VQ-f4",
            f4_config(64, True),
            params_paper=21.1 * M,
            macs_paper=6.7 * G,
        ),
        Preset(
            "ldm-kl8",
            "LDM teacher, KL-f8 32×32×4",
            kl8_config(192, False),
            params_paper=295.0 * M,
            macs_paper=18.7 * G,
        ),
        Preset(
            "lite-ldm-kl8",
            "LDM, base 64, KL-f8",
            kl8_config(64, False),
            params_paper=32.8 * M,
            macs_paper=2.1 * G,
        ),
        Preset(
            "sd-kl8",
            "Spectral Diffusion, KL-f8",
            kl8_config(64, True),
            params_paper=33.8 * M,
            macs_paper=2.1 * G,
        ),
        Preset(
            "sd-kl8-replace",
            "sd-kl8 with the res-block samplers replaced by WG-Down/Up",
            kl8_config(64, True, "replace"),
            params_paper=33.8 * M,
            macs_paper=2.1 * G,
        ),
        Preset(
            "ldm-cin",
            "LDM-CFG ImageNet",
            cin_config(192, False),
            True,
            1,
            params_paper=400.9 * M,
            macs_paper=99.8 * G,
        ),
        Preset(
            "lite-ldm-cin",
            "LDM-CFG, base 64",
            cin_config(64, False),
            True,
            1,
            params_paper=47.0 * M,
            macs_paper=11.1 * G,
        ),
        Preset(
            "sd-cin",
            "SD-CFG ImageNet",
            cin_config(64, True),
            True,
            1,
            params_paper=45.4 * M,
            macs_paper=9.9 * G,
        ),
        Preset(
            "sd-cin-table",
            "SD-CFG with the paper table's widths (deepest 256)",
            cin_config(64, True, (1, 2, 3, 4)),
            True,
            1,
            params_paper=45.4 * M,
            macs_paper=9.9 * G,
        ),
        Preset(
            "sd-txt", "SD text-to-image, CLIP 77×768", txt_config(96, True), True, 77, params_paper=77.6 * M
        ),
        Preset(
            "sd-txt-table",
            "SD text with the paper table's widths (128/256/512/512, 32-dim heads)",
            txt_config(128, True, head_dim=32),
            True,
            77,
            params_paper=77.6 * M,
        ),
        Preset("tiny-teacher", "CPU-sized teacher, 32×32×3 pixels", _tiny(32, False)),
        Preset("tiny-lite", "CPU-sized Lite baseline", _tiny(16, False)),
        Preset("tiny-sd", "CPU-sized Spectral Diffusion", _tiny(16, True)),
        Preset(
            "tiny-teacher-class",
            "CPU-sized class-conditional teacher",
            _tiny_conditional(32, False, "class"),
            True,
            1,
        ),
        Preset(
            "tiny-lite-class",
            "CPU-sized class-conditional Lite",
            _tiny_conditional(16, False, "class"),
            True,
            1,
        ),
        Preset(
            "tiny-sd-class", "CPU-sized class-conditional SD", _tiny_conditional(16, True, "class"), True, 1
        ),
        Preset(
            "tiny-teacher-text",
            "CPU-sized text-conditional teacher",
            _tiny_conditional(32, False, "text"),
            True,
            77,
        ),
        Preset(
            "tiny-sd-text", "CPU-sized text-conditional SD", _tiny_conditional(16, True, "text"), True, 77
        ),
    ]
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None


def build_unet(
    name: str, size: int, overrides: dict | None = None, factor: int = 1, latent_channels: int = 3
) -> ModelMixin:
    """A run's UNet: preset `name` with config `overrides`, sized for `size`² images encoded by an autoencoder
    with down-sampling `factor` and `latent_channels` (1 and 3 in pixel space). Mismatches are ConfigErrors
    phrased in the run config's keys (data.size, model_overrides)."""
    if size % factor:
        raise ConfigError(f"data.size {size} is not a multiple of the autoencoder's factor {factor}")
    try:
        unet = get_preset(name).build(**{"sample_size": size // factor, **(overrides or {})})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model_overrides do not fit preset {name}: {error}") from None
    cfg = unet.config
    if cfg.sample_size != size // factor:
        raise ConfigError(
            f"model_overrides.sample_size {cfg.sample_size} ≠ latent size {size // factor} "
            f"(data.size {size} / factor {factor}); drop the override"
        )
    if cfg.in_channels != latent_channels or cfg.out_channels != latent_channels:
        c = latent_channels
        raise ConfigError(
            f"model {name} maps {cfg.in_channels}→{cfg.out_channels} channels but the autoencoder gives "
            f"{c}; set model_overrides: {{in_channels: {c}, out_channels: {c}}}"
        )
    levels = 2 ** (len(cfg.block_out_channels) - 1)
    if cfg.sample_size % levels:
        raise ConfigError(f"latent size {cfg.sample_size} must be a multiple of {levels} for {name}")
    return unet
