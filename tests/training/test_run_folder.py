"""A run folder under misuse: a resume with other settings, two processes on one folder, damaged state files,
a full disk. Each gets one line and the run folder keeps what it had."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import Config, from_dict
from slimdiff.errors import TrainingError
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train
from slimdiff.training.run_folder import hold_run_folder

runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture()
def finished_run(tmp_path, micro_config):
    run = tmp_path / "run"
    mapping = micro_config(run, steps=2, every=1)
    train(from_dict(Config, mapping), progress=False)
    return run, mapping


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("data", "size", 8),
        ("data", "source", "builtin:photos"),
        ("train", "batch_size", 2),
        ("train", "base_lr", 3e-4),
        ("train", "seed", 5),
        ("train", "mixed_precision", "bf16"),
    ],
)
def test_a_resume_that_changes_what_is_learned_is_refused_and_changes_nothing(
    finished_run, section, key, value
):
    run, mapping = finished_run
    before = _snapshot(run)
    changed = {**mapping, "train": {**mapping["train"], "steps": 3}}  # extending alone would be allowed
    changed[section] = {**changed[section], key: value}
    with pytest.raises(
        TrainingError, match=rf"{section}\.{key} was .* when the run started .*, now {value!r}"
    ):
        train(from_dict(Config, changed), resume="latest", progress=False)
    assert _snapshot(run) == before


def test_a_resume_may_extend_the_run_and_change_its_cadence(finished_run):
    run, mapping = finished_run
    longer = {**mapping, "train": {**mapping["train"], "steps": 3}, "run": {**mapping["run"], "log_every": 2}}
    train(from_dict(Config, longer), resume="latest", progress=False)
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-00000003"


def test_a_second_process_on_the_same_run_folder_is_refused_with_the_holders_pid(tmp_path, micro_config):
    run = tmp_path / "run"
    config = from_dict(Config, micro_config(run, steps=1))
    with (
        hold_run_folder(run),
        pytest.raises(TrainingError, match=rf"in use by a training process \(pid {os.getpid()}\)"),
    ):
        train(config, progress=False)
    assert not (run / "config.yaml").exists()
    train(config, progress=False)  # released when the holder let go
    assert (run / "model").is_dir()


def test_a_holder_that_dies_never_blocks_the_run_folder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom pathlib import Path\nfrom slimdiff.training.run_folder import hold_run_folder\n"
                "with hold_run_folder(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n"
            ),
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainingError, match=f"pid {holder.pid}"), hold_run_folder(run):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with hold_run_folder(run):  # the OS dropped the dead holder's lock
        pass


@pytest.mark.parametrize(
    ("name", "garbage"),
    [
        ("lr_schedule.json", "[1, 2, 3]"),
        ("lr_schedule.json", '{"last_epoch": "soon"}'),
        ("lr_schedule.json", "not json at all"),
        ("rng-0.json", '{"python": 1, "numpy": [], "torch": []}'),
        ("ema/ema.json", "{}"),
        (
            "state.json",
            '{"step": -4, "micro_step": 0, "processes": 1, "grad_accum": 1, "model": "tiny-lite"}',
        ),
    ],
)
def test_a_damaged_state_file_falls_back_to_the_last_intact_checkpoint(finished_run, name, garbage):
    run, mapping = finished_run
    newest = list_checkpoints(run / "checkpoints")[-1]
    (newest / name).write_text(garbage)
    longer = {**mapping, "train": {**mapping["train"], "steps": 3}}
    with pytest.warns(UserWarning, match=f"skipping damaged checkpoint {newest}"):
        train(from_dict(Config, longer), resume="latest", progress=False)
    for older in list_checkpoints(run / "checkpoints")[:-1]:
        shutil.rmtree(older)
    (list_checkpoints(run / "checkpoints")[-1] / name).write_text(garbage)
    result = runner.invoke(app, ["train", str(run / "config.yaml"), "--resume", "latest"])
    assert result.exit_code == 2 and "every checkpoint is damaged" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_folder(small_disk, micro_config):
    run = small_disk / "run"
    with pytest.raises(
        TrainingError, match="could not write the checkpoint of step 1 .*No space left on device"
    ):
        train(from_dict(Config, micro_config(run, steps=2, every=1, widths=(32, 64))), progress=False)
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert not list_checkpoints(run / "checkpoints")
    assert (run / "config.yaml").is_file()
