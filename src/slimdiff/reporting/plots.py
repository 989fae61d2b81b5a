"""Shared matplotlib helpers: off-screen figures saved as small PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def figure(width: float = 5.0, height: float = 3.6, ncols: int = 1) -> tuple[Figure, object]:
    """A new figure with `ncols` axes side by side (one axes object when ncols == 1)."""
    return plt.subplots(1, ncols, figsize=(width, height), dpi=100, layout="constrained")


def save(fig: Figure, path: str | Path) -> Path:
    """Save `fig` to `path` (parents created) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
