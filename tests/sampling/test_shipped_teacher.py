"""The shipped tiny teacher (src/slimdiff/assets/tiny-teacher) is a folder of the current format — what a run
exports today — with the weights it was trained to (3000 steps of configs/tiny.yaml), unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from diffusers import DiffusionPipeline

import slimdiff  # noqa: F401  (registers slimdiff's classes with diffusers)
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

TEACHER = Path(__file__).parents[2] / "src" / "slimdiff" / "assets" / "tiny-teacher"
# SHA-256 of the weights as first shipped (commit 91140b4): re-saving the folder must not touch them
WEIGHTS_SHA256 = "9352e9c5ff58165b451b9960ecbf9b66183cef234cf58c9f3036455bfc43b443"


def test_shipped_teacher_is_saved_in_the_current_format_with_its_first_weights():
    weights = TEACHER / "unet" / "diffusion_pytorch_model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == WEIGHTS_SHA256
    index = json.loads((TEACHER / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "SlimUNet2DModel"]  # not slimdiff 0.1's module path
    assert "_name_or_path" not in index
    pipe = DiffusionPipeline.from_pretrained(TEACHER)
    assert isinstance(pipe, SlimDiffusionPipeline)
    # the saved scheduler is the one it samples with (no bare noise schedule left to replace)
    assert dict(pipe.scheduler.config) == json.loads(
        (TEACHER / "scheduler" / "scheduler_config.json").read_text()
    ) | {k: v for k, v in pipe.scheduler.config.items() if k.startswith("_")}
