"""The demo end to end at toy scale: every picture and number of the report is written."""

from __future__ import annotations

import json
import re

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
    )
    report = run_demo(settings)
    folder = report.parent
    text = report.read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"teacher", "SD student (distilled)", "SD (no distillation)"}
    for name, m in metrics.items():
        # the same keys as `slimdiff eval`'s metrics.json: the demo measures through the same function
        assert m["params"] > 0 and m["macs"] > 0 and m["unet_steps_per_s"] > 0
        assert m["swd"]["mean"] > 0 and {"low", "high"} <= set(m["spectrum_error"])
        assert m["eps_spectrum"]["low"] > 0 and len(m["eps_spectrum"]["buckets"]) == 10
        assert name in text
    assert metrics["SD student (distilled)"]["params"] < metrics["teacher"]["params"]
    pictures = re.findall(r"^!\[.*\]\((.+)\)$", text, flags=re.MULTILINE)
    assert len(pictures) == 6  # real + three models + two spectrum plots
    for picture in pictures:
        assert Image.open(folder / picture).size[0] > 50
    assert (folder / "report.html").read_text().count("<img") == 6
    assert (tmp_path / "demo" / "student" / "model" / "unet" / "config.json").is_file()
    assert "positions:\n  - output\n" in (tmp_path / "demo" / "student" / "config.yaml").read_text()


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
