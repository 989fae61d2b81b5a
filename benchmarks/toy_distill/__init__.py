"""Issue 26 part 1: the paper's toy with and without ω-weighted distillation, under the verdict rule committed
in docs/ablation.md before any run.

Per seed s = 0 … 19: a teacher (M = 1024, plain ε), and three M = 64 students with the same initialisation,
data and noise: `plain`, `KD(ω≡1)` and `KD(ω)` (λ_s = λ_f = 0.1; ω uniform or spectral,
`slimdiff.analysis.toy.distill`). Each is measured by `score_error` against the exact ε* (evaluation seed
10⁶); one JSON per finished run in benchmarks/results/toy_distill/, the page in
benchmarks/results/toy_distill.{md,json,png}. Resumable: the settings of the first start are kept in
toy_distill/study.json, finished runs are read back, a teacher's weights are kept under
outputs/bench-toy-distill/ (retrained from its seed when gone).

    nice env OMP_NUM_THREADS=1 python -m benchmarks.toy_distill            # a fresh study
    nice env OMP_NUM_THREADS=1 python -m benchmarks.toy_distill --resume   # continue it
    python -m benchmarks.toy_distill --report-only                         # rewrite the page
"""
