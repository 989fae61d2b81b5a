"""Two CPU processes under `accelerate launch` (gloo) train a few steps and leave a loadable model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from slimdiff.models.loading import load_unet


def test_accelerate_launch_two_cpu_processes(tmp_path, micro_config):
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(micro_config(run, steps=2, every=2)))
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "slimdiff", "train", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "total batch 8 = 4 × 1 accumulation × 2 process(es)" in (run / "logs" / "run.log").read_text()
    checkpoint = run / "checkpoints" / "step-00000002"
    assert (checkpoint / "rng-0.json").is_file() and (checkpoint / "rng-1.json").is_file()
    unet = load_unet(run / "model")
    assert unet.config.sample_size == 16
