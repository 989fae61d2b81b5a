"""CompVis first-stage autoencoders (VQ-f4, KL-f8) ↔ diffusers `VQModel` / `AutoencoderKL` weights.

The LDM checkpoints carry their autoencoder as `first_stage_model.*`; the tensors are the same, only named
differently (and the mid attention's 1×1 convolutions are linear layers in diffusers):

    encoder.down.i.block.j / .downsample      encoder.down_blocks.i.resnets.j / .downsamplers.0
    decoder.up.(n−1−i).block.j / .upsample    decoder.up_blocks.i.resnets.j / .upsamplers.0
    mid.block_1 / block_2 / attn_1            mid_block.resnets.0 / resnets.1 / attentions.0
    nin_shortcut, norm_out                    conv_shortcut, conv_norm_out
    attn norm, q, k, v, proj_out              group_norm, to_q, to_k, to_v, to_out.0
    quant_conv, post_quant_conv, quantize.embedding   (the same)

`first_stage(state)` builds the diffusers autoencoder a CompVis first-stage state dict fits.
"""

from __future__ import annotations

import re

import torch
from diffusers import AutoencoderKL, VQModel
from torch import nn

from slimdiff.errors import ModelError

ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def first_stage(state: dict[str, torch.Tensor], scaling_factor: float = 1.0) -> nn.Module:
    """The diffusers autoencoder whose shape the CompVis first-stage `state` has: VQ when it holds a codebook
    (LDM's VQ-f4: ch 128, mult 1,2,4, 8192 codes of 3 channels), KL otherwise (KL-f8: ch 128, mult 1,2,4,4,
    4 channels). Widths, levels, res-blocks per level and latent channels are read from the tensors."""
    try:
        levels = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.down."))
        widths = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels))
        blocks = 1 + max(int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block."))
        latent = state["decoder.conv_in.weight"].shape[1]
    except (KeyError, ValueError, IndexError):
        raise ModelError("the checkpoint's first_stage_model is not a CompVis Encoder / Decoder") from None
    common = {
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": widths,
        "layers_per_block": blocks,
        "latent_channels": latent,
        "sample_size": 256,
        "scaling_factor": scaling_factor,
    }
    if "quantize.embedding.weight" in state:
        codes, dim = state["quantize.embedding.weight"].shape
        return VQModel(**common, num_vq_embeddings=codes, vq_embed_dim=dim)
    return AutoencoderKL(**common)


def compvis_name(name: str, up_levels: int) -> str:
    """The CompVis name of one diffusers autoencoder tensor."""
    rules = [
        (r"^(encoder)\.down_blocks\.(\d+)\.resnets\.", r"\1.down.\2.block."),
        (r"^(encoder)\.down_blocks\.(\d+)\.attentions\.", r"\1.down.\2.attn."),
        (r"^(encoder)\.down_blocks\.(\d+)\.downsamplers\.0\.", r"\1.down.\2.downsample."),
        (r"\.mid_block\.resnets\.0\.", ".mid.block_1."),
        (r"\.mid_block\.resnets\.1\.", ".mid.block_2."),
        (r"\.mid_block\.attentions\.0\.", ".mid.attn_1."),
        (r"\.conv_shortcut\.", ".nin_shortcut."),
        (r"\.conv_norm_out\.", ".norm_out."),
    ]
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    match = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets|attentions|upsamplers\.0)\.(.*)$", name)
    if match:
        level, part, rest = match.groups()
        part = {"resnets": "block", "attentions": "attn", "upsamplers.0": "upsample"}[part]
        name = f"decoder.up.{up_levels - 1 - int(level)}.{part}.{rest}"
    for ours, theirs in ATTENTION.items():
        name = re.sub(rf"\.(attn_1|attn\.\d+)\.{re.escape(ours)}\.", rf".\1.{theirs}.", name)
    return name


def _is_projection(name: str) -> bool:
    return any(f".{p}.weight" in name for p in PROJECTIONS) and (".attentions." in name)


def vae_from_compvis(state: dict[str, torch.Tensor], vae: nn.Module) -> dict[str, torch.Tensor]:
    """`state` (CompVis first-stage names, without the `first_stage_model.` prefix) renamed for `vae`."""
    up_levels = len(vae.decoder.up_blocks)
    ours = dict(vae.state_dict())
    names = {compvis_name(name, up_levels): name for name in ours}
    missing = sorted(set(names) - set(state))
    extra = sorted(k for k in set(state) - set(names) if not k.startswith("loss."))
    if missing or extra:
        raise ModelError(
            f"the checkpoint's autoencoder is not the LDM first stage this preset uses: {len(missing)} tensors "
            f"missing ({', '.join(missing[:3]) or '—'}), {len(extra)} unexpected ({', '.join(extra[:3]) or '—'})"
        )
    converted = {}
    for compvis, name in names.items():
        value = state[compvis]
        converted[name] = (value.reshape(ours[name].shape) if _is_projection(name) else value).contiguous()
    return converted


def vae_to_compvis(state: dict[str, torch.Tensor], vae: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of `vae_from_compvis` (1×1 convolution shapes for the attention projections)."""
    up_levels = len(vae.decoder.up_blocks)
    return {
        compvis_name(name, up_levels): value[..., None, None] if _is_projection(name) else value
        for name, value in state.items()
    }
