"""Spectrum-aware distillation (README, "Distillation").

    L = L_ε + λ_s · L_spatial + λ_f · L_freq
    L_spatial = Σ_i mean((P_i(S_i) − T_i)²)
    L_freq    = Σ_i mean(ω_i · |F(P_i(S_i)) − F(T_i)|²)
    ω_i       = normalise((|F(resize(x0 → H_i×W_i))| averaged over channels + δ)^α)       ("ours", default)
    ω_i       = |F(resize(x0 → H_i×W_i))|^α, per channel, not normalised               ("paper")
    ω_i       = ours from the batch-mean magnitude: one ω for every image            ("mean")
    ω_i       = 1: the frequency term equals the spatial one (Parseval)              ("uniform")

S_i / T_i are student / teacher outputs at the distillation positions (`config.DISTILL_POSITIONS`), taken by
forward hooks on module objects; P_i is a 1×1 conv where the channel counts differ; F is the orthonormal
2-D FFT (both forms); ω is detached; ours has mean 1 per sample, so λ_f keeps its meaning; α < 0 lifts the
rare high frequencies. The paper's literal ω keeps x0's channels where the distilled tensor has them (the ε
output) and averages them otherwise (features); magnitudes below δ are raised to δ only so that exact zeros
stay finite.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from slimdiff.config import DistillConfig
from slimdiff.errors import ConfigError
from slimdiff.models.inputs import example_inputs
from slimdiff.training.objectives import TeacherObjective, Terms

# --- losses: plain functions over tensors -------------------------------------------------------------


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    # FFTs of half-precision features (mixed precision) lose the small high-frequency terms.
    return x.to(torch.promote_types(x.dtype, torch.float32))


def spectral_weight(
    x0: torch.Tensor,
    size: tuple[int, int],
    alpha: float = -1.0,
    delta: float = 1e-3,
    form: str = "ours",
    channels: int = 1,
) -> torch.Tensor:
    """ω over the FFT grid of a tensor of spatial `size` and `channels` channels, from the clean x0: "ours"
    (B, 1, H, W), mean 1 per sample; "mean" the same from the batch's mean magnitude, (1, 1, H, W); "uniform"
    ones (1, 1, H, W); "paper" |F(x0)|^α, (B, C, H, W) when `channels` equals x0's, else averaged to
    (B, 1, H, W). `form` is one of `config.OMEGA_FORMS` (checked by `DistillConfig`)."""
    if form == "uniform":
        return x0.new_ones((1, 1, *size), dtype=torch.float32)
    x = (
        x0
        if tuple(x0.shape[-2:]) == tuple(size)
        else F.interpolate(x0, size=size, mode="bilinear", antialias=True)
    )
    magnitude = torch.fft.fft2(_at_least_fp32(x), norm="ortho").abs()
    if form == "paper":
        omega = magnitude.clamp_min(delta) ** alpha
        return (omega if channels == x0.shape[1] else omega.mean(dim=1, keepdim=True)).detach()
    magnitude = magnitude.mean(dim=(0, 1) if form == "mean" else 1, keepdim=True)
    omega = (magnitude + delta) ** alpha
    return (omega / omega.mean(dim=(-2, -1), keepdim=True)).detach()


def spatial_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def frequency_loss(student: torch.Tensor, teacher: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """mean(ω · |F(student) − F(teacher)|²) with the orthonormal FFT (equals the spatial loss when ω ≡ 1)."""
    diff = torch.fft.fft2(_at_least_fp32(student - teacher), norm="ortho")
    return (omega * diff.abs().square()).mean()


# --- feature taps ------------------------------------------------------------------------------------


def tap_module(unet: nn.Module, position: str) -> nn.Module:
    """The module whose output is the feature at `position` (a feature position of `config.DISTILL_POSITIONS`,
    checked by `DistillConfig`)."""
    ups = [b.upsamplers[-1] for b in unet.up_blocks if getattr(b, "upsamplers", None)]
    downs = [b.downsamplers[-1] for b in unet.down_blocks if getattr(b, "downsamplers", None)]
    candidates = {"feat-up1": ups[-1:], "feat-up2": ups[-2:-1], "feat-down4": downs[-1:]}
    if not candidates[position]:
        raise ConfigError(f"{type(unet).__name__} has too few up/down-samplers for position {position!r}")
    return candidates[position][0]


class FeatureTap:
    """Keeps the latest output of one module, via a forward hook on the module object itself."""

    def __init__(self, module: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._store)

    def _store(self, module: nn.Module, args, output: torch.Tensor) -> None:
        self.value = output

    def pop(self) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("the tapped module did not run in the last forward pass")
        value, self.value = self.value, None
        return value

    def remove(self) -> None:
        self.handle.remove()


# --- the objective -----------------------------------------------------------------------------------


class SpectralDistillation(TeacherObjective):
    """L_ε + λ_s·L_spatial + λ_f·L_freq for a student against a frozen teacher on the same x_t and t, with the
    positions, λ_s, λ_f, α, δ and ω form of `settings` (a validated `DistillConfig`; its teacher field is not
    read: the teacher comes loaded).

    Only the projectors are parameters of this module (the teacher: see `TeacherObjective`).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, settings: DistillConfig | None = None):
        super().__init__(student, teacher, settings or DistillConfig())
        features = [p for p in self.settings.positions if p != "output"]
        self.student_taps = {p: FeatureTap(tap_module(student, p)) for p in features}
        self.teacher_taps = {p: FeatureTap(tap_module(teacher, p)) for p in features}
        self.projectors = nn.ModuleDict(self._make_projectors(student, features))

    @torch.no_grad()
    def _make_projectors(self, student: nn.Module, features: list[str]) -> dict[str, nn.Module]:
        probe = example_inputs(student.config, batch=1)
        was_training = student.training
        student.eval()
        student(**probe)
        self.teacher(**probe)
        student.train(was_training)
        projectors = {}
        for p in features:
            s, tt = self.student_taps[p].pop(), self.teacher_taps[p].pop()
            if s.shape[-2:] != tt.shape[-2:]:
                raise ConfigError(
                    f"at {p} the student feature is {tuple(s.shape[1:])} but the teacher's is {tuple(tt.shape[1:])}: "
                    "their resolutions must match (same number of down-sampling levels)"
                )
            projectors[p] = (
                nn.Conv2d(s.shape[1], tt.shape[1], 1) if s.shape[1] != tt.shape[1] else nn.Identity()
            )
        return projectors

    def remove_hooks(self) -> None:
        """Detach the feature taps from student and teacher (after training, or before reusing the models)."""
        for tap in (*self.student_taps.values(), *self.teacher_taps.values()):
            tap.remove()

    def forward(
        self,
        unet: nn.Module,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        **condition: torch.Tensor,
    ) -> tuple[torch.Tensor, Terms]:
        teacher, s = self.teacher_on(x_t.device), self.settings
        eps_student = unet(x_t, t, **condition).sample
        with torch.no_grad():  # the teacher sees the same label / prompt embedding as the student
            eps_teacher = teacher(x_t, t, **condition).sample
        loss_eps = F.mse_loss(eps_student.float(), noise.float())
        loss_spatial = loss_eps.new_zeros(())
        loss_freq = loss_eps.new_zeros(())
        for p in s.positions:
            if p == "output":
                student, target = eps_student, eps_teacher
            else:
                student, target = self.projectors[p](self.student_taps[p].pop()), self.teacher_taps[p].pop()
            if s.lambda_spatial:
                loss_spatial = loss_spatial + spatial_loss(student.float(), target.float())
            if s.lambda_freq:
                size, channels = tuple(target.shape[-2:]), target.shape[1]
                omega = spectral_weight(x0, size, s.alpha, s.delta, s.omega, channels=channels)
                loss_freq = loss_freq + frequency_loss(student, target, omega)
        loss = loss_eps + s.lambda_spatial * loss_spatial + s.lambda_freq * loss_freq
        terms = {"loss_eps": loss_eps, "loss_spatial": loss_spatial, "loss_freq": loss_freq}
        return loss, {name: value.detach() for name, value in terms.items()}
