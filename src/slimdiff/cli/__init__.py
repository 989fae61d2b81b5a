"""`slimdiff …` command line; each command lives in its own module and registers itself on `app`."""

from slimdiff.cli import profile  # noqa: F401  (registers the command)
from slimdiff.cli import train  # noqa: F401
from slimdiff.cli import distill  # noqa: F401
from slimdiff.cli import demo  # noqa: F401
from slimdiff.cli import eval  # noqa: F401
from slimdiff.cli import analyze  # noqa: F401
from slimdiff.cli import sample  # noqa: F401
from slimdiff.cli import export  # noqa: F401
from slimdiff.cli.app import app

__all__ = ["app"]
