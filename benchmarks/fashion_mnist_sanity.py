"""Does FD-FMNIST behave? Real images only, on the shipped classifier's features (issue 24):

- the floor: real training images against the real test split (all 60k, and draws of 10k);
- Gaussian blur (σ in pixels of the 28×28 image) and additive Gaussian noise (σ in [-1, 1] units, then 8-bit
  levels) of known strength applied to 10k training images: FD must grow monotonically with the strength;
- the spread over 5 draws of n = 1k, 5k, 10k training images (vs all 10k test images): what n gives a stable
  value;
- CAS references: a classifier trained on 500 real training images with their true labels (what a perfect
  generator of 500 samples would score) and with shuffled labels (chance).

Writes benchmarks/results/fashion_mnist_sanity.{md,json}.

    nice env OMP_NUM_THREADS=2 python -m benchmarks.fashion_mnist_sanity
"""

from __future__ import annotations

import json
import math
import statistics

import torch

from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.data.fashion_mnist import split_images
from slimdiff.metrics.filters import separable_filter
from slimdiff.metrics.fmnist import classification_accuracy_score, fd_fmnist, shipped_classifier
from slimdiff.metrics.fmnist_net import run_batches

BLUR = (0.5, 1.0, 1.5, 2.0)
NOISE = (0.05, 0.1, 0.2, 0.4)
SIZES = (1000, 5000, 10_000)
DRAWS = 5
CAS_N = 500


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return separable_filter(images, taps / taps.sum())


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def main() -> None:
    torch.set_num_threads(2)
    network = shipped_classifier()
    train_x, train_y = split_images("train")
    test_x, test_y = split_images("test")
    test_f, train_f = run_batches(network, test_x), run_batches(network, train_x)
    g = torch.Generator().manual_seed(0)
    draw = torch.randperm(len(train_x), generator=g)[:10_000]
    base = train_x[draw]
    result: dict = {
        "floor": {"train 60k": fd_fmnist(test_f, train_f), "train 10k": fd_fmnist(test_f, train_f[draw])}
    }
    result["blur"] = {
        s: fd_fmnist(test_f, run_batches(network, eight_bit(gaussian_blur(base, s)))) for s in BLUR
    }
    noisy = {}
    for s in NOISE:
        noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(1)) * s
        noisy[s] = fd_fmnist(test_f, run_batches(network, eight_bit(base + noise)))
    result["noise"] = noisy
    spread = {}
    for n in SIZES:
        values = [
            fd_fmnist(test_f, train_f[torch.randperm(len(train_f), generator=g)[:n]]) for _ in range(DRAWS)
        ]
        spread[n] = {"mean": statistics.mean(values), "std": statistics.stdev(values), "values": values}
    result["spread"] = spread
    cas_draw = torch.randperm(len(train_x), generator=g)[:CAS_N]
    rgb = train_x[cas_draw].expand(-1, 3, -1, -1)
    shuffled = train_y[cas_draw][torch.randperm(CAS_N, generator=g)]
    result["cas_real"] = classification_accuracy_score(rgb, train_y[cas_draw], test=(test_x, test_y))
    result["cas_shuffled"] = classification_accuracy_score(rgb, shuffled, test=(test_x, test_y))
    result["classifier_test_accuracy"] = (
        (run_batches(network, test_x, "logits").argmax(1) == test_y).double().mean().item()
    )
    floor = result["floor"]
    rows = [
        "All FDs against the whole test split (10k) on the shipped classifier's 64-d features.",
        "",
        "| real images | FD-FMNIST |",
        "|---|---:|",
        f"| train, all 60k (the floor) | {floor['train 60k']:.3f} |",
        f"| train, 10k draw (σ = 0 of the rows below) | {floor['train 10k']:.3f} |",
        *[f"| same 10k, Gaussian blur σ = {s} px | {v:.3f} |" for s, v in result["blur"].items()],
        *[f"| same 10k, additive noise σ = {s} | {v:.3f} |" for s, v in result["noise"].items()],
        "",
        f"Spread over {DRAWS} draws of n training images (vs the 10k test images):",
        "",
        "| n | mean | std | min – max |",
        "|---:|---:|---:|---|",
        *[
            f"| {n} | {v['mean']:.3f} | {v['std']:.3f} | {min(v['values']):.3f} – {max(v['values']):.3f} |"
            for n, v in spread.items()
        ],
        "",
        f"CAS references ({CAS_N} real training images, {result['cas_real']['cas_epochs']} epochs): true labels "
        f"{result['cas_real']['cas']:.3f}, shuffled labels {result['cas_shuffled']['cas']:.3f} (chance 0.1). "
        f"Shipped classifier on the test split: {result['classifier_test_accuracy']:.4f}.",
    ]
    write_result("fashion_mnist_sanity", "\n".join(rows))
    result["machine"] = describe_machine()
    (RESULTS / "fashion_mnist_sanity.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
