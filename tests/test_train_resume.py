"""A run killed with SIGKILL and resumed from its checkpoint ends with the same weights as a run never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers_train import micro_config, one_thread
from safetensors.torch import load_file

from slimdiff.config import Config, from_dict
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train

N = 3  # checkpoint interval; the straight run trains 2N steps


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_sigkill_then_resume_equals_straight_run(tmp_path):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    mapping = micro_config(killed_dir, steps=2 * N, every=N, train={"grad_accum": 2})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(mapping))

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "slimdiff", "train", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first = killed_dir / "checkpoints" / f"step-{N:08d}" / "state.json"
    deadline = time.monotonic() + 120
    while not first.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(killed_dir / "checkpoints")] == [f"step-{N:08d}"], (
        "the run finished before it was killed; the test needs a slower run"
    )
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
    # Training moved the weights: the comparison is not between two untouched initialisations.
    start = _weights(straight_dir / "checkpoints" / f"step-{N:08d}" / "unet")
    end = _weights(straight_dir / "checkpoints" / final / "unet")
    assert any(not torch.equal(start[k], end[k]) for k in start)
