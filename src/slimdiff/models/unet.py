"""Slim UNets: diffusers UNets whose down/up-samplers can be replaced by wavelet gates.

`SlimUNet2DModel` and `SlimUNet2DConditionModel` take every argument of their diffusers parents plus
`wavelet_gating`, `wavelet_up` and `gate_reduction`; they save and load with `save_pretrained` /
`from_pretrained` (safetensors + JSON config) and run with every diffusers scheduler.
"""

from __future__ import annotations

import inspect

import torch

# ModelMixin is looked up in this module by diffusers' component loader, which reads the base classes it knows from
# the module a model_index.json entry names: folders saved by slimdiff 0.1 list ["slimdiff.models.unet", …].
from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel  # noqa: F401
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from slimdiff.models.gating import WGDown, WGUp

# Defaults of the fields slimdiff adds to the diffusers configs. `resnet_samplers`: what wavelet gating does to a
# res-block sampler (CompVis `resblock_updown`): "replace" it by WG-Down/WG-Up, or "gate" it — keep the block and
# make its inner nearest / average-pool resampling wavelet-gated. `attention_heads`: a fixed head count in every
# attention layer (CompVis `num_heads`); None keeps diffusers' channels / attention_head_dim.
SLIM_FIELDS = {
    "wavelet_gating": True,
    "wavelet_up": "repeat",
    "gate_reduction": 4,
    "resnet_samplers": "replace",
    "attention_heads": None,
}
RESNET_SAMPLER_MODES = ("replace", "gate")
CONDITION_FIELDS = {"num_context_classes": None}


def _sampler_channels(sampler: nn.Module) -> int:
    channels = sampler.in_channels if isinstance(sampler, ResnetBlock2D) else sampler.channels
    out = getattr(sampler, "out_channels", channels)
    if out != channels:
        raise ValueError(
            f"wavelet gating keeps the channel count, but {type(sampler).__name__} maps {channels}→{out}"
        )
    return channels


def apply_wavelet_gating(
    unet: nn.Module, up_mode: str = "repeat", reduction: int = 4, resnet_samplers: str = "replace"
) -> None:
    """Replace every down-sampler of `unet` by WG-Down and every up-sampler by WG-Up, in place. With
    `resnet_samplers="gate"` a res-block sampler stays and only its inner resampling (applied to the block's input
    and to its residual branch, one gate per block) becomes WG-Down / WG-Up."""
    if resnet_samplers not in RESNET_SAMPLER_MODES:
        raise ValueError(
            f"unknown resnet_samplers {resnet_samplers!r}; valid: {', '.join(RESNET_SAMPLER_MODES)}"
        )
    keep = resnet_samplers == "gate"
    for block in unet.down_blocks:
        for i, s in enumerate(getattr(block, "downsamplers", None) or ()):
            if keep and isinstance(s, ResnetBlock2D):
                s.downsample = WGDown(_sampler_channels(s), reduction)
            else:
                block.downsamplers[i] = WGDown(_sampler_channels(s), reduction)
    for block in unet.up_blocks:
        for i, s in enumerate(getattr(block, "upsamplers", None) or ()):
            if keep and isinstance(s, ResnetBlock2D):
                s.upsample = WGUp(_sampler_channels(s), reduction, up_mode)
            else:
                block.upsamplers[i] = WGUp(_sampler_channels(s), reduction, up_mode)


def fix_attention_heads(unet: nn.Module, heads: int) -> None:
    """Give every attention layer of `unet` `heads` heads of width channels / heads (CompVis `num_heads`), in
    place; the weights do not change shape, only how they are split into heads."""
    for module in unet.modules():
        if isinstance(module, Attention):
            if module.inner_dim % heads:
                raise ValueError(f"attention width {module.inner_dim} is not divisible by {heads} heads")
            module.heads = module.sliceable_head_dim = heads
            module.scale = (module.inner_dim // heads) ** -0.5 if module.scale_qk else 1.0


def _slim_setup(unet: nn.Module, gating: bool, up: str, reduction: int, resnet_samplers: str, heads) -> None:
    if gating:
        apply_wavelet_gating(unet, up, reduction, resnet_samplers)
    if heads is not None:
        fix_attention_heads(unet, heads)


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


class _GatedOnlyWhenConfigured:
    """A config that does not mention `wavelet_gating` — a plain diffusers UNet's — loads plain: gating comes only
    from a config that asks for it. (Built in code, the classes keep their default, gating on.)"""

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        kwargs.setdefault("wavelet_gating", bool(config_dict.get("wavelet_gating", False)))
        return super().extract_init_dict(config_dict, **kwargs)


class SlimUNet2DModel(_GatedOnlyWhenConfigured, UNet2DModel):
    """`UNet2DModel` with optional wavelet-gated down/up-sampling (unconditional or class-embedding)."""

    def __init__(
        self,
        *args,
        wavelet_gating=True,
        wavelet_up="repeat",
        gate_reduction=4,
        resnet_samplers="replace",
        attention_heads=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        _slim_setup(self, wavelet_gating, wavelet_up, gate_reduction, resnet_samplers, attention_heads)

    _extend_signature(__init__, UNet2DModel, SLIM_FIELDS)
    __init__ = register_to_config(__init__)


class SlimUNet2DConditionModel(_GatedOnlyWhenConfigured, UNet2DConditionModel):
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
        resnet_samplers="replace",
        attention_heads=None,
        num_context_classes=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        _slim_setup(self, wavelet_gating, wavelet_up, gate_reduction, resnet_samplers, attention_heads)
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
