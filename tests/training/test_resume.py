"""A run killed with SIGKILL and resumed from its checkpoint ends with the same weights as a run never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from slimdiff.config import Config, from_dict
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train

N = 3  # checkpoint interval; the straight run trains 2N steps

# `slimdiff train` in a child process that stops itself (SIGSTOP) just before writing the step-2N checkpoint:
# steps N+1 … 2N are trained but none of them is saved. The parent kills it there, at a known point, instead
# of racing a running process with a timer.
FREEZE_BEFORE_LAST_CHECKPOINT = """
import os, signal, sys
from slimdiff.training import loop

save_checkpoint = loop.save_checkpoint


def save_or_freeze(run):
    if run.step == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGSTOP)
    return save_checkpoint(run)


loop.save_checkpoint = save_or_freeze
from slimdiff.cli import app

app(["train", sys.argv[1]])
"""


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal to float32 rounding, relative to each tensor's scale (the Adam moments are ~1e-6 and smaller).

    Not bitwise: the first N steps of the killed run ran in another process (the CLI), the rest of it and the
    whole straight run in this one, each on one thread; bit-equality would rest on both processes picking
    the same kernels. One optimiser step moves the weights by ~lr = 4e-4, far beyond this tolerance (the
    test checks that it tells step N from step 2N)."""
    assert a.keys() == b.keys()
    for key in a:
        scale = b[key].abs().max().item()
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5 * scale, msg=key)


def test_sigkill_then_resume_equals_straight_run(tmp_path, micro_config):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    mapping = micro_config(killed_dir, steps=2 * N, every=N, train={"grad_accum": 2})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(mapping))

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "wb") as stderr:  # a file, not a pipe: a full pipe would block it
        process = subprocess.Popen(
            [sys.executable, "-c", FREEZE_BEFORE_LAST_CHECKPOINT, str(config_file), str(2 * N)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status = os.waitpid(process.pid, os.WUNTRACED)  # returns once it stops itself (or ends)
    if not os.WIFSTOPPED(status):
        pytest.fail(f"the run ended instead of stopping: {(tmp_path / 'stderr.txt').read_text()[-2000:]}")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(killed_dir / "checkpoints")] == [f"step-{N:08d}"]
    assert not (killed_dir / "model").exists()

    train(from_dict(Config, mapping), resume="latest", progress=False)
    straight = micro_config(straight_dir, steps=2 * N, every=N, train={"grad_accum": 2})
    train(from_dict(Config, straight), progress=False)

    final = f"step-{2 * N:08d}"
    _assert_same(
        _weights(killed_dir / "checkpoints" / final / "unet"),
        _weights(straight_dir / "checkpoints" / final / "unet"),
    )
    _assert_same(_weights(killed_dir / "model" / "unet"), _weights(straight_dir / "model" / "unet"))
    _assert_same(
        load_file(killed_dir / "checkpoints" / final / "optimizer.safetensors"),
        load_file(straight_dir / "checkpoints" / final / "optimizer.safetensors"),
    )
    # Training moved the weights beyond the tolerance: a resume that lost or repeated steps would fail above.
    start = _weights(straight_dir / "checkpoints" / f"step-{N:08d}" / "unet")
    with pytest.raises(AssertionError):
        _assert_same(start, _weights(straight_dir / "checkpoints" / final / "unet"))


def test_a_constant_schedule_run_extended_on_resume_equals_the_longer_run(tmp_path, micro_config):
    """With train.lr_schedule constant a run can be lengthened chunk by chunk (what the GPU study does) and
    ends where one straight run of the full length ends; with the linear decay it would not (the rate of the
    first chunk decays to 0 at its own end)."""
    chunked, straight = tmp_path / "chunked", tmp_path / "straight"
    schedule = {"lr_schedule": "constant"}
    train(from_dict(Config, micro_config(chunked, steps=N, every=N, train=schedule)), progress=False)
    longer = micro_config(chunked, steps=2 * N, every=N, train=schedule)
    train(from_dict(Config, longer), resume="latest", progress=False)
    train(from_dict(Config, micro_config(straight, steps=2 * N, every=N, train=schedule)), progress=False)
    _assert_same(_weights(chunked / "model" / "unet"), _weights(straight / "model" / "unet"))
    linear = tmp_path / "linear"
    train(from_dict(Config, micro_config(linear, steps=2 * N, every=N)), progress=False)
    with pytest.raises(AssertionError):
        _assert_same(_weights(linear / "model" / "unet"), _weights(straight / "model" / "unet"))
