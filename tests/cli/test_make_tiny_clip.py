"""`slimdiff make-tiny-clip`: a tiny CLIP built locally is a working text encoder, and configs/tiny-text.yaml
trains offline with it into a text pipeline that samples from a prompt."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import load_config
from slimdiff.models.text_encoder import load_text_encoder
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.training.loop import train

runner = CliRunner()
CONFIG = Path(__file__).parents[2] / "configs" / "tiny-text.yaml"


def test_make_tiny_clip_builds_a_clip_that_reads_every_byte(tmp_path):
    result = runner.invoke(app, ["make-tiny-clip", str(tmp_path / "clip"), "--max-length", "16"])
    assert result.exit_code == 0, result.output
    encoder = load_text_encoder(tmp_path / "clip")
    assert encoder.hidden_size == 32 and encoder.tokenizer.model_max_length == 16
    tokens = encoder.tokenizer("brick wall, ünïcode").input_ids  # start, the text, end (= CLIP's unknown)
    assert len(tokens) > 12 and encoder.tokenizer.unk_token_id not in tokens[1:-1]  # every byte has a token
    embeds = encoder(["brick", "grass", ""])
    assert embeds.shape == (3, 16, 32) and not torch.allclose(embeds[0], embeds[1])
    again = runner.invoke(app, ["make-tiny-clip", str(tmp_path / "clip")])
    assert again.exit_code == 2 and "not empty" in again.output


def test_the_tiny_text_config_trains_offline(tmp_path):
    runner.invoke(app, ["make-tiny-clip", str(tmp_path / "clip")])
    overrides = [
        f"conditioning.text_encoder={tmp_path / 'clip'}",
        f"run.dir={tmp_path / 'run'}",
        "train.steps=2",
        "train.batch_size=4",
        "train.warmup_steps=1",
        "data.size=16",
        "data.length=8",
    ]
    run = train(load_config(CONFIG, overrides), progress=False)
    pipe = load_pipeline(run)
    assert pipe.text_encoder is not None
    images = pipe(prompt="brick", guidance_scale=2.0, num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, 16, 16)
