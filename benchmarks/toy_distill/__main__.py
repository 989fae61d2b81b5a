from benchmarks.toy_distill.cli import main

main()
