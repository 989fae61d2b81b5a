import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.deploy.onnx_unet import ONNX_FILE, OnnxUNet, export_onnx, relative_error
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_pipeline, tiny_unet):
    """A tiny pipeline folder exported with `slimdiff export --to onnx` (one export for the module)."""
    root = tmp_path_factory.mktemp("export")
    tiny_pipeline(tiny_unet(seed=4)).save_pretrained(root / "model")
    result = runner.invoke(app, ["export", str(root / "model"), "--to", "onnx", "--out", str(root / "onnx")])
    assert result.exit_code == 0, result.output
    return root


def test_onnx_matches_pytorch_within_1e_4_relative(exported, tiny_unet):
    record = json.loads((exported / "onnx" / "export.json").read_text())
    assert record["relative_error"] <= 1e-4
    unet = tiny_unet(seed=4)
    onnx_unet = OnnxUNet(exported / "onnx" / "unet" / ONNX_FILE, unet.config)
    # Batch sizes other than the exported example's: the batch axis is dynamic.
    for batch in (1, 5):
        assert relative_error(unet, onnx_unet, batch=batch) <= 1e-4


def test_onnx_pipeline_draws_the_pytorch_images(exported, tiny_pipeline, tiny_unet):
    unet = tiny_unet(seed=4)
    onnx_unet = OnnxUNet(exported / "onnx" / "unet" / ONNX_FILE, unet.config)
    onnx_pipe = tiny_pipeline(onnx_unet)
    kwargs = {"batch_size": 2, "num_inference_steps": 4, "sampler": "dpm++", "output_type": "pt"}
    expected = tiny_pipeline(unet)(generator=torch.Generator().manual_seed(0), **kwargs).images
    images = onnx_pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    torch.testing.assert_close(images, expected, atol=1e-4, rtol=1e-4)  # two runtimes: their own kernels


def test_sample_with_onnx_equals_sample_with_pytorch(exported):
    common = ["-n", "3", "--batch-size", "2", "--steps", "3", "--scheduler", "ddim"]
    for name, extra in (("torch", []), ("ort", ["--onnx"])):
        out = exported / f"samples-{name}"
        result = runner.invoke(app, ["sample", str(exported / "onnx"), "--out", str(out), *common, *extra])
        assert result.exit_code == 0, result.output
    for i in range(3):
        a, b = (
            np.asarray(Image.open(exported / f"samples-{n}" / f"{i:06d}.png"), dtype=int)
            for n in ("torch", "ort")
        )
        assert np.abs(a - b).max() <= 1  # one grey level of rounding at most


def test_sample_onnx_without_a_graph_says_how_to_make_one(tmp_path, tiny_pipeline):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    result = runner.invoke(app, ["sample", str(tmp_path / "model"), "--onnx", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "slimdiff export" in result.output and "Traceback" not in result.output


def test_class_conditional_export(tmp_path, tiny_condition_unet):
    unet = tiny_condition_unet(seed=1)
    path = export_onnx(unet, tmp_path / ONNX_FILE)
    onnx_unet = OnnxUNet(path, unet.config)
    assert onnx_unet.input_names == ["sample", "timestep", "class_labels"]
    assert relative_error(unet, onnx_unet, batch=3) <= 1e-4


def test_text_conditional_export(tmp_path, tiny_condition_unet):
    unet = tiny_condition_unet(seed=2, classes=None)
    onnx_unet = OnnxUNet(export_onnx(unet, tmp_path / ONNX_FILE), unet.config)
    assert onnx_unet.input_names == ["sample", "timestep", "encoder_hidden_states"]
    assert relative_error(unet, onnx_unet, batch=3) <= 1e-4


def test_export_to_diffusers_round_trip(tmp_path, tiny_pipeline, tiny_unet, assert_same_pipeline):
    tiny_pipeline(tiny_unet(seed=5)).save_pretrained(tmp_path / "model")
    tiny_unet(seed=5).save_pretrained(tmp_path / "bare")
    result = runner.invoke(
        app, ["export", str(tmp_path / "bare"), "--to", "diffusers", "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "export.json").read_text())["to"] == "diffusers"
    pipes = [SlimDiffusionPipeline.from_pretrained(tmp_path / folder) for folder in ("model", "d")]
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    assert_same_pipeline(*pipes, seed=1, sampler="unipc")


def test_export_mistakes_are_one_line(tmp_path, tiny_unet):
    tiny_unet().save_pretrained(tmp_path / "bare")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    cases = [
        (["--to", "tflite", "--out", str(tmp_path / "o")], "unknown --to 'tflite'; valid: diffusers, onnx"),
        (["--to", "onnx", "--out", str(tmp_path / "full")], "not empty"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["export", str(tmp_path / "bare"), *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app, ["export", str(tmp_path / "missing"), "--to", "onnx", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "missing is neither a model folder" in " ".join(result.output.split())
