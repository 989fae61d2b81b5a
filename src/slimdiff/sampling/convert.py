"""`convert_checkpoint`: a CompVis LDM checkpoint (FFHQ, CelebA-HQ, LSUN-Bedroom, LSUN-Church) → a slimdiff
pipeline folder of one of our presets, usable as a teacher (`slimdiff distill --teacher`) or for sampling.

Nothing in the checkpoint is executed: `.safetensors` are read as such and anything else with
`torch.load(weights_only=True)`, which unpickles tensors and plain containers only (a Lightning `.ckpt`'s
`state_dict`, `global_step`, …) and refuses every other object. From the checkpoint come

- the UNet (`model.diffusion_model.*`, or the EMA copy `model_ema.*` with `ema=True`), renamed for the preset by
  `slimdiff.models.compvis` — every tensor must find its place, so a wrong preset is one clear error;
- the noise schedule (`betas`): LDM's "linear" ramp (diffusers `scaled_linear`) with the checkpoint's own β range
  (Church was trained with β_end = 0.0155, the others with 0.0195), or the β values themselves otherwise;
- the autoencoder (`first_stage_model.*`) when present: a `VQModel` when it has a codebook (LDM's VQ-f4), an
  `AutoencoderKL` otherwise (KL-f8), shaped after its tensors, with the checkpoint's `scale_factor` (LDM's
  `scale_by_std`, Church) as `scaling_factor` (1 when absent, as LDM's VQ models use).

The folder is written aside and swapped in; `convert.json` records the source, the preset and what was found.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from slimdiff.diffusion import NOISE_SCHEDULE
from slimdiff.errors import ConfigError, ModelError
from slimdiff.models.compvis import from_compvis
from slimdiff.models.compvis_vae import first_stage, vae_from_compvis
from slimdiff.models.presets import PRESETS, get_preset
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."


def _format(path: Path) -> str:
    """What the file's first bytes say it is — its name may lie (a pickle renamed .safetensors)."""
    with path.open("rb") as file:
        head = file.read(16)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip format, or a bare pickle
        return "torch"
    header = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if 0 < header <= path.stat().st_size - 8 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (its `state_dict` if it has one), without executing any code."""
    path = Path(path)
    expected = "expected a CompVis checkpoint (.ckpt / .pt, saved by torch) or a .safetensors file"
    if path.is_dir():
        raise ConfigError(f"checkpoint {path} is a folder; {expected}")
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelError(f"checkpoint {path} is empty (0 bytes); {expected}")
    kind = _format(path)
    if kind == "unknown":
        raise ModelError(f"{path} is neither a torch checkpoint nor a safetensors file; {expected}")
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            # a file object: torch would pick a reader by the name's suffix
            with path.open("rb") as file, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pickle-protocol notes; a refusal is raised, not warned
                data = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a page of advice; the one line that names the refused object is worth keeping
        refused = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "")
        raise ModelError(
            f"{path} holds Python objects other than tensors, which slimdiff never unpickles"
            f"{f' ({refused})' if refused else ''}; save its state_dict with torch.save or as safetensors"
        ) from None
    except Exception as error:  # any parser failure on untrusted bytes means a damaged file
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"cannot read checkpoint {path} ({kind} format): {cause}; {expected}") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict of tensors; {expected}")
    return state


def unet_state(state: dict[str, torch.Tensor], ema: bool = False) -> dict[str, torch.Tensor]:
    """The UNet's tensors under CompVis UNet names: `model.diffusion_model.*`, their EMA copies, or a bare state."""
    names = [k[len(UNET_PREFIX) :] for k in state if k.startswith(UNET_PREFIX)]
    if not names:
        if ema:
            raise ModelError("the checkpoint holds a bare UNet state dict: there is no EMA copy to take")
        return state
    if not ema:
        return {name: state[UNET_PREFIX + name] for name in names}
    # LitEma keeps every parameter as a buffer named without dots (model_ema.diffusion_modelinput_blocks00weight).
    shadow = {name: EMA_PREFIX + ("diffusion_model." + name).replace(".", "") for name in names}
    if not any(key in state for key in shadow.values()):
        raise ModelError("the checkpoint has no EMA weights (model_ema.*); convert without --ema")
    return {name: state.get(shadow[name], state[UNET_PREFIX + name]) for name in names}


def scheduler_from(state: dict[str, torch.Tensor]) -> tuple[DDPMScheduler, str]:
    """The checkpoint's noise schedule and how it was found."""
    if "betas" not in state:
        return DDPMScheduler(**NOISE_SCHEDULE), "no betas in the checkpoint: the LDM training schedule"
    betas = state["betas"].double()
    start, end = betas[0].item(), betas[-1].item()
    ramp = torch.linspace(start**0.5, end**0.5, len(betas), dtype=torch.float64) ** 2
    config = {**NOISE_SCHEDULE, "num_train_timesteps": len(betas)}
    if torch.allclose(betas, ramp, rtol=1e-5, atol=1e-9):
        start, end = round(start, 8), round(end, 8)
        return DDPMScheduler(
            **{**config, "beta_start": start, "beta_end": end}
        ), f"scaled_linear {start:g} → {end:g}"
    return DDPMScheduler(**config, trained_betas=betas.tolist()), "the checkpoint's β values"


def convert_checkpoint(
    checkpoint: str | Path,
    preset: str,
    out: str | Path,
    *,
    ema: bool = False,
    vae: bool = True,
    overrides: dict | None = None,
) -> dict:
    """Write `checkpoint` as a pipeline folder of `preset` (with config `overrides`, e.g. for a CompVis model of
    other widths) to `out`, replacing it; returns convert.json's record. `vae=False` leaves the autoencoder out
    even if the checkpoint has one."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    target = get_preset(preset)
    if target.conditional or target.config.get("wavelet_gating"):
        teachers = [n for n, p in PRESETS.items() if not p.conditional and not p.config.get("wavelet_gating")]
        raise ConfigError(
            f"{preset} has no CompVis counterpart (conditional or wavelet-gated); pick one of {', '.join(teachers)}"
        )
    state = read_checkpoint(checkpoint)
    unet = target.build(**(overrides or {}))
    try:
        unet.load_state_dict(from_compvis(unet_state(state, ema), unet))
    except RuntimeError as error:  # same names, other shapes: another width
        detail = next(
            (line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error)
        )
        raise ModelError(f"the checkpoint does not fit preset {preset}: {detail[:200]}") from None
    scheduler, schedule = scheduler_from(state)
    record = {"checkpoint": str(checkpoint), "preset": preset, "overrides": overrides or {}, "ema": ema}
    record |= {"schedule": schedule, "vae": None}
    autoencoder = None
    first = {k[len(VAE_PREFIX) :]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    if vae and first:
        kind = "vq" if "quantize.embedding.weight" in first else "kl"
        scale = float(state["scale_factor"]) if "scale_factor" in state else 1.0
        autoencoder = first_stage(first, scale)
        try:
            autoencoder.load_state_dict(vae_from_compvis(first, autoencoder))
        except RuntimeError as error:
            raise ModelError(
                f"the checkpoint's autoencoder is not LDM's {kind} first stage: {error}"[:300]
            ) from None
        record["vae"] = {"kind": kind, "scaling_factor": scale}
    pipe = SlimDiffusionPipeline(unet=unet.eval(), scheduler=scheduler, vae=autoencoder)
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "convert.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return record
