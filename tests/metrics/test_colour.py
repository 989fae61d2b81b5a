"""Chroma RMS (metrics/colour.py) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from slimdiff.metrics.colour import chroma_rms


def test_grey_images_have_no_chroma():
    grey = torch.rand(3, 1, 8, 8).expand(3, 3, 8, 8) * 2 - 1
    assert chroma_rms(grey) == pytest.approx(0.0, abs=1e-6)  # the channel mean rounds in float32


def test_pure_red_has_the_closed_form_chroma():
    # (1, −1, −1): grey −1/3, distances (4/3, −2/3, −2/3), mean square 8/9
    red = torch.tensor([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert chroma_rms(red) == pytest.approx(2 * math.sqrt(2) / 3)
    half_grey = torch.cat([red, torch.zeros(2, 3, 4, 4)])  # the mean square halves
    assert chroma_rms(half_grey) == pytest.approx(2 / 3)
