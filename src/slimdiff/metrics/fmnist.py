"""Fashion-MNIST metrics on the shipped feature network (`slimdiff.metrics.fmnist_net`).

- **FD-FMNIST**: the Fréchet distance between Gaussians fitted to the network's 64-d penultimate features of
  generated and of real test images (torchmetrics' Fréchet distance, float64, via `fid.fid_from_features`).
  Not FID: the features are this network's, not Inception's, so its values are on their own scale.
  Real features are cached on disk (`fid.cached_features`), keyed on the network weights' SHA-256, the split,
  the count, the seed and the image size.
- **CAS** (classification accuracy score, Ravuri & Vinyals 2019): a fresh network of the same shape trained
  only on generated images with their intended labels, tested on the real test split; beside it the
  intended-class accuracy of the samples under the shipped network.

Generated images reach the network as saved PNGs would hold them (8-bit levels, `quantize`), then grey 28×28
(`slimdiff.data.fashion_mnist.to_fmnist28`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from slimdiff.data.fashion_mnist import CLASS_NAMES, split_images, to_fmnist28
from slimdiff.metrics import fid
from slimdiff.metrics.fmnist_net import FashionCNN, accuracy, load_classifier, run_batches, train_classifier
from slimdiff.reporting.images import quantize

CAS_STEPS = 150  # gradient steps (batch 128) of the CAS classifier, whatever the number of samples
CAS_BATCH = 128


SOURCES = {"builtin:fashion-mnist": "train", "builtin:fashion-mnist:test": "test"}
NEEDS_TEST = "it compares with Fashion-MNIST's test split: pass --data builtin:fashion-mnist:test"


def fmnist_split(source: str | None) -> str | None:
    """ "train" / "test" for a `builtin:fashion-mnist` source, None for any other."""
    return SOURCES.get(source or "")


@functools.lru_cache(maxsize=1)
def shipped_classifier() -> FashionCNN:
    """The shipped network, loaded once per process (ModelError when its asset is missing or corrupt)."""
    return load_classifier()[0]


def network_input(images: Tensor) -> Tensor:
    """RGB (N, 3, S, S) images in [-1, 1] → the network's input: 8-bit levels, grey, 28×28, in [-1, 1]."""
    return to_fmnist28(quantize(images).float() / 127.5 - 1.0)


def fmnist_features(network: FashionCNN, images: Tensor) -> Tensor:
    """(N, 64) float64 penultimate features of RGB images in [-1, 1] at any size."""
    return run_batches(network, network_input(images))


def cached_real_features(
    network: FashionCNN, real: Tensor, *, split: str, seed: int, directory=None
) -> Tensor:
    """Features of the real images `real` (drawn from `split` with `seed`), from the feature cache when the
    same network weights saw the same split, count, seed and size before."""
    key = {
        "features": "fmnist-classifier",
        "weights": fid.weights_fingerprint(network),
        "split": split,
        "n": len(real),
        "seed": seed,
        "size": real.shape[-1],
    }
    return fid.cached_features(key, lambda: fmnist_features(network, real), directory)


def fd_fmnist(real_features: Tensor, fake_features: Tensor) -> float:
    """FD-FMNIST from two (N, 64) feature sets: ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^½)."""
    return fid.fid_from_features(real_features, fake_features)


def cas_epochs(n: int) -> int:
    """Epochs of the CAS classifier on `n` samples: about CAS_STEPS gradient steps, at least one epoch."""
    return max(1, round(CAS_STEPS / math.ceil(n / CAS_BATCH)))


def classification_accuracy_score(
    images: Tensor, labels: Tensor, seed: int = 0, test: tuple[Tensor, Tensor] | None = None
) -> dict:
    """CAS: a fresh `FashionCNN` trained on RGB `images` in [-1, 1] with their intended `labels` (about
    CAS_STEPS steps), then its accuracy on the real test split (or `test`: 28×28 images, labels)."""
    x = network_input(images)
    epochs = cas_epochs(len(x))
    network = train_classifier(x, labels, epochs=epochs, seed=seed, batch=CAS_BATCH)
    test_x, test_y = test if test is not None else split_images("test")
    return {"cas": accuracy(network, test_x, test_y), "cas_epochs": epochs, "cas_train_images": len(x)}


def fd_fmnist_scores(real: Tensor, fake: Tensor, data: str | None, seed: int) -> dict:
    """{"fd_fmnist"} of generated `fake` against the held-out real test images `real` (drawn with `seed`);
    raises LookupError with the reason when `data` is not the test split."""
    if fmnist_split(data) != "test":
        raise LookupError(f"FD-FMNIST: {NEEDS_TEST}")
    network = shipped_classifier()
    real_features = cached_real_features(network, real, split="test", seed=seed)
    return {"fd_fmnist": fd_fmnist(real_features, fmnist_features(network, fake))}


def cas_scores(
    fake: Tensor, labels: Tensor | None, class_names: list[str], data: str | None, seed: int
) -> dict:
    """CAS and the intended-class accuracy of class-conditional samples `fake` with their `labels`; raises
    LookupError with the reason when the model or the data are not Fashion-MNIST's classes."""
    if labels is None:
        raise LookupError("CAS needs a class-conditional model (its samples with their intended classes)")
    if fmnist_split(data) != "test":
        raise LookupError(f"CAS: {NEEDS_TEST}")
    if list(class_names) != list(CLASS_NAMES):
        raise LookupError(
            "CAS: the model's classes are not Fashion-MNIST's (train it on builtin:fashion-mnist)"
        )
    intended = intended_class_accuracy(shipped_classifier(), fake, labels)
    return {**classification_accuracy_score(fake, labels, seed), "intended_class_accuracy": intended}


def intended_class_accuracy(network: FashionCNN, images: Tensor, labels: Tensor) -> float:
    """Share of generated RGB `images` that the shipped network assigns to their intended `labels`."""
    with torch.no_grad():
        return accuracy(network, network_input(images), labels)
