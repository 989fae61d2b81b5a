"""The few-step study (benchmarks/step_study.py) at toy scale, in both settings: every arm lands as its own
record, the goals are read from those records by the rule (docs/step_distillation.md), and --resume redoes
nothing."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))  # `benchmarks` lives beside src/, not in the package

from benchmarks import fashion_mnist, step_study  # noqa: E402


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    monkeypatch.setattr(step_study, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(step_study, "SAMPLES", 8)
    monkeypatch.setattr(step_study, "CD_STEPS", 2)
    monkeypatch.setattr(step_study, "MANY", {"scheduler": "ddim", "steps": 2, "eta": 1.0})
    return tmp_path


def test_the_study_writes_every_arm_and_reads_the_goals_from_the_records(tiny_study, monkeypatch):
    work = tiny_study / "work"
    step_study.main(["--seeds", "0", "--work", str(work)])
    records = {r["arm"]: r for r in step_study.load_results(step_study.SETTINGS["textures"])}
    assert set(records) == set(step_study.arms())
    for r in records.values():
        assert r["seed"] == 0 and r["swd"] > 0 and r["seconds_per_image"] > 0
        assert math.isfinite(r["spectrum_high"]) and r["swd_to_teacher"] >= 0
    # the step-distilled students sample with their own LCM scheduler at the arm's number of calls
    assert records["steps@2"]["sampler"] == {"scheduler": "lcm", "steps": 2, "eta": None}
    for name in ("steps", "steps-plain"):
        index = json.loads((work / f"s0-{name}" / "model" / "model_index.json").read_text())
        assert index["default_steps"] == step_study.CALLS
    assert (work / "s0-steps" / "config.yaml").read_text().count("lambda_freq: 0.1") == 1
    assert (work / "s0-steps-plain" / "config.yaml").read_text().count("lambda_freq: 0.0") == 1
    goals = json.loads((tiny_study / "results" / "step_study.json").read_text())["goals"]
    assert goals["seeds"] == [0]
    ratio = records["steps@4"]["swd"] / records["student"]["swd"]
    assert goals["G1 swd(steps@4)/swd(student)"]["per_seed"] == [pytest.approx(ratio)]
    best = goals["G3 best training-free solver by swd"]
    assert best == min(("dpm++@4", "unipc@4"), key=lambda a: records[a]["swd"])
    assert math.isnan(goals["G1 swd(steps@4)/swd(student)"]["low"])  # one seed: no interval, and no claim
    page = (tiny_study / "results" / "step_study.md").read_text()
    assert "Goals on the complete seeds ([0])" in page and "![distance against calls](step_study.png)" in page
    assert (tiny_study / "results" / "step_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert goals["G3 swd(steps@4) - swd(best)"]["reading"] == "no interval yet"  # one seed: not "missed"

    before = {p: p.stat().st_mtime_ns for p in (tiny_study / "results" / "step_study").iterdir()}
    monkeypatch.setattr(sys, "argv", ["step_study", "--seeds", "0", "--work", str(work), "--resume"])
    step_study.main()  # as `python -m` calls it: the arguments come from the command line
    after = {p: p.stat().st_mtime_ns for p in (tiny_study / "results" / "step_study").iterdir()}
    assert after == before  # nothing re-scored, nothing re-trained
    page = (tiny_study / "results" / "step_study.md").read_text()
    assert f"command: `python -m benchmarks.step_study --seeds 0 --work {work} --resume`" in page


def test_the_fashion_mnist_setting_uses_the_reference_models_and_reads_fd_as_well(
    tiny_study, fake_fmnist_sized, monkeypatch
):
    fake_fmnist_sized(64, 48)
    reference = tiny_study / "reference"
    monkeypatch.setattr(fashion_mnist, "WORK", reference)
    tiny = partial(fashion_mnist.Settings, teacher_steps=2, student_steps=2, batch=4)
    monkeypatch.setattr(fashion_mnist, "Settings", tiny)
    setting = replace(step_study.SETTINGS["fashion-mnist"], n_real=48)
    monkeypatch.setitem(step_study.SETTINGS, "fashion-mnist", setting)
    work = tiny_study / "work"
    step_study.main(["--setting", "fashion-mnist", "--seeds", "1", "--work", str(work)])

    # the reference study's teacher and its seed-1 SD student, trained there because they were missing
    for name in ("teacher", "sd-s1"):
        assert (reference / name / "model" / "model_index.json").is_file()
    steps_config = (work / "s1-steps" / "config.yaml").read_text()
    assert "builtin:fashion-mnist" in steps_config and f"batch_size: {setting.batch}" in steps_config
    assert str(reference / "sd-s1" / "model") in steps_config
    records = {r["arm"]: r for r in step_study.load_results(setting)}
    assert set(records) == set(step_study.arms())
    assert all(math.isfinite(r["fd_fmnist"]) and r["setting"] == "fashion-mnist" for r in records.values())
    results = tiny_study / "results"
    assert sorted(p.name for p in (results / "step_study-fashion-mnist").iterdir())[0] == "seed1-dpm++-2.json"
    goals = json.loads((results / "step_study-fashion-mnist.json").read_text())["goals"]
    ratio = records["steps@4"]["fd_fmnist"] / records["student"]["fd_fmnist"]
    assert goals["G1 fd_fmnist(steps@4)/fd_fmnist(student)"]["per_seed"] == [pytest.approx(ratio)]
    assert "G1 swd(steps@4)/swd(student)" in goals
    assert (results / "step_study-fashion-mnist.png").is_file()
    teacher, student = records["teacher"]["fd_fmnist"], records["student"]["fd_fmnist"]
    assert goals["precondition"]["reading"] == ("holds" if teacher < student else "fails: untestable")
    assert not (results / "step_study").exists()  # the textures setting's records are untouched
