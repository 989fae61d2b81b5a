"""Named evaluation protocols: how many images, which solver, how many steps, η and guidance.

`slimdiff eval --protocol NAME` fills every sampling setting the user leaves open from the protocol and records
the protocol (and any setting that departs from it) in metrics.json. The default, `fast`, is deterministic and
cheap enough for comparing two models on a CPU; the `ldm-*` protocols are the settings the CompVis LDM
checkpoints were scored with (latent-diffusion README: FFHQ / Bedroom 200 DDIM steps η = 1, CelebA-HQ 200 η = 0,
Church 400 η = 0) and that the paper reuses (50k generated vs 50k real images). Only the paper's numbers at these
settings are comparable with its tables.

One difference stays: slimdiff's solvers space their steps "trailing" (the first step at t = 999), CompVis' DDIM
"uniform" (t = 1, 1 + 1000/S, …); at 200–400 steps the two grids differ by less than one step size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from slimdiff.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    scheduler: str  # a name from slimdiff.sampling.solvers.SAMPLERS
    steps: int
    eta: float = 0.0  # DDIM's η (0: deterministic); ignored by the other solvers
    n: int = 1000  # generated images
    n_real: int | None = None  # real images (None: as n)
    guidance: float | None = None  # classifier-free guidance w for class-conditional models (balanced labels)
    source: str = ""  # where the setting comes from

    def to_dict(self) -> dict:
        return asdict(self)


PAPER_N = 50_000
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            "fast",
            "deterministic DPM-Solver++ (2nd order), 20 steps, 1000 images: quick, repeatable comparisons",
            "dpm++",
            20,
            source="slimdiff default (same as `slimdiff sample`)",
        ),
        Protocol(
            "ldm-celebahq",
            "CelebA-HQ 256: DDIM 200 steps, η = 0, 50k vs 50k",
            "ddim",
            200,
            0.0,
            PAPER_N,
            PAPER_N,
            source="latent-diffusion README (LDM-VQ-4 CelebA-HQ)",
        ),
        Protocol(
            "ldm-ffhq",
            "FFHQ 256: DDIM 200 steps, η = 1, 50k vs 50k",
            "ddim",
            200,
            1.0,
            PAPER_N,
            PAPER_N,
            source="latent-diffusion README (LDM-VQ-4 FFHQ)",
        ),
        Protocol(
            "ldm-bedroom",
            "LSUN-Bedroom 256: DDIM 200 steps, η = 1, 50k vs 50k",
            "ddim",
            200,
            1.0,
            PAPER_N,
            PAPER_N,
            source="latent-diffusion README (LDM-VQ-4 LSUN-Bedrooms)",
        ),
        Protocol(
            "ldm-church",
            "LSUN-Church 256: DDIM 400 steps, η = 0, 50k vs 50k",
            "ddim",
            400,
            0.0,
            PAPER_N,
            PAPER_N,
            source="latent-diffusion README (LDM-KL-8 LSUN-Churches)",
        ),
        Protocol(
            "ldm-cin",
            "ImageNet 256, class-conditional: guidance w = 3.0, balanced labels, DDIM 250 steps, η = 0, 50k vs 50k",
            "ddim",
            250,
            0.0,
            PAPER_N,
            PAPER_N,
            guidance=3.0,
            source="w = 3.0: the paper (and the cin256-v2 notebook); 250 steps, η = 0: our reading of LDM",
        ),
    ]
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}") from None
