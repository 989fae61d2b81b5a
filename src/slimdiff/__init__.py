"""slimdiff: slim diffusion models that keep high-frequency detail (Spectral Diffusion, CVPR 2023)."""

from slimdiff.models.gating import WaveletGate, WGDown, WGUp
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.wavelets import dwt2, idwt2

__version__ = "0.1.0"
__all__ = [
    "SlimUNet2DConditionModel",
    "SlimUNet2DModel",
    "WGDown",
    "WGUp",
    "WaveletGate",
    "dwt2",
    "idwt2",
]
