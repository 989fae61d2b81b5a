"""Built-in crop sets: training crops and held-out images come from disjoint regions of every picture, native
crops are exact slices, sizes that do not fit are one-line errors, and cache keys follow the crop rule."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from slimdiff.data import builtin
from slimdiff.data.builtin import HELD_OUT_PERCENT, held_out_start
from slimdiff.data.datasets import held_out_images, make_dataset
from slimdiff.data.latent_cache import source_fingerprint
from slimdiff.errors import DataError

HEIGHT, WIDTH = 100, 200  # held-out strip: columns 140…199, squares up to 60


def coded_picture() -> torch.Tensor:
    """(3, H, W) uint8 whose pixels say where they are: channel 0 = column, 1 = row, 2 = a mix of both."""
    rows = torch.arange(HEIGHT)[:, None].expand(HEIGHT, WIDTH)
    cols = torch.arange(WIDTH)[None, :].expand(HEIGHT, WIDTH)
    return torch.stack([cols, rows, (7 * rows + 13 * cols) % 256]).to(torch.uint8)


def step_picture() -> torch.Tensor:
    """Black where training crops may come from, white in the held-out strip."""
    picture = torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8)
    picture[:, :, held_out_start(WIDTH) :] = 255
    return picture


@pytest.fixture
def pictures(monkeypatch):
    """Replace the textures' pictures by `make()`'s, as three classes."""

    def use(make):
        fake = {name: make() for name in ("brick", "grass", "gravel")}
        monkeypatch.setattr(builtin, "source_pictures", lambda kind: fake)
        return fake

    return use


def pixels(images: torch.Tensor) -> torch.Tensor:
    return ((images + 1) * 127.5).round().long()


def test_native_crops_are_exact_slices_and_the_regions_never_meet(pictures):
    picture = pictures(coded_picture)["brick"]
    start = held_out_start(WIDTH)
    assert start == 140 and WIDTH - start == WIDTH * HELD_OUT_PERCENT // 100
    train = make_dataset("builtin:textures:native", 12, seed=0, length=300)
    training = torch.stack([train[i] for i in range(300)])
    held_out = held_out_images("builtin:textures:native", 12, 300, seed=0)
    for images, lowest, highest in ((training, 0, start - 1), (held_out, start, WIDTH - 1)):
        assert images.shape == (300, 3, 12, 12)
        columns = pixels(images)[:, 0]
        assert columns.min() == lowest and columns.max() == highest  # each region, up to its edges
        for image in pixels(images):
            left, top = int(image[0, 0, 0]), int(image[1, 0, 0])
            assert torch.equal(image, picture[:, top : top + 12, left : left + 12].long())


def test_resized_crops_take_no_pixel_from_the_other_region(pictures):
    pictures(step_picture)
    train = make_dataset("builtin:textures", 8, seed=3, length=200)
    assert train.largest == [32, 32, 32]  # sides 8…32 pixels, resized to 8
    training = torch.stack([train[i] for i in range(200)])
    held_out = held_out_images("builtin:textures", 8, 200, seed=3)
    # one leaked column of the other colour would move an edge pixel by far more than float rounding
    torch.testing.assert_close(training, torch.full_like(training, -1.0), rtol=0, atol=1e-4)
    torch.testing.assert_close(held_out, torch.full_like(held_out, 1.0), rtol=0, atol=1e-4)


def test_resized_crops_mix_scales_native_ones_do_not(pictures):
    pictures(coded_picture)
    resized = make_dataset("builtin:textures", 8, seed=0, length=50)
    native = make_dataset("builtin:textures:native", 8, seed=0, length=50)
    spans = [int(pixels(resized[i])[0].max() - pixels(resized[i])[0].min()) for i in range(50)]
    assert max(spans) > 16  # crops up to 32 columns wide, shrunk to 8
    assert all(int(pixels(native[i])[0].max() - pixels(native[i])[0].min()) == 7 for i in range(50))


def test_labels_name_the_source_picture(pictures):
    for code, picture in enumerate(pictures(coded_picture).values()):
        picture[2] = 100 * code  # tell the pictures apart
    labelled = make_dataset("builtin:textures:native", 8, length=40, conditioning="class")
    assert labelled.class_names == ["brick", "grass", "gravel"]
    items = [labelled[i] for i in range(40)]
    assert {label for _, label in items} == {0, 1, 2}
    for image, label in items:
        assert pixels(image)[2].unique().tolist() == [100 * label]


def test_a_size_beyond_the_held_out_strip_is_one_line(pictures):
    pictures(coded_picture)
    assert make_dataset("builtin:textures", 60, length=2)[1].shape == (3, 60, 60)
    for source in ("builtin:textures", "builtin:textures:native"):
        with pytest.raises(DataError, match=r"size 61 does not fit builtin:textures.*'brick'.*up to 60") as e:
            make_dataset(source, 61)
        assert "\n" not in str(e.value)


def test_real_pictures_hold_sizes_up_to_their_narrowest_strip():
    assert held_out_images("builtin:photos", 136, 1).shape == (1, 3, 136, 136)
    with pytest.raises(DataError, match=r"'chelsea'.*up to 136; use a smaller size or a folder"):
        held_out_images("builtin:photos", 137, 1)
    with pytest.raises(DataError, match=r"size 155 does not fit builtin:textures.*up to 154"):
        make_dataset("builtin:textures:native", 155)
    with pytest.raises(DataError, match="valid: .*builtin:textures:native"):
        make_dataset("builtin:digits:native", 8)


def test_cache_keys_follow_the_crop_rule_and_the_region(tmp_path):
    training = source_fingerprint("builtin:textures", 16, 0, 6, "image")
    rule_1 = hashlib.sha256(json.dumps(["builtin:textures", 16, 0, 6, "image"]).encode()).hexdigest()
    assert training != rule_1  # latents / features of the old crops are never read
    assert training != source_fingerprint("builtin:textures", 16, 0, 6, "image", held_out=True)
    folder = str(tmp_path)
    assert source_fingerprint(folder, 16, 0, 6, "image") == source_fingerprint(
        folder, 16, 0, 6, "image", held_out=True
    )  # a folder is read as it is
