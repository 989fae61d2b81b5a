"""What one UNet step takes: the sample size as (H, W) and example inputs built from a UNet config.

Every caller that needs a UNet's input shape or a batch of example inputs (profiling, MACs, throughput, ONNX
export, distillation probes, tests) goes through these two functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

CONTEXT_TOKENS = 77  # length of the example text context (CLIP's); graphs keep the token axis dynamic


def sample_hw(config: Mapping) -> tuple[int, int]:
    """A UNet config's `sample_size` as (height, width); diffusers allows an int or a pair."""
    size = config["sample_size"]
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


def condition_input(config: Mapping) -> str | None:
    """The conditioning input a UNet takes besides (sample, timestep): class_labels, encoder_hidden_states,
    or None for an unconditional model."""
    if config.get("num_context_classes") or config.get("num_class_embeds"):
        return "class_labels"
    if config.get("cross_attention_dim") is not None:
        return "encoder_hidden_states"
    return None


def example_inputs(
    config: Mapping,
    batch: int = 1,
    seed: int = 0,
    tokens: int = CONTEXT_TOKENS,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Seeded random inputs of one UNet step: noisy sample, integer timesteps in [0, 1000) and the
    conditioning the config asks for (drawn on the CPU, then moved to `device`, e.g. "meta")."""
    g = torch.Generator().manual_seed(seed)
    height, width = sample_hw(config)
    cpu = {"generator": g, "device": "cpu"}
    inputs = {
        "sample": torch.randn(batch, config["in_channels"], height, width, **cpu),
        "timestep": torch.randint(0, 1000, (batch,), **cpu),
    }
    condition = condition_input(config)
    if condition == "class_labels":
        classes = config.get("num_context_classes") or config.get("num_class_embeds")
        inputs[condition] = torch.randint(0, classes, (batch,), **cpu)
    elif condition == "encoder_hidden_states":
        inputs[condition] = torch.randn(batch, tokens, config["cross_attention_dim"], **cpu)
    return {k: v.to(device) for k, v in inputs.items()}
