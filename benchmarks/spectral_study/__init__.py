"""Issue 26, part 2: the paper's question on Fashion-MNIST on one GPU, under the verdict rule committed in
docs/ablation.md ("Re-posed (issue 26), part 2") before any run.

    python -m benchmarks.spectral_study --device cuda --budget-s 480 --out DIR   # the GPU run
    python -m benchmarks.spectral_study --report DIR                             # verdict + table, here

`plan` holds the settings, arms and runs; `worker` what one worker process does (train a run one round
further, measure it); `gpu_speed` the paper's Figure 6 on the GPU; `__main__` the coordinator (time budget,
lock-step rounds, λ calibration, results written as they come); `verdict` applies the committed rule to the
returned JSON.
"""
