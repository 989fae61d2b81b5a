"""`slimdiff eval` on conditional models (issue 13): balanced labels, per-class scores against labelled held-out
images, a guidance sweep in one table, and text models sampled from a prompt file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.data.datasets import held_out_images
from slimdiff.errors import ConfigError, DataError
from slimdiff.metrics.conditional import balanced_labels, labelled_held_out, per_class_scores
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.metrics.sweep import parse_scales
from slimdiff.sampling.conditions import read_prompts

runner = CliRunner()
FAST = ["--steps", "2", "--scheduler", "ddim", "--batch-size", "8"]


@pytest.fixture(scope="module")
def texture_model(tmp_path_factory, tiny_pipeline, tiny_condition_unet):
    """A 3-class model whose classes are builtin:textures' (brick, grass, gravel)."""
    folder = tmp_path_factory.mktemp("class-model")
    tiny_pipeline(tiny_condition_unet(classes=3, size=16)).save_pretrained(folder)
    (folder / "class_names.json").write_text(json.dumps(["brick", "grass", "gravel"]))
    return folder


def _eval(model, out, *extra):
    args = ["eval", str(model), "--data", "builtin:textures", "--metrics", "swd,spectrum", "-n", "12"]
    return runner.invoke(app, [*args, *FAST, "--out", str(out), *extra])


def test_balanced_labels_visit_every_class_equally_in_a_seeded_order():
    labels = balanced_labels(10, 3, seed=4)
    assert sorted(torch.bincount(labels, minlength=3).tolist()) == [3, 3, 4]
    assert torch.equal(labels, balanced_labels(10, 3, seed=4))
    assert not torch.equal(labels, torch.arange(10) % 3)  # shuffled: a batch mixes classes
    assert torch.equal(torch.bincount(balanced_labels(12, 4, seed=0)), torch.full((4,), 3))


def test_labelled_real_images_are_the_held_out_images_with_their_classes(tmp_path):
    images, labels, names = labelled_held_out("builtin:textures", 16, 9, seed=2)
    torch.testing.assert_close(images, held_out_images("builtin:textures", 16, 9, seed=2), rtol=0, atol=0)
    assert names == ["brick", "grass", "gravel"] and labels.shape == (9,)
    rng = np.random.default_rng(0)
    for name, value in (("cats", 30), ("dogs", 220)):  # a class folder: labels from the sub-folders
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.clip(value + rng.integers(-5, 6, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    images, labels, names = labelled_held_out(str(tmp_path), 8, 4, seed=0)
    torch.testing.assert_close(images, held_out_images(str(tmp_path), 8, 4, seed=0), rtol=0, atol=0)
    assert names == ["cats", "dogs"]
    dark = images.mean(dim=(1, 2, 3)) < 0  # the cats are dark, the dogs bright
    assert torch.equal(dark, labels == 0)


def test_a_folder_without_classes_has_no_labels(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError):
        labelled_held_out(str(tmp_path), 8, 2)


def test_per_class_scores_compare_each_class_with_its_own_real_images():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(8, 3, 16, 16, generator=g), 3, 1, 1)
    rough = torch.randn(8, 3, 16, 16, generator=g).clamp(-1, 1)
    real, real_labels = torch.cat([smooth, rough]), torch.tensor([0] * 8 + [1] * 8)
    fake, fake_labels = torch.cat([rough[:4], smooth[:6]]), torch.tensor([1] * 4 + [0] * 6)
    scores = per_class_scores(real, real_labels, fake, fake_labels, ["smooth", "rough"])
    assert (scores["smooth"]["n_real"], scores["smooth"]["n_fake"], scores["rough"]["n_fake"]) == (8, 6, 4)
    assert scores["smooth"]["swd"] == swd(smooth, smooth[:6])
    assert scores["rough"]["spectrum_error"] == spectrum_error(rough, rough[:4])
    order = torch.randperm(10, generator=g)  # rows in any order: a label follows its image
    shuffled = per_class_scores(real, real_labels, fake[order], fake_labels[order], ["smooth", "rough"])
    for name in ("smooth", "rough"):
        assert shuffled[name]["spectrum_error"] == pytest.approx(scores[name]["spectrum_error"], rel=1e-5)
    swapped = per_class_scores(real, real_labels, fake, 1 - fake_labels, ["smooth", "rough"])
    for name in ("smooth", "rough"):  # the wrong class's images score worse
        assert swapped[name]["spectrum_error"]["high"] > 2 * scores[name]["spectrum_error"]["high"]
    few = per_class_scores(real, real_labels, fake[:1], fake_labels[:1], ["smooth", "rough"])
    assert "fewer than 2" in few["rough"]["skipped"] and "swd" not in few["rough"]


def test_per_class_fid_and_kid_come_from_each_class_features():
    g = torch.Generator().manual_seed(1)
    features = {"real": torch.randn(20, 6, generator=g), "fake": torch.randn(20, 6, generator=g)}
    features["fake"][10:] += 5.0  # class 1's samples are far off
    labels = torch.tensor([0] * 10 + [1] * 10)
    images = torch.zeros(20, 3, 16, 16)
    scores = per_class_scores(
        images, labels, images, labels, ["a", "b"], metrics=("fid", "kid"), features=features
    )
    assert (
        scores["b"]["fid"] > 10 * scores["a"]["fid"]
        and scores["b"]["kid"]["mean"] > scores["a"]["kid"]["mean"]
    )
    assert "swd" not in scores["a"]


def test_eval_of_a_class_model_scores_every_class(texture_model, tmp_path):
    result = _eval(texture_model, tmp_path / "e")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(report["per_class"]) == ["brick", "grass", "gravel"]
    assert [c["n_fake"] for c in report["per_class"].values()] == [4, 4, 4]
    assert sum(c["n_real"] for c in report["per_class"].values()) == 12
    assert all("swd" in c and "spectrum_error" in c for c in report["per_class"].values())
    assert "| brick |" in (tmp_path / "e" / "summary.md").read_text()
    with Image.open(tmp_path / "e" / "samples.png") as grid:  # one row per class
        assert grid.size == (3 * (8 * 18 + 2), 3 * (3 * 18 + 2))  # 16² images shown 3× larger


def test_eps_spectrum_of_a_class_model_feeds_each_real_image_its_class(texture_model, tmp_path):
    from slimdiff.metrics.eps_spectrum import eps_error_spectrum
    from slimdiff.sampling.pipeline import load_pipeline

    result = _eval(texture_model, tmp_path / "e", "--metrics", "eps-spectrum", "--buckets", "2")
    assert result.exit_code == 0, result.output
    reported = json.loads((tmp_path / "e" / "metrics.json").read_text())["results"]["eps_spectrum"]
    pipe = load_pipeline(str(texture_model))
    x0, labels, _ = labelled_held_out("builtin:textures", 16, 12, seed=0)
    args = dict(buckets=2, batch_size=8, seed=0)
    right = eps_error_spectrum(pipe.unet, x0, pipe.scheduler, **args, class_labels=labels).summary()
    wrong = eps_error_spectrum(pipe.unet, x0, pipe.scheduler, **args, class_labels=(labels + 1) % 3).summary()
    assert reported["high"] == pytest.approx(right["high"], rel=1e-4)
    assert reported["high"] != pytest.approx(wrong["high"], rel=1e-4)


def test_eps_spectrum_skips_text_models_and_class_models_without_their_classes(
    text_model, tmp_path, tiny_pipeline, tiny_condition_unet
):
    five = tmp_path / "five"
    tiny_pipeline(tiny_condition_unet(classes=5, size=16)).save_pretrained(five)
    prompts = tmp_path / "p.txt"
    prompts.write_text("brick\n")
    for model, extra, reason in (
        (five, [], "needs labelled real images of its classes"),
        (text_model, ["--prompts", str(prompts)], "text-conditional UNets are not supported"),
    ):
        out = tmp_path / model.name
        assert _eval(model, out, "--metrics", "swd,eps-spectrum", *extra).exit_code == 0
        report = json.loads((out / "metrics.json").read_text())
        assert reason in report["skipped"]["eps-spectrum"] and "swd" in report["results"]


def test_per_class_is_skipped_with_the_reason_when_the_classes_do_not_fit(
    texture_model, tmp_path, tiny_pipeline, tiny_condition_unet
):
    five = tmp_path / "five"
    tiny_pipeline(tiny_condition_unet(classes=5, size=16)).save_pretrained(five)
    result = _eval(five, tmp_path / "a")
    report = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert result.exit_code == 0 and "swd" in report["results"]  # the overall scores still come
    assert "3 classes, the model 5" in report["skipped"]["per-class"] and report["per_class"] == {}
    renamed = tmp_path / "renamed"
    shutil.copytree(texture_model, renamed)
    (renamed / "class_names.json").write_text(json.dumps(["cat", "dog", "cow"]))
    _eval(renamed, tmp_path / "b")
    assert (
        "are not builtin:textures's"
        in json.loads((tmp_path / "b" / "metrics.json").read_text())["skipped"]["per-class"]
    )


def test_guidance_sweep_is_one_table_and_each_scale_is_its_own_evaluation(texture_model, tmp_path):
    result = _eval(texture_model, tmp_path / "sweep", "--guidance", "0,1,3", "--metrics", "swd,spectrum,macs")
    assert result.exit_code == 0, result.output
    sweep = json.loads((tmp_path / "sweep" / "metrics.json").read_text())["sweep"]
    assert [row["guidance"] for row in sweep] == [0.0, 1.0, 3.0]
    assert "macs" in sweep[0]["results"] and "macs" not in sweep[1]["results"]  # model-only metrics once
    assert [row["departures"][0].split(" (")[0] for row in sweep] == [
        "guidance 0",
        "guidance 1",
        "guidance 3",
    ]
    table = (tmp_path / "sweep" / "summary.md").read_text()
    assert all(f"| {w} |" in table for w in ("0", "1", "3"))
    single = _eval(texture_model, tmp_path / "one", "--guidance", "1")
    assert single.exit_code == 0
    alone = json.loads((tmp_path / "one" / "metrics.json").read_text())["results"]["swd"]["mean"]
    assert sweep[1]["results"]["swd"]["mean"] == pytest.approx(alone, rel=1e-4)  # same noise and labels
    assert sweep[0]["results"]["swd"]["mean"] != pytest.approx(sweep[2]["results"]["swd"]["mean"], rel=1e-6)


@pytest.mark.parametrize("text", ["a,b", "-1", "1,1", "200", ""])
def test_bad_guidance_lists_are_one_line(text):
    with pytest.raises(ConfigError, match="--guidance"):
        parse_scales(text)
    assert parse_scales("1, 2.5,3") == [1.0, 2.5, 3.0]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory, tiny_pipeline, tiny_condition_unet, tiny_clip):
    folder = tmp_path_factory.mktemp("text-model")
    tiny_pipeline(tiny_condition_unet(classes=None, size=16, cross_attention_dim=32)).save_pretrained(folder)
    tiny_clip(folder)
    return folder


def test_text_models_are_sampled_from_a_prompt_file_with_guidance(text_model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("red brick\n\ngreen grass\n")
    result = _eval(text_model, tmp_path / "t", "--prompts", str(prompts), "--guidance", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert report["config"]["prompts"] == str(prompts) and "swd" in report["results"]
    refused = _eval(text_model, tmp_path / "u")
    assert refused.exit_code == 2 and "pass --prompts FILE" in refused.output


def test_prompts_change_the_samples(text_model, tmp_path, tiny_pipeline):
    from slimdiff.metrics.conditional import sampling_conditions
    from slimdiff.sampling.pipeline import load_pipeline

    pipe = load_pipeline(str(text_model))
    for name, text in (("a.txt", "red brick\n"), ("b.txt", "a b c d\n")):
        (tmp_path / name).write_text(text)
    per_a, shared, labels = sampling_conditions(pipe, str(text_model), 3, 0, str(tmp_path / "a.txt"), True)
    per_b, _, _ = sampling_conditions(pipe, str(text_model), 3, 0, str(tmp_path / "b.txt"), False)
    assert labels is None and per_a["prompt_embeds"].shape == (3, 8, 32)
    assert torch.equal(per_a["prompt_embeds"][0], per_a["prompt_embeds"][2])  # one prompt, every image
    assert not torch.allclose(per_a["prompt_embeds"], per_b["prompt_embeds"])
    assert shared["negative_prompt_embeds"].shape == (1, 8, 32)


def test_prompts_only_for_text_models(texture_model, tmp_path):
    (tmp_path / "p.txt").write_text("brick\n")
    result = _eval(texture_model, tmp_path / "o", "--prompts", str(tmp_path / "p.txt"))
    assert result.exit_code == 2 and "--prompts is for text-conditional models" in result.output
    assert not (tmp_path / "o").exists()


def test_prompt_files_in_three_formats_and_bad_ones(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n two \n")
    (tmp_path / "b.jsonl").write_text('{"file_name": "x.png", "text": "one"}\n{"text": "two"}\n')
    (tmp_path / "c.csv").write_text("file_name,text\nx.png,one\ny.png,two\n")
    for name in ("a.txt", "b.jsonl", "c.csv"):
        assert read_prompts(tmp_path / name) == ["one", "two"]
    (tmp_path / "bad.jsonl").write_text('{"text": "one"}\n{"caption": "two"}\n')
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    (tmp_path / "empty.txt").write_text("\n")
    for name, message in (
        ("bad.jsonl", "without a `text`"),
        ("broken.jsonl", "not JSON lines"),
        ("empty.txt", "no prompts"),
        ("missing.txt", "does not exist"),
    ):
        with pytest.raises(ConfigError, match=message):
            read_prompts(tmp_path / name)


def test_a_class_embedding_table_keeps_its_last_row_for_no_class(tmp_path, tiny_pipeline, tiny_unet):
    from slimdiff.metrics.conditional import model_classes, sampling_conditions

    pipe = tiny_pipeline(tiny_unet(num_class_embeds=4))
    pipe.save_pretrained(tmp_path / "m")
    assert model_classes(pipe, str(tmp_path / "m")) == 4  # a foreign table without names: every row a class
    (tmp_path / "m" / "class_names.json").write_text(
        json.dumps(["a", "b", "c"])
    )  # slimdiff's: 3 + "no class"
    _, _, labels = sampling_conditions(pipe, str(tmp_path / "m"), 9, seed=0)
    assert model_classes(pipe, str(tmp_path / "m")) == 3 and sorted(labels.tolist()) == [
        0,
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        2,
    ]
