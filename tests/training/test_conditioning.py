"""Conditional data and training: class labels and captions found as the ecosystem lays them out, CFG
dropout, class- and text-conditional runs and distillation from a conditional teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from slimdiff.config import Config, ConfigError, from_dict
from slimdiff.data.datasets import make_dataset
from slimdiff.errors import DataError, ModelError
from slimdiff.models.loading import load_unet
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.training.conditioning import drop_mask
from slimdiff.training.loop import train

MICRO_CONDITIONAL = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 2,
    "norm_num_groups": 4,
}


def _images(folder, names, size=12):
    rng = np.random.default_rng(0)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)


def _config(run, model, source, **changes) -> Config:
    mapping = {
        "model": model,
        "model_overrides": dict(MICRO_CONDITIONAL),
        "data": {"source": str(source), "size": 16, "length": 32},
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "base_lr": 1e-4},
        "run": {"dir": str(run), "checkpoint_every": 2, "sample_every": 0, "log_every": 1},
    }
    for key, value in changes.items():
        mapping[key] = {**mapping.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(Config, mapping)


# --- data ------------------------------------------------------------------------------------------------


def test_class_labels_come_from_sorted_class_folders(tmp_path):
    _images(tmp_path, ["zebra/1.png", "ant/1.png", "ant/2.png", "moth/x/3.png"])
    dataset = make_dataset(str(tmp_path), 8, conditioning="class")
    assert dataset.class_names == ["ant", "moth", "zebra"]
    assert [dataset[i][1] for i in range(len(dataset))] == [0, 0, 1, 2]  # sorted paths: ant, ant, moth, zebra
    assert dataset[0][0].shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["only/1.png", "only/2.png"], "one class folder"),
        (["a/1.png", "loose.png"], "outside a class folder"),
    ],
)
def test_bad_class_folders_are_one_line(tmp_path, files, message):
    _images(tmp_path, files)
    with pytest.raises(DataError, match=message):
        make_dataset(str(tmp_path), 8, conditioning="class")


@pytest.mark.parametrize("layout", ["jsonl", "csv"])
def test_captions_come_from_the_metadata_file(tmp_path, layout):
    _images(tmp_path, ["a.png", "sub/b.png"])
    rows = [
        {"file_name": "a.png", "text": "a red square"},
        {"file_name": "sub/b.png", "text": "b, with a comma"},
    ]
    if layout == "jsonl":
        (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    else:
        (tmp_path / "metadata.csv").write_text(
            'file_name,text\na.png,a red square\nsub/b.png,"b, with a comma"\n'
        )
    dataset = make_dataset(str(tmp_path), 8, conditioning="text")
    assert [dataset[i][1] for i in range(2)] == ["a red square", "b, with a comma"]


def test_missing_captions_are_one_line(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    with pytest.raises(DataError, match="no metadata.jsonl or metadata.csv"):
        make_dataset(str(tmp_path), 8, conditioning="text")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "x"}))
    with pytest.raises(DataError, match="1 image.* no caption .*b.png"):
        make_dataset(str(tmp_path), 8, conditioning="text")


def test_builtin_labelled_sets():
    textures = make_dataset("builtin:textures", 16, length=20, conditioning="class")
    assert textures.class_names == ["brick", "grass", "gravel"]
    assert {textures[i][1] for i in range(20)} == {0, 1, 2}
    digits = make_dataset("builtin:digits", 16, length=50, conditioning="class")
    image, label = digits[0]
    assert image.shape == (3, 16, 16) and image.min() >= -1 and image.max() <= 1 and 0 <= label <= 9
    assert torch.equal(image[0], image[1])  # grey
    assert digits.class_names == [str(d) for d in range(10)]
    captioned = make_dataset("builtin:textures", 16, length=20, conditioning="text")  # captions: class names
    for i in range(20):
        assert torch.equal(captioned[i][0], textures[i][0])
        assert captioned[i][1] == textures.class_names[textures[i][1]]


def test_drop_mask_is_seeded_and_has_the_asked_rate():
    a = drop_mask(10_000, 0.1, seed=3, micro_step=7, process=0)
    assert torch.equal(a, drop_mask(10_000, 0.1, seed=3, micro_step=7, process=0))
    assert not torch.equal(a, drop_mask(10_000, 0.1, seed=3, micro_step=8, process=0))
    assert abs(a.float().mean().item() - 0.1) < 0.01  # binomial sd 0.003
    assert not drop_mask(100, 0.0, 0, 0, 0).any()


# --- training ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    return train(
        _config(tmp_path_factory.mktemp("class") / "run", "tiny-sd-class", "builtin:textures"), progress=False
    )


def test_class_conditional_run_sizes_the_table_to_the_data_and_saves_the_classes(class_run):
    unet = load_unet(class_run / "model")
    assert unet.config.num_context_classes == 3 and unet.class_context.num_embeddings == 4  # + "no class"
    # the pipeline carries the names in model_index.json (a plain diffusers setting), the run beside its config
    index = json.loads((class_run / "model" / "model_index.json").read_text())
    assert index["class_names"] == ["brick", "grass", "gravel"]
    assert json.loads((class_run / "class_names.json").read_text()) == ["brick", "grass", "gravel"]


def test_sample_a_class_by_name_with_guidance(class_run, tmp_path):
    from typer.testing import CliRunner

    from slimdiff.cli import app

    args = ["sample", str(class_run / "model"), "-n", "2", "--steps", "2", "--guidance", "2"]
    by_name = CliRunner().invoke(app, [*args, "--label", "grass", "--out", str(tmp_path / "a")])
    by_number = CliRunner().invoke(app, [*args, "--label", "1", "--out", str(tmp_path / "b")])
    assert by_name.exit_code == 0 and by_number.exit_code == 0, by_name.output + by_number.output
    for i in range(2):  # the same class, noise and guidance: the same images
        assert (tmp_path / "a" / f"00000{i}.png").read_bytes() == (
            tmp_path / "b" / f"00000{i}.png"
        ).read_bytes()
    assert json.loads((tmp_path / "a" / "sample.json").read_text())["label"] == "grass"
    wrong = CliRunner().invoke(app, [*args, "--label", "zebra", "--out", str(tmp_path / "c")])
    assert wrong.exit_code == 2 and "classes: brick, grass, gravel" in wrong.output


def test_text_conditional_run_carries_its_text_encoder(tmp_path, tiny_clip):
    clip = tiny_clip(tmp_path / "clip")
    data = tmp_path / "imgs"
    _images(data, [f"{i}.png" for i in range(4)])
    (data / "metadata.jsonl").write_text(
        "\n".join(json.dumps({"file_name": f"{i}.png", "text": f"picture {i}"}) for i in range(4))
    )
    config = _config(tmp_path / "run", "tiny-sd-text", data, conditioning={"text_encoder": str(clip)})
    run = train(config, progress=False)
    assert load_unet(run / "model").config.cross_attention_dim == 32  # the encoder's width
    index = json.loads((run / "model" / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert (run / "model" / "text_encoder" / "config.json").is_file()
    # a saved text model samples from a prompt with nothing but its folder
    pipe = load_pipeline(run / "model")
    assert pipe(prompt="picture 1", num_inference_steps=2, output_type="pt").images.shape == (1, 3, 16, 16)


def test_distillation_from_a_class_conditional_teacher(tmp_path):
    teacher = train(_config(tmp_path / "teacher", "tiny-teacher-class", "builtin:textures"), progress=False)
    student = _config(
        tmp_path / "student", "tiny-sd-class", "builtin:textures", distill={"teacher": str(teacher / "model")}
    )
    run = train(student, progress=False)
    assert load_unet(run / "model").config.num_context_classes == 3
    other = _config(
        tmp_path / "other", "tiny-sd-class", "builtin:digits", distill={"teacher": str(teacher / "model")}
    )
    with pytest.raises(ModelError, match="num_context_classes"):
        train(other, progress=False)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("model", "data", "error", "message"),
    [
        (
            "tiny-sd",
            {"label_column": "label"},
            ConfigError,
            "takes none conditioning but data sets label_column",
        ),
        ("tiny-sd-class", {"caption_column": "text"}, ConfigError, "takes class conditioning"),
    ],
)
def test_model_and_data_conditioning_must_fit(tmp_path, model, data, error, message):
    config = _config(tmp_path / "run", model, "builtin:textures", data=data)
    with pytest.raises(error, match=message):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_conditioning_kind_that_does_not_fit_the_model_is_one_line(tmp_path):
    config = _config(tmp_path / "run", "tiny-sd", "builtin:textures", conditioning={"kind": "class"})
    with pytest.raises(ConfigError, match="does not fit model tiny-sd, which takes none"):
        train(config, progress=False)


@pytest.mark.parametrize(
    ("name", "model", "steps", "lr"),
    [
        ("imagenet-ldm", "ldm-cin", 300_000, 5.12e-4),
        ("imagenet-lite", "lite-ldm-cin", 300_000, 5.12e-4),
        ("imagenet-sd", "sd-cin", 300_000, 5.12e-4),
        ("text-sd", "sd-txt", 300_000, 4.096e-3),
    ],
)
def test_paper_conditional_configs_hold_the_paper_recipe(name, model, steps, lr):
    from pathlib import Path

    from slimdiff.config import load_config
    from slimdiff.training.conditioning import resolve_kind

    config = load_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml")
    gpus = 8 if name.startswith("imagenet") else 32
    assert config.model == model and config.train.steps == steps
    assert config.train.base_lr * config.train.batch_size * gpus == pytest.approx(lr)
    assert config.conditioning.cond_dropout == 0.1
    assert resolve_kind(config) == ("class" if name.startswith("imagenet") else "text")
