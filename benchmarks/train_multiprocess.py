"""Scripted check: the tiny config trains under `accelerate launch` with 2 CPU processes, resumes, and loads.

    python -m benchmarks.train_multiprocess

Runs a few steps of a very small pixel-space model (the test suite's micro UNet) with two processes (gloo),
resumes the run for two more steps with two processes, then loads `<run>/model` with `load_unet` and the
pipeline and samples from it. Also records what `accelerate launch --cpu --num_processes 2` does with the
installed accelerate. Too slow for the unit tests on a shared 2-core machine (≈20 s per launch), so it is a
script whose output is committed to benchmarks/results/train_multiprocess.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import accelerate
import yaml

from benchmarks.machine import describe_machine, write_result

MICRO = {
    "model": "tiny-lite",
    "model_overrides": {
        "block_out_channels": [8, 16],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "norm_num_groups": 4,
    },
    "data": {"source": "builtin:textures", "size": 16, "length": 64},
    "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1},
    "run": {"checkpoint_every": 2, "sample_every": 0},
}


def launch(flags: list[str], config: Path, extra: list[str] = ()) -> tuple[float, str]:
    accelerate_bin = str(Path(sys.executable).with_name("accelerate"))
    command = [accelerate_bin, "launch", *flags, "-m", "slimdiff", "train", str(config), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, " ".join(command[1:])


def processes_in_log(run: Path) -> list[str]:
    return re.findall(r"× (\d+) process", (run / "logs" / "run.log").read_text())


def main() -> None:
    lines = [f"accelerate {accelerate.__version__}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        config = tmp / "micro.yaml"
        config.write_text(yaml.safe_dump({**MICRO, "run": {**MICRO["run"], "dir": str(run)}}))

        seconds, command = launch(["--multi_gpu", "--num_processes", "2"], config)
        checkpoint = run / "checkpoints" / "step-00000004"
        lines += [
            f"1. `{command}` — {seconds:.0f} s",
            f"   - processes in the run log: {processes_in_log(run)}",
            f"   - checkpoints: {sorted(p.name for p in (run / 'checkpoints').iterdir())}",
            f"   - files in step-00000004: {sorted(p.name for p in checkpoint.iterdir())}",
        ]
        seconds, command = launch(
            ["--multi_gpu", "--num_processes", "2"], config, ["--resume", "latest", "--set", "train.steps=6"]
        )
        log = (run / "logs" / "run.log").read_text()
        lines += [
            f"2. `{command}` — {seconds:.0f} s",
            f"   - resumed: {'resumed from' in log and 'at step 4' in log}; "
            f"checkpoints now {sorted(p.name for p in (run / 'checkpoints').iterdir())}",
        ]

        from slimdiff.models.loading import load_unet
        from slimdiff.models.size import count_params
        from slimdiff.sampling.pipeline import SlimDiffusionPipeline

        unet = load_unet(run / "model")
        images = SlimDiffusionPipeline.from_pretrained(str(run / "model"))(
            batch_size=2, num_inference_steps=2, output_type="pt"
        ).images
        lines += [
            f"3. `load_unet({run.name}/model)`: {type(unet).__name__}, {count_params(unet)} "
            f"params; pipeline samples {tuple(images.shape)}",
        ]

        cpu_run = tmp / "cpu-run"
        config.write_text(yaml.safe_dump({**MICRO, "run": {**MICRO["run"], "dir": str(cpu_run)}}))
        seconds, command = launch(["--cpu", "--num_processes", "2"], config)
        lines += [
            f"4. `{command}` — {seconds:.0f} s; processes in the run log: {processes_in_log(cpu_run)} "
            "(accelerate's `--cpu` uses its simple launcher: one process unless an MPI hostfile is given; "
            "use `--multi_gpu --num_processes N` or `torchrun --nproc_per_node N -m slimdiff train` for several "
            "CPU processes — slimdiff then sets up gloo itself)",
        ]
    print("\n".join(lines))
    write_result("train_multiprocess", "\n".join(lines), describe_machine())


if __name__ == "__main__":
    main()
