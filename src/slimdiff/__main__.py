"""`python -m slimdiff …` runs the command line."""

from slimdiff.cli import app

app()
