"""Train the shipped Fashion-MNIST feature network (`slimdiff.metrics.fmnist_net.FashionCNN`) on the real
training split and write it to src/slimdiff/assets/fmnist-classifier/ (model.safetensors + config.json with
its test accuracy, the command and the machine). Seeded; 15 epochs: 33 s on an H200, about 7 CPU-minutes an
epoch on this 2-core CPU. The shipped weights came from

    python -m benchmarks.fmnist_classifier --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from benchmarks.machine import describe_machine
from slimdiff.data.fashion_mnist import split_images
from slimdiff.metrics.fmnist_net import CONFIG, WEIGHTS, WIDTHS, accuracy, train_classifier
from slimdiff.models.size import count_params

ASSET = Path(__file__).parents[1] / "src" / "slimdiff" / "assets" / "fmnist-classifier"
# The row of the Debian README's benchmark table (published, untested by Zalando) for a network of this kind.
COMPARED_WITH = "3 Conv+BN+pooling, no preprocessing: 0.903 (@meghanabhange) and 0.921 (@GunjanChhablani)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ASSET)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the shipped weights: see config.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_x, train_y = split_images("train")
    test_x, test_y = split_images("test")
    start = time.perf_counter()

    def log(epoch: int, loss: float) -> None:
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    network = train_classifier(
        train_x, train_y, epochs=args.epochs, seed=args.seed, log=log, device=args.device
    )
    seconds = time.perf_counter() - start
    test_accuracy = accuracy(network, test_x, test_y)
    train_accuracy = accuracy(network, train_x, train_y)
    print(f"test accuracy {test_accuracy:.4f}, train accuracy {train_accuracy:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in network.state_dict().items()}, args.out / WEIGHTS)
    config = {
        "network": "FashionCNN (slimdiff.metrics.fmnist_net)",
        "widths": list(WIDTHS),
        "params": count_params(network),
        "test_accuracy": round(test_accuracy, 4),
        "train_accuracy": round(train_accuracy, 4),
        "compared_with": COMPARED_WITH,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(seconds),
        "command": " ".join(["python -m benchmarks.fmnist_classifier", *sys.argv[1:]]),
        "machine": describe_machine(),
    }
    (args.out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
