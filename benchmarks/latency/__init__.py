"""Seconds per 256×256 image on the whole path — UNet steps plus decoder — for LDM-f4 DDIM-200 (the paper's
setting), Lite-f4 and SD-f4 with DPM-Solver++ / UniPC at 20 and 10 steps, in PyTorch and onnxruntime, fp32 and
int8, with the full VQ-f4 decoder and with the slim decoder; batch 1 and 8; peak memory (RSS).

    python -m benchmarks.latency [--rounds 3] [--threads 1] [--batches 1 8] [--work DIR]
    python -m benchmarks.latency --few-step [--threads 2] [--steps 1 2 4] [--sampler ddim|lcm|…] [--ldm-rounds 0]

`--few-step` (issue 25) times only an sd-f4 student with N UNet calls, end to end, beside LDM DDIM-200
(`few_step`).

Goal (issue 14): ≤ 1 s per image and ≥ 200× faster than LDM DDIM-200, measured in the same run.

How: the parts are timed side by side in one process, in interleaved rounds (medians), one thread for torch
and onnxruntime alike: one UNet step of each model / runtime / precision, one decode of each decoder, and each
solver's own per-step overhead (its update with a free model). A path's time is steps × (UNet step + solver
overhead) + decode, divided by the batch; a few whole paths are also run end to end through the pipeline to
check that sum. Weights are random (the speed of a dense network does not depend on them; the int8 graphs are
calibrated on random inputs, so their *quality* here means nothing — `python -m benchmarks.deploy_quality`
measures it on trained models). Peak RSS comes from one child process per configuration drawing one image.

Parts: `parts` (the UNets, decoders and solvers, and how each is timed), `report` (the Markdown: whole paths
composed from the timed parts), `__main__` (the flags and the run).
"""
