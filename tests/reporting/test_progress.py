"""One progress-bar style: every bar of slimdiff comes from `reporting/progress.py` (tqdm, as diffusers' own),
shown on a terminal or when asked, and closed when its stage ends."""

from __future__ import annotations

import ast
from pathlib import Path

from slimdiff.reporting.progress import progress_bar, progress_bars

PACKAGE = Path(__file__).parents[2] / "src" / "slimdiff"


def test_bars_show_progress_when_asked_and_stay_quiet_off_a_terminal(capsys):
    with progress_bar("sampling", 4, disable=False, leave=True) as bar:
        bar.update(4)
    shown = capsys.readouterr().err
    assert "sampling" in shown and "4/4" in shown
    with progress_bar("quiet", 4) as bar:  # captured stderr is not a terminal
        bar.update(4)
    assert capsys.readouterr().err == ""


def test_tracked_stages_advance_and_close(capsys):
    with progress_bars(
        disable=False, leave=True
    ) as track:  # (leave: the closed bars' last state stays shown)
        first = track("Inception (real)", 3)
        first()
        first(2)
        track("ε-error spectrum", 5)(5)
    shown = capsys.readouterr().err
    assert "Inception (real)" in shown and "3/3" in shown and "5/5" in shown


def test_no_module_draws_its_own_bars():
    """rich's Progress / track and tqdm are imported by reporting/progress.py only."""
    drawers = []
    for path in PACKAGE.rglob("*.py"):
        if path.parts[-2:] == ("reporting", "progress.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("tqdm", "tqdm.auto", "rich.progress"):
                drawers.append(str(path.relative_to(PACKAGE)))
            if isinstance(node, ast.Import) and any(a.name.startswith("tqdm") for a in node.names):
                drawers.append(str(path.relative_to(PACKAGE)))
    assert drawers == []
