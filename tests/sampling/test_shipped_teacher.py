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


STUDENTS = TEACHER.parent
# SHA-256 of the shipped students' weights: `slimdiff demo --train-students` at the default settings
STUDENT_WEIGHTS_SHA256 = {
    "tiny-sd-student": "f80e792cd174d11eead2ef7317de242ae493555c7de74e6314a87e09e8ee667b",
    "tiny-sd-baseline": "d9c2d5ae0cb9330a9855d723c3303979a7467eaf5e5d252012ba411ccc8b835e",
}


def test_shipped_students_are_the_demo_recipe_and_load_as_the_tiny_sd_preset():
    import yaml

    from slimdiff.demo import SHIPPED_STUDENTS, DemoSettings
    from slimdiff.models.presets import build_unet

    recipe = DemoSettings()
    assert {Path(str(folder)).name for folder in SHIPPED_STUDENTS.values()} == set(STUDENT_WEIGHTS_SHA256)
    for name, digest in STUDENT_WEIGHTS_SHA256.items():
        folder = STUDENTS / name
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
        config = yaml.safe_load((folder / "training-config.yaml").read_text())
        assert config["model"] == "tiny-sd" and config["data"]["source"] == "builtin:textures"
        assert config["train"]["steps"] == recipe.student_steps
        assert config["train"]["batch_size"] == recipe.batch_size
        distill = config["distill"]
        if name == "tiny-sd-student":  # distilled from the shipped teacher at the demo's positions
            assert distill["teacher"].endswith("assets/tiny-teacher")
            assert tuple(distill["positions"]) == recipe.positions
        else:
            assert distill is None
        pipe = DiffusionPipeline.from_pretrained(folder)
        preset = build_unet("tiny-sd", 32)  # a change to the preset must not leave the assets behind

        def plain(config):  # JSON gives lists where the preset holds tuples
            return {
                k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")
            }

        assert plain(pipe.unet.config) == plain(preset.config)
        assert pipe.unet.conv_out.weight.abs().sum() > 0
