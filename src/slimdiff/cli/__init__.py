"""`slimdiff …` command line; each command lives in its own module and registers itself on `app`."""

from slimdiff.cli import profile  # noqa: F401  (registers the command)
from slimdiff.cli.app import app

__all__ = ["app"]
