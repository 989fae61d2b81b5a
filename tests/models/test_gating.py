"""Wavelet gates: shapes, the gate formula, and WG-Down / WG-Up with gates forced to one or zero.

For a 2×2 block [[a, b], [c, d]] the Haar bands are LL = (a+b+c+d)/2, LH = (a+b−c−d)/2, HL = (a−b+c−d)/2,
HH = (a−b−c+d)/2, which gives the closed forms used below:
    Σ of all four bands = 2a            LL alone = 2 · avg_pool(x)
    IDWT(x, x, x, x) puts 2x in the top-left pixel of each block, IDWT(x, 0, 0, 0) = nearest-upsample(x) / 2.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from slimdiff.models.gating import WG_UP_MODES, WaveletGate, WGDown, WGUp
from slimdiff.wavelets import idwt2

# In float32 sigmoid(50) rounds to exactly 1 and sigmoid(−200) underflows to exactly 0.
ON, OFF = 50.0, -200.0


def _x(shape=(2, 8, 12, 10)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def force_gates(module: WGDown | WGUp, per_band: tuple[float, float, float, float]) -> None:
    """Make the gate constant: W2 weight 0 and its bias a large ± logit per band (LL, LH, HL, HH)."""
    with torch.no_grad():
        module.gate.w2.weight.zero_()
        module.gate.w2.bias.view(4, module.channels).copy_(torch.tensor(per_band)[:, None])


def test_gate_shape_range_and_formula():
    gate = WaveletGate(8, reduction=4)
    x = _x()
    g = gate(x)
    assert g.shape == (2, 4, 8, 1, 1)
    assert ((g > 0) & (g < 1)).all()
    with torch.no_grad():
        expected = torch.sigmoid(gate.w2(F.silu(gate.w1(x.mean(dim=(2, 3))))))
    torch.testing.assert_close(g.flatten(1), expected)
    assert gate.w1.out_features == 2 and gate.w2.out_features == 32  # C → C/r → 4C


def test_gate_depends_on_the_sample():
    gate = WaveletGate(8)
    x = _x()
    x[1] += 3.0  # a different mean feature, so a different gate
    g = gate(x)
    assert not torch.allclose(g[0], g[1])


def test_gate_starts_near_ll_pass():
    bias = WaveletGate(16).w2.bias.view(4, 16)
    torch.testing.assert_close(torch.sigmoid(bias[0]), torch.full((16,), 0.8808), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.sigmoid(bias[1:]), torch.full((3, 16), 0.1192), atol=1e-4, rtol=0)


def test_at_start_both_samplers_weight_a_block_as_a_checkerboard_not_average_pooling():
    # Gates at their initial bias (W2's weight zeroed): (LL, details) = (σ(2), σ(−2)), so a block's pixels are
    # weighted (g_LL + 3 g_d) / 2 top left and (g_LL − g_d) / 2 elsewhere.
    g_ll, g_d = torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(-2.0)).item()
    weights = torch.tensor([[g_ll + 3 * g_d, g_ll - g_d], [g_ll - g_d, g_ll - g_d]]) / 2
    torch.testing.assert_close(weights, torch.tensor([[0.62, 0.38], [0.38, 0.38]]), atol=5e-3, rtol=0)
    down, up = WGDown(8), WGUp(8)
    for module in (down, up):
        with torch.no_grad():
            module.gate.w2.weight.zero_()
    x = _x()
    expected_down = sum(weights[i, j] * x[..., i::2, j::2] for i in range(2) for j in range(2))
    torch.testing.assert_close(down(x), expected_down)
    y = up(x)
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(y[..., i::2, j::2], weights[i, j] * x)


def test_gate_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        WaveletGate(0)
    assert WaveletGate(2, reduction=4).w1.out_features == 1  # hidden width never drops to zero


def test_wg_down_and_up_shapes():
    x = _x()
    assert WGDown(8)(x).shape == (2, 8, 6, 5)
    for mode in WG_UP_MODES:
        assert WGUp(8, mode=mode)(x).shape == (2, 8, 24, 20)


def test_wg_down_all_gates_one_keeps_the_top_left_pixel_twice():
    down = WGDown(8)
    force_gates(down, (ON, ON, ON, ON))
    x = _x()
    torch.testing.assert_close(down(x), 2 * x[..., 0::2, 0::2])


def test_wg_down_all_gates_zero_gives_zero():
    down = WGDown(8)
    force_gates(down, (OFF, OFF, OFF, OFF))
    assert not down(_x()).any()


def test_wg_down_ll_gate_only_is_average_pooling():
    down = WGDown(8)
    force_gates(down, (ON, OFF, OFF, OFF))
    x = _x()
    torch.testing.assert_close(down(x), 2 * F.avg_pool2d(x, 2))


def test_wg_up_all_gates_one_fills_the_top_left_pixel():
    up = WGUp(8)
    force_gates(up, (ON, ON, ON, ON))
    x = _x()
    y = up(x)
    torch.testing.assert_close(y[..., 0::2, 0::2], 2 * x)
    assert not y[..., 1::2, :].any() and not y[..., :, 1::2].any()


def test_wg_up_all_gates_zero_gives_zero():
    up = WGUp(8)
    force_gates(up, (OFF, OFF, OFF, OFF))
    assert not up(_x()).any()


def test_wg_up_ll_gate_only_is_nearest_upsampling():
    up = WGUp(8)
    force_gates(up, (ON, OFF, OFF, OFF))
    x = _x()
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=2, mode="nearest") / 2)


def test_wg_up_split_inverts_four_learned_bands():
    up = WGUp(8, mode="split")
    force_gates(up, (ON, ON, ON, ON))
    x = _x()
    with torch.no_grad():
        bands = up.to_bands(x).chunk(4, dim=1)
    torch.testing.assert_close(up(x), idwt2(*bands))
    # With every chunk an identity copy of x, split is the repeat variant.
    with torch.no_grad():
        up.to_bands.weight.copy_(torch.eye(8).repeat(4, 1)[:, :, None, None])
        up.to_bands.bias.zero_()
    repeat = WGUp(8)
    force_gates(repeat, (ON, ON, ON, ON))
    torch.testing.assert_close(up(x), repeat(x))


def test_wg_parameter_counts():
    c = 64  # gate: C·C/4 + C/4 + C/4·4C + 4C; split adds a 1×1 conv C → 4C
    gate = c * (c // 4) + c // 4 + (c // 4) * 4 * c + 4 * c
    assert sum(p.numel() for p in WGDown(c).parameters()) == gate
    assert sum(p.numel() for p in WGUp(c).parameters()) == gate
    assert sum(p.numel() for p in WGUp(c, mode="split").parameters()) == gate + 4 * c * c + 4 * c


def test_unknown_up_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown WG-Up mode 'bilinear'; valid: repeat, split"):
        WGUp(8, mode="bilinear")


@pytest.mark.parametrize(
    "module", [WGDown(8), WGUp(8), WGUp(8, mode="split")], ids=["down", "up", "up-split"]
)
def test_gradients_reach_input_and_every_parameter(module):
    x = _x().requires_grad_()
    module(x, torch.zeros(2, 16)).square().sum().backward()  # diffusers passes extra arguments (temb)
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
