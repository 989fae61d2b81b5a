import pytest
import torch
from scipy.ndimage import convolve

from slimdiff.analysis.blur import SIGMA2, blur_sensitivity, gaussian_blur, gaussian_kernel, plot_blur


def test_kernel_is_a_normalised_gaussian_of_the_given_variance():
    k = gaussian_kernel(2.0, 9)
    assert k.sum().item() == pytest.approx(1.0) and k.argmax().item() == 4
    assert k[3] / k[4] == pytest.approx(torch.exp(torch.tensor(-1 / 4.0, dtype=torch.float64)).item())
    assert gaussian_kernel(0.0).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(1.0, 8)


def test_blur_matches_scipy_with_reflect_padding(white_noise):
    x = white_noise(2, size=16).float()
    k = gaussian_kernel(1.5).numpy()
    # torch "reflect" mirrors without repeating the edge pixel: scipy calls that "mirror".
    expected = convolve(x.numpy(), k[None, None, :, None] * k[None, None, None, :], mode="mirror")
    assert torch.allclose(gaussian_blur(x, 1.5), torch.from_numpy(expected), atol=1e-5)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_blur_sensitivity_rows_and_dict_metrics(tmp_path, white_noise):
    x = white_noise(8, size=16).float()
    calls = []

    def energy_gap(a, b):
        calls.append(1)
        return {"var": (a.var() - b.var()).item(), "mean": (a.mean() - b.mean()).item()}

    metrics = {"gap": energy_gap, "n": lambda a, b: float(len(b))}
    rows = blur_sensitivity(x, metrics, (0.0, 1.0, 4.0), pairing="halves")
    assert [r["sigma2"] for r in rows] == [0.0, 1.0, 4.0] and len(calls) == 3
    assert set(rows[0]) == {"sigma2", "gap var", "gap mean", "n"} and rows[0]["n"] == 4.0
    assert rows[0]["gap var"] < rows[1]["gap var"] < rows[2]["gap var"]  # blur removes variance
    assert plot_blur(rows, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="at least 4"):
        blur_sensitivity(x[:3], {}, SIGMA2)
