"""Model complexity: parameters, MACs of one UNet step, and throughput in UNet steps per second.

MACs come from torch's `FlopCounterMode` (one MAC = two FLOPs of a matmul or convolution). On CPU the
fused `scaled_dot_product_attention` kernel is not counted, so while counting the attention layers run
the classic processor, whose two batched matmuls (QKᵀ and AV) are.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from diffusers.models.attention_processor import AttnProcessor
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def classic_attention(model: nn.Module):
    """Run diffusers attention with explicit matmuls (countable), restoring the processors afterwards."""
    if not hasattr(model, "attn_processors"):
        yield
        return
    saved = model.attn_processors
    if saved:
        model.set_attn_processor(AttnProcessor())
    try:
        yield
    finally:
        if saved:
            model.set_attn_processor(saved)


@torch.no_grad()
def count_macs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """MACs of one forward call `model(**inputs)` at the batch size of `inputs`."""
    model.eval()
    with classic_attention(model), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def steps_per_second(model: nn.Module, inputs: dict[str, torch.Tensor], min_seconds: float = 1.0, warmup: int = 1) -> float:
    """UNet steps per second (one step = one forward call on the whole batch), timed for `min_seconds`."""
    model.eval()
    for _ in range(warmup):
        model(**inputs)
    steps, start = 0, time.perf_counter()
    while True:
        model(**inputs)
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return steps / elapsed
