"""Config files a user (or an attacker) can hand to `slimdiff train`: each gets one line, nothing runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import ConfigError, load_config

runner = CliRunner()

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["train: {steps: 1}"]
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (BILLION_LAUGHS, "allow aliases of plain values only"),
        ("base: &b {steps: 3}\ntrain: *b\n", "the alias *b stands for a list or mapping"),
        ("train:\n  steps: 3\n  steps: 5\n", "line 3: the key 'steps' is given twice"),
        ("train: {steps: 1}\ntrain: {steps: 2}\n", "the key 'train' is given twice"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        (b"train:\n  steps: \xff\xfe 3\n", "is not UTF-8 text"),
        ("- a\n- b\n", "must hold a mapping"),
        ("train: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_files_are_one_line_before_anything_runs(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load_config(path)
    result = runner.invoke(app, ["train", str(path), "--set", f"run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "run").exists()


def test_a_folder_given_as_the_config_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; pass a YAML file"):
        load_config(tmp_path)


def test_aliases_of_plain_values_still_work(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train: {steps: &n 7, batch_size: 2}\nrun: {checkpoint_every: *n}\n")
    config = load_config(path)
    assert config.train.steps == 7 and config.run.checkpoint_every == 7


def test_an_alias_bomb_in_an_override_is_refused_too():
    with pytest.raises(ConfigError, match="override 'train.adam_betas=.*aliases of plain values only"):
        load_config(None, ["train.adam_betas=[&a [1, 2], *a]"])


def test_dotted_keys_names_leaves_as_set_does_and_drops_lists_only_when_asked():
    from slimdiff.config import dotted_keys

    tree = {"train": {"steps": 3, "lr": 0.1}, "distill": {"positions": ["output"], "extra": {}}, "seed": 0}
    assert dotted_keys(tree) == {
        "train.steps": 3,
        "train.lr": 0.1,
        "distill.positions": ["output"],
        "distill.extra": {},
        "seed": 0,
    }
    assert "distill.positions" not in dotted_keys(tree, keep_lists=False)
    # the names are the ones --set takes: setting one changes exactly that key
    before = dotted_keys(load_config(None).to_dict())
    after = dotted_keys(load_config(None, ["train.steps=7"]).to_dict())
    assert {key for key in before if before[key] != after[key]} == {"train.steps"}
