"""slimdiff: slim diffusion models that keep high-frequency detail (Spectral Diffusion, CVPR 2023).

Importing slimdiff registers `SlimDiffusionPipeline`, `SlimUNet2DModel` and `SlimUNet2DConditionModel` with
diffusers (as attributes of the `diffusers` module, the only place diffusers resolves class names from), so that
plain `DiffusionPipeline.from_pretrained(folder_or_hub_id)` and `AutoModel.from_pretrained(…)` load slimdiff
folders. See `slimdiff.sampling.folders`.
"""

from slimdiff.models.gating import WaveletGate, WGDown, WGUp
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling.folders import register_with_diffusers
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.wavelets import dwt2, idwt2

register_with_diffusers(SlimDiffusionPipeline, SlimUNet2DModel, SlimUNet2DConditionModel)

__version__ = "0.1.0"
__all__ = [
    "SlimDiffusionPipeline",
    "SlimUNet2DConditionModel",
    "SlimUNet2DModel",
    "WGDown",
    "WGUp",
    "WaveletGate",
    "dwt2",
    "idwt2",
]
