"""`python -m benchmarks.ablation`: see benchmarks/ablation/__init__.py."""

from benchmarks.ablation.cli import main

main()
