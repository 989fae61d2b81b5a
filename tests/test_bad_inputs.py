"""The battery of bad inputs and faults: each gets one clear line (no traceback), and nothing is lost."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import Config, ConfigError, from_dict, load_config
from slimdiff.data.transforms import to_rgb, to_tensor
from slimdiff.deploy.export import read_record, write_record
from slimdiff.diffusion import training_scheduler
from slimdiff.errors import TrainingError
from slimdiff.models.loading import load_unet
from slimdiff.models.presets import get_preset
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train

MICRO = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "norm_num_groups": 4,
}
runner = CliRunner()


def _config(run, steps=4, every=2, **changes) -> dict:
    config = {
        "model": "tiny-lite",
        "model_overrides": dict(MICRO),
        "data": {"source": "builtin:textures", "size": 16, "length": 64},
        "train": {"steps": steps, "batch_size": 4, "warmup_steps": 1, "base_lr": 1e-4},
        "run": {"dir": str(run), "checkpoint_every": every, "sample_every": 0, "log_every": 1},
    }
    return {**config, **changes}


def _one_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train(from_dict(Config, _config(run)), progress=False)
    return run


# --- resume ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"model": "tiny-sd"}, {"train": {"steps": 1, "batch_size": 4, "warmup_steps": 0, "base_lr": 1e-4}}],
    ids=["other-model", "fewer-steps"],
)
def test_a_refused_resume_changes_nothing_in_the_run_folder(trained_run, tmp_path, change):
    before = _snapshot(trained_run)
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_config(trained_run, **change)))
    result = runner.invoke(app, ["train", str(path), "--resume", "latest"])
    assert result.exit_code == 2
    line = _one_line(result)
    # refused by the run's config.yaml (the model; the warm-up that came with fewer steps), one key named
    assert line.startswith("error: cannot resume: ") and (
        " model was 'tiny-lite'" in line or "warmup_steps" in line
    )
    assert _snapshot(trained_run) == before


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    run = tmp_path / "run"
    config = from_dict(Config, _config(run, steps=4, every=2))
    train(config, progress=False)
    newest = list_checkpoints(run / "checkpoints")[-1]
    weights = newest / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    longer = from_dict(Config, _config(run, steps=6, every=2))
    with pytest.warns(UserWarning, match=f"skipping damaged checkpoint .*{newest.name}"):
        train(longer, resume="latest", progress=False)
    assert "resumed from" in (run / "logs" / "run.log").read_text()
    assert "step-00000002" in (run / "logs" / "run.log").read_text().split("resumed from")[-1].splitlines()[0]


@pytest.mark.parametrize("damage", ["zeroed", "missing"])
def test_every_checkpoint_damaged_is_one_line(tmp_path, damage):
    run = tmp_path / "run"
    train(from_dict(Config, _config(run, steps=2, every=2)), progress=False)
    for checkpoint in list_checkpoints(run / "checkpoints"):
        target = checkpoint / "optimizer.safetensors"
        if damage == "zeroed":
            target.write_bytes(bytes(target.stat().st_size))
        else:
            target.unlink()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(run, steps=4, every=2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(app, ["train", str(path), "--resume", "latest"])
    assert result.exit_code == 2 and "every checkpoint is damaged" in _one_line(result)


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_good_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(from_dict(Config, _config(run, steps=2, every=2)), progress=False)
    import slimdiff.training.checkpoint as checkpoint

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(
        TrainingError, match="No space left on device; the last good checkpoint .*step-00000002"
    ):
        train(from_dict(Config, _config(run, steps=4, every=2)), resume="latest", progress=False)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002"]
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_a_saved_ema_folder_loads_without_warnings(trained_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for folder in ("checkpoints/step-00000004/ema", "model"):
            load_unet(trained_run / folder)


# --- images ----------------------------------------------------------------------------------------------


def _gradient(dtype, top: float) -> np.ndarray:
    return np.linspace(0, top, 64, dtype=np.float64).reshape(8, 8).astype(dtype)


@pytest.mark.parametrize(
    ("make", "expected_max"),
    [
        (lambda: Image.fromarray(_gradient(np.uint16, 65535)), 255),
        (lambda: Image.fromarray(_gradient(np.int32, 65535)), 255),
        (lambda: Image.fromarray(_gradient(np.float32, 1.0)), 255),
        (lambda: Image.fromarray(_gradient(np.uint8, 255)).convert("CMYK"), 255),
    ],
    ids=["16-bit", "32-bit int", "32-bit float", "CMYK"],
)
def test_high_bit_depth_and_cmyk_decode_to_the_full_8bit_range(make, expected_max):
    rgb = np.asarray(to_rgb(make()))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == expected_max  # not clipped to white, not crushed to black
    assert len(np.unique(rgb[..., 0])) > 32  # the gradient survives


def test_transparency_is_composited_on_white_not_dropped():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # pure red, fully transparent except one pixel
    rgba[0, 0, 3] = 255
    out = np.asarray(to_rgb(Image.fromarray(rgba, mode="RGBA")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
    palette = Image.fromarray(np.array([[0, 1], [1, 1]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1
    assert tuple(np.asarray(to_rgb(palette))[1, 1]) == (255, 255, 255)


def test_bad_and_tiny_images_in_a_folder(tmp_path):
    from slimdiff.data.datasets import make_dataset

    Image.fromarray(_gradient(np.uint16, 65535)).save(tmp_path / "deep.png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "tiny2.png")
    dataset = make_dataset(str(tmp_path), 16)
    with pytest.warns(UserWarning, match="upscaling it") as record:
        images = [dataset[i] for i in range(len(dataset))]
    assert sum("upscaling" in str(w.message) for w in record) == 1  # warned once, not per image
    assert images[0].max() == 1.0 and images[0].min() == -1.0  # the 16-bit gradient, not all white
    assert to_tensor(Image.open(tmp_path / "deep.png"), 8).shape == (3, 8, 8)


def test_an_oversized_image_is_skipped_like_an_unreadable_one(tmp_path, monkeypatch):
    from slimdiff.data.datasets import make_dataset

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64² = 4096 > 2 × 1000: a decompression bomb
    with pytest.warns(UserWarning, match="skipping unreadable image .*huge.png"):
        dataset = make_dataset(str(tmp_path), 16)
    assert len(dataset) == 1


# --- command line: one clear line, nothing left behind ---------------------------------------------------


def test_malformed_yaml_in_set_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["train.steps=[1, 2"])
    result = runner.invoke(app, ["train", "configs/tiny.yaml", "--set", "train.adam_betas=[0.9,"])
    assert result.exit_code == 2 and "not valid YAML" in _one_line(result)


def test_error_text_is_printed_verbatim(tmp_path):
    weird = tmp_path / "[bold]runs[/bold]" / "x"
    result = runner.invoke(app, ["sample", str(weird), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "[bold]runs[/bold]" in _one_line(result)


@pytest.fixture()
def model_folder(tmp_path):
    torch.manual_seed(0)
    unet = get_preset("tiny-sd").build(
        sample_size=8, block_out_channels=(8, 8, 8), attention_head_dim=8, norm_num_groups=4
    )
    SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler()).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("command", ["sample", "export", "eval"])
def test_an_output_path_that_is_a_file_or_under_a_file_is_one_line(model_folder, tmp_path, command):
    (tmp_path / "file").write_text("x")
    extra = {"export": ["--to", "diffusers"], "eval": ["--metrics", "macs"], "sample": []}[command]
    for out, message in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "lies under a file")):
        result = runner.invoke(app, [command, str(model_folder), "--out", str(out), *extra])
        assert result.exit_code == 2 and message in _one_line(result)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc and /sys")
@pytest.mark.parametrize("command", ["sample", "export", "eval", "analyze"])
def test_an_output_path_under_proc_or_sys_is_one_line(model_folder, command):
    extra = {"export": ["--to", "diffusers"], "eval": ["--metrics", "macs"], "sample": [], "analyze": []}
    for out in ("/proc/slimdiff-test/out", "/sys/slimdiff-test"):
        args = (
            ["analyze", "wiener", "builtin:textures"]
            if command == "analyze"
            else [command, str(model_folder)]
        )
        result = runner.invoke(app, [*args, "--out", out, *extra[command]])
        assert result.exit_code == 2 and "cannot be written" in _one_line(result), result.output


def test_run_dir_under_a_file_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="lies under a file"):
        train(from_dict(Config, _config(tmp_path / "file" / "run")), progress=False)


def test_a_refused_sample_leaves_no_sample_json(model_folder, tmp_path):
    result = runner.invoke(app, ["sample", str(model_folder), "--out", str(tmp_path / "o"), "--label", "3"])
    assert result.exit_code == 2 and "not class-conditional" in _one_line(result)
    assert not (tmp_path / "o" / "sample.json").exists()


def test_bin_weights_are_refused(tmp_path):
    unet = get_preset("tiny-sd").build()
    unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    result = runner.invoke(app, ["sample", str(tmp_path / "bin"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "safetensors only" in _one_line(result)


def test_a_missing_relative_path_offline_never_waits_on_the_network(tmp_path, monkeypatch):
    import slimdiff.models.loading as loading

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout=3.0: False)  # offline
    calls = []
    real = loading.UNet2DModel.load_config

    def record(*args, **kwargs):
        calls.append(kwargs.get("local_files_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loading.UNet2DModel, "load_config", record)
    result = runner.invoke(app, ["sample", "nowhere/model", "--out", "o"])
    assert result.exit_code == 2 and "hub is not reachable (offline?)" in _one_line(result)
    assert calls and all(calls)  # only the local cache was asked: no network retries
    assert not (tmp_path / "o").exists()


def test_stale_onnx_after_export_overwrite_is_never_run(model_folder, tmp_path):
    out = tmp_path / "exported"
    assert runner.invoke(app, ["export", str(model_folder), "--to", "onnx", "--out", str(out)]).exit_code == 0
    # overwrite with a plain diffusers export: the old graph must not survive
    assert (
        runner.invoke(
            app, ["export", str(model_folder), "--to", "diffusers", "--out", str(out), "--overwrite"]
        ).exit_code
        == 0
    )
    assert not (out / "unet" / "model.onnx").exists()
    # a graph that does not belong to the weights beside it is refused
    assert (
        runner.invoke(
            app, ["export", str(model_folder), "--to", "onnx", "--out", str(out), "--overwrite"]
        ).exit_code
        == 0
    )
    torch.manual_seed(1)
    other = get_preset("tiny-sd").build(
        sample_size=8, block_out_channels=(8, 8, 8), attention_head_dim=8, norm_num_groups=4
    )
    other.save_pretrained(out / "unet")
    result = runner.invoke(app, ["sample", str(out), "--onnx", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "was not exported from the weights" in _one_line(result)
    # and a truncated graph is one line too
    assert (
        runner.invoke(
            app, ["export", str(model_folder), "--to", "onnx", "--out", str(out), "--overwrite"]
        ).exit_code
        == 0
    )
    graph = out / "unet" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:200])
    result = runner.invoke(app, ["sample", str(out), "--onnx", "--out", str(tmp_path / "s2")])
    assert result.exit_code == 2 and "is not the file export.json records" in _one_line(result)
    # (recorded as it is now, it reaches onnxruntime, which cannot read it)
    write_record(out, read_record(out))
    result = runner.invoke(app, ["sample", str(out), "--onnx", "--out", str(tmp_path / "s3")])
    assert result.exit_code == 2 and "onnxruntime cannot read" in _one_line(result)


def test_export_overwrite_refuses_a_folder_that_is_not_an_export(model_folder, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    result = runner.invoke(
        app,
        ["export", str(model_folder), "--to", "diffusers", "--out", str(tmp_path / "mine"), "--overwrite"],
    )
    assert result.exit_code == 2 and (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_a_conditional_teacher_is_named_as_the_teacher(tmp_path, tiny_condition_unet):
    tiny_condition_unet(classes=None, size=16).save_pretrained(tmp_path / "teacher")  # text-style context
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path / "run")))
    result = runner.invoke(app, ["distill", str(path), "--teacher", str(tmp_path / "teacher")])
    assert (
        result.exit_code == 2
        and "the teacher is text-conditional but the student is unconditional" in _one_line(result)
    )
    assert not (tmp_path / "run").exists()


def test_eval_that_computes_nothing_exits_non_zero(model_folder, tmp_path):
    result = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "imgs-missing-model") if False else str(model_folder),
            "--metrics",
            "fid",
            "--data",
            "builtin:textures",
            "-n",
            "4",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "e"),
            "--inception-weights",
            str(tmp_path / "none.pth"),
        ],
    )
    assert result.exit_code == 1 and "none of the requested metrics" in result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["skipped"]["fid"]


def test_eval_on_a_small_folder_uses_all_of_it_and_counts_unreadable_files(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "e"
    result = runner.invoke(
        app, ["eval", str(folder), "--data", "builtin:textures", "--metrics", "spectrum", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "using all 5 images" in result.output and "1 unreadable file(s) skipped" in result.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["size"] == 16 and report["unreadable"] and "broken.png" in report["unreadable"][0]
    explicit = runner.invoke(
        app, ["eval", str(folder), "--data", "builtin:textures", "-n", "50", "--out", str(tmp_path / "e2")]
    )
    assert explicit.exit_code == 2 and "5 readable images, fewer than -n 50" in explicit.output
    assert not (tmp_path / "e2").exists()  # nothing created before the inputs are validated
