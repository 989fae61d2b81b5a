"""What one worker process of the GPU study does: train a run one round further (`train_round`), and measure
a model (`measure_eps`, `measure_samples`, `gradient_shares`). Everything is seeded by the run and the
study's evaluation seed, so every model sees the same inputs."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from benchmarks.spectral_study.plan import ARMS, LATE, Run, Settings
from slimdiff.config import Config, DataConfig, DistillConfig, RunConfig, TrainConfig
from slimdiff.data.datasets import held_out_images
from slimdiff.diffusion import add_noise, training_scheduler
from slimdiff.metrics.eps_spectrum import eps_error_spectrum
from slimdiff.metrics.fmnist import fd_fmnist_scores, fmnist_split
from slimdiff.metrics.swd import swd
from slimdiff.models.loading import load_unet
from slimdiff.models.presets import tiny_norm_groups
from slimdiff.sampling.generate import generate
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.distillation import SpectralDistillation


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def config(s: Settings, folder: Path, model: str, seed: int, steps: int, **extra) -> Config:
    """What every training of the study shares: data, batch, constant lr after the warm-up, precision."""
    return Config(
        model=model,
        data=DataConfig(source=s.data, size=s.size),
        train=TrainConfig(
            steps=steps,
            batch_size=s.batch,
            base_lr=s.lr / s.batch,
            warmup_steps=s.warmup,
            lr_schedule="constant",
            ema_decay=s.ema,
            mixed_precision=s.mixed_precision if torch.cuda.is_available() else "no",
            seed=seed,
        ),
        run=RunConfig(
            dir=str(folder), checkpoint_every=10**9, keep_checkpoints=1, sample_every=0, log_every=50
        ),
        **extra,
    )


def teacher_config(s: Settings, work: Path, steps: int) -> Config:
    base = s.teacher_base
    widths = {
        "block_out_channels": [base, 2 * base, 2 * base],
        "attention_head_dim": base,
        "norm_num_groups": tiny_norm_groups(base),
    }
    return config(s, work / "teacher", s.teacher_model, 0, steps, model_overrides=widths)


def distill_settings(omega: str, lam: float) -> DistillConfig:
    return DistillConfig(lambda_spatial=lam, lambda_freq=lam, omega=omega)


def run_config(s: Settings, run: Run, work: Path, steps: int, lam: float | None) -> Config:
    arm = ARMS[run.arm]
    distill = None
    if arm.omega is not None:
        distill = replace(distill_settings(arm.omega, lam), teacher=str(work / "teacher" / "model"))
    return config(
        s,
        work / "runs" / run.id,
        arm.model,
        run.seed,
        steps,
        model_overrides=dict(arm.overrides),
        distill=distill,
    )


def train_round(cfg: Config) -> float:
    """Train `cfg`'s run up to `cfg.train.steps`, continuing its last checkpoint; returns the seconds taken."""
    from slimdiff.training.loop import train

    start = time.perf_counter()
    resume = "latest" if list_checkpoints(Path(cfg.run.dir) / "checkpoints") else None
    train(cfg, resume=resume, progress=False)
    return time.perf_counter() - start


@functools.lru_cache(maxsize=4)  # ε images, FD/SWD reals, probe batches: each read once per process
def test_images(source: str, size: int, n: int, seed: int) -> torch.Tensor:
    return held_out_images(source, size, n, seed=seed)


def _on_device(unet: torch.nn.Module):
    """`unet` as a callable on CPU tensors (the ε-spectrum draws its inputs on the CPU)."""
    dev = next(unet.parameters()).device

    def call(x_t, t, **kwargs):
        return unet(x_t.to(dev), t.to(dev), **kwargs).sample.float().cpu()

    return call


def measure_eps(s: Settings, unet: torch.nn.Module) -> dict:
    """The ε-error against the true ε on the held-out test images: high / low (mean over the buckets with
    t ≥ LATE, above / below half Nyquist), all (their sum over every bucket), and the per-bucket rows."""
    images = test_images(s.test, s.size, s.eps_images, s.eval_seed)
    with torch.no_grad():
        spectrum = eps_error_spectrum(
            _on_device(unet.eval()),
            images,
            training_scheduler(),
            buckets=s.buckets,
            batch_size=256,
            seed=s.eval_seed,
        )
    late = torch.tensor([a >= LATE for a in spectrum.bucket_edges[:-1]])
    return {
        "high": spectrum.high[late].mean().item(),
        "low": spectrum.low[late].mean().item(),
        "all": (spectrum.high + spectrum.low).mean().item(),
        "buckets": spectrum.summary()["buckets"],
    }


def measure_samples(s: Settings, pipe) -> tuple[dict, torch.Tensor]:
    """FD-FMNIST against all 10 000 test images (Fashion-MNIST only) and SWD against `swd_real` of them, from `samples` images
    drawn with fixed noise by `pipe` (on its device); returns the metrics and the first 64 samples."""
    pipe.set_progress_bar_config(disable=True)
    fake = generate(pipe, s.samples, s.eval_seed, 500, num_inference_steps=s.sample_steps, sampler=s.sampler)
    real = test_images(s.test, s.size, s.fd_real, s.eval_seed + 1)
    # FD-FMNIST only where the held-out images are Fashion-MNIST's test split (textures: SWD alone)
    metrics = fd_fmnist_scores(real, fake, s.test, s.eval_seed + 1) if fmnist_split(s.test) == "test" else {}
    metrics["swd"] = swd(real[: s.swd_real], fake, seed=s.eval_seed)["mean"]
    return metrics, fake[:64]


def gradient_shares(
    s: Settings, student: torch.nn.Module, teacher: torch.nn.Module, omega: str, lam: float, projectors=None
) -> dict:
    """Each loss term's value and gradient norm on the student's weights, on `probe_batches` fixed training
    batches: ∇L_ε, ∇(L_spatial + L_freq) (per unit λ) and the distillation share at λ,
    ‖λ∇L_d‖ / (‖∇L_ε‖ + ‖λ∇L_d‖). `projectors`: the run's trained 1×1 projectors (objective.safetensors)."""
    dev = device()
    # built on the CPU (its projectors are sized by a probe pass there), then moved
    student, teacher = student.cpu().float().train(), teacher.cpu().float()
    objective = SpectralDistillation(student, teacher, distill_settings(omega, 1.0))
    student, objective = student.to(dev), objective.to(dev)
    if projectors is not None:
        objective.load_state_dict(projectors)
    images = test_images(s.data, s.size, s.probe_batches * s.batch, s.validation_seed)
    g = torch.Generator().manual_seed(s.validation_seed)
    ᾱ = training_scheduler().alphas_cumprod
    params = [p for p in student.parameters() if p.requires_grad]
    sums = {"eps": [torch.zeros_like(p) for p in params], "distill": [torch.zeros_like(p) for p in params]}
    values = {"loss_eps": 0.0, "loss_spatial": 0.0, "loss_freq": 0.0}
    with_distill = objective.settings
    only_eps = replace(with_distill, lambda_spatial=0.0, lambda_freq=0.0)
    for x0 in images.split(s.batch):
        t = torch.randint(0, len(ᾱ), (len(x0),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        inputs = [v.to(dev) for v in (x0, add_noise(x0, noise, ᾱ[t]), t, noise)]
        objective.settings = only_eps
        eps_grads = torch.autograd.grad(objective(student, *inputs)[0], params, allow_unused=True)
        objective.settings = with_distill
        loss, terms = objective(student, *inputs)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for name in values:
            values[name] += terms[name].item() / s.probe_batches
        for i, (total, eps) in enumerate(zip(grads, eps_grads, strict=True)):
            if total is not None and eps is not None:
                sums["eps"][i] += eps
                sums["distill"][i] += total - eps
    objective.remove_hooks()
    norm = {k: torch.sqrt(sum(v.square().sum() for v in vs)).item() for k, vs in sums.items()}
    share = lam * norm["distill"] / (norm["eps"] + lam * norm["distill"])
    return {**values, "grad_eps": norm["eps"], "grad_distill_per_lambda": norm["distill"], "share": share}


def latest_checkpoint(folder: Path) -> Path:
    return list_checkpoints(folder / "checkpoints")[-1]


def load_trained(folder: Path) -> tuple[torch.nn.Module, dict]:
    """The raw (not EMA) UNet of a run's latest checkpoint and its objective's state (the projectors)."""
    checkpoint = latest_checkpoint(folder)
    objective = checkpoint / "objective.safetensors"
    return load_unet(checkpoint / "unet"), (load_file(objective) if objective.is_file() else {})
