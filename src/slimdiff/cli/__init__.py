"""`slimdiff …` command line; each command lives in its own module and registers itself on `app`."""

from slimdiff.cli import analyze, demo, distill, evaluate, export, profile, sample, train  # noqa: F401  (registration)
from slimdiff.cli.app import app

__all__ = ["app"]
