"""Slim UNets: diffusers UNets whose down/up-samplers can be replaced by wavelet gates.

`SlimUNet2DModel` and `SlimUNet2DConditionModel` take every argument of their diffusers parents plus
`wavelet_gating`, `wavelet_up` and `gate_reduction`; they save and load with `save_pretrained` /
`from_pretrained` (safetensors + JSON config) and run with every diffusers scheduler.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from slimdiff.models.gating import WGDown, WGUp

# Defaults of the fields slimdiff adds to the diffusers configs.
SLIM_FIELDS = {"wavelet_gating": True, "wavelet_up": "repeat", "gate_reduction": 4}
CONDITION_FIELDS = {"num_context_classes": None}


def _sampler_channels(sampler: nn.Module) -> int:
    channels = sampler.in_channels if isinstance(sampler, ResnetBlock2D) else sampler.channels
    out = getattr(sampler, "out_channels", channels)
    if out != channels:
        raise ValueError(
            f"wavelet gating keeps the channel count, but {type(sampler).__name__} maps {channels}→{out}"
        )
    return channels


def apply_wavelet_gating(unet: nn.Module, up_mode: str = "repeat", reduction: int = 4) -> None:
    """Replace every down-sampler of `unet` by WG-Down and every up-sampler by WG-Up, in place."""
    for block in unet.down_blocks:
        if getattr(block, "downsamplers", None) is not None:
            block.downsamplers = nn.ModuleList(
                WGDown(_sampler_channels(s), reduction) for s in block.downsamplers
            )
    for block in unet.up_blocks:
        if getattr(block, "upsamplers", None) is not None:
            block.upsamplers = nn.ModuleList(
                WGUp(_sampler_channels(s), reduction, up_mode) for s in block.upsamplers
            )


def zero_init_residuals(unet: nn.Module) -> nn.Module:
    """Initialise `unet` the way the CompVis / ADM UNets are (`zero_module`): the output convolution, the last
    convolution of every residual block and the output projection of every attention block start at zero, so
    each block starts as the identity and the model's first prediction is ε̂ = 0. Returns `unet`, changed in
    place. (diffusers initialises these layers randomly; measured on the tiny presets, see docs/demo/.)"""
    targets = [unet.conv_out]
    in_transformer = set()
    for module in unet.modules():
        if type(module).__name__ == "Transformer2DModel":
            targets.append(
                module.proj_out
            )  # CompVis SpatialTransformer.proj_out; its inner blocks stay random
            in_transformer.update(id(m) for m in module.modules())
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            targets.append(module.conv2)
        elif isinstance(module, Attention) and id(module) not in in_transformer:
            targets.append(module.to_out[0])  # CompVis AttentionBlock.proj_out
    with torch.no_grad():
        for layer in targets:
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
    return unet


def _extend_signature(init, parent: type, fields: dict) -> None:
    # diffusers reads the config keys from the __init__ signature; deriving it from the parent keeps every
    # parent argument in the config without copying a long list that changes between diffusers releases.
    base = inspect.signature(parent.__init__)
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in fields.items()]
    init.__signature__ = base.replace(parameters=[*base.parameters.values(), *extra])


class SlimUNet2DModel(UNet2DModel):
    """`UNet2DModel` with optional wavelet-gated down/up-sampling (unconditional or class-embedding)."""

    def __init__(self, *args, wavelet_gating=True, wavelet_up="repeat", gate_reduction=4, **kwargs):
        super().__init__(*args, **kwargs)
        if wavelet_gating:
            apply_wavelet_gating(self, wavelet_up, gate_reduction)

    _extend_signature(__init__, UNet2DModel, SLIM_FIELDS)
    __init__ = register_to_config(__init__)


class SlimUNet2DConditionModel(UNet2DConditionModel):
    """`UNet2DConditionModel` with optional wavelet gating.

    With `num_context_classes = K` it also owns a (K + 1) × cross_attention_dim class table whose rows are
    fed as a one-token cross-attention context (LDM's class-conditional ImageNet models); label K is the
    "no class" row used for classifier-free guidance.
    """

    def __init__(
        self,
        *args,
        wavelet_gating=True,
        wavelet_up="repeat",
        gate_reduction=4,
        num_context_classes=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if wavelet_gating:
            apply_wavelet_gating(self, wavelet_up, gate_reduction)
        self.class_context = None
        if num_context_classes is not None:
            self.class_context = nn.Embedding(num_context_classes + 1, self.config.cross_attention_dim)

    _extend_signature(__init__, UNet2DConditionModel, {**SLIM_FIELDS, **CONDITION_FIELDS})
    __init__ = register_to_config(__init__)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        **kwargs,
    ):
        if self.class_context is not None and class_labels is not None:
            if encoder_hidden_states is not None:
                raise ValueError(
                    "pass either class_labels or encoder_hidden_states to a class-context model, not both"
                )
            encoder_hidden_states = self.class_context(class_labels)[:, None]
            class_labels = None
        if encoder_hidden_states is None:
            raise ValueError(
                "this model needs encoder_hidden_states (or class_labels for a class-context model)"
            )
        return super().forward(sample, timestep, encoder_hidden_states, class_labels, **kwargs)
