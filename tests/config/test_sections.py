"""Config validation: misspelled keys, types, ranges, overrides, YAML round trip, extension by a section."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.config import Config, ConfigError, from_dict, load_config


def test_misspelled_key_in_cli_is_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump({"model": "tiny-sd", "trian": {"steps": 3}, "run": {"dir": str(run_dir)}})
    )
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "unknown config key 'trian'; did you mean 'train'?" in lines[0]
    assert "Traceback" not in result.output
    assert not run_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"train": {"stpes": 3}}, "unknown config key 'train.stpes'; did you mean 'train.steps'?"),
        ({"data": {"sorce": "x"}}, "did you mean 'data.source'?"),
        ({"model": "tiny-sdd"}, "model 'tiny-sdd' is not a preset; did you mean 'tiny-sd'?"),
        ({"train": {"steps": "many"}}, "train.steps must be an integer, got 'many'"),
        ({"train": {"steps": 0}}, "train.steps must be at least 1"),
        ({"train": {"mixed_precision": "fp8"}}, "mixed_precision must be no, fp16 or bf16"),
        ({"train": {"adam_betas": [0.9, 1.2]}}, "adam_betas must be two numbers in [0, 1)"),
        ({"autoencoder": {"kind": "vq"}}, "autoencoder.source is needed for kind vq / kl"),
        ({"data": {"strict": "yes"}}, "data.strict must be true or false"),
        ({"data": 5}, "data must be a mapping of settings"),
    ],
)
def test_bad_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as error:
        from_dict(Config, mapping)
    assert message in str(error.value)


def test_overrides_and_yaml_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny-teacher\ntrain:\n  steps: 10\n")
    config = load_config(
        path, ["model=tiny-sd", "train.base_lr=1e-4", "data.length=null", "train.adam_betas=[0.8, 0.9]"]
    )
    assert config.model == "tiny-sd"
    assert config.train.steps == 10 and config.train.base_lr == 1e-4
    assert config.train.adam_betas == (0.8, 0.9)
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(config.to_yaml())
    assert load_config(resolved) == config
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(path, ["train.steps"])
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        load_config(path, ["train.stepz=4"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert any(p.name == "tiny.yaml" for p in configs)
    for path in configs:
        config = load_config(path)
        # a distill: section makes the run distil (build_objective), whichever command starts it
        assert (config.distill is not None) == ("distill" in yaml.safe_load(path.read_text()))


@dataclass
class Extra:
    weight: float = 0.1


@dataclass
class ExtendedConfig(Config):
    extra: Extra = field(default_factory=Extra)


def test_a_command_extends_the_config_by_one_section():
    config = from_dict(ExtendedConfig, {"extra": {"weight": 0.5}, "train": {"steps": 2}})
    assert config.extra.weight == 0.5 and config.train.steps == 2
    assert "extra:\n  weight: 0.5" in config.to_yaml()
    with pytest.raises(ConfigError, match="did you mean 'extra.weight'"):
        from_dict(ExtendedConfig, {"extra": {"wieght": 1}})


def test_the_noise_schedule_end_is_range_checked_and_church_uses_its_own():
    from pathlib import Path

    with pytest.raises(ConfigError, match=r"train.beta_end must lie in \(0.0015, 1\), got 0.001"):
        load_config(None, ["train.beta_end=0.001"])
    root = Path(__file__).parents[2] / "configs"
    assert {load_config(root / f"church-{kind}.yaml").train.beta_end for kind in ("ldm", "lite", "sd")} == {
        0.0155
    }
    assert load_config(root / "ffhq-sd.yaml").train.beta_end == 0.0195
