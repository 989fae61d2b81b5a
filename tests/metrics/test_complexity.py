"""Parameter and MAC counting against closed forms and ptflops; steps/s against a model of known speed."""

from __future__ import annotations

import time

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from ptflops import get_model_complexity_info
from torch import nn

from slimdiff.metrics.complexity import (
    count_macs,
    count_macs_by_kind,
    seconds_per_call,
    steps_per_second,
    torch_threads,
)
from slimdiff.models.presets import get_preset
from slimdiff.models.size import count_params


def test_conv_macs_closed_form():
    conv = nn.Conv2d(4, 8, 3, padding=1)
    # every output value: C_in · k² multiply-adds
    assert count_macs(conv, {"input": torch.randn(2, 4, 10, 12)}) == 2 * 8 * 10 * 12 * 4 * 3 * 3
    strided = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    assert count_macs(strided, {"input": torch.randn(1, 4, 10, 12)}) == 6 * 5 * 6 * 4 * 3 * 3


def test_linear_macs_closed_form():
    assert count_macs(nn.Linear(16, 32), {"input": torch.randn(3, 5, 16)}) == 3 * 5 * 16 * 32


def _attention_closed_form(batch: int, tokens: int, dim: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    projections = 4 * batch * tokens * dim * inner  # q, k, v and out
    return projections + 2 * batch * heads * tokens * tokens * head_dim  # QKᵀ and AV


def test_attention_macs_closed_form():
    layer = Attention(query_dim=32, heads=4, dim_head=8)
    macs = count_macs(layer, {"hidden_states": torch.randn(2, 10, 32)})
    assert macs == _attention_closed_form(2, 10, 32, 4, 8)


def test_condition_model_counts_attention_matmuls(tiny_condition_unet, unet_inputs, macs_by_kind):
    model = tiny_condition_unet()
    inputs = unet_inputs(model, batch=1)
    with torch.device("meta"):
        meta = tiny_condition_unet()
    conv_linear, attention = macs_by_kind(meta, {k: v.to("meta") for k, v in inputs.items()})
    assert attention > 0
    assert count_macs(model, inputs) == conv_linear + attention
    assert count_macs_by_kind(model, inputs) == {
        "conv_linear": conv_linear,
        "attention": attention,
        "total": conv_linear + attention,
    }


def test_unconditional_model_counts_attention_matmuls(tiny_unet, unet_inputs, macs_by_kind):
    model = tiny_unet()
    inputs = unet_inputs(model, batch=1)
    with torch.device("meta"):
        meta = tiny_unet()
    assert count_macs(model, inputs) == sum(macs_by_kind(meta, {k: v.to("meta") for k, v in inputs.items()}))


def test_count_macs_restores_the_attention_processors(tiny_condition_unet, unet_inputs):
    model = tiny_condition_unet()
    model.set_attn_processor(AttnProcessor2_0())
    count_macs(model, unet_inputs(model, batch=1))
    assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-lite"])
def test_macs_agree_with_ptflops(name):
    preset = get_preset(name)
    torch.manual_seed(0)
    model = preset.build().eval()
    ours = count_macs(model, preset.example_inputs(1))
    theirs, params = get_model_complexity_info(
        model,
        (3, 32, 32),
        input_constructor=lambda _: preset.example_inputs(1),
        as_strings=False,
        backend="aten",
        print_per_layer_stat=False,
    )
    assert params == count_params(model)
    # ptflops also counts bias additions; the rest is the same convs and matmuls.
    assert ours == pytest.approx(theirs, rel=0.02)


def test_macs_scale_with_the_batch(on_meta):
    model, inputs = on_meta(get_preset("tiny-sd"))
    _, inputs4 = on_meta(get_preset("tiny-sd"), batch=4)
    assert count_macs(model, inputs4) == 4 * count_macs(model, inputs)


def test_count_params_closed_form():
    assert count_params(nn.Conv2d(4, 8, 3)) == 8 * 4 * 9 + 8
    assert count_params(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2, bias=False))) == 3 * 5 + 5 + 5 * 2


class _FixedSpeed(nn.Module):
    """A "model" whose every step advances a fake clock by exactly `seconds`."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.now, self.calls = seconds, 0.0, 0

    def clock(self) -> float:
        return self.now

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.now += self.seconds
        return sample


def test_steps_per_second_of_a_model_of_known_speed(monkeypatch):
    # A fake clock instead of sleeping: the measured speed is exact on any machine, however busy.
    model = _FixedSpeed(1 / 64)
    monkeypatch.setattr(time, "perf_counter", model.clock)
    speed = steps_per_second(model, {"sample": torch.zeros(1)}, min_seconds=0.25, warmup=2)
    assert speed == 64  # 16 timed steps of 1/64 s (exact in binary) fill the 0.25 s
    assert model.calls == 2 + 16  # the warm-up steps are not timed
    assert not model.training


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    with pytest.raises(RuntimeError, match="inside"), torch_threads(wanted):
        assert torch.get_num_threads() == wanted
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_seconds_per_call_is_the_median_after_one_untimed_warm_up(monkeypatch):
    now, durations = [0.0], iter([5.0, 0.25, 9.0, 0.5, 0.5])  # warm-up 5 s, then a slow outlier
    calls = []

    def call():
        calls.append(1)
        now[0] += next(durations)

    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    assert seconds_per_call(call, min_seconds=1.0, min_runs=3) == 0.5  # median of 0.25, 9, 0.5
    assert len(calls) == 4  # 3 timed runs already fill the second; the warm-up is not counted
    durations = iter([1.0, 0.25, 0.25, 0.25, 0.25, 0.25])
    calls.clear()
    assert seconds_per_call(call, min_seconds=1.0, min_runs=3) == 0.25
    assert len(calls) == 5  # runs go on until they fill min_seconds
