import json

import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.metrics.fid import INCEPTION_FILE

runner = CliRunner()


def _outputs(out, name):
    assert json.loads((out / "config.json").read_text())["analysis"] == name
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


def test_analyze_wiener(tmp_path):
    out = tmp_path / "w"
    result = runner.invoke(
        app, ["analyze", "wiener", "builtin:photos", "-n", "8", "--size", "16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data, table = _outputs(out, "wiener")
    assert [r["t"] for r in data["rows"]][0] == 999 and len(data["radii"]) == 9
    assert "| 999 |" in table


def test_analyze_blur_without_inception_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "b"
    result = runner.invoke(
        app, ["analyze", "blur", "builtin:textures", "-n", "8", "--size", "16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data, table = _outputs(out, "blur")
    assert INCEPTION_FILE in data["skipped"]
    swd = [r["SWD mean"] for r in data["rows"]]
    assert swd[-1] > swd[0] and len(swd) == 9


def test_analyze_toy_tiny(tmp_path):
    out = tmp_path / "t"
    args = [
        "--iterations",
        "20",
        "--batch",
        "64",
        "--samples",
        "16",
        "--sampling-steps",
        "5",
        "--hidden",
        "8",
    ]
    result = runner.invoke(app, ["analyze", "toy", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data, table = _outputs(out, "toy")
    assert list(data) == ["M=8"] and len(data["M=8"]["rows"]) == 6 and "| 16 |" in table


def test_analyze_bad_data_is_one_line(tmp_path):
    result = runner.invoke(app, ["analyze", "wiener", "builtin:nothing", "--out", str(tmp_path)])
    assert (
        result.exit_code == 2
        and "unknown built-in data set" in result.output
        and "Traceback" not in result.output
    )
