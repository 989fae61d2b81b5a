"""CompVis latent-diffusion UNet weights ↔ our UNets (README, "Teachers from the paper's checkpoints").

The CompVis `openaimodel.UNetModel` (the LDM checkpoints of FFHQ, CelebA-HQ, LSUN-Bedroom and LSUN-Church) and
a plain `SlimUNet2DModel` built from an `ldm-*` / `lite-ldm-*` preset hold the same tensors under other names:

    time_embed.0 / .2                 time_embedding.linear_1 / linear_2
    input_blocks.0.0                  conv_in
    input_blocks.N.0 / .1             down_blocks.i.resnets.j / attentions.j      (N counts levels × (L + 1))
    input_blocks.N.0 (level end)      down_blocks.i.downsamplers.0               (Downsample .op → .conv, or a ResBlock)
    middle_block.0 / .1 / .2          mid_block.resnets.0 / attentions.0 / resnets.1
    output_blocks.N.0 / .1 / last     up_blocks.i.resnets.j / attentions.j / upsamplers.0
    out.0 / out.2                     conv_norm_out / conv_out
    ResBlock in_layers.0 / .2, emb_layers.1, out_layers.0 / .3, skip_connection
                                      norm1 / conv1, time_emb_proj, norm2 / conv2, conv_shortcut
    AttentionBlock norm, qkv (3C, C, 1), proj_out (C, C, 1)
                                      group_norm, to_q / to_k / to_v (C, C), to_out.0 (C, C)

The fused qkv is laid out per head ("legacy" order, QKVAttentionLegacy: head h holds q, k, v of width C / H in
turn), so splitting it needs the head count — which is why the Church presets fix 8 heads at every level.
`from_compvis(state, model)` renames a CompVis UNet state dict (without the `model.diffusion_model.` prefix) for
`model`; `to_compvis(state, model)` is its inverse. Both are pure renames and reshapes: no value changes.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from slimdiff.errors import ModelError

RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
TOP = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}


def _modules(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(CompVis prefix, our prefix, our module) for every resnet, attention and sampler of `model`."""
    pairs = []
    index = 1
    for i, block in enumerate(model.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            pairs.append((f"input_blocks.{index}.0", f"down_blocks.{i}.resnets.{j}", resnet))
            if attentions:
                pairs.append((f"input_blocks.{index}.1", f"down_blocks.{i}.attentions.{j}", attentions[j]))
            index += 1
        if getattr(block, "downsamplers", None):
            pairs.append(
                (f"input_blocks.{index}.0", f"down_blocks.{i}.downsamplers.0", block.downsamplers[0])
            )
            index += 1
    mid = model.mid_block
    pairs += [("middle_block.0", "mid_block.resnets.0", mid.resnets[0])]
    pairs += [("middle_block.1", "mid_block.attentions.0", mid.attentions[0])] if mid.attentions else []
    pairs += [(f"middle_block.{2 if mid.attentions else 1}", "mid_block.resnets.1", mid.resnets[1])]
    index = 0
    for i, block in enumerate(model.up_blocks):
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            pairs.append((f"output_blocks.{index}.0", f"up_blocks.{i}.resnets.{j}", resnet))
            if attentions:
                pairs.append((f"output_blocks.{index}.1", f"up_blocks.{i}.attentions.{j}", attentions[j]))
            if j == len(block.resnets) - 1 and getattr(block, "upsamplers", None):
                k = 2 if attentions else 1
                pairs.append(
                    (f"output_blocks.{index}.{k}", f"up_blocks.{i}.upsamplers.0", block.upsamplers[0])
                )
            index += 1
    return pairs


def _names(model: nn.Module) -> list[tuple[str, str, Attention | None]]:
    """(CompVis name, our name, the attention layer when the tensor is part of one) for every tensor of `model`,
    except that an attention's q, k, v map to one CompVis qkv name three times."""
    names = [(f"{c}.{p}", f"{d}.{p}", None) for c, d in TOP.items() for p in ("weight", "bias")]
    for compvis, ours, module in _modules(model):
        own = {name for name, _ in module.named_parameters()}
        if isinstance(module, ResnetBlock2D):
            for c, d in RESNET.items():
                names += [
                    (f"{compvis}.{c}.{p}", f"{ours}.{d}.{p}", None)
                    for p in ("weight", "bias")
                    if f"{d}.{p}" in own
                ]
            if own - {f"{d}.{p}" for d in RESNET.values() for p in ("weight", "bias")}:
                raise ModelError(
                    f"{ours} holds tensors CompVis ResBlocks do not have (a wavelet-gated model?)"
                )
        elif isinstance(module, Attention):
            names += [(f"{compvis}.norm.{p}", f"{ours}.group_norm.{p}", None) for p in ("weight", "bias")]
            names += [(f"{compvis}.proj_out.{p}", f"{ours}.to_out.0.{p}", None) for p in ("weight", "bias")]
            names += [
                (f"{compvis}.qkv.{p}", f"{ours}.{q}.{p}", module)
                for q in ("to_q", "to_k", "to_v")
                for p in ("weight", "bias")
            ]
        elif set(own) == {"conv.weight", "conv.bias"}:  # conv Downsample (.op) / Upsample (.conv)
            name = "op" if ".downsamplers." in ours else "conv"
            names += [(f"{compvis}.{name}.{p}", f"{ours}.conv.{p}", None) for p in ("weight", "bias")]
        else:
            raise ModelError(
                f"{ours} ({type(module).__name__}) has no CompVis counterpart (a wavelet-gated model?)"
            )
    return names


def _split_qkv(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = qkv.shape[0] // 3
    per_head = qkv.reshape(heads, 3, width // heads, *qkv.shape[1:])
    return tuple(per_head[:, j].reshape(width, *qkv.shape[1:]) for j in range(3))


def from_compvis(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`state` (CompVis UNet names) renamed and reshaped for `model`; unknown or missing tensors are a
    ModelError naming a few of them."""
    names = _names(model)
    missing = sorted({c for c, _, _ in names} - set(state))
    extra = sorted(set(state) - {c for c, _, _ in names})
    if missing or extra:
        raise ModelError(
            f"the checkpoint does not have this preset's layout: {len(missing)} tensors missing "
            f"({', '.join(missing[:3]) or '—'}), {len(extra)} unexpected ({', '.join(extra[:3]) or '—'})"
        )
    ours = {}
    for compvis, name, attention in names:
        value = state[compvis]
        if attention is not None:
            which = ("to_q", "to_k", "to_v").index(name.split(".")[-2])
            value = _split_qkv(value.squeeze(-1) if value.ndim == 3 else value, attention.heads)[which]
        elif name.endswith("to_out.0.weight"):
            value = value.squeeze(-1)
        ours[name] = value.contiguous()
    return ours


def to_compvis(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of `from_compvis`: `model`'s state dict under CompVis UNet names (conv1d shapes for the
    attention projections, as CompVis stores them)."""
    compvis, qkv = {}, {}
    for c, name, attention in _names(model):
        value = state[name]
        if attention is not None:
            qkv.setdefault(c, [attention.heads, {}])[1][name.split(".")[-2]] = value
            continue
        compvis[c] = value[..., None] if c.endswith("proj_out.weight") else value
    for c, (heads, parts) in qkv.items():
        q, k, v = (parts[p].reshape(heads, -1, *parts[p].shape[1:]) for p in ("to_q", "to_k", "to_v"))
        fused = torch.stack([q, k, v], dim=1).reshape(-1, *q.shape[2:])
        compvis[c] = fused[..., None] if c.endswith(".weight") else fused
    return compvis
