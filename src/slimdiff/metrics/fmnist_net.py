"""The Fashion-MNIST feature network: a compact CNN classifier (24k weights, ~100 kB of safetensors) trained on
the real training split by `python -m benchmarks.fmnist_classifier`, shipped in
`slimdiff/assets/fmnist-classifier/` (weights + config.json with its test accuracy and the command that made
it). FD-FMNIST uses its penultimate features (64-d, after global average pooling); CAS trains a fresh
network of the same shape on generated images.

Input: grey (N, 1, 28, 28) images in [-1, 1] (`slimdiff.data.fashion_mnist.to_fmnist28` turns generated RGB
images of any size into that).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from slimdiff.errors import ModelError

SHIPPED = resources.files("slimdiff") / "assets" / "fmnist-classifier"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
WIDTHS = (16, 32, 64)  # the shipped network's channels


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class FashionCNN(nn.Module):
    """Three 3×3 conv + BN + ReLU blocks (16, 32, 64 channels; max-pooled 28 → 14 → 7), global average
    pooling to the 64-d features, one linear layer to the 10 class logits."""

    def __init__(self, widths: tuple[int, int, int] = WIDTHS, classes: int = 10):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            *_block(1, a), nn.MaxPool2d(2), *_block(a, b), nn.MaxPool2d(2), *_block(b, c)
        )
        self.head = nn.Linear(c, classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, 28, 28) in [-1, 1] → (N, 64) penultimate features."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def load_classifier(folder: Path | str | None = None) -> tuple[FashionCNN, dict]:
    """(network in eval mode, its config.json) from `folder` (default: the shipped asset); ModelError in one
    line when the files are missing or do not hold this network."""
    folder = Path(str(folder or SHIPPED))
    weights, config_path = folder / WEIGHTS, folder / CONFIG
    remedy = "reinstall slimdiff or rebuild it: python -m benchmarks.fmnist_classifier"
    if not weights.is_file() or not config_path.is_file():
        raise ModelError(f"the Fashion-MNIST classifier is missing ({weights} / {CONFIG}); {remedy}")
    try:
        config = json.loads(config_path.read_text())
        network = FashionCNN(tuple(config["widths"]))
        network.load_state_dict(load_file(weights))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(
            f"the Fashion-MNIST classifier in {folder} is corrupt ({reason}); {remedy}"
        ) from None
    return network.eval(), config


@torch.no_grad()
def run_batches(network: FashionCNN, images: Tensor, what: str = "features", batch: int = 500) -> Tensor:
    """`network.features` (float64) or the logits of (N, 1, 28, 28) images, in batches, in eval mode, on the
    network's device; returned on the CPU."""
    network.eval()
    fn = network.features if what == "features" else network
    device = next(network.parameters()).device
    return torch.cat([fn(chunk.to(device).float()).double().cpu() for chunk in images.split(batch)])


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    seed: int = 0,
    batch: int = 128,
    lr: float = 3e-3,
    widths: tuple[int, int, int] = WIDTHS,
    log=None,
    device: torch.device | str = "cpu",
) -> FashionCNN:
    """A fresh `FashionCNN` trained on (N, 1, 28, 28) images in [-1, 1] with their labels: AdamW with a
    one-cycle learning rate, random horizontal flips, cross-entropy. Seeded: the same inputs give the same
    weights on the same machine. `log(epoch, mean loss)` is called after each epoch. On a GPU `device` the
    images move there once; the result stays on `device`."""
    torch.manual_seed(seed)
    network = FashionCNN(widths).to(device)
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = -(-len(images) // batch)
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * per_epoch)
    network.train()
    for epoch in range(epochs):
        order, total = torch.randperm(len(images), generator=generator).to(device), 0.0
        for index in order.split(batch):
            x = images[index].float()
            flip = (torch.rand(len(x), generator=generator) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = nn.functional.cross_entropy(network(x), labels[index].long())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(x)
        if log is not None:
            log(epoch, total / len(images))
    return network.eval()


def accuracy(network: FashionCNN, images: Tensor, labels: Tensor) -> float:
    """Share of `images` that `network` assigns to their `labels`."""
    return (run_batches(network, images, "logits").argmax(1) == labels.long()).double().mean().item()
