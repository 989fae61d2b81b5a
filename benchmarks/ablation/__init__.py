"""The paper's ablation (its Table 5) at CPU scale, with seeds: Lite, +WG, +spatial, +freq, SD and the rest of
the WG × spatial × frequency grid, plus reduced-budget sweeps of λ_s, λ_f and the distillation positions.

    OMP_NUM_THREADS=1 nohup python -m benchmarks.ablation --resume > outputs/ablation/study.log 2>&1 &

Start it once per core you can spare (each process has one thread): the processes share the plan, each claims
the next run nobody holds (outputs/ablation/claims/), and a data set's teacher is prepared by one while the
others take runs of other data sets or wait. `--data photos` takes only one data set's runs;
`--teacher-threads 2` gives a process both cores while it trains and evaluates a teacher (1.6× faster per
step: 2.58 → 1.60 s) and one thread afterwards — start the other worker with `--data` of the same set and it
waits for the teacher instead of competing for the cores.

One teacher per data set (tiny-teacher at base width 56: 4.96M params, 12.9× tiny-sd's 0.38M and 12.1×
tiny-lite's 0.41M — the paper's LDM/SD ratio is 13.0×) is trained first. Every student run of a seed sees
the same data order, timesteps and noise (they are functions of the seed and the step) and the same number
of steps; every evaluation sees the same held-out x_t and the same sampling noise. Per finished run one JSON
file (arm, seed, metrics) lands in benchmarks/results/ablation/runs/; after each run the tables, plots and
sample grids are rebuilt and committed (`git commit -- benchmarks/results/ablation`).

Resumable: the study's settings are fixed in benchmarks/results/ablation/study.json at the first start;
`--resume` reuses them, skips finished runs, and continues a killed run from its last checkpoint
(outputs/ablation/, every 250 steps); a claim whose process died is taken over. Runs are done in a priority
order (see `plan.plan`), so stopping early leaves the most important comparisons complete. `--list` shows the
plan and what is done.

The parts, each importing only those above it: `claims` (which worker does what), `plan` (settings, arms,
runs, the committed files), `stats` (paired differences, intervals, tables), `plots`, `report` (the results
page), `runner` (training and evaluating one run), `cli` (the flags and the worker loop, run by __main__).
"""
