"""The GPU study's settings, arms and runs (docs/ablation.md, "Re-posed (issue 26), part 2")."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Arm:
    model: str
    omega: str | None = None  # ω form of the distillation; None: ε-prediction only, no teacher
    overrides: tuple[tuple[str, object], ...] = ()  # preset config fields to change
    seeds: int = 4


ARMS = {
    "Lite": Arm("tiny-lite", seeds=6),
    "+WG": Arm("tiny-sd"),
    "+WG split": Arm("tiny-sd", overrides=(("wavelet_up", "split"),)),
    "KD(ω≡1)": Arm("tiny-lite", "uniform"),
    "KD(ω)": Arm("tiny-lite", "ours"),
    "SD": Arm("tiny-sd", "ours", seeds=6),
    "SD ω-mean": Arm("tiny-sd", "mean"),
}
LATE = 300  # "high" and "low" average the ε-error over the timestep buckets from here on


@dataclass(frozen=True)
class Settings:
    data: str = "builtin:fashion-mnist"
    test: str = "builtin:fashion-mnist:test"
    size: int = 32
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    mixed_precision: str = "bf16"
    teacher_model: str = "tiny-teacher"
    teacher_base: int = 64
    teacher_round: int = 1000  # steps per teacher round (its plateau is checked from s/2 to s)
    teacher_share: float = 0.3  # of the time budget, at most, for the teacher
    round_steps: int = 500  # steps per student round
    max_student_steps: int = 20_000
    share: float = 0.35  # the distillation terms' target share of the gradient norm (λ calibration)
    probe_batches: int = 4
    validation_seed: int = 1000
    eps_images: int = 1024
    buckets: int = 10
    samples: int = 2000
    sampler: str = "dpm++"
    sample_steps: int = 20
    swd_real: int = 2000
    fd_real: int = 10_000  # the whole test split
    eval_seed: int = 0
    seeds: dict = field(default_factory=dict)  # arm → seeds, to shrink a smoke run
    eval_reserve_s: float = 60.0  # of the budget, kept for the final evaluation


# A few seconds on a CPU: what the test suite runs (tests/benchmarks/test_spectral_study.py).
SMOKE = {
    "batch": 4,
    "warmup": 1,
    "teacher_base": 16,
    "teacher_round": 2,
    "round_steps": 2,
    "max_student_steps": 4,
    "probe_batches": 1,
    "eps_images": 8,
    "samples": 8,
    "sample_steps": 2,
    "swd_real": 8,
    "fd_real": 16,
    "seeds": {**dict.fromkeys(ARMS, 0), "Lite": 1, "SD": 1},
    "eval_reserve_s": 0.0,
}


@dataclass(frozen=True)
class Run:
    arm: str
    seed: int

    @property
    def id(self) -> str:
        name = self.arm.lower().replace("ω", "omega").replace("≡", " is ")
        slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in name)
        return f"{'-'.join(filter(None, slug.split('-')))}-s{self.seed}"


def plan(s: Settings) -> list[Run]:
    """Every run, seed by seed, so that a budget that ends early leaves whole seeds."""
    seeds = {arm: s.seeds.get(arm, spec.seeds) for arm, spec in ARMS.items()}
    return [Run(arm, seed) for seed in range(max(seeds.values())) for arm in ARMS if seed < seeds[arm]]
