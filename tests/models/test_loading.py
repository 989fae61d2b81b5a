"""Every loader turns what the libraries raise into one `ModelError` line naming the path — for a missing path,
a folder without the expected files and a truncated safetensors file — and the CLI prints that line alone."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.errors import ModelError
from slimdiff.models.autoencoders import load_autoencoder
from slimdiff.models.loading import load_teacher, load_unet
from slimdiff.models.slim_decoder import SlimDecoder, load_slim_decoder
from slimdiff.models.text_encoder import load_text_encoder
from slimdiff.sampling.pipeline import load_pipeline

runner = CliRunner()


def _truncate(folder):
    """Cut every safetensors file under `folder` in half, as an interrupted copy leaves it."""
    files = list(folder.rglob("*.safetensors"))
    assert files
    for path in files:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_pipeline, tiny_kl, tiny_clip):
    """A folder per loader, written by the library itself."""
    root = tmp_path_factory.mktemp("saved")
    tiny_pipeline().save_pretrained(root / "pipeline")
    tiny_pipeline().unet.save_pretrained(root / "unet")
    tiny_kl().save_pretrained(root / "kl")
    tiny_clip(root / "clip")
    SlimDecoder(latent_channels=4, factor=2, channels=(8, 8), blocks=(1, 1)).save_pretrained(root / "slim")
    return root


LOADERS = {
    "unet": ("unet", load_unet),
    "teacher": ("pipeline", load_teacher),
    "pipeline": ("pipeline", load_pipeline),
    "autoencoder": ("kl", lambda source: load_autoencoder("kl", str(source))),
    "text encoder": ("clip", load_text_encoder),
    "slim decoder": ("slim", load_slim_decoder),
}


def _one_line_naming(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize("loader", LOADERS)
def test_a_missing_path_is_one_line(loader, tmp_path):
    with pytest.raises(ModelError) as error:
        LOADERS[loader][1](tmp_path / "missing")
    _one_line_naming(error, tmp_path / "missing")


@pytest.mark.parametrize("loader", LOADERS)
def test_a_folder_without_the_model_files_is_one_line(loader, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError) as error:
        LOADERS[loader][1](tmp_path)
    _one_line_naming(error, tmp_path)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_truncated_safetensors_file_is_one_line(loader, saved, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(saved / LOADERS[loader][0], folder)
    _truncate(folder)
    with pytest.raises(ModelError) as error:
        LOADERS[loader][1](folder)
    message = _one_line_naming(error, folder)
    assert message.startswith("cannot load") and "damaged safetensors file" in message
    assert isinstance(error.value.__cause__, Exception)  # the library's error stays attached for a debugger


def test_a_config_that_is_not_json_is_one_line(saved, tmp_path):
    import shutil

    shutil.copytree(saved / "pipeline", tmp_path / "copy")
    (tmp_path / "copy" / "unet" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a valid JSON file") as error:
        load_pipeline(tmp_path / "copy")
    _one_line_naming(error, tmp_path / "copy")


@pytest.mark.parametrize("command", ["profile", "eval"])
def test_the_cli_prints_the_one_line_with_exit_code_2(command, saved, tmp_path):
    import shutil

    source = saved / ("unet" if command == "profile" else "pipeline")
    shutil.copytree(source, tmp_path / "model")
    _truncate(tmp_path / "model")
    args = {"profile": ["--seconds", "0"], "eval": ["--metrics", "macs", "--out", str(tmp_path / "out")]}
    result = runner.invoke(app, [command, str(tmp_path / "model"), *args[command]])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("error: cannot load") and str(tmp_path / "model") in lines[0]
    )
    assert "damaged safetensors file" in lines[0]
