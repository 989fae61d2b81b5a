import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.deploy.sample_folder import SampleSettings, sample_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_pipeline, tiny_unet, tiny_condition_unet):
    root = tmp_path_factory.mktemp("models")
    tiny_pipeline(tiny_unet(seed=1)).save_pretrained(root / "student")
    tiny_unet(seed=2, widths=(16, 32), slim=False).save_pretrained(root / "teacher")
    tiny_pipeline(tiny_condition_unet()).save_pretrained(root / "classes")
    return root


def _sample(model, out, *args):
    return runner.invoke(app, ["sample", str(model), "--out", str(out), "--steps", "3", *args])


def _pngs(folder, n):
    return [np.asarray(Image.open(folder / f"{i:06d}.png")) for i in range(n)]


def test_sample_writes_numbered_pngs_a_grid_and_the_config(models, tmp_path):
    result = _sample(
        models / "student", tmp_path / "s", "-n", "5", "--batch-size", "2", "--scheduler", "unipc"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s").glob("0*.png")) == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(tmp_path / "s" / "000004.png").size == (8, 8)
    assert Image.open(tmp_path / "s" / "grid.png").size[0] > 8 * 2
    config = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert config["scheduler"] == "unipc" and config["num_images"] == 5
    assert isinstance(config["seconds"], float) and config["seconds"] >= 0  # wall time: any value may occur
    assert config["noise_schedule"]["beta_schedule"] == "scaled_linear"
    # an ordinary model (no default_steps) without --scheduler / --steps: dpm++, 20 steps
    record = sample_folder(SampleSettings(str(models / "student"), tmp_path / "d", num_images=1))
    assert (record["scheduler"], record["steps"]) == ("dpm++", 20)


def test_images_do_not_depend_on_the_batch_size(models, tmp_path):
    for batch in ("1", "3"):
        result = _sample(
            models / "student", tmp_path / batch, "-n", "3", "--batch-size", batch, "--scheduler", "ddim"
        )
        assert result.exit_code == 0, result.output
    for a, b in zip(_pngs(tmp_path / "1", 3), _pngs(tmp_path / "3", 3), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_refuses_a_non_empty_folder_without_overwrite(models, tmp_path):
    assert _sample(models / "student", tmp_path / "s", "-n", "1").exit_code == 0
    again = _sample(models / "student", tmp_path / "s", "-n", "1")
    assert again.exit_code == 2 and "not empty" in again.output and "--overwrite" in again.output
    assert _sample(models / "student", tmp_path / "s", "-n", "1", "--overwrite").exit_code == 0


def test_stitching_from_the_command_line(models, tmp_path):
    common = ["-n", "2", "--scheduler", "ddim"]
    teacher = ["--stitch-teacher", str(models / "teacher")]
    runs = {
        "student": _sample(models / "student", tmp_path / "student", *common),
        "teacher": _sample(models / "teacher", tmp_path / "teacher", *common),
        "stitch0": _sample(
            models / "student", tmp_path / "stitch0", *common, *teacher, "--stitch-fraction", "0"
        ),
    }
    assert all(r.exit_code == 0 for r in runs.values()), [r.output for r in runs.values()]
    # Each run loads the teacher folder itself: equal weights, outputs equal to rounding, so a pixel may
    # round to the neighbouring grey level (as in test_images_do_not_depend_on_the_batch_size).
    for a, b in zip(_pngs(tmp_path / "stitch0", 2), _pngs(tmp_path / "teacher", 2), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    config = json.loads((tmp_path / "stitch0" / "sample.json").read_text())
    assert config["stitch_fraction"] == 0.0 and config["stitch_teacher"].endswith("teacher")


def test_class_conditional_sampling_with_guidance(models, tmp_path):
    result = _sample(models / "classes", tmp_path / "g", "-n", "2", "--label", "3", "--guidance", "2.5")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "g" / "sample.json").read_text())["guidance"] == 2.5


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        ("student", ["--scheduler", "heun"], "unknown --scheduler 'heun'; valid: ddpm, ddim, pndm, dpm++"),
        ("student", ["--stitch-teacher", "teacher", "--scheduler", "dpm++"], "single-step --scheduler"),
        ("student", ["--guidance", "2"], "--guidance needs --label"),
        ("student", ["--label", "1"], "not class-conditional"),
        ("classes", ["--label", "9", "--guidance", "2"], "class labels must lie in [0, 4]"),
        ("student", ["--stitch-teacher", "missing", "--scheduler", "ddim"], "cannot load --stitch-teacher"),
        ("missing", [], "missing is neither a model folder nor a hub id"),  # the loader's ModelError
        ("student", ["--steps", "0"], "Invalid value for '--steps'"),
    ],
)
def test_user_mistakes_are_one_clear_line(models, tmp_path, model, args, message):
    args = [str(models / a) if a in ("teacher", "missing") else a for a in args]
    result = _sample(models / model, tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


# --- the library call behind `slimdiff sample` --------------------------------------------------------------


def test_sample_folder_writes_the_images_generate_draws(models, tmp_path):
    from slimdiff.deploy.sample_folder import load_for_sampling
    from slimdiff.reporting.images import to_uint8
    from slimdiff.sampling.generate import generate

    settings = SampleSettings(
        model=str(models / "student"),
        out=tmp_path / "s",
        scheduler="ddim",
        steps=3,
        num_images=3,
        batch_size=2,
    )
    saved = []
    record = sample_folder(settings, progress=saved.append)
    assert saved == [2, 1]  # one report per batch, with its size
    assert sorted(p.name for p in settings.out.glob("*.png")) == [
        "000000.png",
        "000001.png",
        "000002.png",
        "grid.png",
    ]
    assert json.loads((settings.out / "sample.json").read_text()) == record
    assert record["num_images"] == 3 and record["scheduler"] == "ddim" and "out" not in record
    assert record["negative_prompt"] is None and record["stitch_fraction"] is None  # no prompt, no teacher
    # the PNGs are generate's images from the same seed, saved at the one save point
    expected = to_uint8(
        generate(load_for_sampling(settings.model), 3, 0, 3, num_inference_steps=3, sampler="ddim")
    )
    for i, pixels in enumerate(expected):
        assert np.abs(_pngs(settings.out, 3)[i].astype(int) - pixels.astype(int)).max() <= 1


def test_a_setting_the_pipeline_refuses_leaves_no_sample_json(models, tmp_path):
    from slimdiff.deploy.sample_folder import SampleSettings, sample_folder
    from slimdiff.errors import ConfigError

    settings = SampleSettings(
        model=str(models / "classes"), out=tmp_path / "g", steps=2, num_images=2, label="9", guidance=2.0
    )
    with pytest.raises(ConfigError, match=r"class labels must lie in \[0, 4\]"):
        sample_folder(settings)
    assert not settings.out.exists()  # nothing written, not even an empty folder
