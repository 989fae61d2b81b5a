"""Cached real-image features belong to the feature network's weights: other weights never reuse them."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from slimdiff.metrics import fid
from slimdiff.metrics.runners import Evaluation, inception_scores


class SmallExtractor(nn.Module):
    """uint8 (N, 3, H, W) → (N, 8) features, like Inception's interface."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images.float() / 255).mean(dim=(2, 3))


def test_the_fingerprint_follows_the_weights_not_the_instance():
    a, same, other = SmallExtractor(0), SmallExtractor(0), SmallExtractor(1)
    assert fid.weights_fingerprint(a) == fid.weights_fingerprint(same)
    assert fid.weights_fingerprint(a) != fid.weights_fingerprint(other)
    with torch.no_grad():
        same.conv.bias[0] += 1e-6
    assert fid.weights_fingerprint(a) != fid.weights_fingerprint(same)
    assert fid.weights_fingerprint(a) != fid.weights_fingerprint(SmallExtractor(0).double())


def test_a_second_run_with_other_weights_does_not_reuse_cached_features(
    tmp_path, monkeypatch, power_law_field
):
    monkeypatch.setenv("SLIMDIFF_CACHE", str(tmp_path / "cache"))
    real = power_law_field(24, size=16, seed=0).float().clamp(-1, 1)
    fake = power_law_field(24, size=16, seed=1).float().clamp(-1, 1)
    options = SimpleNamespace(inception_weights=None, data=str(tmp_path / "data"), size=16, seed=0)

    def fid_with(extractor) -> float:
        monkeypatch.setattr(fid, "inception_extractor", lambda weights=None: extractor)
        ev = Evaluation(options, tmp_path, track=lambda name, n: None, real=real, fake=fake)
        return inception_scores(ev, "fid")["fid"]

    def direct(extractor) -> float:
        return fid.fid_from_features(
            fid.extract_features(real, extractor), fid.extract_features(fake, extractor)
        )

    first, second = SmallExtractor(0), SmallExtractor(1)
    assert abs(fid_with(first) - direct(first)) < 1e-6 * max(1.0, direct(first))
    assert abs(fid_with(second) - direct(second)) < 1e-6 * max(
        1.0, direct(second)
    )  # not the first's features
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2
    assert abs(fid_with(SmallExtractor(0)) - direct(first)) < 1e-6 * max(1.0, direct(first))  # a cache hit
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2
