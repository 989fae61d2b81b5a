"""Shared fixtures: one torch thread per test, tiny models / pipelines / autoencoders, image folders, micro
training configs, synthetic spectra, and the model comparisons every round-trip test uses.

Builders that take parameters are offered as factories, session-scoped so that module-scoped fixtures can
use them too: `tiny_unet(seed=1, channels=4)`, `micro_config(run_dir, steps=2)`, ….
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, ModelMixin, VQModel
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from slimdiff.diffusion import training_scheduler
from slimdiff.metrics.spectrum import frequency_radius
from slimdiff.models.presets import Preset, get_preset
from slimdiff.models.tiny_clip import make_tiny_clip
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling.pipeline import SlimDiffusionPipeline


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny models on a shared 2-core machine: with 2 threads the OpenMP hand-offs cost far more than the work
    # (1.2 s vs 0.01 s a sampling step, measured), so every test runs on one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- comparing models ----------------------------------------------------------------------------------------
# Parameters are compared bitwise: saving and loading must not change a single bit. Outputs are compared to a
# tolerance: two separately built or loaded models, another process, another batch size or another CPU may
# pick other kernels and summation orders (a tiny UNet's output differs by ~4e-7 between two CPUs). 1e-5 leaves
# ~25× room for that, while one early-layer weight off by 1e-3 moves the output by ~2e-4 and fails it
# (test_unet.py); a change damped below the tolerance (say behind a GroupNorm) is left to the bitwise check.

OUTPUT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _assert_outputs_close(actual, expected) -> None:
    torch.testing.assert_close(actual, expected, **OUTPUT_TOLERANCE)


def _assert_same_parameters(a, b) -> None:
    """Modules or state dicts: the same names, every tensor bit-identical."""
    sa, sb = (m.state_dict() if isinstance(m, torch.nn.Module) else m for m in (a, b))
    assert sa.keys() == sb.keys()
    for name, tensor in sa.items():
        assert torch.equal(tensor, sb[name]), f"{name} differs"


@torch.no_grad()
def _unet_output(model: ModelMixin, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).sample


def _assert_same_model(a: ModelMixin, b: ModelMixin, inputs: dict[str, torch.Tensor] | None = None) -> None:
    """Same class, bit-identical parameters, and (given `inputs`) the same outputs in eval mode to tolerance."""
    assert type(a) is type(b)
    _assert_same_parameters(a, b)
    if inputs is not None:
        _assert_outputs_close(_unet_output(b.eval(), inputs), _unet_output(a.eval(), inputs))


def _assert_same_pipeline(a, b, seed: int = 0, **call) -> None:
    """Bit-identical UNet (and autoencoder) parameters, and the same images from the same seed to tolerance."""
    assert type(a) is type(b)
    for name in ("unet", "vae"):
        ma, mb = getattr(a, name, None), getattr(b, name, None)
        assert (ma is None) == (mb is None), name
        if ma is not None:
            assert type(ma) is type(mb)
            _assert_same_parameters(ma, mb)
    call = {"num_inference_steps": 3, "sampler": "ddim", "output_type": "pt", **call}
    images = [pipe(generator=torch.Generator().manual_seed(seed), **call).images for pipe in (a, b)]
    _assert_outputs_close(images[1], images[0])


@pytest.fixture(scope="session")
def assert_outputs_close():
    """`assert_outputs_close(actual, expected)`: model outputs / images (tensors or arrays) to OUTPUT_TOLERANCE."""
    return _assert_outputs_close


@pytest.fixture(scope="session")
def assert_same_parameters():
    """`assert_same_parameters(a, b)`: modules or state dicts with the same names, every tensor bit-identical."""
    return _assert_same_parameters


@pytest.fixture(scope="session")
def assert_same_model():
    """`assert_same_model(a, b, inputs=None)`: parameters bitwise, outputs on `inputs` to tolerance."""
    return _assert_same_model


@pytest.fixture(scope="session")
def assert_same_pipeline():
    """`assert_same_pipeline(a, b, seed=0, **call)`: components' parameters bitwise, images to tolerance."""
    return _assert_same_pipeline


@pytest.fixture(scope="session")
def unet_output():
    """`unet_output(model, inputs)`: the `.sample` of one forward call without gradients."""
    return _unet_output


# --- tiny UNets ----------------------------------------------------------------------------------------------


def _architecture(widths=(8, 16), attention: str = "Attn") -> dict:
    """One level per width, one layer per block, attention (`Attn` or `CrossAttn`) at the deepest level."""
    plain = len(widths) - 1
    return {
        "block_out_channels": tuple(widths),
        "down_block_types": ("DownBlock2D",) * plain + (f"{attention}DownBlock2D",),
        "up_block_types": (f"{attention}UpBlock2D",) + ("UpBlock2D",) * plain,
        "layers_per_block": 1,
        "attention_head_dim": 8 if attention == "Attn" else 4,
        "norm_num_groups": 4,
    }


def _tiny_unet(
    seed: int = 0,
    *,
    channels: int = 3,
    size: int = 8,
    widths=(8, 16),
    slim: bool = True,
    cls: type[ModelMixin] = SlimUNet2DModel,
    **overrides,
) -> ModelMixin:
    """An unconditional UNet built in milliseconds, wavelet-gated when `slim`; `cls` may be a plain diffusers
    UNet2DModel (then `slim` does not apply)."""
    config = {"sample_size": size, "in_channels": channels, "out_channels": channels, **_architecture(widths)}
    if issubclass(cls, SlimUNet2DModel):
        config["wavelet_gating"] = slim
    torch.manual_seed(seed)
    return cls(**{**config, **overrides}).eval()


def _tiny_condition_unet(
    seed: int = 0,
    *,
    classes: int | None = 5,
    channels: int = 3,
    size: int = 8,
    widths=(8, 16),
    cls: type[ModelMixin] = SlimUNet2DConditionModel,
    **overrides,
) -> ModelMixin:
    """A cross-attention UNet: class-context with `classes` classes (+ the "no class" row), text-style when None;
    `cls` may be a plain diffusers UNet2DConditionModel (text-style only: it has no class-context table)."""
    config = {
        "sample_size": size,
        "in_channels": channels,
        "out_channels": channels,
        **_architecture(widths, attention="CrossAttn"),
        "cross_attention_dim": 12,
    }
    if classes is not None:
        config["num_context_classes"] = classes
    torch.manual_seed(seed)
    return cls(**{**config, **overrides}).eval()


def _unet_inputs(model: ModelMixin, batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Deterministic inputs of one step: noisy sample, distinct timesteps, and a class label if needed."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "sample": torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g),
        "timestep": torch.arange(batch) * 300 + 17,
    }
    if cfg.get("num_context_classes"):
        inputs["class_labels"] = torch.arange(batch) % (cfg.num_context_classes + 1)
    return inputs


@pytest.fixture(scope="session")
def tiny_unet():
    """`tiny_unet(seed=0, channels=3, size=8, widths=(8, 16), slim=True, cls=SlimUNet2DModel, **overrides)`."""
    return _tiny_unet


@pytest.fixture(scope="session")
def tiny_condition_unet():
    """`tiny_condition_unet(seed=0, classes=5, channels=3, size=8, widths=(8, 16), cls=SlimUNet2DConditionModel,
    **overrides)`."""
    return _tiny_condition_unet


@pytest.fixture(scope="session")
def unet_inputs():
    """`unet_inputs(model, batch=2, seed=1)`: keyword inputs of one forward call."""
    return _unet_inputs


@pytest.fixture(scope="session")
def tiny_teacher_folder(tmp_path_factory) -> Path:
    """A pipeline folder with a narrowed tiny-teacher preset (16/32/32 channels): the teacher of the distill
    command and the demo, whose tiny-sd students have the same three levels."""
    torch.manual_seed(0)
    unet = get_preset("tiny-teacher").build(block_out_channels=(16, 32, 32), attention_head_dim=8)
    folder = tmp_path_factory.mktemp("teacher") / "tiny-teacher"
    SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler()).save_pretrained(folder)
    return folder


def _tiny_clip(folder: Path) -> Path:
    """A random 2-layer CLIP text model (width 32, 8 tokens) and a byte-level tokenizer, saved as a pipeline
    would (the library's `make_tiny_clip`, which `slimdiff make-tiny-clip` runs)."""
    return make_tiny_clip(folder, max_length=8)


@pytest.fixture(scope="session")
def tiny_clip():
    """`tiny_clip(folder)`: a random tiny CLIP text encoder + tokenizer saved in folder/text_encoder and
    folder/tokenizer (as a pipeline carries them); nothing is downloaded."""
    return _tiny_clip


# --- pipelines and autoencoders ------------------------------------------------------------------------------


def _tiny_pipeline(unet=None, vae=None) -> SlimDiffusionPipeline:
    pipe = SlimDiffusionPipeline(
        unet=unet if unet is not None else _tiny_unet(), scheduler=training_scheduler(), vae=vae
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _encoder_blocks(levels: int) -> dict:
    # diffusers autoencoders down-sample by 2 between levels: factor 2^(levels − 1)
    return {
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": (8,) * levels,
        "layers_per_block": 1,
        "norm_num_groups": 4,
    }


def _tiny_kl(
    seed: int = 0, *, levels: int = 2, latent_channels: int = 4, scaling_factor: float = 0.18215
) -> AutoencoderKL:
    """A KL autoencoder with a few thousand weights, down-sampling by 2^(levels − 1)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        **_encoder_blocks(levels), latent_channels=latent_channels, scaling_factor=scaling_factor
    ).eval()


def _tiny_vq(seed: int = 0, *, levels: int = 3, latent_channels: int = 3) -> VQModel:
    """A VQ autoencoder with 16 codes, down-sampling by 2^(levels − 1) (f4 by default, as LDM's)."""
    torch.manual_seed(seed)
    return VQModel(
        **_encoder_blocks(levels),
        latent_channels=latent_channels,
        vq_embed_dim=latent_channels,
        num_vq_embeddings=16,
    ).eval()


@pytest.fixture(scope="session")
def tiny_pipeline():
    """`tiny_pipeline(unet=None, vae=None)`: a SlimDiffusionPipeline (default: `tiny_unet()`), no progress bar."""
    return _tiny_pipeline


@pytest.fixture(scope="session")
def tiny_kl():
    """`tiny_kl(seed=0, levels=2, latent_channels=4, scaling_factor=0.18215)`: AutoencoderKL."""
    return _tiny_kl


@pytest.fixture(scope="session")
def tiny_vq():
    """`tiny_vq(seed=0, levels=3, latent_channels=3)`: VQModel."""
    return _tiny_vq


# --- presets on the meta device ------------------------------------------------------------------------------

ATTENTION_OPS = ("aten.bmm", "aten.baddbmm")


def _on_meta(preset: Preset, batch: int = 1) -> tuple[ModelMixin, dict[str, torch.Tensor]]:
    """The preset's model and example inputs on the meta device: no memory, built in milliseconds."""
    with torch.device("meta"):
        return preset.build(), preset.example_inputs(batch, device="meta")


def _macs_by_kind(model: ModelMixin, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(conv + linear MACs, attention-matmul MACs) of one forward call, independent of `count_macs`.

    On the meta device `scaled_dot_product_attention` decomposes into batched matmuls, so attention is
    counted whichever processor the model uses."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(flops.get(op, 0) for op in ATTENTION_OPS)
    return (sum(flops.values()) - attention) // 2, attention // 2


@pytest.fixture(scope="session")
def on_meta():
    """`on_meta(preset, batch=1)`: (model, example inputs) on the meta device."""
    return _on_meta


@pytest.fixture(scope="session")
def macs_by_kind():
    """`macs_by_kind(model, inputs)`: (conv + linear MACs, attention MACs) by torch's FLOP counter."""
    return _macs_by_kind


# --- data and training configs -------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    """`image_folder(bad=True)`: an RGB, a grayscale (in a subfolder) and an RGBA image under tmp_path; with
    `bad`, also a truncated PNG and a text file named `.jpg`."""

    def make(bad: bool = True) -> Path:
        root = tmp_path / ("images" if bad else "images-clean")
        rng = np.random.default_rng(0)
        (root / "sub").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "rgb.png")
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "sub" / "gray.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(root / "rgba.png")
        if bad:
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "truncated.png")
            data = (root / "truncated.png").read_bytes()
            (root / "truncated.png").write_bytes(data[: len(data) // 2])
            (root / "not-an-image.jpg").write_text("this is text, not a JPEG")
        return root

    return make


def _micro_config(run_dir: Path, *, steps: int = 4, every: int = 2, widths=(8, 16), **sections) -> dict:
    """A config mapping for a fast pixel-space run on built-in textures at 16×16: a tiny-lite model narrowed
    to the tiny UNet architecture (levels of `widths` channels), so a training step takes milliseconds.
    Mapping sections are merged into the defaults, anything else (e.g. `model="tiny-sd"`) replaces them."""
    architecture = {k: list(v) if isinstance(v, tuple) else v for k, v in _architecture(widths).items()}
    config = {
        "model": "tiny-lite",
        "model_overrides": architecture,
        "data": {"source": "builtin:textures", "size": 16, "length": 64},
        "train": {"steps": steps, "batch_size": 4, "warmup_steps": min(2, steps), "base_lr": 1e-4},
        "run": {"dir": str(run_dir), "checkpoint_every": every, "sample_every": 0, "log_every": 1},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


@pytest.fixture(scope="session")
def micro_config():
    """`micro_config(run_dir, steps=4, every=2, widths=(8, 16), **sections)`: a training config mapping."""
    return _micro_config


# --- synthetic image sets with known spectra ----------------------------------------------------------------


def _white_noise(n: int, size: int = 32, sigma: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


def _radius(size: int) -> torch.Tensor:
    # radial frequency on the size×size FFT grid (Nyquist = 1), floored at 2/size to keep 1/r finite
    return frequency_radius(size, size).clamp_min(2 / size)


def _power_law_spectrum(size: int, exponent: float) -> torch.Tensor:
    """S(f) = 1/r^exponent: the exact power spectrum of `power_law_field(…, size, exponent)`."""
    return _radius(size) ** (-exponent)


def _power_law_field(n: int, size: int = 64, exponent: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Gaussian random fields with power spectrum ∝ 1/r^exponent: white noise shaped by the amplitude √S."""
    spectrum = torch.fft.fft2(_white_noise(n, size, seed=seed)) * _radius(size) ** (-exponent / 2)
    return torch.fft.ifft2(spectrum).real


@pytest.fixture(scope="session")
def white_noise():
    """`white_noise(n, size=32, sigma=1.0, seed=0)`: (n, 3, size, size) float64 Gaussian noise."""
    return _white_noise


@pytest.fixture(scope="session")
def power_law_field():
    """`power_law_field(n, size=64, exponent=2.0, seed=0)`: (n, 3, size, size) float64 fields."""
    return _power_law_field


@pytest.fixture(scope="session")
def power_law_spectrum():
    """`power_law_spectrum(size, exponent)`: the exact power spectrum of `power_law_field`."""
    return _power_law_spectrum


# --- faults ----------------------------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path):
    """A 192 KiB tmpfs: a real full disk (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


# --- a fake copy of Debian's Fashion-MNIST layout -------------------------------------------------------------


def _write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist_sized(tmp_path, monkeypatch):
    """`fake_fmnist_sized(n_train, n_test)`: Debian's four files with random images, found through the
    environment variable; returns (folder, {split: (images, labels)})."""

    def make(n_train: int = 6, n_test: int = 8):
        from slimdiff.data.fashion_mnist import ENV_VAR

        folder = tmp_path / "fashion-mnist"
        folder.mkdir()
        g, written = np.random.default_rng(0), {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            images, labels = g.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
            _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x803)
            _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)
            written[split] = (images, labels)
        monkeypatch.setenv(ENV_VAR, str(folder))
        return folder, written

    return make


@pytest.fixture
def fake_fmnist(fake_fmnist_sized):
    """A handful of random images (6 train, 8 test) in Debian's layout, found through the environment."""
    return fake_fmnist_sized()
