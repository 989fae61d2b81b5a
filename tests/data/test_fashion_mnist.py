"""Fashion-MNIST as the reference benchmark: the idx loader (on a fake copy of Debian's layout), the padding
round trip, the shipped classifier, FD-FMNIST against the closed form, CAS on a toy where the answer is known,
and `slimdiff eval --metrics fd-fmnist` end to end."""

import gzip
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.data import fashion_mnist as fm
from slimdiff.data.datasets import make_dataset
from slimdiff.errors import DataError, ModelError
from slimdiff.metrics import fmnist
from slimdiff.metrics.fmnist_net import SHIPPED, load_classifier, run_batches

DEBIAN_PRESENT = (fm.DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file()


def test_builtin_fashion_mnist_reads_the_idx_files_pads_to_32_and_labels(fake_fmnist):
    _, written = fake_fmnist
    dataset = make_dataset("builtin:fashion-mnist", 32, conditioning="class")
    assert len(dataset) == 6 and dataset.class_names[0] == "T-shirt/top" and len(dataset.class_names) == 10
    image, label = dataset[3]
    assert image.shape == (3, 32, 32) and label == written["train"][1][3]
    expected = torch.from_numpy(written["train"][0][3].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(image[:, 2:-2, 2:-2], expected.expand(3, -1, -1))
    border = torch.ones(3, 32, 32, dtype=torch.bool)
    border[:, 2:-2, 2:-2] = False
    assert (image[border] == -1).all()  # padded with the background
    test = make_dataset("builtin:fashion-mnist:test", 28)
    assert len(test) == 8 and test[0].shape == (3, 28, 28)
    assert make_dataset("builtin:fashion-mnist", 16)[0].shape == (3, 16, 16)  # other sizes: resized
    # the padding and the metric's crop are inverse: the network sees the file's pixels
    torch.testing.assert_close(fm.to_fmnist28(image[None])[0, 0], expected)
    torch.testing.assert_close(fmnist.network_input(image[None])[0, 0], expected)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "sudo apt-get install dataset-fashion-mnist"),
        ("truncated", "corrupt"),
        ("short", "truncated or corrupt"),
        ("magic", "bad magic number"),
    ],
)
def test_missing_or_damaged_files_are_one_clear_line(fake_fmnist, damage, message):
    folder, _ = fake_fmnist
    path = folder / "train-images-idx3-ubyte.gz"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":  # the gzip stream cut short
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "short":  # a complete gzip of an idx file missing its last image
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[:-784]))
    else:
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    with pytest.raises(DataError, match=message) as error:
        make_dataset("builtin:fashion-mnist", 32)
    assert "\n" not in str(error.value)


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    # Features whose sample mean and (unbiased) covariance are exactly μ and Σ = R diag(s) Rᵀ; for Σ₁, Σ₂ sharing
    # R the distance is ‖μ₁ − μ₂‖² + Σ_i (a_i + b_i − 2 √(a_i b_i)).
    d, n = 6, 400
    g = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]

    def gaussian(mean, variances, seed):
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        x = x - x.mean(0)
        white = x @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T))).T
        return white @ (rotation * variances.sqrt()) @ rotation.T + mean

    a, b = torch.linspace(0.5, 3, d, dtype=torch.float64), torch.linspace(2, 0.2, d, dtype=torch.float64)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * (a * b).sqrt()).sum()
    assert fmnist.fd_fmnist(gaussian(mu1, a, 1), gaussian(mu2, b, 2)) == pytest.approx(
        expected.item(), rel=1e-6
    )
    same = gaussian(mu1, a, 3)
    assert fmnist.fd_fmnist(same, same) == pytest.approx(0.0, abs=1e-6)


def _toy_classes(n, seed):
    """Class k: a bright 6×6 square at its own place on a dark 32×32 RGB image, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.full((n, 3, 32, 32), -1.0) + 0.1 * torch.rand(n, 3, 32, 32, generator=g)
    for i, k in enumerate(labels.tolist()):
        top, left = 2 + 6 * (k // 4), 2 + 7 * (k % 4)
        images[i, :, top : top + 6, left : left + 6] = 1.0
    return images, labels


def test_cas_is_high_for_true_labels_and_chance_for_shuffled_ones(monkeypatch):
    monkeypatch.setattr(fmnist, "CAS_STEPS", 40)
    images, labels = _toy_classes(200, 0)
    test_images, test_labels = _toy_classes(200, 1)
    test = (fmnist.network_input(test_images), test_labels)
    right = fmnist.classification_accuracy_score(images, labels, test=test)
    shuffled = labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    wrong = fmnist.classification_accuracy_score(images, shuffled, test=test)
    assert right["cas"] > 0.95 and right["cas_train_images"] == 200
    assert wrong["cas"] < 0.3


def test_cas_says_why_it_cannot_run():
    images, labels = _toy_classes(10, 0)
    names = list(fm.CLASS_NAMES)
    with pytest.raises(LookupError, match="class-conditional"):
        fmnist.cas_scores(images, None, names, "builtin:fashion-mnist:test", 0)
    with pytest.raises(LookupError, match="builtin:fashion-mnist:test"):
        fmnist.cas_scores(images, labels, names, "builtin:fashion-mnist", 0)
    with pytest.raises(LookupError, match="classes are not Fashion-MNIST's"):
        fmnist.cas_scores(images, labels, [str(i) for i in range(10)], "builtin:fashion-mnist:test", 0)


def test_classifier_load_errors_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        load_classifier(tmp_path)
    shutil.copytree(str(SHIPPED), tmp_path / "copy")
    (tmp_path / "copy" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt") as error:
        load_classifier(tmp_path / "copy")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not DEBIAN_PRESENT, reason="Debian's dataset-fashion-mnist is not installed")
def test_shipped_classifier_recognises_real_test_images():
    network, config = load_classifier()
    images, labels = fm.split_images("test")
    images, labels = images[:300], labels[:300]
    assert run_batches(network, images).shape == (300, 64)
    predicted = run_batches(network, images, "logits").argmax(1)
    assert (predicted == labels).double().mean() > config["test_accuracy"] - 0.06
    assert (SHIPPED / "model.safetensors").stat().st_size < 1_000_000


def test_eval_cli_computes_fd_fmnist_on_a_tiny_model(
    fake_fmnist, tmp_path, tiny_pipeline, tiny_unet, monkeypatch
):
    monkeypatch.setenv("SLIMDIFF_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    tiny_pipeline(tiny_unet(size=16)).save_pretrained(model)
    runner = CliRunner()
    args = ["-n", 8, "--n-real", 8, "--steps", 1, "--batch-size", 8, "--metrics", "fd-fmnist,cas"]
    for run in range(2):  # the second run reads the real features from the cache
        out = tmp_path / f"out{run}"
        result = runner.invoke(
            app,
            ["eval", str(model), "--data", "builtin:fashion-mnist:test", *map(str, args), "--out", str(out)],
        )
        assert result.exit_code == 0, result.output
        report = json.loads((out / "metrics.json").read_text())
        assert report["results"]["fd_fmnist"] > 0 and "class-conditional" in report["skipped"]["cas"]
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1
    out = tmp_path / "textures"
    result = runner.invoke(
        app, ["eval", str(model), "--data", "builtin:textures", *map(str, args), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output  # nothing computed
    assert "test split" in json.loads((out / "metrics.json").read_text())["skipped"]["fd-fmnist"]
