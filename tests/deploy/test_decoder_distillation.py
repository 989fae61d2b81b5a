"""`slimdiff distill-decoder` on a tiny VQ autoencoder and built-in textures, then `sample --decoder slim`."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.deploy.decoder_distillation import decoder_loss
from slimdiff.models.slim_decoder import load_slim_decoder
from tests.deploy.test_onnx import tiny_latent_pipeline

runner = CliRunner()


def test_frequency_term_weights_the_rare_high_frequencies():
    torch.manual_seed(0)
    target = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 32, 32), 5, 1, 2)  # little high-frequency power
    smooth_error = target + 0.05 * torch.nn.functional.avg_pool2d(torch.randn_like(target), 5, 1, 2)
    sharp_error = target + 0.05 * torch.randn_like(target) * 0.23  # about the same pixel MSE
    _, smooth = decoder_loss(smooth_error, target, 1.0, -1.0)
    _, sharp = decoder_loss(sharp_error, target, 1.0, -1.0)
    assert sharp["freq"] / sharp["pixel"] > 2 * smooth["freq"] / smooth["pixel"]


def test_distill_decoder_then_sample_with_it(tmp_path):
    torch.set_num_threads(1)
    tiny_latent_pipeline("vq").save_pretrained(tmp_path / "model")
    out = tmp_path / "model" / "slim_decoder"
    args = [
        "distill-decoder",
        "--vae",
        str(tmp_path / "model"),
        "--data",
        "builtin:textures",
        "--out",
        str(out),
        "--steps",
        "30",
        "--images",
        "16",
        "--size",
        "32",
        "--crop",
        "4",
        "--n-eval",
        "8",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output
    record = json.loads((out / "distill.json").read_text())
    assert record["kind"] == "vq" and record["settings"]["steps"] == 30
    quality = record["quality_vs_full_decoder"]
    assert quality["n"] == 8 and quality["psnr_db"] > 5 and set(quality["spectrum_error"]) >= {"low", "high"}
    assert load_slim_decoder(out).config.factor == 4
    sample = [
        "sample",
        str(tmp_path / "model"),
        "--out",
        str(tmp_path / "s"),
        "-n",
        "2",
        "--steps",
        "2",
        "--decoder",
        "slim",
    ]
    result = runner.invoke(app, sample)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["decoder"] == "slim"


def test_distill_decoder_without_an_autoencoder_is_one_line(tmp_path):
    args = [
        "distill-decoder",
        "--vae",
        str(tmp_path),
        "--data",
        "builtin:textures",
        "--out",
        str(tmp_path / "o"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "no VQModel or AutoencoderKL" in result.output
