import json
import shutil

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.metrics import fid
from slimdiff.models.size import count_params
from slimdiff.reporting.images import to_uint8
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

runner = CliRunner()


def _textures(n, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 2 - 1).cumsum(-1).tanh()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i, pixels in enumerate(to_uint8(_textures(8))):
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_pipeline, tiny_unet):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline(tiny_unet(size=16)).save_pretrained(folder)
    return folder


class FloatInput(torch.nn.Module):
    def forward(self, images):
        return images.float() / 255


def _run(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_image_folder_eval_runs_what_it_can_and_says_why_not_the_rest(image_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "out"
    result = _run(
        image_dir,
        "--data",
        image_dir,
        "--size",
        16,
        "-n",
        8,
        "--metrics",
        "swd,spectrum,fid,macs",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    # The folder is its own reference here: same images, same patches → SWD 0 and no spectrum error.
    assert report["results"]["swd"]["mean"] == 0.0
    assert report["results"]["spectrum_error"] == {"low": 0.0, "high": 0.0}
    assert fid.INCEPTION_FILE in report["skipped"]["fid"] and "needs a model" in report["skipped"]["macs"]
    assert json.loads((out / "config.json").read_text())["size"] == 16
    for name in ("summary.md", "spectra.png", "samples.png"):
        assert (out / name).is_file()
    assert "Traceback" not in result.output


def test_fid_and_kid_through_the_cli_with_a_stand_in_extractor(image_dir, tmp_path, monkeypatch):
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    extractor = torch.nn.Sequential(FloatInput(), linear)
    monkeypatch.setattr(fid, "inception_extractor", lambda weights: extractor)
    monkeypatch.setenv("SLIMDIFF_CACHE", str(tmp_path / "cache"))
    for run in range(2):  # the second run reads the real features from the cache
        out = tmp_path / f"out{run}"
        result = _run(
            image_dir, "--data", image_dir, "--size", 16, "-n", 8, "--metrics", "fid,kid", "--out", out
        )
        assert result.exit_code == 0, result.output
        scores = json.loads((out / "metrics.json").read_text())["results"]
        assert scores["fid"] == pytest.approx(0.0, abs=1e-4)
        assert scores["kid"]["subset_size"] == 8
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1


def test_model_eval_generates_and_measures_the_model(model_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--data", "builtin:textures", "-n", 4, "--steps", 1, "--batch-size", 4, "--buckets", 2]
    result = _run(model_dir, *args, "--metrics", "swd,eps-spectrum,macs", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    results = report["results"]
    assert set(results["swd"]) == {"16x16", "mean"} and results["swd"]["mean"] > 0
    eps = results["eps_spectrum"]
    assert len(eps["buckets"]) == 2 and eps["low"] > 0 and eps["high"] > 0
    unet = SlimDiffusionPipeline.from_pretrained(model_dir).unet
    assert results["params"] == count_params(unet) and results["macs"] > 0
    assert report["skipped"] == {}
    assert (out / "eps_spectrum.png").is_file() and (out / "samples.png").is_file()
    assert "| 500–999 |" in (out / "summary.md").read_text()


def test_eps_spectrum_noises_with_the_models_own_schedule(model_dir, tmp_path):
    from diffusers import DDPMScheduler

    church = tmp_path / "church"
    shutil.copytree(model_dir, church)
    config = json.loads((church / "scheduler" / "scheduler_config.json").read_text())
    DDPMScheduler.from_config({**config, "beta_end": 0.0155}).save_pretrained(church / "scheduler")
    args = [
        "--data",
        "builtin:textures",
        "-n",
        4,
        "--batch-size",
        4,
        "--buckets",
        2,
        "--metrics",
        "eps-spectrum",
    ]
    scores = []
    for folder in (model_dir, church):
        assert _run(folder, *args, "--out", tmp_path / f"out-{folder.name}").exit_code == 0
        metrics = json.loads((tmp_path / f"out-{folder.name}" / "metrics.json").read_text())
        scores.append(metrics["results"]["eps_spectrum"]["buckets"])
    # Same weights and x0, same noise; only ᾱ_t differs, so every bucket's error differs.
    assert all(a["low"] != b["low"] and a["high"] != b["high"] for a, b in zip(*scores, strict=True))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "fid,bogus"], "unknown metric(s) bogus"),
        (["--metrics", "swd"], "need real images: pass --data"),
        (["--metrics", "macs", "--size", "32"], "drop --size or set it to 16"),
        (["--metrics", "macs", "--scheduler", "rk4"], "unknown scheduler 'rk4'"),
    ],
)
def test_user_mistakes_on_a_model_are_one_line(model_dir, tmp_path, args, message):
    result = _run(model_dir, *args, "--out", tmp_path)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_user_mistakes_on_targets_and_data_are_one_line(image_dir, tmp_path):
    missing = _run(tmp_path / "nothing" / "here", "--metrics", "macs")
    assert missing.exit_code == 2 and "is neither a model folder nor a hub id" in missing.output
    no_size = _run(image_dir, "--data", image_dir, "--metrics", "swd", "--out", tmp_path / "no-size")
    assert no_size.exit_code == 0 and "--size 16, read from the images" in no_size.output
    assert json.loads((tmp_path / "no-size" / "config.json").read_text())["size"] == 16
    too_many = _run(
        image_dir,
        "--data",
        image_dir,
        "--size",
        16,
        "-n",
        8,
        "--n-real",
        50,
        "--metrics",
        "swd",
        "--out",
        tmp_path,
    )
    assert too_many.exit_code == 2 and "fewer than the 50 requested" in too_many.output


def test_a_folder_of_mixed_sizes_asks_for_a_size_instead_of_taking_the_first(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    Image.new("RGB", (32, 32)).save(folder / "b.png")
    (folder / "broken.png").write_bytes(b"not an image")
    result = runner.invoke(
        app,
        ["eval", str(folder), "--data", "builtin:textures", "--metrics", "swd", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "holds images of 2 sizes" in result.output and "--size" in result.output
    assert "Traceback" not in result.output


def test_warnings_on_the_command_line_are_one_line_each(tmp_path):
    import warnings

    from slimdiff.cli import app as _  # noqa: F401  (installs the command line's warning format)

    line = warnings.formatwarning(
        "skipping unreadable image x.png", UserWarning, "/src/datasets.py", 57, "code"
    )
    assert line == "warning: skipping unreadable image x.png\n"
