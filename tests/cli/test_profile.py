"""`slimdiff profile`: error path, `--json` rows, the table, and a local model folder."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.metrics.complexity import count_macs_by_kind
from slimdiff.models.presets import PRESETS, get_preset
from slimdiff.models.size import count_params

runner = CliRunner()
ROW_KEYS = {"preset", "params", "params_paper", "macs", "attention_macs", "macs_paper", "steps_per_s"}


def _rows(*args: str) -> list[dict]:
    result = runner.invoke(app, ["profile", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_unknown_preset_is_one_line_listing_the_valid_names():
    result = runner.invoke(app, ["profile", "tiny-sd", "sd-f5"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown preset 'sd-f5'" in lines[0] and "Traceback" not in result.output
    for name in PRESETS:
        assert name in lines[0]
    assert result.stdout == ""  # nothing profiled before the mistake was reported


def test_json_rows_have_the_documented_keys_and_values():
    rows = _rows("tiny-sd", "tiny-lite", "--seconds", "0")
    assert [r["preset"] for r in rows] == ["tiny-sd", "tiny-lite"]
    assert all(set(r) == ROW_KEYS for r in rows)
    tiny = get_preset("tiny-sd")
    torch.manual_seed(0)
    model = tiny.build()
    assert rows[0]["params"] == count_params(model)
    kinds = count_macs_by_kind(model, tiny.example_inputs(1))
    assert (rows[0]["macs"], rows[0]["attention_macs"]) == (kinds["conv_linear"], kinds["attention"])
    assert rows[0]["attention_macs"] > 0
    assert (
        rows[0]["params_paper"] is None and rows[0]["macs_paper"] is None and rows[0]["steps_per_s"] is None
    )
    assert rows[1]["params"] > rows[0]["params"]  # tiny-lite has conv samplers where tiny-sd has gates


def test_steps_per_second_is_measured_when_asked():
    (row,) = _rows("tiny-sd", "--seconds", "0.2", "--batch", "2")
    assert row["steps_per_s"] > 0


def test_table_shows_ours_next_to_the_paper():
    result = runner.invoke(app, ["profile", "sd-f4", "--seconds", "0"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "sd-f4" in line)
    assert "21.05M" in row and "21.10M" in row and "-0.2%" in row and "6.70G" in row


def test_a_local_model_folder_is_profiled(tmp_path):
    torch.manual_seed(0)
    model = get_preset("tiny-sd").build()
    model.save_pretrained(tmp_path)
    (row,) = _rows(str(tmp_path), "--seconds", "0")
    assert row["preset"] == str(tmp_path)
    assert row["params"] == count_params(model) and row["params_paper"] is None
    assert row["macs"] == count_macs_by_kind(model, get_preset("tiny-sd").example_inputs(1))["conv_linear"]


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["profile", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no UNet" in result.stderr and "Traceback" not in result.output


def test_out_of_range_options_are_rejected():
    result = runner.invoke(app, ["profile", "tiny-sd", "--batch", "0"])
    assert result.exit_code == 2 and "--batch" in result.output


def test_a_plain_diffusers_unet_folder_is_profiled_as_itself(tmp_path, tiny_unet):
    from diffusers import UNet2DModel

    model = tiny_unet(cls=UNet2DModel)
    model.save_pretrained(tmp_path)
    (row,) = _rows(str(tmp_path), "--seconds", "0")
    assert row["params"] == count_params(model)  # not rebuilt with wavelet gates
