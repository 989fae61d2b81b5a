"""The diffusers configs of the paper's architectures (README, "Presets and the paper's numbers").

Teachers follow the CompVis latent-diffusion configs level by level (each CompVis level becomes a diffusers
`DownBlock2D` / `AttnDownBlock2D` (`CrossAttn…` with a context) with two res-blocks, mirrored on the way up);
"lite" models are the same with base channels 64; "sd" models are the lite ones with wavelet gating.
`slimdiff.models.presets` names them; `slimdiff.models.compvis` maps their weights to and from CompVis keys.
"""

from __future__ import annotations

# CompVis' `normalization()` is GroupNorm32(32, ·) at every width: the architecture the paper's LDM / Lite-LDM / SD
# numbers were measured with.
PAPER_NORM_GROUPS = 32


def unet_config(
    base: int,
    mult,
    attention,
    *,
    sample_size: int,
    channels: int,
    heads,
    slim: bool,
    conditional: bool = False,
    **extra,
) -> dict:
    """A diffusers UNet config: block widths base × mult, attention (or cross-attention) where `attention`."""
    kind = "CrossAttn" if conditional else "Attn"
    levels = range(len(mult))
    return {
        "sample_size": sample_size,
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": tuple(base * m for m in mult),
        "down_block_types": tuple(f"{kind}DownBlock2D" if attention[i] else "DownBlock2D" for i in levels),
        "up_block_types": tuple(
            f"{kind}UpBlock2D" if attention[i] else "UpBlock2D" for i in reversed(levels)
        ),
        "layers_per_block": 2,
        "attention_head_dim": heads,
        "norm_num_groups": PAPER_NORM_GROUPS,
        "wavelet_gating": slim,
        **extra,
    }


def f4_config(base: int, slim: bool) -> dict:
    # CompVis ldm f4 (FFHQ / CelebA-HQ / Bedroom): 64×64×3 latents, mult 1,2,3,4, attention below level 0.
    return unet_config(
        base, (1, 2, 3, 4), (False, True, True, True), sample_size=64, channels=3, heads=32, slim=slim
    )


def kl8_config(base: int, slim: bool, resnet_samplers: str = "gate") -> dict:
    # CompVis ldm kl8 (Church): 32×32×4 latents, mult 1,2,2,4,4, attention at 32/16/8/4 with 8 heads at every
    # level, scale-shift norm and res-block up/down-sampling — also at the attention-free level, which diffusers'
    # UpBlock2D would give a conv up-sampler (it ignores upsample_type). Slim: the res-block samplers stay and are
    # gated ("gate", the paper's 33.8M > Lite's 32.8M) or are replaced by WG-Down / WG-Up ("replace").
    config = unet_config(
        base,
        (1, 2, 2, 4, 4),
        (True, True, True, True, False),
        sample_size=32,
        channels=4,
        heads=base // 8,
        slim=slim,
        resnet_time_scale_shift="scale_shift",
        downsample_type="resnet",
        upsample_type="resnet",
        attention_heads=8,
        attn_norm_num_groups=PAPER_NORM_GROUPS,  # diffusers drops the middle attention's GroupNorm with scale-shift
        **({"resnet_samplers": resnet_samplers} if slim else {}),
    )
    up = tuple("ResnetUpsampleBlock2D" if t == "UpBlock2D" else t for t in config["up_block_types"])
    return {**config, "up_block_types": up}


def cin_config(base: int, slim: bool, mult: tuple[int, ...] = (1, 2, 3, 5)) -> dict:
    # CompVis cin256-v2: 64×64×3 VQ-f4 latents, mult 1,2,3,5, cross-attention at ds 2/4/8 with 32-dim heads
    # over a one-token class context (1000 classes + the "no class" row) of width 512. The paper's architecture
    # table gives SD-CFG a deepest level of 256 (mult 1,2,3,4): the `-table` preset.
    return unet_config(
        base,
        mult,
        (False, True, True, True),
        sample_size=64,
        channels=3,
        heads=tuple(base * m // 32 for m in mult),
        cross_attention_dim=512,
        conditional=True,
        slim=slim,
        num_context_classes=1000,
    )


def txt_config(base: int, slim: bool, head_dim: int | None = None) -> dict:
    # Stable-Diffusion-style text UNet on KL-f8 latents (32×32×4 at 256 px), CLIP ViT-L/14 context 77×768; 8 heads,
    # or heads of `head_dim` channels (the paper's table: 128/256/512/512 with 32-dim heads, the `-table` preset).
    mult = (1, 2, 4, 4)
    return unet_config(
        base,
        mult,
        (True, True, True, False),
        sample_size=32,
        channels=4,
        heads=8 if head_dim is None else tuple(base * m // head_dim for m in mult),
        cross_attention_dim=768,
        conditional=True,
        slim=slim,
    )
