from types import SimpleNamespace

import pytest
import torch

from slimdiff.diffusion import training_scheduler
from slimdiff.metrics.eps_spectrum import eps_error_spectrum, plot_eps_spectrum
from slimdiff.metrics.spectrum import radial_power_spectrum

SCHEDULER = training_scheduler()


def _images(n=8, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _oracle(x0):
    """The perfect denoiser for a known x0: ε = (x_t − √ᾱ x0) / √(1 − ᾱ)."""
    alpha_bar = SCHEDULER.alphas_cumprod

    def predict(x_t, t):
        a = alpha_bar[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return predict


def _noise_drawn(images, buckets, seed=0):
    """The noise eps_error_spectrum draws (same generator order: t, then ε, per bucket and batch)."""
    g = torch.Generator().manual_seed(seed)
    edges = [round(b * 1000 / buckets) for b in range(buckets + 1)]
    noise = []
    for b in range(buckets):
        torch.randint(edges[b], edges[b + 1], (images.shape[0],), generator=g)
        noise.append(torch.randn(images.shape, generator=g))
    return noise


def test_oracle_denoiser_has_zero_error():
    x0 = _images()
    result = eps_error_spectrum(_oracle(x0), x0, SCHEDULER, buckets=5, batch_size=len(x0))
    assert result.power.shape == (5, 9)
    assert result.power.abs().max() < 1e-10
    assert result.summary()["low"] < 1e-10 and result.summary()["high"] < 1e-10


def test_class_labels_reach_the_model_batch_by_batch():
    # Two classes of constant images; the model knows each class's image, so with the right labels it is the
    # perfect denoiser, with swapped labels it is not.
    means = torch.stack([torch.full((3, 16, 16), -0.5), torch.full((3, 16, 16), 0.7)])
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    x0, alpha_bar = means[labels], SCHEDULER.alphas_cumprod

    def model(x_t, t, class_labels):
        a = alpha_bar[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * means[class_labels]) / (1 - a).sqrt()

    right = eps_error_spectrum(model, x0, SCHEDULER, buckets=2, batch_size=3, class_labels=labels)
    assert right.power.abs().max() < 1e-10
    wrong = eps_error_spectrum(model, x0, SCHEDULER, buckets=2, batch_size=3, class_labels=1 - labels)
    assert (wrong.low > 1e-3).all()
    with pytest.raises(ValueError, match="one class per image"):
        eps_error_spectrum(model, x0, SCHEDULER, class_labels=labels[:3])


def test_zero_model_error_spectrum_is_the_noise_spectrum():
    x0 = _images()
    result = eps_error_spectrum(
        lambda x, t: torch.zeros_like(x), x0, SCHEDULER, buckets=3, batch_size=len(x0)
    )
    for b, eps in enumerate(_noise_drawn(x0, 3)):
        radii, power = radial_power_spectrum(eps)
        assert torch.allclose(result.power[b], power)
        # Parseval: the low and high shares add up to the mean squared error E[ε²].
        assert (result.low[b] + result.high[b]).item() == pytest.approx(eps.double().square().mean().item())
    # For white noise the low band's share is its share of frequencies: the disc r ≤ ½ over the square.
    assert result.summary()["low"] == pytest.approx(torch.pi * 0.25 / 4, rel=0.15)


def test_teacher_mode_measures_student_minus_teacher():
    x0 = _images()
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def student(x, t):
        return conv(x)

    same = eps_error_spectrum(student, x0, SCHEDULER, buckets=2, batch_size=4, teacher=student)
    assert same.power.abs().max() == 0
    zero = eps_error_spectrum(lambda x, t: torch.zeros_like(x), x0, SCHEDULER, buckets=2, teacher=student)
    plain = eps_error_spectrum(student, x0, SCHEDULER, buckets=2)
    assert zero.low.sum() > 0 and not torch.allclose(zero.power, plain.power)


def test_fixed_noise_makes_runs_repeatable_and_reports_progress():
    x0 = _images(n=6)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def unet(x, t):  # diffusers-style output object: eps_error_spectrum reads `.sample`
        return SimpleNamespace(sample=conv(x) * (t.view(-1, 1, 1, 1) / 1000))

    a = eps_error_spectrum(unet, x0, SCHEDULER, buckets=2, batch_size=6, seed=3)
    b = eps_error_spectrum(unet, x0, SCHEDULER, buckets=2, batch_size=6, seed=3)
    assert torch.equal(a.power, b.power)
    counted = []
    eps_error_spectrum(unet, x0, SCHEDULER, buckets=2, batch_size=4, progress=counted.append)
    assert counted == [4, 2, 4, 2]


def test_bad_arguments_are_clear_errors():
    x0 = _images()
    with pytest.raises(ValueError, match="buckets"):
        eps_error_spectrum(lambda x, t: x, x0, SCHEDULER, buckets=0)
    with pytest.raises(ValueError, match="cutoff"):
        eps_error_spectrum(lambda x, t: x, x0, SCHEDULER, cutoff=0)
    with pytest.raises(ValueError, match="non-empty"):
        eps_error_spectrum(lambda x, t: x, x0[0], SCHEDULER)


def test_heat_map_plot(tmp_path):
    x0 = _images()
    result = eps_error_spectrum(lambda x, t: torch.zeros_like(x), x0, SCHEDULER, buckets=3)
    path = plot_eps_spectrum({"zero": result, "half": result}, tmp_path / "eps.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_table_lists_every_bucket_and_the_mean():
    x0 = _images()
    result = eps_error_spectrum(lambda x, t: torch.zeros_like(x), x0, SCHEDULER, buckets=4)
    rows = result.table()
    assert len(rows) == 2 + 4 + 1 and rows[2].startswith("| 0–249 |") and rows[-1].startswith("| all |")
    assert f"{result.high.mean():.4g}" in rows[-1]
