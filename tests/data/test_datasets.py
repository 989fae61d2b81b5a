"""Datasets: preprocessing values, bad-file handling, built-in crops, HF datasets, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from slimdiff.data.datasets import load_images, make_dataset
from slimdiff.data.transforms import to_tensor
from slimdiff.errors import DataError


def test_to_tensor_values_and_modes():
    # Black → -1 and white → +1 exactly; a grayscale image becomes three equal channels.
    gray = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8))
    x = to_tensor(gray, 2)
    assert x.shape == (3, 2, 2)
    assert torch.equal(x[0], torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    # RGBA and palette images convert to RGB, transparency composited on white (alpha 10/255 keeps ~4% of the
    # red); a non-square image is centre-cropped before resizing.
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 10))
    expected_green = (255 - round(255 * 10 / 255)) / 127.5 - 1
    torch.testing.assert_close(
        to_tensor(rgba, 4)[:, 0, 0], torch.tensor([1.0, expected_green, expected_green]), atol=0.01, rtol=0
    )
    wide = np.zeros((4, 8, 3), dtype=np.uint8)
    wide[:, 2:6] = 255  # only the centre 4×4 square is white
    assert torch.equal(to_tensor(Image.fromarray(wide), 4), torch.ones(3, 4, 4))
    assert to_tensor(Image.new("P", (8, 8)), 4).shape == (3, 4, 4)


def test_folder_skips_bad_files_and_strict_fails(image_folder):
    root = image_folder()
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        dataset = make_dataset(str(root), 8)
    assert len(dataset) == 3  # rgb, grayscale, rgba
    assert sorted(p.rsplit("/", 1)[-1] for p in dataset.skipped) == ["not-an-image.jpg", "truncated.png"]
    for i in range(len(dataset)):
        x = dataset[i]
        assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(DataError, match=r"not-an-image\.jpg.*strict: true"):
        make_dataset(str(root), 8, strict=True)


def test_builtin_crops_are_deterministic_per_seed():
    a = make_dataset("builtin:textures", 16, seed=1, length=20)
    b = make_dataset("builtin:textures", 16, seed=1, length=20)
    c = make_dataset("builtin:textures", 16, seed=2, length=20)
    assert len(a) == 20
    assert torch.equal(a[7], b[7])
    assert not torch.equal(a[7], c[7])
    assert torch.equal(a[3][0], a[3][2])  # grayscale textures as three equal channels
    photos = make_dataset("builtin:photos", 32, length=50)
    stack = torch.stack([photos[i] for i in range(50)])
    assert stack.min() >= -1 and stack.max() <= 1
    assert (stack[:, 0] - stack[:, 1]).abs().max() > 0.1  # real colour


def test_hf_dataset_from_disk_matches_preprocessing(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 20, 3), dtype=np.uint8))
        for i in range(4)
    ]
    table = datasets.Dataset.from_dict({"img": images}).cast_column("img", datasets.Image())
    table.save_to_disk(str(tmp_path / "ds"))
    dataset = make_dataset(str(tmp_path / "ds"), 8, image_column="img")
    assert len(dataset) == 4
    assert torch.allclose(dataset[2], to_tensor(images[2], 8), atol=1 / 127.5)
    with pytest.raises(DataError, match="no column 'image'; columns: img"):
        make_dataset(str(tmp_path / "ds"), 8)


def test_missing_and_empty_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        make_dataset(str(tmp_path / "missing"), 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        make_dataset(str(tmp_path / "empty"), 8)
    with pytest.raises(DataError, match="valid: builtin:photos, builtin:textures"):
        make_dataset("builtin:faces", 8)


def test_load_images(image_folder):
    x = load_images("builtin:textures", 16, 5, seed=3)
    assert x.shape == (5, 3, 16, 16)
    assert torch.equal(x[4], make_dataset("builtin:textures", 16, seed=3, length=5)[4])
    root = image_folder(bad=False)
    assert load_images(str(root), 8, 2, seed=0).shape == (2, 3, 8, 8)
    with pytest.raises(DataError, match="fewer than the 10 requested"):
        load_images(str(root), 8, 10)


def test_open_image_turns_photos_as_their_exif_says(tmp_path):
    from PIL import Image

    from slimdiff.data.transforms import open_image

    pixels = np.zeros((2, 3, 3), dtype=np.uint8)  # 3 wide, 2 high; top-left pixel marked
    pixels[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; show it rotated 90° clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    upright = open_image(tmp_path / "photo.png")
    assert upright.size == (2, 3)
    assert np.asarray(upright)[0, 1].tolist() == [255, 255, 255]  # top-left went to top-right
    assert open_image((tmp_path / "photo.png").read_bytes()).size == (2, 3)


def test_open_image_refuses_a_pixel_bomb_before_decoding(tmp_path):
    from PIL import Image

    from slimdiff.data.transforms import MAX_PIXELS, open_image
    from slimdiff.errors import DataError

    side = int(MAX_PIXELS**0.5) + 16  # over our limit, under PIL's own error limit: PIL would decode it
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 2**20
    with pytest.raises(DataError, match=r"over slimdiff's limit of 64 MP"):
        open_image(tmp_path / "bomb.png")


def test_a_folder_skips_a_pixel_bomb_and_turns_exif_photos(tmp_path):
    from slimdiff.data.transforms import MAX_PIXELS

    side = int(MAX_PIXELS**0.5) + 16
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, :8] = 255  # left half white, 16 wide and 8 high
    exif = Image.Exif()
    exif[0x0112] = 8  # shown rotated 90° counter-clockwise: the white half ends at the bottom
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    with pytest.warns(UserWarning, match="bomb.png"):
        dataset = make_dataset(str(tmp_path), 8)
    assert len(dataset) == 1 and len(dataset.skipped) == 1
    image = dataset[0]
    assert image.shape == (3, 8, 8)
    assert image[:, -1].mean() > 0.9 and image[:, 0].mean() < -0.9  # bottom row white, top row black
