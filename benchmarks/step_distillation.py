"""Which step distillation: consistency (Song et al. 2023, one stage) against progressive (Salimans & Ho 2022,
halving the steps per round), at equal CPU time, on the built-in textures.

    OMP_NUM_THREADS=1 python -m benchmarks.step_distillation --method cd|pd|baselines|own|raw-lcm \\
        --teacher src/slimdiff/assets/tiny-teacher --student SLIM_STUDENT_MODEL [--minutes 5] [--seed 0]

Both start from the same slim student (a `SlimDiffusionPipeline` folder, e.g. the demo's distilled tiny-sd)
and take the same batches, learning rate and AdamW; each trains until its process CPU time reaches
`--minutes` (CPU time, not wall time: the machine is shared). Then 256 samples at 4 and 2 calls (the same
noise) are scored by SWD ×10³ against 256 held-out real crops.

- cd: `training.steps.ConsistencyDistillation` (the library objective), λ_s = 1, λ_f = 0 (or --lambda-freq);
  sampled with the LCMScheduler it exports.
- pd: progressive distillation written out here (it lost, so it is not in the library): the student keeps
  the ε parameterisation; in round r it learns in one DDIM step what its teacher (the big teacher in round 1,
  the previous round's student after) does in two, on the trailing grid of N_r = 8, 4, 2 steps; the loss is
  Salimans & Ho's x̂0 loss with truncated-SNR weight max(SNR, 1). The time is split equally over the rounds;
  the 4-call number is round 2's student, the 2-call number round 3's. Sampled with DDIM (trailing; η = 0,
  which PD trains for, and η = 1, which re-noises between steps as LCM sampling does).
- baselines: the slim student with DDIM-50 (η = 0), DDIM, DPM-Solver++ and UniPC at 4 and 2 calls; own: the
  slim student's own many-step SWD by the demo's protocol (DDIM-100, η = 1); raw-lcm: the control, the LCM
  sampler on the slim student before step distillation.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from benchmarks.machine import RESULTS
from slimdiff.config import DistillConfig
from slimdiff.data.datasets import held_out_images, make_dataset
from slimdiff.diffusion import add_noise, ddim_step, predict_x0
from slimdiff.metrics.swd import swd
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline
from slimdiff.sampling.solvers import consistency_scheduler
from slimdiff.training.steps import ConsistencyDistillation

BATCH, LR, N_EVAL = 32, 1e-4, 256


def batches(seed: int):
    data = make_dataset("builtin:textures", 32, seed=seed)
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(data), generator=g).split(BATCH):
            if len(idx) == BATCH:
                yield torch.stack([data[int(i)] for i in idx]), g


def score(pipe: SlimDiffusionPipeline, real: torch.Tensor, **call) -> float:
    pipe.set_progress_bar_config(disable=True)
    fake = generate(pipe, N_EVAL, seed=1234, batch=128, **call)
    return round(swd(real, fake)["mean"], 2)


def trailing(n: int) -> list[int]:
    """DDIM's trailing grid of n steps, then −1 (ᾱ = 1: the clean image)."""
    return [int(v) for v in np.round(np.arange(1000, 0, -1000 / n)) - 1] + [-1]


def train_cd(student, teacher, scheduler, seconds: float, seed: int, lambda_freq: float) -> dict:
    settings = DistillConfig(steps=4, positions=("output",), lambda_spatial=1.0, lambda_freq=lambda_freq)
    objective = ConsistencyDistillation(student, teacher, settings, scheduler)
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR)
    start = time.process_time()
    for steps, (x0, g) in enumerate(batches(seed), 1):
        t = torch.randint(0, 1000, (BATCH,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss, _ = objective(student, x0, x0, t, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if time.process_time() - start > seconds:
            return {"steps": steps}


def pd_round(student, teacher, ᾱ, n: int, seconds: float, seed: int) -> int:
    """One round: `student` learns n steps from `teacher`'s 2n on the trailing grid."""
    grid = torch.tensor(trailing(2 * n))
    ab = torch.cat([ᾱ, torch.ones(1)])  # ab[-1] = ᾱ at t = −1 (clean)
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR)
    start = time.process_time()
    for steps, (x0, g) in enumerate(batches(seed), 1):
        i = 2 * torch.randint(0, n, (BATCH,), generator=g)
        t, mid, end = grid[i], grid[i + 1], grid[i + 2]
        x_t = add_noise(x0, torch.randn(x0.shape, generator=g), ab[t])
        with torch.no_grad():
            x_mid = ddim_step(x_t, teacher(x_t, t).sample, ab[t], ab[mid])
            eps_mid = teacher(x_mid, mid.clamp_min(0)).sample
            x_end = ddim_step(x_mid, eps_mid, ab[mid], ab[end])
            # the x̂0 whose one DDIM step from t lands on x_end (Salimans & Ho, eq. 8)
            ratio = ((1 - ab[end]) / (1 - ab[t])).sqrt().reshape(-1, 1, 1, 1)
            a_end, a_t = ab[end].sqrt().reshape(-1, 1, 1, 1), ab[t].sqrt().reshape(-1, 1, 1, 1)
            target = (x_end - ratio * x_t) / (a_end - ratio * a_t)
        x0_hat = predict_x0(x_t, student(x_t, t).sample, ab[t])
        weight = (ab[t] / (1 - ab[t])).clamp_min(1.0).reshape(-1, 1, 1, 1)  # truncated SNR
        loss = (weight * (x0_hat - target) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if time.process_time() - start > seconds:
            return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("cd", "pd", "baselines", "own", "raw-lcm"), required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lambda-freq", type=float, default=0.0, help="cd: λ_f (ω ours, α = −1)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    real = held_out_images("builtin:textures", 32, N_EVAL)
    teacher, pipe = load_pipeline(args.teacher).unet.eval().requires_grad_(False), load_pipeline(args.student)
    student = pipe.unet.train()
    scheduler = pipe.scheduler
    seconds = 60 * args.minutes
    result: dict = {"method": args.method, "seed": args.seed, "cpu_minutes": args.minutes}
    if args.method == "baselines":
        for name in ("ddim", "dpm++", "unipc"):
            for n in (4, 2):
                result[f"{name}-{n}"] = score(pipe, real, num_inference_steps=n, sampler=name)
        result["student ddim-50"] = score(pipe, real, num_inference_steps=50, sampler="ddim")
    elif args.method == "raw-lcm":  # the control: the LCM sampler on the student before any step distillation
        for n in (4, 2):
            result[f"lcm-{n}"] = score(pipe, real, num_inference_steps=n, sampler="lcm")
    elif args.method == "own":  # the demo's protocol: DDIM-100 with η = 1
        result["student ddim-100 eta 1"] = score(pipe, real, num_inference_steps=100, sampler="ddim", eta=1.0)
    elif args.method == "cd":
        result |= train_cd(student, teacher, scheduler, seconds, args.seed, args.lambda_freq)
        result["lambda_freq"] = args.lambda_freq
        lcm = consistency_scheduler(pipe.scheduler.config)  # as exported
        out = SlimDiffusionPipeline(unet=student.eval(), scheduler=lcm)
        for n in (4, 2, 1):
            result[f"cd-{n}"] = score(out, real, num_inference_steps=n)
    else:
        ᾱ, previous, rounds = scheduler.alphas_cumprod, teacher, []
        for n in (8, 4, 2):
            steps = pd_round(student, previous, ᾱ, n, seconds / 3, args.seed + n)
            rounds.append(steps)
            out = SlimDiffusionPipeline(unet=copy.deepcopy(student).eval(), scheduler=scheduler)
            for eta in (0.0, 1.0):  # η = 0 is what PD trains for; η = 1 is the control for LCM's re-noising
                result[f"pd-{n} eta {eta:g}"] = score(
                    out, real, num_inference_steps=n, sampler="ddim", eta=eta
                )
            previous = copy.deepcopy(student).eval().requires_grad_(False)
        result["steps per round"] = rounds
    print(json.dumps(result))
    tag = f"-lf{args.lambda_freq:g}" if args.method == "cd" and args.lambda_freq else ""
    path = RESULTS / f"step_distillation-{args.method}{tag}-seed{args.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
