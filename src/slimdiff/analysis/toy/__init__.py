"""The paper's toy experiment: can a small denoiser learn high-frequency signals, and rare ones?

Data: 40-sample signals cos(α·2πx) on x = 0, 1/40, …, 39/40, one per α in `ALPHAS` (a mixture of point
masses). The paper's point is long-tailed data, so the patterns are drawn with probabilities π ∝ rank^(−tail)
(`mixture_weights`): with `rare="high"` the highest frequency is the rarest, with `rare="low"` the lowest
(which separates "rare" from "high-frequency"); tail 0 is uniform. Denoiser: an MLP [x_t, t/T] (41) → M → 40
with tanh, predicting ε, trained with Adam (lr 1e-3, batch 1000, 10k iterations at paper scale) on the
training noise schedule, then DDPM ancestral sampling from pure noise.

The parts, each importing only the ones above it:

- `signals`: the clean signals and the long-tailed mixture weights π;
- `distill`: distillation from a frozen teacher (ω uniform or spectral) and the gradient share of each term;
- `denoiser`: the MLP, its training (optionally distilled) and its sampler;
- `score`: the mixture's exact score and the network's error against it;
- `experiment`: one width trained, sampled and measured per α;
- `report`: the four-panel figure and the Markdown table.
"""
