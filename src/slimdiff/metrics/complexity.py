"""Model complexity: MACs of one UNet step, throughput in UNet steps per second and seconds per call (parameters:
`models.size`).

MACs come from torch's `FlopCounterMode` (one MAC = two FLOPs of a matmul or convolution). On CPU the
fused `scaled_dot_product_attention` kernel is not counted, so while counting the attention layers run
the classic processor, whose two batched matmuls (QKᵀ and AV) are. The paper's MACs count convolutions
and linear layers only (ours match them within 1% that way), so the two kinds are reported apart.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# QKᵀ and AV of the classic attention processor; everything else counted is a convolution or a linear layer.
ATTENTION_OPS = ("aten.bmm", "aten.baddbmm")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch runs on `n` threads inside the block; the previous count is restored afterwards (timings and
    parallel workers depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def classic_attention(model: nn.Module):
    """Every diffusers `Attention` layer in `model` runs the classic processor (countable matmuls) inside the
    block; the previous processors are restored afterwards."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    saved = [layer.processor for layer in layers]
    for layer in layers:
        layer.set_processor(AttnProcessor())
    try:
        yield
    finally:
        for layer, processor in zip(layers, saved, strict=True):
            layer.set_processor(processor)


@torch.no_grad()
def count_macs_by_kind(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    """MACs of one forward call `model(**inputs)`: `conv_linear` (the paper's convention), `attention`
    (the QKᵀ and AV matmuls) and their `total`."""
    model.eval()
    with classic_attention(model), FlopCounterMode(display=False) as counter:
        model(**inputs)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(flops.get(op, 0) for op in ATTENTION_OPS) // 2
    total = counter.get_total_flops() // 2
    return {"conv_linear": total - attention, "attention": attention, "total": total}


def count_macs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """All MACs of one forward call `model(**inputs)` at the batch size of `inputs`, attention included."""
    return count_macs_by_kind(model, inputs)["total"]


@torch.inference_mode()
def steps_per_second(
    model: nn.Module, inputs: dict[str, torch.Tensor], min_seconds: float = 1.0, warmup: int = 1
) -> float:
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


def seconds_per_call(call: Callable[[], object], min_seconds: float = 1.0, min_runs: int = 3) -> float:
    """Median wall-clock seconds of `call()` after one warm-up call, over at least `min_runs` runs and
    `min_seconds` (the median: one run slowed by another process does not move it)."""
    call()
    times: list[float] = []
    while len(times) < min_runs or sum(times) < min_seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
