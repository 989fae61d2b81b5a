"""Atomic, code-free training checkpoints.

A checkpoint is a folder `checkpoints/step-XXXXXXXX/` holding

    unet/            diffusers folder (safetensors) with the trained weights
    ema/             diffusers folder with the EMA weights and the EMA counters in its config
    objective.safetensors, optimizer.safetensors + optimizer.json, lr_schedule.json, rng-<process>.json
    state.json       step and data position — written last

It is written into a hidden temporary folder and renamed into place, so a crash mid-write never leaves a
folder that looks like a checkpoint; only folders with `state.json` count. Everything is loaded without
executing code: tensors from safetensors, the rest from JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def resolve_checkpoint(run_dir: Path, resume: str) -> Path:
    """`latest` → the newest complete checkpoint of the run; otherwise a checkpoint folder path."""
    if resume == "latest":
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise FileNotFoundError(f"no checkpoint to resume from in {run_dir / 'checkpoints'}")
        return found[-1]
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json in it)")
    return path


# --- optimiser and RNG state as safetensors + JSON -------------------------------------------------------


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON-able rest) of an optimiser's state dict."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in {**tensors, **meta["scalars"]}.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict:
    state = {
        "python": _to_json(random.getstate()),
        "numpy": _to_json(np.random.get_state()),
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_from_json(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _to_json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


# --- writing and reading -----------------------------------------------------------------------------------


def pending_checkpoint(folder: Path, step: int) -> Path:
    """The hidden temporary folder checkpoint `step` is written into before it is renamed into place."""
    return folder / f".tmp-{checkpoint_name(step)}"


def start_checkpoint(folder: Path, step: int) -> Path:
    tmp = pending_checkpoint(folder, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_rng(tmp: Path, process: int) -> None:
    # On nodes that do not share the run folder's file system the folder does not exist yet; such a node's
    # RNG state then stays local and a resume there starts from fresh RNG state (data and noise do not depend on it).
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"rng-{process}.json").write_text(json.dumps(rng_state()))


def write_checkpoint(
    tmp: Path,
    *,
    unet: torch.nn.Module,
    ema,
    objective_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_schedule,
    state: dict,
) -> None:
    """Fill `tmp` (RNG files already written by every process); `state.json` goes last."""
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    ema.save_pretrained(tmp / "ema")
    save_file({k: v.cpu().contiguous() for k, v in objective_state.items()}, tmp / "objective.safetensors")
    tensors, meta = optimizer_to_files(optimizer)
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "lr_schedule.json").write_text(json.dumps(lr_schedule.state_dict()))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))


def publish_checkpoint(tmp: Path, step: int, keep: int) -> Path:
    """Rename `tmp` into place (atomic), then delete all but the newest `keep` checkpoints."""
    final = tmp.parent / checkpoint_name(step)
    if final.exists():  # re-written after a resume at the same step
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(tmp.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# EMAModel's counters, stored by `EMAModel.save_pretrained` in the EMA folder's config.json.
EMA_COUNTERS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)


def read_ema(folder: Path, parameter_names: list[str]) -> dict:
    """An `EMAModel.load_state_dict` argument from an EMA folder: counters and shadow weights in the order of
    `parameter_names` (the UNet's `named_parameters()`)."""
    weights = load_file(folder / "diffusion_pytorch_model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    state = {k: config[k] for k in EMA_COUNTERS if k in config}
    state["shadow_params"] = [weights[name] for name in parameter_names]
    return state


def read_checkpoint(path: Path, process: int, parameter_names: list[str]) -> dict:
    """Everything in a checkpoint, loaded as tensors and JSON (RNG state None if this process wrote none)."""
    rng_file = path / f"rng-{process}.json"
    return {
        "unet": load_file(path / "unet" / "diffusion_pytorch_model.safetensors"),
        "ema": read_ema(path / "ema", parameter_names),
        "objective": load_file(path / "objective.safetensors"),
        "optimizer": optimizer_from_files(
            load_file(path / "optimizer.safetensors"), json.loads((path / "optimizer.json").read_text())
        ),
        "lr_schedule": json.loads((path / "lr_schedule.json").read_text()),
        "rng": json.loads(rng_file.read_text()) if rng_file.is_file() else None,
        "state": json.loads((path / "state.json").read_text()),
    }
