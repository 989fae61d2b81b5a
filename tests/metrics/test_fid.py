import math

import pytest
import torch

from slimdiff.analysis.blur import gaussian_blur
from slimdiff.metrics import fid
from slimdiff.metrics.fid import (
    INCEPTION_FILE,
    FIDUnavailable,
    cached_features,
    extract_features,
    fid_from_features,
    inception_extractor,
    kid_from_features,
)
from slimdiff.reporting.images import quantize


def _with_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n samples whose sample mean and (n−1)-normalised covariance are exactly `mean` and `cov`."""
    z = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(dim=0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # whitened: sample cov = I
    return z @ torch.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    a, b = torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([2.0, 0.5, 0.5, 1.0])
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    real = _with_moments(500, mu1.double(), torch.diag(a).double(), seed=0)
    fake = _with_moments(700, mu2.double(), torch.diag(b).double(), seed=1)
    expected = (mu1 - mu2).square().sum() + (a + b - 2 * (a * b).sqrt()).sum()
    assert fid_from_features(real, fake) == pytest.approx(expected.item(), rel=1e-6)


def test_frechet_distance_against_isotropic_gaussian_uses_eigenvalues():
    # Σ1 = s·I, Σ2 full: tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) = Σ_i (s + λ_i − 2√(s λ_i)) over the eigenvalues λ of Σ2.
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    lam = torch.tensor([0.2, 0.7, 1.0, 2.5, 4.0], dtype=torch.float64)
    cov2, s = q @ torch.diag(lam) @ q.T, 1.5
    real = _with_moments(400, torch.zeros(5, dtype=torch.float64), s * torch.eye(5, dtype=torch.float64), 3)
    fake = _with_moments(400, torch.ones(5, dtype=torch.float64), cov2, 4)
    expected = 5 + (s + lam - 2 * (s * lam).sqrt()).sum().item()
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    same = kid_from_features(x.double(), y.double(), subsets=20, subset_size=100)
    shifted = kid_from_features(x.double(), (y + 1).double(), subsets=20, subset_size=100)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert shifted["mean"] > 10 * max(abs(same["mean"]), 1e-3)
    assert kid_from_features(x.double(), y.double(), subsets=5) == kid_from_features(
        x.double(), y.double(), subsets=5
    )
    assert kid_from_features(x.double(), y[:50].double(), subsets=5)["subset_size"] == 50


class SmallCNN(torch.nn.Module):
    """A stand-in feature extractor taking uint8 images, as the Inception one does."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
        )

    def forward(self, images):
        assert images.dtype == torch.uint8
        return self.net(images.float() / 127.5 - 1)


def test_fid_code_path_runs_offline_with_a_small_extractor(power_law_field):
    x = power_law_field(80, size=32, exponent=1.0).float().clamp(-1, 1)
    extractor = SmallCNN()
    calls = []
    real = extract_features(x[:40], extractor, batch_size=16, progress=calls.append)
    assert real.shape == (40, 64) and real.dtype == torch.float64 and calls == [16, 16, 8]
    other = extract_features(x[40:], extractor)
    blurred = extract_features(gaussian_blur(x[40:], 2.0), extractor)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(real, blurred) > fid_from_features(real, other)


def test_quantize_maps_the_range_ends():
    assert quantize(torch.tensor([-1.0, 0.0, 1.0, 2.0])).tolist() == [0, 128, 255, 255]


def test_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FIDUnavailable, match=INCEPTION_FILE) as info:
        inception_extractor()
    assert str(tmp_path / "checkpoints" / INCEPTION_FILE) in str(info.value)
    with pytest.raises(FIDUnavailable, match="does not exist"):
        inception_extractor(tmp_path / "nowhere.pth")


def test_missing_torch_fidelity_is_one_clear_error(tmp_path, monkeypatch):
    from torchmetrics.utilities import imports

    weights = tmp_path / INCEPTION_FILE
    weights.write_bytes(b"")
    monkeypatch.setattr(imports, "_TORCH_FIDELITY_AVAILABLE", False)
    with pytest.raises(FIDUnavailable, match=r"pip install 'slimdiff\[fid\]'"):
        inception_extractor(weights)


def test_feature_cache_round_trip(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6, dtype=torch.float64).reshape(3, 2) / 3

    key = {"source": "builtin:photos", "size": 32, "n": 3, "seed": 0, "extractor": "small"}
    first = cached_features(key, compute, tmp_path)
    second = cached_features(key, compute, tmp_path)
    assert torch.equal(first, second) and len(calls) == 1
    cached_features({**key, "size": 64}, compute, tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.pt"))) == 2
    assert not list(tmp_path.glob("*.tmp"))
    assert math.isclose(second[2, 1].item(), 5 / 3, rel_tol=1e-6)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SLIMDIFF_CACHE", str(tmp_path))
    assert fid.cache_dir() == tmp_path / "features"
