"""The training loop: run folder, bad data, signals, NaN, objectives with parameters, latent space."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import Config, from_dict
from slimdiff.data.order import StepSampler
from slimdiff.diffusion import NOISE_SCHEDULE
from slimdiff.errors import ConfigError, TrainingDiverged, TrainingError, TrainingStopped
from slimdiff.models.loading import load_unet
from slimdiff.training.checkpoint import candidates, list_checkpoints
from slimdiff.training.loop import train
from slimdiff.training.objectives import EpsilonObjective, Objective


class ScaledObjective(Objective):
    """ε-loss plus (w − 1)² with a trainable scalar w; can raise a signal or return NaN at a given call."""

    def __init__(self, signal_at: int = 0, nan_at: int = 0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.eps = EpsilonObjective()
        self.calls, self.signal_at, self.nan_at = 0, signal_at, nan_at
        self.first_w = None

    def forward(self, unet, x0, x_t, t, noise):
        self.calls += 1
        if self.first_w is None:
            self.first_w = float(self.w.detach())
        if self.calls == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        loss, terms = self.eps(unet, x0, x_t, t, noise)
        loss = loss + (self.w - 1) ** 2
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return loss, {**terms, "w": self.w.detach()}


def test_run_folder_layout_schedule_and_model(tmp_path, micro_config):
    run = tmp_path / "run"
    mapping = micro_config(
        run,
        steps=4,
        every=1,
        run={"sample_every": 4, "sample_count": 4, "sample_steps": 2, "keep_checkpoints": 2},
    )
    config = from_dict(Config, mapping)
    train(config, progress=False)

    assert from_dict(Config, yaml.safe_load((run / "config.yaml").read_text())) == config
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000003", "step-00000004"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    # lr = base_lr × total batch, warm-up over 2 steps, then linear decay to 0 at step 4: lr(3) = lr_max / 2.
    meta = json.loads((run / "checkpoints" / "step-00000003" / "optimizer.json").read_text())
    assert meta["param_groups"][0]["lr"] == pytest.approx(1e-4 * 4 / 2)
    assert Image.open(run / "samples" / "step-00000004.png").size == (32, 32)  # 2 × 2 grid of 16 px
    assert list((run / "logs" / "train").glob("events.out.tfevents*"))

    unet = load_unet(run / "model")
    ema = load_file(run / "checkpoints" / "step-00000004" / "ema" / "diffusion_pytorch_model.safetensors")
    for name, p in unet.state_dict().items():
        assert torch.equal(p, ema[name]), name
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline.from_pretrained(str(run / "model"))
    assert pipe.vae is None
    assert {k: pipe.scheduler.config[k] for k in NOISE_SCHEDULE} == NOISE_SCHEDULE
    images = pipe(batch_size=1, num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, 16, 16)


def test_bad_images_are_skipped_and_counted_or_fail_under_strict(tmp_path, image_folder, micro_config):
    folder = image_folder()
    run = tmp_path / "run"
    mapping = micro_config(run, steps=1, every=1, data={"source": str(folder), "length": None})
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        train(from_dict(Config, mapping), progress=False)
    assert "skipped 2 unreadable image(s)" in (run / "logs" / "run.log").read_text()
    assert (run / "model" / "unet").is_dir()

    strict = micro_config(
        tmp_path / "strict", steps=1, every=1, data={"source": str(folder), "length": None, "strict": True}
    )
    (tmp_path / "strict.yaml").write_text(yaml.safe_dump(strict))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "strict.yaml")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "not-an-image.jpg" in result.output and "strict: true" in result.output
    assert not (tmp_path / "strict" / "config.yaml").exists()


def test_sigterm_checkpoints_exits_and_resume_restores_objective(tmp_path, micro_config):
    run = tmp_path / "run"
    mapping = micro_config(run, steps=4, every=100)
    config = from_dict(Config, mapping)
    first = ScaledObjective(signal_at=2)
    with pytest.raises(TrainingStopped, match="SIGTERM at step 2") as stopped:
        train(config, make_objective=lambda unet: first, progress=False)
    assert stopped.value.exit_code == 128 + signal.SIGTERM  # a stopped run never exits like a finished one
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002"]
    assert not (run / "model").exists()
    saved_w = load_file(run / "checkpoints" / "step-00000002" / "objective.safetensors")["w"]
    assert float(saved_w) == pytest.approx(float(first.w.detach())) and float(saved_w) > 0  # w was trained

    with pytest.raises(TrainingError, match="already holds checkpoints; pass --resume latest"):
        train(config, progress=False)
    second = ScaledObjective()
    train(config, make_objective=lambda unet: second, resume="latest", progress=False)
    assert second.first_w == pytest.approx(float(saved_w))  # restored before the first resumed step
    assert second.calls == 2
    assert (run / "model" / "unet").is_dir()
    with pytest.raises(TrainingError, match="trains"):
        train(config, resume="latest", progress=False)  # ε objective cannot take w
    narrower = {**mapping["model_overrides"], "block_out_channels": [8, 8]}
    for change in ({"model": "tiny-sd"}, {"model_overrides": narrower}):
        other = from_dict(Config, {**mapping, **change})
        # refused by the run's config.yaml, before any checkpoint is read (issue 27: one line naming the key)
        with pytest.raises(TrainingError, match=r"cannot resume: model(_overrides\.block_out_channels)? was"):
            train(other, make_objective=lambda unet: ScaledObjective(), resume="latest", progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, micro_config):
    run = tmp_path / "run"
    config = from_dict(Config, micro_config(run, steps=4, every=2))
    with pytest.raises(
        TrainingDiverged, match="NaN/Inf at step 3.*last good checkpoint is intact"
    ) as diverged:
        train(config, make_objective=lambda unet: ScaledObjective(nan_at=3), progress=False)
    assert diverged.value.exit_code == 1
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002"]
    assert candidates(run, "latest")[0].name == "step-00000002"


def test_half_written_checkpoints_are_ignored(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "step-00000002").mkdir(parents=True)
    (folder / "step-00000002" / "state.json").write_text("{}")
    (folder / "step-00000009").mkdir()  # crashed before state.json
    (folder / ".tmp-step-00000010").mkdir()  # crashed before the rename
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000002"]
    with pytest.raises(TrainingError, match="not a complete checkpoint"):
        candidates(tmp_path, str(folder / "step-00000009"))


def test_step_sampler_covers_each_epoch_once_across_processes():
    length, batch, processes = 10, 3, 2
    streams = [
        iter(StepSampler(length, batch, seed=0, process=r, processes=processes)) for r in range(processes)
    ]
    seen = [i for _ in range(5) for s in streams for i in next(s)]  # 5 steps × 2 processes × 3 = 3 epochs
    for epoch in range(3):
        assert sorted(seen[epoch * length : (epoch + 1) * length]) == list(range(length))
    resumed = iter(StepSampler(length, batch, seed=0, process=1, processes=processes, start=3))
    fresh = iter(StepSampler(length, batch, seed=0, process=1, processes=processes))
    assert next(resumed) == [next(fresh) for _ in range(4)][-1]


def test_latent_space_run_with_cache_exports_vae(tmp_path, micro_config, tiny_vq, tiny_kl):
    tiny_vq().save_pretrained(tmp_path / "vq")
    run = tmp_path / "run"
    mapping = micro_config(
        run,
        steps=1,
        every=1,
        data={"size": 32, "length": 8},
        autoencoder={"kind": "vq", "source": str(tmp_path / "vq"), "scaling_factor": 0.7, "cache": True},
    )
    train(from_dict(Config, mapping), progress=False)
    assert len(list((tmp_path / ".latent-cache").iterdir())) == 1
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline.from_pretrained(str(run / "model"))
    assert pipe.unet.config.sample_size == 8 and pipe.vae.config.scaling_factor == 0.7
    assert pipe(batch_size=1, num_inference_steps=1, output_type="pt").images.shape == (1, 3, 32, 32)
    tiny_kl().save_pretrained(tmp_path / "kl")
    bad = micro_config(
        tmp_path / "bad", data={"size": 32}, autoencoder={"kind": "kl", "source": str(tmp_path / "kl")}
    )
    with pytest.raises(ConfigError, match="set model_overrides: {in_channels: 4, out_channels: 4}"):
        train(from_dict(Config, bad), progress=False)


class RecordingObjective(EpsilonObjective):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, unet, x0, x_t, t, noise):
        self.seen.append((x0.clone(), x_t.clone(), t.clone(), noise.clone()))
        return super().forward(unet, x0, x_t, t, noise)


@pytest.mark.parametrize("beta_end", [0.0195, 0.0155])  # the LDMs' schedule, and Church's
def test_noising_matches_diffusers_add_noise_and_the_model_keeps_the_schedule(
    tmp_path, micro_config, beta_end
):
    from diffusers import DDPMScheduler

    recorder = RecordingObjective()
    train_section = {"grad_accum": 2} | ({} if beta_end == 0.0195 else {"beta_end": beta_end})
    config = from_dict(Config, micro_config(tmp_path / "run", steps=2, every=2, train=train_section))
    train(config, make_objective=lambda unet: recorder, progress=False)
    assert len(recorder.seen) == 4  # 2 steps × 2 micro-batches
    scheduler = DDPMScheduler(**{**NOISE_SCHEDULE, "beta_end": beta_end})
    stored = json.loads((tmp_path / "run" / "model" / "scheduler" / "scheduler_config.json").read_text())
    assert stored["beta_end"] == beta_end and stored["beta_start"] == NOISE_SCHEDULE["beta_start"]
    for x0, x_t, t, noise in recorder.seen:
        assert x0.shape == (4, 3, 16, 16) and x0.min() >= -1 and x0.max() <= 1
        assert t.dtype == torch.long and t.min() >= 0 and t.max() < 1000
        torch.testing.assert_close(x_t, scheduler.add_noise(x0, noise, t))
    assert not torch.equal(recorder.seen[0][3], recorder.seen[1][3])  # fresh noise per micro-batch


def test_a_run_shorter_than_its_warm_up_warns_in_one_line_and_still_trains(tmp_path, micro_config):
    config = from_dict(Config, micro_config(tmp_path / "run", steps=2, train={"warmup_steps": 5}))
    with pytest.warns(
        UserWarning, match=r"train.steps \(2\) is shorter than train.warmup_steps \(5\)"
    ) as seen:
        train(config, progress=False)
    assert all("\n" not in str(w.message) for w in seen)
    assert (tmp_path / "run" / "model").is_dir()


def test_the_loops_ema_is_diffusers_per_parameter_ema(tiny_unet):
    """`make_ema` updates with fused foreach ops; the per-parameter EMAModel is the oracle (same decay warm-up,
    same weights after steps on moving parameters, to float rounding)."""
    from diffusers.training_utils import EMAModel

    from slimdiff.training.run import make_ema

    unet = tiny_unet(0)
    fused, oracle = make_ema(unet, 0.99), EMAModel(unet.parameters(), decay=0.99, use_ema_warmup=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(4):
            for p in unet.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            fused.step(unet.parameters())
            oracle.step(unet.parameters())
    assert fused.foreach and fused.cur_decay_value == oracle.cur_decay_value
    for a, b, p in zip(fused.shadow_params, oracle.shadow_params, unet.parameters(), strict=True):
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, p)  # the average lags the moving weights: something was averaged
