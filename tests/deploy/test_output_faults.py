"""Outputs that must not lose or fake anything: `export --overwrite` beside the user's files, a graph copied
from another export, a full disk under `sample` and `export`, a batch too large for memory, NaN weights."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.errors import ModelError
from slimdiff.models.loading import load_unet
from slimdiff.sampling import memory
from slimdiff.sampling.generate import NoiseStream, generate
from slimdiff.sampling.pipeline import load_pipeline

runner = CliRunner()


def _one_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _export(model, out, to="diffusers", *extra):
    return runner.invoke(app, ["export", str(model), "--to", to, "--out", str(out), *extra])


@pytest.fixture()
def model(tmp_path, tiny_pipeline, tiny_unet):
    tiny_pipeline(tiny_unet(seed=1)).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _fill(disk, leave: int) -> None:
    """Leave about `leave` bytes free on the small disk."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


def test_export_overwrite_never_deletes_the_users_files(model, tmp_path):
    rule = "--overwrite replaces only an earlier export (a folder whose export.json lists every file in it)"
    pipeline = tmp_path / "pipeline"  # someone's diffusers pipeline, with their notes
    shutil.copytree(model, pipeline)
    (pipeline / "notes.txt").write_text("precious")
    before = _snapshot(pipeline)
    result = _export(model, pipeline, "diffusers", "--overwrite")
    assert result.exit_code == 2 and rule in _one_line(result) and "no export.json" in _one_line(result)
    assert _snapshot(pipeline) == before
    # an earlier export that the user added a file to: still refused, the file named
    assert _export(model, tmp_path / "e").exit_code == 0
    (tmp_path / "e" / "notes.txt").write_text("precious")
    before = _snapshot(tmp_path / "e")
    result = _export(model, tmp_path / "e", "diffusers", "--overwrite")
    assert result.exit_code == 2 and "(notes.txt)" in _one_line(result)
    assert _snapshot(tmp_path / "e") == before
    # an export alone is replaced; the help says the same rule as the refusal
    (tmp_path / "e" / "notes.txt").unlink()
    assert _export(model, tmp_path / "e", "diffusers", "--overwrite").exit_code == 0
    help_text = " ".join(runner.invoke(app, ["export", "--help"]).output.replace("│", " ").split())
    assert "only a folder whose export.json lists every file in it" in help_text


def test_a_graph_copied_from_another_export_is_refused(model, tmp_path, tiny_pipeline, tiny_unet):
    tiny_pipeline(tiny_unet(seed=2)).save_pretrained(tmp_path / "other")
    for source, out in ((model, tmp_path / "a"), (tmp_path / "other", tmp_path / "b")):
        assert _export(source, out, "onnx").exit_code == 0
    shutil.copyfile(tmp_path / "b" / "unet" / "model.onnx", tmp_path / "a" / "unet" / "model.onnx")
    result = runner.invoke(app, ["sample", str(tmp_path / "a"), "--onnx", "--out", str(tmp_path / "s")])
    line = _one_line(result)
    assert result.exit_code == 2 and "was not exported from the weights" in line and "export again" in line
    assert "unet/model.onnx is not the file export.json records" in line
    assert not (tmp_path / "s" / "sample.json").exists()


def test_a_full_disk_while_sampling_leaves_no_partial_set(model, small_disk):
    _fill(small_disk, leave=6 * 4096)  # room for a few PNGs (tmpfs: one 4 KiB page each), not for 40
    out = small_disk / "s"
    result = runner.invoke(app, ["sample", str(model), "--out", str(out), "-n", "40", "--steps", "1"])
    line = _one_line(result)
    assert (
        result.exit_code == 2 and "could not write the samples" in line and "No space left on device" in line
    )
    assert list(out.iterdir()) == []  # no PNG, no half-written file, no sample.json


def test_a_full_disk_while_exporting_keeps_the_earlier_export(tmp_path, small_disk, tiny_pipeline, tiny_unet):
    model = tmp_path / "model"
    tiny_pipeline(tiny_unet(widths=(4, 8))).save_pretrained(model)  # ~50 KB: one export fits the disk
    out = small_disk / "e"
    assert _export(model, out).exit_code == 0
    before = _snapshot(out)
    _fill(small_disk, leave=4096)
    result = _export(model, out, "diffusers", "--overwrite")
    line = _one_line(result)
    assert (
        result.exit_code == 2 and "could not write the export" in line and "No space left on device" in line
    )
    assert _snapshot(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["e", "filler"]  # no hidden .tmp-e


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_anything_is_written(
    model, tmp_path, monkeypatch
):
    per_image = memory.image_bytes(load_pipeline(model))
    monkeypatch.setattr(memory, "free_memory", lambda device: 10 * per_image)
    out = tmp_path / "s"
    args = ["sample", str(model), "--out", str(out), "-n", "64", "--steps", "1"]
    result = runner.invoke(app, [*args, "--batch-size", "64"])
    assert result.exit_code == 2 and "use --batch-size 10 or less" in _one_line(result)
    assert not out.exists()
    assert runner.invoke(app, [*args, "--batch-size", "10"]).exit_code == 0
    assert len(list(out.glob("0*.png"))) == 64 and (out / "sample.json").is_file()


def test_the_noise_stream_equals_one_draw_and_keeps_nothing_it_need_not(model):
    shape = (3, 8, 8)
    g = torch.Generator().manual_seed(5)
    whole = torch.randn(37, *shape, generator=g)
    stream = NoiseStream(5, shape)
    assert torch.equal(torch.cat([stream.take(k) for k in (1, 20, 16)]), whole)
    # stochastic solvers continue where the single draw left the generator
    assert torch.equal(stream.solver_generator(37).get_state(), g.get_state())
    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 2, "sampler": "ddim", "eta": 1.0}
    everything = generate(pipe, 7, seed=3, batch=3, **call)
    assert torch.equal(generate(pipe, 7, seed=3, batch=3, keep=2, **call), everything[:2])
    assert torch.isfinite(everything).all() and everything.std() > 0


def test_weights_holding_nan_are_refused_at_load_naming_the_file(model, tmp_path):
    pipe = load_pipeline(model)
    with torch.no_grad():
        next(pipe.unet.parameters())[0].fill_(float("nan"))
    pipe.save_pretrained(tmp_path / "broken")
    pipe.unet.save_pretrained(tmp_path / "bare")
    weights = "unet/diffusion_pytorch_model.safetensors"
    total = len(pipe.unet.state_dict())
    result = runner.invoke(app, ["sample", str(tmp_path / "broken"), "--out", str(tmp_path / "s")])
    line = _one_line(result)
    assert result.exit_code == 2 and weights in line and f"1 of {total} tensors hold NaN or Inf" in line
    assert not (tmp_path / "s").exists()
    with pytest.raises(ModelError, match=rf"bare/diffusion_pytorch_model.safetensors: 1 of {total} tensors"):
        load_unet(tmp_path / "bare")
