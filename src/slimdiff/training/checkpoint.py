"""Atomic, code-free training checkpoints: the whole save / restore protocol of a run.

A checkpoint is a folder `checkpoints/step-XXXXXXXX/` holding

    unet/            diffusers folder (safetensors) with the trained weights
    ema/             diffusers folder with the EMA weights; ema.json holds the EMA counters
    objective.safetensors, optimizer.safetensors + optimizer.json, lr_schedule.json, rng-<process>.json
    state.json       step and data position — written last

It is written into a hidden temporary folder and renamed into place, so a crash mid-write never leaves a
folder that looks like a checkpoint; only folders with `state.json` count. Everything is loaded without
executing code: tensors from safetensors, the rest from JSON. A damaged checkpoint (truncated or missing
file) is skipped by `--resume latest` with a warning naming it, in favour of the newest one that reads.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slimdiff.errors import WRITE_ERRORS, TrainingError, write_failure
from slimdiff.training.run import TrainingRun
from slimdiff.training.run_outputs import ema_unet
from slimdiff.training.state_files import optimizer_from_files, optimizer_to_files, rng_state, set_rng_state

PREFIX = "step-"
WEIGHTS = "diffusion_pytorch_model.safetensors"
# What reading a damaged checkpoint raises: truncated / zeroed safetensors, missing files, broken JSON.
_DAMAGE = (SafetensorError, OSError, json.JSONDecodeError, KeyError, ValueError)


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder` (those with state.json), oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def candidates(run_dir: Path, resume: str) -> list[Path]:
    """`latest` → the run's complete checkpoints, newest first; otherwise the one checkpoint folder named."""
    if resume == "latest":
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise TrainingError(f"cannot resume: no checkpoint in {run_dir / 'checkpoints'}")
        return found[::-1]
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise TrainingError(f"cannot resume: {path} is not a complete checkpoint (no state.json in it)")
    return [path]


# --- reading -----------------------------------------------------------------------------------------------


def read_checkpoint(path: Path, process: int) -> dict:
    """Everything in a checkpoint, loaded as tensors and JSON (RNG state None if this process wrote none)."""
    rng_file = path / f"rng-{process}.json"
    return {
        "unet": load_file(path / "unet" / WEIGHTS),
        "ema": load_file(path / "ema" / WEIGHTS),
        "ema_counters": json.loads((path / "ema" / "ema.json").read_text()),
        "objective": load_file(path / "objective.safetensors"),
        "optimizer": optimizer_from_files(
            load_file(path / "optimizer.safetensors"), json.loads((path / "optimizer.json").read_text())
        ),
        "lr_schedule": json.loads((path / "lr_schedule.json").read_text()),
        "rng": json.loads(rng_file.read_text()) if rng_file.is_file() else None,
        "state": json.loads((path / "state.json").read_text()),
    }


def _run_state(run: TrainingRun) -> dict:
    """What state.json holds: the step, the data position and the layout and model it was written with."""
    return {
        "step": run.step,
        "micro_step": run.step * run.config.train.grad_accum,
        "processes": run.accelerator.num_processes,
        "grad_accum": run.config.train.grad_accum,
        "model": run.config.model,
    }


def _ema_counters(run: TrainingRun) -> dict:
    """The EMA's state besides its shadow weights (those are saved as a model folder)."""
    return {k: v for k, v in run.ema.state_dict().items() if k != "shadow_params"}


def _same_shape(saved, template) -> bool:
    """Whether JSON state read back has the structure the run would write: the template's keys (extra ones
    allowed), list lengths and value kinds; None in the template accepts anything."""
    if template is None:
        return True
    if isinstance(template, dict):
        return isinstance(saved, dict) and all(
            key in saved and _same_shape(saved[key], value) for key, value in template.items()
        )
    if isinstance(template, list | tuple):
        return (
            isinstance(saved, list)
            and len(saved) == len(template)
            and all(_same_shape(a, b) for a, b in zip(saved, template, strict=True))
        )
    if isinstance(template, bool):
        return isinstance(saved, bool)
    if isinstance(template, int | float):
        return isinstance(saved, int | float) and not isinstance(saved, bool)
    return isinstance(saved, type(template))


def _state_templates(run: TrainingRun) -> dict:
    """What each JSON state file of a checkpoint of this run looks like (see `_write`)."""
    return {
        "lr_schedule": run.lr_schedule.state_dict(),
        "ema_counters": _ema_counters(run),
        "state": _run_state(run),
        "rng": {key: value for key, value in rng_state().items() if key != "cuda"},
    }


def _read_first_intact(paths: list[Path], process: int, templates: dict) -> tuple[Path, dict]:
    skipped = []
    for path in paths:
        try:
            saved = read_checkpoint(path, process)
            for name, template in templates.items():
                if saved[name] is not None and not _same_shape(saved[name], template):
                    raise ValueError(f"its {name} state file does not hold what a checkpoint writes there")
            if saved["state"]["step"] < 0:
                raise ValueError(f"state.json holds step {saved['state']['step']}")
            return path, saved
        except _DAMAGE as error:
            skipped.append(
                f"{path.name} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            )
            warnings.warn(f"skipping damaged checkpoint {path}: {skipped[-1]}", stacklevel=3)
    raise TrainingError(f"cannot resume: every checkpoint is damaged: {'; '.join(skipped)}")


def restore_checkpoint(run: TrainingRun, paths: list[Path]) -> Path:
    """Load the first intact checkpoint of `paths` into the run (weights, objective, optimiser, lr schedule,
    EMA, RNG, step). Nothing is written: a refused resume leaves the run folder as it was."""
    accelerator = run.accelerator
    path, saved = _read_first_intact(paths, accelerator.process_index, _state_templates(run))
    try:
        if saved["state"]["model"] != run.config.model:
            raise ValueError(
                f"it was written for model {saved['state']['model']!r}, not {run.config.model!r}"
            )
        if saved["state"]["step"] > run.config.train.steps:
            raise ValueError(
                f"it is at step {saved['state']['step']}, beyond train.steps {run.config.train.steps}"
            )
        run.unet.load_state_dict(saved["unet"])
        run.objective.load_trainable_state(saved["objective"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.lr_schedule.load_state_dict(saved["lr_schedule"])
        # EMA shadow weights in the order of the UNet's parameters
        shadow = [saved["ema"][name] for name, _ in run.unet.named_parameters()]
        run.ema.load_state_dict({**saved["ema_counters"], "shadow_params": shadow})
        run.ema.to(accelerator.device)  # the shadow weights were read onto the CPU
    except (KeyError, RuntimeError, ValueError) as error:
        reason = str(error).strip("'\"").splitlines()[0]
        raise TrainingError(
            f"cannot resume from {path}: it does not fit this run ({reason}); resume with the config "
            f"the run was started with ({run.run_dir / 'config.yaml'}, left unchanged)"
        ) from None
    run.step = saved["state"]["step"]
    if saved["rng"] is not None:
        set_rng_state(saved["rng"])
    same_layout = (saved["state"]["processes"], saved["state"]["grad_accum"]) == (
        accelerator.num_processes,
        run.config.train.grad_accum,
    )
    if not same_layout:
        warnings.warn(
            "resuming with another number of processes or grad_accum: the data order changes", stacklevel=2
        )
    return path


# --- writing -----------------------------------------------------------------------------------------------


def _write(tmp: Path, run: TrainingRun) -> None:
    """Fill `tmp` (RNG files already written by every process); `state.json` goes last."""
    run.unet.save_pretrained(tmp / "unet", safe_serialization=True)
    ema_unet(run.unet, run.ema).save_pretrained(tmp / "ema", safe_serialization=True)
    counters = _ema_counters(run)
    (tmp / "ema" / "ema.json").write_text(json.dumps(counters))
    save_file(
        {k: v.cpu().contiguous() for k, v in run.objective.trainable_state().items()},
        tmp / "objective.safetensors",
    )
    tensors, meta = optimizer_to_files(run.optimizer)
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "lr_schedule.json").write_text(json.dumps(run.lr_schedule.state_dict()))
    (tmp / "state.json").write_text(json.dumps(_run_state(run), indent=2))


def _publish(tmp: Path, step: int, keep: int) -> Path:
    """Rename `tmp` into place (atomic), then delete all but the newest `keep` checkpoints."""
    final = tmp.parent / checkpoint_name(step)
    if final.exists():  # re-written after a resume at the same step
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(tmp.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(run: TrainingRun) -> Path:
    """Checkpoint the run at its current step: every process writes its RNG state, the main one the rest.

    A write that fails (disk full, permissions) removes the partial folder and raises a TrainingError; the
    previous checkpoints are untouched."""
    accelerator, folder = run.accelerator, run.run_dir / "checkpoints"
    tmp = folder / f".tmp-{checkpoint_name(run.step)}"
    main = accelerator.is_main_process
    try:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        # On nodes that do not share the run folder's file system the folder does not exist yet; such a node's
        # RNG state stays local and a resume there starts from fresh RNG state (data and noise do not depend on it).
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / f"rng-{accelerator.process_index}.json").write_text(json.dumps(rng_state()))
        accelerator.wait_for_everyone()
        final = None
        if main:
            _write(tmp, run)
            final = _publish(tmp, run.step, run.config.run.keep_checkpoints)
            run.log(f"checkpoint {final}")
    except WRITE_ERRORS as error:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = list_checkpoints(folder)
        last = f"the last good checkpoint {kept[-1]} is intact" if kept else "no earlier checkpoint exists"
        raise TrainingError(
            f"could not write the checkpoint of step {run.step} to {folder}: {write_failure(error)}; {last}"
        ) from None
    accelerator.wait_for_everyone()
    return final or folder / checkpoint_name(run.step)
