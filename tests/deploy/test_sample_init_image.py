"""`slimdiff sample MODEL --init-image PATH --strength S [--mask PATH]`: images and sample.json, an image of
another size fitted to the model's (centre crop, resize; its mask the same way), and bad inputs refused with one
line before anything is written."""

import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from slimdiff.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_pipeline, tiny_unet, tiny_kl):
    root = tmp_path_factory.mktemp("init")
    tiny_pipeline(tiny_unet(seed=1)).save_pretrained(root / "pixels")
    tiny_pipeline(tiny_unet(channels=4, size=4), vae=tiny_kl()).save_pretrained(root / "latent")
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "image.png")
    Image.fromarray(pixels[:6, :6]).save(root / "small.png")
    wide = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(wide).save(root / "wide.png")
    wide_mask = np.zeros((12, 16), np.uint8)
    wide_mask[:, 8:] = 255  # the right half, also after the centre crop (columns 2–13) and the resize
    Image.fromarray(wide_mask).save(root / "wide-mask.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255  # repaint the right half
    Image.fromarray(mask).save(root / "mask.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def _sample(files, model, out, *args):
    args = [str(files / a) if a.endswith(".png") else a for a in args]
    return runner.invoke(app, ["sample", str(files / model), "--out", str(out), "--steps", "4", *args])


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


@pytest.mark.parametrize("model", ["pixels", "latent"])
def test_inpainting_writes_images_that_keep_the_black_pixels(files, tmp_path, model):
    result = _sample(files, model, tmp_path / "o", "-n", "3", "--batch-size", "2", "--scheduler", "ddim",
                     "--init-image", "image.png", "--mask", "mask.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    image = _png(files / "image.png")
    for i in range(3):
        drawn = _png(tmp_path / "o" / f"{i:06d}.png")
        assert np.abs(drawn[:, :4] - image[:, :4]).max() == 0  # kept: the image's own pixels
        assert np.abs(drawn[:, 4:] - image[:, 4:]).max() > 10  # repainted
    record = json.loads((tmp_path / "o" / "sample.json").read_text())
    assert record["init_image"].endswith("image.png") and record["mask"].endswith("mask.png")
    assert record["strength"] == 1.0  # diffusers' inpainting default
    assert (tmp_path / "o" / "grid.png").is_file()


def test_img2img_at_strength_zero_writes_the_image_back(files, tmp_path):
    result = _sample(
        files, "pixels", tmp_path / "o", "-n", "2", "--init-image", "image.png", "--strength", "0"
    )
    assert result.exit_code == 0, result.output
    for i in range(2):
        assert np.abs(_png(tmp_path / "o" / f"{i:06d}.png") - _png(files / "image.png")).max() == 0
    record = json.loads((tmp_path / "o" / "sample.json").read_text())
    assert record["strength"] == 0.0 and record["mask"] is None


def test_sample_json_records_no_strength_without_an_image(files, tmp_path):
    assert _sample(files, "pixels", tmp_path / "o", "-n", "1").exit_code == 0
    record = json.loads((tmp_path / "o" / "sample.json").read_text())
    assert record["init_image"] is None and record["strength"] is None and record["mask"] is None
    assert record["init_image_fitted"] is None


def test_an_image_of_another_size_is_centre_cropped_and_resized_to_the_model_s(files, tmp_path):
    result = _sample(
        files, "pixels", tmp_path / "o", "-n", "1", "--init-image", "wide.png", "--strength", "0"
    )
    assert result.exit_code == 0, result.output
    fitted = np.asarray(ImageOps.fit(Image.open(files / "wide.png"), (8, 8), Image.Resampling.BICUBIC))
    assert np.abs(_png(tmp_path / "o" / "000000.png") - fitted.astype(int)).max() == 0
    record = json.loads((tmp_path / "o" / "sample.json").read_text())
    assert record["init_image_fitted"] == "12×16 → 8×8 (centre crop, then resize)"


def test_its_mask_is_fitted_the_same_way_and_stays_black_and_white(files, tmp_path):
    result = _sample(files, "pixels", tmp_path / "o", "-n", "1", "--scheduler", "ddim",
                     "--init-image", "wide.png", "--mask", "wide-mask.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    fitted = np.asarray(ImageOps.fit(Image.open(files / "wide.png"), (8, 8), Image.Resampling.BICUBIC))
    drawn = _png(tmp_path / "o" / "000000.png")
    assert np.abs(drawn[:, :4] - fitted[:, :4].astype(int)).max() == 0  # kept
    assert np.abs(drawn[:, 4:] - fitted[:, 4:].astype(int)).max() > 10  # repainted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mask", "mask.png"], "--mask and --strength need --init-image"),
        (["--strength", "0.5"], "--mask and --strength need --init-image"),
        (["--init-image", "image.png", "--strength", "1.5"], "Invalid value for '--strength'"),
        (
            ["--init-image", "image.png", "--mask", "small.png"],
            "--mask is 6×6 but --init-image is 8×8; pass a mask of the image's size",
        ),
        (["--init-image", "broken.png"], "cannot read --init-image"),
        (["--init-image", "missing.png"], "cannot read --init-image"),
        (["--init-image", "image.png", "--mask", "broken.png"], "cannot read --mask"),
    ],
)
def test_bad_inputs_are_one_clear_line_and_nothing_is_written(files, tmp_path, args, message):
    result = _sample(files, "pixels", tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_slim_decoder_cannot_encode_the_image(files, tmp_path):
    from slimdiff.deploy.sample_folder import SampleSettings, sample_folder
    from slimdiff.errors import ConfigError
    from slimdiff.models.slim_decoder import slim_decoder_for
    from slimdiff.sampling.pipeline import load_pipeline

    slim_decoder_for(load_pipeline(files / "latent").vae).save_pretrained(tmp_path / "slim")
    settings = SampleSettings(
        model=str(files / "latent"),
        out=tmp_path / "o",
        decoder=str(tmp_path / "slim"),
        init_image=str(files / "image.png"),
    )
    with pytest.raises(ConfigError, match="needs the autoencoder's encoder.*--decoder full"):
        sample_folder(settings)
    assert not settings.out.exists()
