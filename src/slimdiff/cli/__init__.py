"""`slimdiff …` command line; each command lives in its own module and registers itself on `app`."""

from slimdiff.cli import (  # noqa: F401  (registration)
    analyze,
    convert,
    demo,
    distill,
    distill_decoder,
    evaluate,
    export,
    make_tiny_clip,
    profile,
    sample,
    serve,
    train,
)
from slimdiff.cli.app import app

__all__ = ["app"]
