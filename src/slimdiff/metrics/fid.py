"""FID and KID through torchmetrics, with any feature extractor and cached real-image features.

The paper's setting is torchmetrics' FID on Inception-v3 pool features (2048-d), 50k generated vs 50k
real images. The Inception network comes from torch-fidelity (`pip install 'slimdiff[fid]'`) with its
weights file `weights-inception-2015-12-05-6726825d.pth`, read from `--inception-weights PATH` or the
torch hub cache (`<torch hub dir>/checkpoints/`); nothing is ever downloaded. Any other `nn.Module`
mapping uint8 (N, 3, H, W) images to (N, d) features works too (the tests use a small CNN).

Features are extracted once per image set; FID and KID are computed from them by torchmetrics (in
float64). Real-image features are cached on disk per (data source, size, count, seed, extractor name and a
SHA-256 of the extractor's weights — `weights_fingerprint` — so other Inception weights never reuse them).

Images reach the network as uint8 through the one quantiser (`slimdiff.reporting.images.quantize`), which
*rounds* [-1, 1] to 0…255, the way saved PNGs are written. torchmetrics' `FrechetInceptionDistance(normalize=True)`
on float images in [0, 1] *truncates* instead (`(x * 255).byte()`), which darkens every pixel by half a level on
average: on the same images the two FIDs differ (by 0.9% in the case reported in issue 16), so compare FIDs
computed one way only.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from slimdiff.reporting.images import quantize

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_NAME = "inception-v3-2048"


class FIDUnavailable(RuntimeError):
    """FID/KID cannot run here; the message says what is missing and how to provide it."""


def default_inception_path() -> Path:
    """Where torch-fidelity's loader would cache the weights: `<torch hub dir>/checkpoints/<file>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_extractor(weights: str | Path | None = None) -> nn.Module:
    """torchmetrics' Inception-v3 (2048-d pool features, uint8 input) from a local weights file."""
    path = Path(weights).expanduser() if weights else default_inception_path()
    if not path.is_file():
        where = f"{path} does not exist" if weights else f"pass --inception-weights PATH or put it at {path}"
        raise FIDUnavailable(f"FID/KID need the Inception weights file {INCEPTION_FILE}: {where}")
    from torchmetrics.utilities import imports

    if not imports._TORCH_FIDELITY_AVAILABLE:
        raise FIDUnavailable("FID/KID with Inception need torch-fidelity: pip install 'slimdiff[fid]'")
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )


@torch.no_grad()
def extract_features(
    images: Tensor, extractor: nn.Module, batch_size: int = 100, progress: Callable[[int], None] | None = None
) -> Tensor:
    """(N, d) float64 features of (N, 3, H, W) images in [-1, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"FID/KID need (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    extractor.eval()
    chunks = []
    for batch in images.split(batch_size):
        chunks.append(extractor(quantize(batch)).reshape(batch.shape[0], -1).double())
        if progress is not None:
            progress(batch.shape[0])
    return torch.cat(chunks)


class _Given(nn.Module):
    """Feature 'extractor' for features already extracted, so torchmetrics does only the statistics."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, d) feature sets (torchmetrics, float64)."""
    metric = FrechetInceptionDistance(feature=_Given(real.shape[1])).set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute().item()


def kid_from_features(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict:
    """KID (mean and std over random subsets; subset size capped by the smaller set), seeded."""
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # its "keeps all features in memory" notice: we hold them anyway
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng():  # torchmetrics draws its subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return {"mean": mean.item(), "std": std.item(), "subset_size": size}


def weights_fingerprint(network: nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers (names, dtypes, shapes and values), for cache keys."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("SLIMDIFF_CACHE", Path.home() / ".cache" / "slimdiff")) / "features"


def cached_features(key: dict, compute: Callable[[], Tensor], directory: Path | None = None) -> Tensor:
    """Features for `key` (JSON-able: data source, size, count, seed, extractor and its weights) from the cache, or
    `compute()`d and stored (written to a temporary file first, so a crash leaves no half file)."""
    directory = directory or cache_dir()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = directory / f"{digest}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored["key"] == json.dumps(key, sort_keys=True):
            return stored["features"].double()
    features = compute().float()  # stored in float32: return what a later cache hit will return
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save({"key": json.dumps(key, sort_keys=True), "features": features}, partial)
    partial.replace(path)
    return features.double()
