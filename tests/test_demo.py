"""The demo end to end at toy scale: every picture and number of the report is written."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from slimdiff.demo import DemoSettings, run_demo


def test_demo_writes_a_complete_report(tmp_path, tiny_teacher_folder):
    settings = DemoSettings(
        out=tmp_path / "demo",
        teacher=str(tiny_teacher_folder),
        student_steps=2,
        batch_size=4,
        samples=8,
        sample_steps=2,
        timing_seconds=0.05,
        few_step_calls=2,
        baseline=True,
        few_step_training=2,
    )
    report = run_demo(settings)
    folder = report.parent
    text = report.read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    few, control = (
        "SD student, 2 calls (step-distilled)",
        "SD student, 2 calls (LCM sampler, not step-distilled)",
    )
    assert set(metrics) == {"teacher", "SD student (distilled)", "SD (no distillation)", few, control}
    for name, m in metrics.items():
        # the same keys as `slimdiff eval`'s metrics.json: the demo measures through the same function
        assert m["params"] > 0 and m["macs"] > 0 and m["unet_steps_per_s"] > 0
        assert m["swd"]["mean"] > 0 and {"low", "high"} <= set(m["spectrum_error"])
        assert m["eps_spectrum"]["low"] > 0 and len(m["eps_spectrum"]["buckets"]) == 10
        assert m["seconds_per_image"] > 0
        assert name in text
        if name != "teacher":  # the speed-up is the teacher's seconds per image over the row's
            speed_up = metrics["teacher"]["seconds_per_image"] / m["seconds_per_image"]
            assert m["vs_teacher"]["speed_up"] == pytest.approx(speed_up)
    assert metrics["SD student (distilled)"]["params"] < metrics["teacher"]["params"]
    pictures = re.findall(r"^!\[.*\]\((.+)\)$", text, flags=re.MULTILINE)
    assert len(pictures) == 8  # real + five rows + two spectrum plots
    for picture in pictures:
        assert Image.open(folder / picture).size[0] > 50
    assert (folder / "report.html").read_text().count("<img") == 8
    assert (tmp_path / "demo" / "student" / "model" / "unet" / "config.json").is_file()
    assert "positions:\n  - output\n" in (tmp_path / "demo" / "student" / "config.yaml").read_text()
    # the few-step student is an ordinary diffusers folder that samples in 2 calls with no arguments
    index = json.loads((tmp_path / "demo" / "few-step" / "model" / "model_index.json").read_text())
    assert index["default_steps"] == 2 and index["scheduler"] == ["diffusers", "LCMScheduler"]
    assert "lcm 2" in text and "ddim 2, η = 1" in text


def test_demo_refuses_unknown_positions_before_touching_its_folder(tmp_path):
    from typer.testing import CliRunner

    from slimdiff.cli import app

    (tmp_path / "demo" / "student").mkdir(parents=True)
    (tmp_path / "demo" / "student" / "keep.txt").write_text("earlier run")
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path / "demo"), "--positions", "output,feat-up9"]
    )
    assert result.exit_code == 2 and "feat-up9" in result.output and "feat-up1" in result.output
    assert (tmp_path / "demo" / "student" / "keep.txt").read_text() == "earlier run"


def test_the_demo_uses_the_shipped_students_only_where_they_are_what_it_would_train(tmp_path):
    from slimdiff.demo import uses_shipped_students

    assert uses_shipped_students(DemoSettings(out=tmp_path))
    for changed in (
        {"train_students": True},
        {"teacher": "some/other/teacher"},  # the shipped students were distilled from the shipped teacher
        {"student_steps": 799},
        {"positions": ("output", "feat-up1")},
        {"batch_size": 16},
    ):
        assert not uses_shipped_students(DemoSettings(out=tmp_path, **changed)), changed


def test_slimdiff_demo_without_options_runs_the_recipe_s_own_settings(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import slimdiff.demo
    from slimdiff.cli import app

    seen = []
    monkeypatch.setattr(slimdiff.demo, "run_demo", lambda settings, console: seen.append(settings))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert seen == [DemoSettings(out=tmp_path / "demo")]
