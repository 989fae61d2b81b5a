"""PNG grids: the pixels read back are the images' 8-bit levels, and a write stopped midway leaves nothing."""

import numpy as np
import pytest
import torch
from PIL import Image

from slimdiff.reporting.images import save_grid, to_uint8


def test_a_one_image_grid_reads_back_as_its_8_bit_levels(tmp_path):
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_grid(image, tmp_path / "grid.png", nrow=1, padding=0)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), to_uint8(image)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_a_write_stopped_midway_leaves_no_truncated_png(tmp_path, monkeypatch):
    def half_then_fail(self, fp, format=None, **params):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG\r\n")  # a PNG cut short, as a killed process leaves it
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_grid(torch.zeros(2, 3, 4, 4), tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []
