"""Named evaluation protocols (issue 15): a deterministic fast default, the LDM settings by name, explicit options
as recorded departures, DDIM η and class-conditional guidance passed through `generate`."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.errors import ConfigError
from slimdiff.metrics import evaluate as evaluate_module
from slimdiff.metrics import runners
from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
from slimdiff.metrics.protocols import PROTOCOLS
from slimdiff.sampling.generate import generate

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_pipeline, tiny_unet):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline(tiny_unet(size=16)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def class_model_dir(tmp_path_factory, tiny_pipeline, tiny_condition_unet):
    folder = tmp_path_factory.mktemp("class-model")
    tiny_pipeline(tiny_condition_unet(classes=5, size=16)).save_pretrained(folder)
    return folder


def _spy_on_generate(monkeypatch, module) -> list[dict]:
    """Every `generate` call `module` makes: its keyword arguments, with `n` and `batch`."""
    seen = []

    def spy(pipe, n, seed, batch, **kwargs):
        seen.append({"n": n, "batch": batch, **kwargs})
        return generate(pipe, n, seed, batch, **kwargs)

    monkeypatch.setattr(module, "generate", spy)
    return seen


@pytest.fixture
def calls(monkeypatch):
    """Every `generate` call evaluate makes, with its keyword arguments."""
    return _spy_on_generate(monkeypatch, evaluate_module)


def test_the_default_protocol_is_fast_and_deterministic(model_dir):
    options, _ = resolve(EvalOptions(str(model_dir), metrics=("macs",)))
    assert (options.protocol, options.scheduler, options.steps, options.eta) == ("fast", "dpm++", 20, 0.0)
    assert (options.n, options.n_real, options.guidance, options.departures) == (1000, 1000, None, ())


def test_the_ldm_protocols_are_the_published_settings():
    expected = {
        "ldm-celebahq": ("ddim", 200, 0.0),
        "ldm-ffhq": ("ddim", 200, 1.0),
        "ldm-bedroom": ("ddim", 200, 1.0),
        "ldm-church": ("ddim", 400, 0.0),
        "ldm-cin": ("ddim", 250, 0.0),
    }
    for name, settings in expected.items():
        p = PROTOCOLS[name]
        assert (p.scheduler, p.steps, p.eta) == settings and p.n == p.n_real == 50_000
    assert PROTOCOLS["ldm-cin"].guidance == 3.0


def test_a_protocol_fills_what_is_left_open_and_records_departures(model_dir):
    options, _ = resolve(EvalOptions(str(model_dir), metrics=("macs",), protocol="ldm-ffhq", n=8, steps=4))
    assert (options.scheduler, options.steps, options.eta, options.n, options.n_real) == (
        "ddim",
        4,
        1.0,
        8,
        8,
    )
    assert options.departures == (
        "steps 4 (protocol ldm-ffhq: 200)",
        "n 8 (protocol ldm-ffhq: 50000)",
        "n_real 8 (protocol ldm-ffhq: 50000)",
    )
    assert any(note.startswith("not protocol ldm-ffhq as published") for note in options.notes)


def test_an_unknown_protocol_is_one_clear_error(model_dir):
    with pytest.raises(ConfigError, match="unknown protocol 'ldm-ffhg'; valid: fast, ldm-celebahq"):
        resolve(EvalOptions(str(model_dir), metrics=("macs",), protocol="ldm-ffhg"))


def test_metrics_json_records_the_protocol_and_eta_reaches_the_sampler(model_dir, tmp_path, calls):
    options, pipe = resolve(
        EvalOptions(
            str(model_dir), data="builtin:textures", metrics=("spectrum",), protocol="ldm-ffhq", n=4, steps=2
        )
    )
    evaluate(options, tmp_path, pipe)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["protocol"] == "ldm-ffhq" and "steps 2 (protocol ldm-ffhq: 200)" in report["departures"]
    assert report["config"]["protocol_settings"]["eta"] == 1.0 and report["config"]["eta"] == 1.0
    assert calls[0]["sampler"] == "ddim" and calls[0]["eta"] == 1.0 and calls[0]["num_inference_steps"] == 2
    assert "- protocol: ldm-ffhq" in (tmp_path / "summary.md").read_text()


def test_class_models_are_sampled_with_balanced_labels_and_guidance(class_model_dir, tmp_path, calls):
    options, pipe = resolve(
        EvalOptions(
            str(class_model_dir),
            data="builtin:textures",
            metrics=("spectrum",),
            protocol="ldm-cin",
            n=6,
            steps=2,
        )
    )
    assert options.guidance == 3.0
    evaluate(options, tmp_path, pipe)
    labels = calls[0]["per_image"]["class_labels"]
    assert sorted(torch.bincount(labels, minlength=5).tolist()) == [1, 1, 1, 1, 2]
    assert calls[0]["guidance_scale"] == 3.0


def test_guidance_needs_a_class_context_model(model_dir):
    with pytest.raises(ConfigError, match="guidance 3.0 needs a class-context model"):
        resolve(EvalOptions(str(model_dir), metrics=("macs",), protocol="ldm-cin"))


def test_text_models_need_a_prompt_file_for_sampling_metrics(tmp_path, tiny_pipeline, tiny_condition_unet):
    tiny_pipeline(tiny_condition_unet(classes=None, size=16)).save_pretrained(tmp_path / "text")
    with pytest.raises(ConfigError, match="text-conditional model: pass --prompts FILE"):
        resolve(EvalOptions(str(tmp_path / "text"), data="builtin:textures", metrics=("spectrum",)))


def test_per_image_labels_follow_their_images_whatever_the_batch(tiny_pipeline, tiny_condition_unet):
    pipe = tiny_pipeline(tiny_condition_unet(classes=5, size=8))
    labels = {"class_labels": torch.tensor([0, 4, 2, 1])}
    call = {"num_inference_steps": 2, "sampler": "ddim", "guidance_scale": 2.0}
    whole = generate(pipe, 4, seed=3, batch=4, per_image=labels, **call)
    halves = generate(pipe, 4, seed=3, batch=2, per_image=labels, **call)
    torch.testing.assert_close(halves, whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError, match="per_image\\['class_labels'\\] has 4 rows, expected one per image \\(3\\)"
    ):
        generate(pipe, 3, per_image=labels, **call)


def test_cli_takes_a_protocol_and_refuses_an_unknown_one(model_dir, tmp_path):
    result = runner.invoke(
        app,
        [
            "eval",
            str(model_dir),
            "--protocol",
            "ldm-church",
            "--metrics",
            "macs",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert report["protocol"] == "ldm-church" and report["config"]["steps"] == 400
    result = runner.invoke(app, ["eval", str(model_dir), "--protocol", "paper", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "unknown protocol 'paper'" in result.output
    assert "Traceback" not in result.output


def test_latency_times_one_image_with_the_evaluations_sampler_and_skips_a_folder(
    model_dir, class_model_dir, tmp_path, monkeypatch
):
    seen = _spy_on_generate(monkeypatch, runners)
    options, pipe = resolve(
        EvalOptions(
            str(class_model_dir), metrics=("latency",), scheduler="ddim", steps=2, eta=1.0, timing_seconds=0
        )
    )
    result = evaluate(options, tmp_path / "model", pipe).report
    assert result["results"]["seconds_per_image"] > 0 and result["skipped"] == {}
    assert len(seen) == 1 + 3  # one warm-up call, then the three timed runs
    for call in seen:  # one image at batch 1, with the evaluation's sampler and a class label
        assert (call["n"], call["batch"]) == (1, 1) and call["sampler"] == "ddim"
        assert call["num_inference_steps"] == 2 and call["eta"] == 1.0
        assert len(call["per_image"]["class_labels"]) == 1
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy()).save(images / f"{i}.png")
    options, _ = resolve(EvalOptions(str(images), metrics=("latency",)))
    skipped = evaluate(options, tmp_path / "folder").report["skipped"]
    assert "need a model" in skipped["latency"]
