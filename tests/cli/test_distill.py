"""`slimdiff distill`: the training loop with a teacher, each loss term logged, clear errors up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.models.loading import load_unet
from slimdiff.models.presets import get_preset

runner = CliRunner()
STUDENT = {"size": 32, "widths": (8, 16, 16)}  # three levels at 32×32, as the tiny teacher


@pytest.fixture
def write_config(micro_config):
    """`write_config(folder, **distill)`: a two-step tiny-sd run config with an optional distill: section."""

    def write(folder: Path, **distill) -> Path:
        mapping = micro_config(
            folder / "run",
            steps=2,
            every=2,
            widths=STUDENT["widths"],
            model="tiny-sd",
            data={"size": STUDENT["size"], "length": 16},
            train={"warmup_steps": 1},
        )
        if distill:
            mapping["distill"] = distill
        path = folder / "distill.yaml"
        path.write_text(yaml.safe_dump(mapping))
        return path

    return write


def test_distill_trains_logs_each_term_and_exports_a_student(tmp_path, write_config, tiny_teacher_folder):
    config = write_config(tmp_path, positions=["output", "feat-up1", "feat-up2"], lambda_freq=0.5)
    result = runner.invoke(app, ["distill", str(config), "--teacher", str(tiny_teacher_folder)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    student = load_unet(run / "model")
    assert type(student).__name__ == "SlimUNet2DModel" and student.config.wavelet_gating
    saved = (run / "config.yaml").read_text()
    assert str(tiny_teacher_folder) in saved and "lambda_freq: 0.5" in saved
    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/loss_eps", "train/loss_spatial", "train/loss_freq"} <= set(tags)
    # the projectors (student 16 → teacher 32 channels) are checkpointed with the student
    checkpoint = next((run / "checkpoints").iterdir())
    assert any("projectors" in p.name or "objective" in p.name for p in checkpoint.iterdir())


def test_distill_without_teacher_is_one_line_and_writes_nothing(tmp_path, write_config):
    result = runner.invoke(app, ["distill", str(write_config(tmp_path))])
    assert result.exit_code == 2
    assert "no teacher" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_distill_refuses_a_teacher_from_another_latent_space(tmp_path, write_config, tiny_unet):
    folder = tmp_path / "kl-teacher"
    tiny_unet(channels=4, **STUDENT).save_pretrained(folder)
    result = runner.invoke(app, ["distill", str(write_config(tmp_path)), "--teacher", str(folder)])
    assert result.exit_code == 2
    assert "in_channels" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_distill_rejects_unknown_positions_before_anything_starts(
    tmp_path, write_config, tiny_teacher_folder
):
    config = write_config(tmp_path, positions=["output", "feat-up7"])
    result = runner.invoke(app, ["distill", str(config), "--teacher", str(tiny_teacher_folder)])
    assert result.exit_code == 2
    assert "feat-up7" in result.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["ffhq", "celebahq", "bedroom", "church"])
def test_paper_sd_configs_pair_a_slim_student_with_its_teacher(name):
    from slimdiff.config import load_config

    root = Path(__file__).parents[2] / "configs"
    student = load_config(root / f"{name}-sd.yaml")
    teacher = load_config(root / f"{name}-ldm.yaml")
    assert student.model.startswith("sd-") and get_preset(student.model).config["wavelet_gating"]
    assert student.distill.lambda_spatial == student.distill.lambda_freq == 0.1
    assert student.autoencoder == teacher.autoencoder and student.data.size == teacher.data.size
    s, t = get_preset(student.model).config, get_preset(teacher.model).config
    assert (s["in_channels"], s["sample_size"]) == (t["in_channels"], t["sample_size"])
    assert len(s["block_out_channels"]) == len(t["block_out_channels"])  # features meet at equal resolutions
