"""Shared helpers for the data / training tests: image folders with bad files, tiny configs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, bad: bool = True) -> Path:
    """An RGB, a grayscale (in a subfolder) and an RGBA image; with `bad`, also a truncated PNG and a text
    file named `.jpg`."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(root / "rgba.png")
    if bad:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "truncated.png")
        data = (root / "truncated.png").read_bytes()
        (root / "truncated.png").write_bytes(data[: len(data) // 2])
        (root / "not-an-image.jpg").write_text("this is text, not a JPEG")
    return root


# A UNet small enough that a training step takes milliseconds: two levels, 8/16 channels, one layer per block.
MICRO_MODEL = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "norm_num_groups": 4,
}


def micro_config(run_dir: Path, *, steps: int = 4, every: int = 2, **sections) -> dict:
    """A config mapping for a fast pixel-space run on built-in textures at 16×16."""
    config = {
        "model": "tiny-lite",
        "model_overrides": dict(MICRO_MODEL),
        "data": {"source": "builtin:textures", "size": 16, "length": 64},
        "train": {"steps": steps, "batch_size": 4, "warmup_steps": 2, "base_lr": 1e-4},
        "run": {"dir": str(run_dir), "checkpoint_every": every, "sample_every": 0, "log_every": 1},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


def tiny_vq(latent_channels: int = 3):
    """A randomly initialised f4 VQModel with a few hundred weights."""
    from diffusers import VQModel

    torch_seed(0)
    return VQModel(
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=latent_channels,
        vq_embed_dim=latent_channels,
        num_vq_embeddings=16,
        norm_num_groups=4,
        layers_per_block=1,
    )


def tiny_kl():
    """A randomly initialised f8 AutoencoderKL with 4 latent channels."""
    from diffusers import AutoencoderKL

    torch_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: the micro models are far faster so on a shared, busy machine (two threads
    fight every other process for the cores), and the setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
