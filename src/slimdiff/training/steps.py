"""Step distillation (README, "Step distillation"): a student that samples in N calls, by consistency
distillation (Song et al. 2023; the LCM form of Luo et al. 2023), in the one training loop.

The student stays an ε-predictor; its consistency function is LCMScheduler's

    f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂0(x_t, t),     x̂0 = (x_t − √(1 − ᾱ_t)·ε_θ(x_t, t)) / √ᾱ_t

with c_skip(0) = 1, c_out(0) = 0 (the boundary f(x, 0) = x). On the grid t_n = n·k − 1 (k = 1000 / grid,
n = 1 … grid) the teacher takes one DDIM step from x_{t_n} to x_{t_n − k} (the probability-flow ODE), and the
student's f at x_{t_n} is pulled towards its own f at that point, without gradient (θ⁻ = θ: no EMA target,
as in Song & Dhariwal's improved consistency training):

    L = λ_s · mean(ᾱ_t · (f_θ(x_t, t) − f_θ⁻(x_s, s))²) + λ_f · mean(ω · ᾱ_t · |F(f_θ(x_t, t)) − F(f_θ⁻(x_s, s))|²)

— the spectrum-aware loss of `training/distillation.py` on the denoised predictions, each weighted by ᾱ_t;
λ_f = 0 is the plain consistency loss. Why ᾱ_t: an ε-predictor's x̂0 carries its ε error times σ_t/α_t, 84 at
t = 999 on slimdiff's noise schedule, so unweighted the loss (and the clipped gradient) is all high-t noise;
ᾱ_t = SNR/(1 + SNR) turns it into an ε-sized error at high t and leaves it x0-sized at low t. Measured on the
demo's student (150 steps, 128 samples, one seed): 4-call SWD×10³ 155 weighted against 316 unweighted (the LCM
sampler before step distillation: 251), at the price of 2 calls (430 against 330; README, "Step distillation").
The exported model samples with LCMScheduler on the same grid, N steps by default.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, SchedulerMixin
from torch import nn

from slimdiff.config import CONSISTENCY_GRID, DistillConfig
from slimdiff.diffusion import add_noise, ddim_step, predict_x0
from slimdiff.sampling.solvers import consistency_scheduler
from slimdiff.training.distillation import frequency_loss, spatial_loss, spectral_weight
from slimdiff.training.objectives import TeacherObjective, Terms


class ConsistencyDistillation(TeacherObjective):
    """The consistency loss of a student against the teacher's one-step DDIM target, with the λ_s, λ_f, α, δ
    and ω form of `settings` (a validated `DistillConfig` with `steps`); `scheduler` is the run's noise
    schedule (the teacher: see `TeacherObjective`)."""

    def __init__(
        self, student: nn.Module, teacher: nn.Module, settings: DistillConfig, scheduler: DDPMScheduler
    ):
        super().__init__(student, teacher, settings)
        self.lcm = consistency_scheduler(scheduler.config)
        self.skip = scheduler.config.num_train_timesteps // CONSISTENCY_GRID  # k
        self.register_buffer("alpha_bar", scheduler.alphas_cumprod.clone(), persistent=False)

    def consistency(self, eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂0 with LCMScheduler's c_skip / c_out (t: one per sample)."""
        c_skip, c_out = self.lcm.get_scalings_for_boundary_condition_discrete(t.float())
        shape = (-1, *([1] * (x_t.ndim - 1)))
        x0 = predict_x0(x_t, eps, self.alpha_bar[t])
        return c_skip.reshape(shape).to(x_t.dtype) * x_t + c_out.reshape(shape).to(x_t.dtype) * x0

    def grid_pair(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loop's uniform t → (t_n, t_n − k): the grid point whose interval holds t, and the one below
        (0 for the first: the boundary), so every interval of the grid is trained equally often."""
        k = self.skip
        t_n = (t // k + 1) * k - 1
        return t_n, (t_n - k).clamp_min(0)

    def forward(
        self,
        unet: nn.Module,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        **condition: torch.Tensor,
    ) -> tuple[torch.Tensor, Terms]:
        teacher, s, ᾱ = self.teacher_on(x0.device), self.settings, self.alpha_bar
        t, prev = self.grid_pair(t)
        x_t = add_noise(x0, noise, ᾱ[t])  # the loop's ε, at the grid point
        α_t = ᾱ[t].sqrt().reshape(-1, *([1] * (x_t.ndim - 1)))  # both sides × α_t: the loss weighted by ᾱ_t
        with torch.no_grad():  # the teacher sees the same label / prompt embedding (or the null one)
            x_prev = ddim_step(x_t, teacher(x_t, t, **condition).sample, ᾱ[t], ᾱ[prev])
            target = α_t * self.consistency(unet(x_prev, prev, **condition).sample, x_prev, prev).float()
        student = α_t.to(x_t.dtype) * self.consistency(unet(x_t, t, **condition).sample, x_t, t)
        loss_spatial = spatial_loss(student.float(), target)
        loss_freq = loss_spatial.new_zeros(())
        if s.lambda_freq:
            size, channels = tuple(target.shape[-2:]), target.shape[1]
            omega = spectral_weight(x0, size, s.alpha, s.delta, s.omega, channels=channels)
            loss_freq = frequency_loss(student, target, omega)
        loss = s.lambda_spatial * loss_spatial + s.lambda_freq * loss_freq
        return loss, {"loss_spatial": loss_spatial.detach(), "loss_freq": loss_freq.detach()}

    def sampling(self, scheduler: SchedulerMixin) -> tuple[SchedulerMixin, int | None]:
        return consistency_scheduler(scheduler.config), self.settings.steps
