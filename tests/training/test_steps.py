"""Step distillation (consistency distillation): the consistency function's boundary, the loss against an
oracle built from diffusers' DDIMScheduler and LCMScheduler, the student's start, class conditions, a tiny
run end to end (the exported folder samples in N UNet calls with no arguments) and its resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from diffusers import DDIMScheduler, DiffusionPipeline, LCMScheduler
from safetensors.torch import load_file
from typer.testing import CliRunner

import slimdiff  # noqa: F401  (registers the pipeline with diffusers)
from slimdiff.cli import app
from slimdiff.config import Config, ConfigError, DistillConfig, from_dict
from slimdiff.diffusion import training_scheduler
from slimdiff.training.loop import train
from slimdiff.training.run import start_from
from slimdiff.training.steps import ConsistencyDistillation

STEPS = {"steps": 4, "positions": ("output",)}


def _objective(student, teacher, **settings) -> ConsistencyDistillation:
    settings = DistillConfig(**{**STEPS, **settings})
    return ConsistencyDistillation(student, teacher, settings, training_scheduler())


def _batch(seed: int = 0, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 8, 8, generator=g).clamp(-1, 1), torch.randn(batch, 3, 8, 8, generator=g)


def test_the_consistency_function_is_the_identity_at_the_boundary_and_x0_at_high_noise(tiny_unet):
    objective = _objective(tiny_unet(), tiny_unet(seed=1))
    x, eps = _batch()
    torch.testing.assert_close(objective.consistency(eps, x, torch.zeros(3, dtype=torch.long)), x)
    ᾱ = training_scheduler().alphas_cumprod[999]
    x0 = (x - (1 - ᾱ).sqrt() * eps) / ᾱ.sqrt()
    torch.testing.assert_close(objective.consistency(eps, x, torch.full((3,), 999)), x0, rtol=0, atol=1e-4)


def test_the_loop_timesteps_map_evenly_onto_the_lcm_grid(tiny_unet):
    t, prev = _objective(tiny_unet(), tiny_unet(seed=1)).grid_pair(torch.arange(1000))
    lcm = LCMScheduler.from_config(training_scheduler().config)  # original_inference_steps = 50
    lcm.set_timesteps(50)
    assert set(t.tolist()) == set(lcm.timesteps.tolist())  # 19, 39, …, 999: where the student samples
    assert set(torch.bincount(t)[t].tolist()) == {20}  # each grid point drawn by 20 loop timesteps
    assert torch.equal(prev, (t - 20).clamp_min(0))


def _oracle(student, teacher, x0, noise, t_loop: list[int]) -> torch.Tensor:
    """mean(ᾱ_t · (f(x_t, t) − f(x_s, s))²) by hand: DDIMScheduler.step for the teacher, LCMScheduler's
    c_skip / c_out for f (for loop timesteps ≥ 20, where DDIM's 50-step grid steps to t − 20)."""
    ddim = DDIMScheduler.from_config(training_scheduler().config, clip_sample=False)
    ddim.set_timesteps(50)
    lcm = LCMScheduler.from_config(training_scheduler().config)
    ᾱ = ddim.alphas_cumprod

    def f(x, s):
        c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(s)
        return c_skip * x + c_out * (x - (1 - ᾱ[s]).sqrt() * student(x, s).sample) / ᾱ[s].sqrt()

    losses = []
    for i, t_raw in enumerate(t_loop):
        t = t_raw // 20 * 20 + 19
        x_t = ᾱ[t].sqrt() * x0[i : i + 1] + (1 - ᾱ[t]).sqrt() * noise[i : i + 1]
        with torch.no_grad():
            x_s = ddim.step(teacher(x_t, t).sample, t, x_t).prev_sample
            target = f(x_s, t - 20)
        losses.append(ᾱ[t] * ((f(x_t, t) - target) ** 2).mean())
    return torch.stack(losses).mean()


def test_lambda_f_zero_is_the_plain_consistency_loss_of_an_independent_oracle(tiny_unet):
    student, teacher = tiny_unet(), tiny_unet(seed=1)
    x0, noise = _batch()
    t = torch.tensor([25, 517, 999])
    loss, terms = _objective(student, teacher, lambda_spatial=1.0, lambda_freq=0.0)(student, x0, x0, t, noise)
    torch.testing.assert_close(loss, _oracle(student, teacher, x0, noise, t.tolist()), rtol=1e-5, atol=1e-7)
    assert float(terms["loss_freq"]) == 0.0
    # with ω ≡ 1 the frequency term is the spatial one (Parseval), so λ_f alone gives the same loss
    uniform = _objective(student, teacher, lambda_spatial=0.0, lambda_freq=1.0, omega="uniform")
    torch.testing.assert_close(uniform(student, x0, x0, t, noise)[0], loss, rtol=1e-5, atol=1e-7)


def test_gradients_reach_the_student_only_and_class_conditions_reach_both(tiny_condition_unet):
    student, teacher = tiny_condition_unet().train(), tiny_condition_unet(seed=1)
    seen = []
    teacher.register_forward_hook(
        lambda m, args, kwargs, out: seen.append(kwargs["class_labels"]), with_kwargs=True
    )
    x0, noise = _batch()
    labels = torch.tensor([0, 3, 5])  # 5: the null class (condition dropout)
    loss, _ = _objective(student, teacher)(
        student, x0, x0, torch.tensor([40, 400, 900]), noise, class_labels=labels
    )
    loss.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())
    assert len(seen) == 1 and torch.equal(seen[0], labels)


def test_the_student_starts_from_a_model_of_its_architecture_or_is_refused(
    tmp_path, tiny_unet, assert_same_parameters
):
    tiny_unet(seed=3).save_pretrained(tmp_path / "student")
    unet = tiny_unet()
    start_from(unet, str(tmp_path / "student"))
    assert_same_parameters(unet, tiny_unet(seed=3))
    with pytest.raises(ConfigError, match="is not a SlimUNet2DModel of the config's model preset"):
        start_from(tiny_unet(widths=(8, 8)), str(tmp_path / "student"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 0}, r"distill.steps must be a whole number in \[1, 50\]"),
        ({"steps": 51}, r"distill.steps must be a whole number in \[1, 50\]"),
        ({"steps": 4, "positions": ("output", "feat-up1")}, r"set distill.positions to \[output\]"),
        ({"steps": 4, "positions": ("output",), "lambda_spatial": 0, "lambda_freq": 0}, "above 0"),
    ],
)
def test_bad_step_settings_are_one_clear_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**settings)


RUNNER = CliRunner()


def _config(micro_config, tiny_teacher_folder, run_dir, steps: int = 2, **train_settings) -> dict:
    return micro_config(
        run_dir,
        steps=steps,
        every=2,
        widths=(8, 16, 16),
        model="tiny-sd",
        data={"size": 32, "length": 16},
        train={"warmup_steps": 1, **train_settings},
        distill={"teacher": str(tiny_teacher_folder), "positions": ["output"], "lambda_freq": 0.5},
    )


def test_to_steps_trains_and_exports_a_folder_that_samples_in_n_calls(
    tmp_path, micro_config, tiny_teacher_folder
):
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(_config(micro_config, tiny_teacher_folder, tmp_path / "run")))
    result = RUNNER.invoke(app, ["distill", str(path), "--to-steps", "3"])
    assert result.exit_code == 0, result.output
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path / "run" / "model"))
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.scheduler.config.original_inference_steps == 50
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    images = pipe(batch_size=2, output_type="pt").images
    assert len(calls) == 3 and images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert "steps: 3" in (tmp_path / "run" / "config.yaml").read_text()
    # `slimdiff sample` without --scheduler / --steps samples it as exported, too
    out = tmp_path / "samples"
    result = RUNNER.invoke(app, ["sample", str(tmp_path / "run"), "--out", str(out), "-n", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sample.json").read_text())
    assert (record["scheduler"], record["steps"]) == ("LCMScheduler (the model's own)", 3)


def test_bad_to_steps_is_one_line_before_anything_is_written(tmp_path, micro_config, tiny_teacher_folder):
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(_config(micro_config, tiny_teacher_folder, tmp_path / "run")))
    result = RUNNER.invoke(app, ["distill", str(path), "--to-steps", "0"])
    assert result.exit_code == 2 and "distill.steps must be" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_resumed_step_distillation_ends_with_the_weights_of_a_straight_run(
    tmp_path, micro_config, tiny_teacher_folder
):
    def run(folder, steps):
        mapping = _config(micro_config, tiny_teacher_folder, folder, steps=steps, lr_schedule="constant")
        mapping["distill"]["steps"] = 2
        return from_dict(Config, mapping)

    train(run(tmp_path / "straight", 4), progress=False)
    train(run(tmp_path / "resumed", 2), progress=False)
    train(run(tmp_path / "resumed", 4), resume="latest", progress=False)
    weights = "unet/diffusion_pytorch_model.safetensors"
    a = load_file(tmp_path / "straight" / "checkpoints" / "step-00000004" / weights)
    b = load_file(tmp_path / "resumed" / "checkpoints" / "step-00000004" / weights)
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(tmp_path / "straight" / "checkpoints" / "step-00000002" / weights)
    assert not all(torch.equal(a[k], start[k]) for k in a)
