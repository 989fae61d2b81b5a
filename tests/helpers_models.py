"""Small slim UNets and per-model checks shared by the model, preset, complexity and CLI tests."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ModelMixin
from torch.utils.flop_counter import FlopCounterMode

from slimdiff.models.presets import Preset
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel

ATTENTION_OPS = ("aten.bmm", "aten.baddbmm")


def small_unet_config(**overrides) -> dict:
    """An unconditional config with one plain and one attention level: builds and runs in milliseconds."""
    return {
        "sample_size": 16,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (16, 32),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
        **overrides,
    }


def small_condition_config(**overrides) -> dict:
    """A class-context conditional config (5 classes + the "no class" row) of the same size."""
    return {
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (16, 32),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "attention_head_dim": 4,
        "cross_attention_dim": 24,
        "norm_num_groups": 8,
        "num_context_classes": 5,
        **overrides,
    }


def seeded(cls: type[ModelMixin], config: dict, seed: int = 0) -> ModelMixin:
    torch.manual_seed(seed)
    return cls(**config).eval()


def small_unet(**overrides) -> SlimUNet2DModel:
    return seeded(SlimUNet2DModel, small_unet_config(**overrides))


def small_condition_unet(**overrides) -> SlimUNet2DConditionModel:
    return seeded(SlimUNet2DConditionModel, small_condition_config(**overrides))


def unet_inputs(model: ModelMixin, batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Deterministic inputs of one step: noisy sample, distinct timesteps, and a class label if needed."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "sample": torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g),
        "timestep": torch.arange(batch) * 300 + 17,
    }
    if cfg.get("num_context_classes"):
        inputs["class_labels"] = torch.arange(batch) % (cfg.num_context_classes + 1)
    return inputs


@torch.no_grad()
def output(model: ModelMixin, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).sample


def assert_round_trip(model: ModelMixin, folder: Path, loaded: ModelMixin) -> None:
    """`loaded` (from `folder`) is the same class and gives bit-identical outputs in eval mode."""
    assert type(loaded) is type(model)
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    inputs = unet_inputs(model)
    assert torch.equal(output(model, inputs), output(loaded.eval(), inputs))


def on_meta(preset: Preset, batch: int = 1) -> tuple[ModelMixin, dict[str, torch.Tensor]]:
    """The preset's model and example inputs on the meta device: no memory, built in milliseconds."""
    with torch.device("meta"):
        return preset.build(), preset.example_inputs(batch, device="meta")


def macs_by_kind(model: ModelMixin, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(conv + linear MACs, attention-matmul MACs) of one forward call, independent of `count_macs`.

    On the meta device `scaled_dot_product_attention` decomposes into batched matmuls, so attention is
    counted whichever processor the model uses."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(flops.get(op, 0) for op in ATTENTION_OPS)
    return (sum(flops.values()) - attention) // 2, attention // 2
