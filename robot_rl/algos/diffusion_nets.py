"""Diffusion over actions: the noise schedule, samplers, and the noise-prediction networks.

Shapes: B batch, T action steps (a chunk; T = 1 for single actions), Da action width,
C conditioning width (the observation features). Actions are normalised to [-1, 1].

    schedule = NoiseSchedule(100)
    x_t = schedule.add_noise(x0, noise, t)                     # forward process q(x_t | x0)
    x0 = sample(net, cond, (B, T, Da), schedule, "ddim", 10)   # reverse process

Samplers (``method``): ``ddpm`` (ancestral, every training step), ``ddim`` (Song et al.
2021, deterministic, any subset of steps) and ``dpm`` (DPM-Solver++ 2M, Lu et al. 2022,
second-order multistep in the data-prediction form). Every sampler predicts x0 at each
step and clips it to [-1, 1], like Diffusion Policy's ``clip_sample``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

SAMPLERS = ("ddpm", "ddim", "dpm")


class NoiseSchedule(nn.Module):
    """DDPM's forward process with the cosine (``squaredcos_cap_v2``) beta schedule of
    Nichol & Dhariwal (2021), betas capped at 0.999 — Diffusion Policy's default.

    ``alpha_bar[t] = prod_{s <= t} (1 - beta_s)``; ``x_t = sqrt(alpha_bar_t) x0 +
    sqrt(1 - alpha_bar_t) eps``. Buffers only (not saved: rebuilt from ``steps``).
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {steps}")
        self.steps = steps

        def f(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)], dtype=torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, 0)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``q(x_t | x0)``: x0, noise ``(B, ...)``, t ``(B,)`` integer steps."""
        ab = self.alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Invert ``add_noise`` with the predicted noise (EDP's action approximation)."""
        ab = self.alpha_bar[t].view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


NoiseNet = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``net(x_t (B, T, Da), t (B,), cond (B, C)) -> predicted noise (B, T, Da)``."""


def timesteps(schedule: NoiseSchedule, n: int) -> list[int]:
    """``n`` training steps to visit, descending, evenly spaced, ending at 0."""
    if not 1 <= n <= schedule.steps:
        raise ValueError(f"sampling steps must be in [1, {schedule.steps}], got {n}")
    return sorted({round(i * (schedule.steps - 1) / max(n - 1, 1)) for i in range(n)} if n > 1 else {0}, reverse=True)


def sample(
    net: NoiseNet,
    cond: torch.Tensor,
    shape: Sequence[int],
    schedule: NoiseSchedule,
    method: str = "ddim",
    steps: int | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the reverse process from Gaussian noise to actions ``shape`` (clipped to [-1, 1]).

    Differentiable when called with gradients enabled (Diffusion-QL back-propagates through
    the whole chain). ``steps``: sampling steps (``ddpm`` always uses every step).
    """
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose from {SAMPLERS}")
    x = noise if noise is not None else torch.randn(tuple(shape), generator=generator, device="cpu").to(cond.device)
    if method == "ddpm":
        return _ddpm(net, cond, x, schedule, generator)
    ts = timesteps(schedule, steps or schedule.steps)
    return (_ddim if method == "ddim" else _dpm_solver_2m)(net, cond, x, schedule, ts)


def _x0(net: NoiseNet, cond: torch.Tensor, x: torch.Tensor, schedule: NoiseSchedule, t: int) -> torch.Tensor:
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return schedule.predict_x0(x, net(x, tt, cond), tt).clamp(-1.0, 1.0)


def _ddpm(net: NoiseNet, cond: torch.Tensor, x: torch.Tensor, schedule: NoiseSchedule, generator: torch.Generator | None) -> torch.Tensor:
    betas, ab = schedule.betas, schedule.alpha_bar
    for t in range(schedule.steps - 1, -1, -1):
        x0 = _x0(net, cond, x, schedule, t)
        ab_prev = ab[t - 1] if t > 0 else torch.ones((), device=x.device)
        # posterior q(x_{t-1} | x_t, x0): mean c0 x0 + ct x_t, variance beta_t (1 - ab_prev) / (1 - ab_t)
        c0 = ab_prev.sqrt() * betas[t] / (1 - ab[t])
        ct = (1 - betas[t]).sqrt() * (1 - ab_prev) / (1 - ab[t])
        x = c0 * x0 + ct * x
        if t > 0:
            var = betas[t] * (1 - ab_prev) / (1 - ab[t])
            x = x + var.clamp(min=1e-20).sqrt() * torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    return x


def _ddim(net: NoiseNet, cond: torch.Tensor, x: torch.Tensor, schedule: NoiseSchedule, ts: list[int]) -> torch.Tensor:
    ab = schedule.alpha_bar
    for i, t in enumerate(ts):
        x0 = _x0(net, cond, x, schedule, t)
        if i == len(ts) - 1:
            return x0  # alpha_bar of the step after the last is 1: x = x0
        eps = (x - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
        t_next = ts[i + 1]
        x = ab[t_next].sqrt() * x0 + (1 - ab[t_next]).sqrt() * eps
    return x


def _dpm_solver_2m(net: NoiseNet, cond: torch.Tensor, x: torch.Tensor, schedule: NoiseSchedule, ts: list[int]) -> torch.Tensor:
    """DPM-Solver++(2M): ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D`` with
    ``h = lambda_t - lambda_s``, ``lambda = log(alpha / sigma)`` and D the x0 prediction
    (first order) or ``(1 + 1/2r) x0_s - (1/2r) x0_prev``, ``r = h_prev / h`` (second)."""
    ab = schedule.alpha_bar
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    lam = torch.log(alpha / sigma)
    prev_x0, prev_h = None, None
    for i, s in enumerate(ts):
        x0 = _x0(net, cond, x, schedule, s)
        if i == len(ts) - 1:
            return x0  # the final step to sigma = 0 is the data prediction (lower order at the end)
        t = ts[i + 1]
        h = lam[t] - lam[s]
        if prev_x0 is None:
            d = x0
        else:
            half_inv_r = 0.5 * h / prev_h
            d = (1 + half_inv_r) * x0 - half_inv_r * prev_x0
        x = (sigma[t] / sigma[s]) * x - alpha[t] * torch.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


# --------------------------------------------------------------------------- networks
class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the diffusion step: ``(B,) -> (B, dim)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * self.freqs[None]
        return torch.cat([x.sin(), x.cos()], dim=-1)


def step_encoder(dim: int) -> nn.Sequential:
    """Diffusion-step embedding: sinusoidal -> Linear(4 dim) -> Mish -> Linear(dim)."""
    return nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))


class MLPNoiseNet(nn.Module):
    """Noise prediction for low-dim policies (Diffusion-QL / EDP's network): the flattened
    noisy chunk, the step embedding and the observation features through a Mish MLP.
    ``(B, T, Da), (B,), (B, C) -> (B, T, Da)``."""

    def __init__(self, action_dim: int, horizon: int, cond_dim: int, hidden: Sequence[int], step_dim: int = 16) -> None:
        super().__init__()
        self.steps = step_encoder(step_dim)
        layers: list[nn.Module] = []
        d = action_dim * horizon + step_dim + cond_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Mish()]
            d = h
        layers.append(nn.Linear(d, action_dim * horizon))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x.flatten(1), self.steps(t), cond], dim=-1)
        return self.net(h).view_as(x)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish())


class FiLMResBlock(nn.Module):
    """Two conv blocks with FiLM conditioning between them (per-channel scale and bias
    predicted from the condition, Perez et al. 2018), plus a residual 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel, groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        return self.block2(self.block1(x) * scale + bias) + self.residual(x)


class UNet1D(nn.Module):
    """Diffusion Policy's temporal U-Net (Chi et al. 2023): 1-D convolutions over the T
    steps of the action chunk, channels ``down_dims`` per level (length halved between
    levels), FiLM-conditioned on the diffusion step embedding and the observation
    features. ``(B, T, Da), (B,), (B, C) -> (B, T, Da)``; T must be divisible by
    ``2 ** (len(down_dims) - 1)``."""

    def __init__(
        self, action_dim: int, horizon: int, cond_dim: int, down_dims: Sequence[int] = (64, 128, 256),
        kernel: int = 5, groups: int = 8, step_dim: int = 64,
    ) -> None:  # fmt: skip
        super().__init__()
        levels = len(down_dims)
        if levels < 1 or horizon % (2 ** (levels - 1)):
            raise ValueError(f"action_horizon {horizon} must be divisible by 2^(levels - 1) = {2 ** (levels - 1)} (down_dims {list(down_dims)})")
        if any(d % groups for d in down_dims):
            raise ValueError(f"down_dims {list(down_dims)} must be multiples of the GroupNorm groups {groups}")
        self.steps = step_encoder(step_dim)
        c = step_dim + cond_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == levels - 1
            self.down.append(nn.ModuleList([
                FiLMResBlock(d_in, d_out, c, kernel, groups), FiLMResBlock(d_out, d_out, c, kernel, groups),
                nn.Conv1d(d_out, d_out, 3, stride=2, padding=1) if not last else nn.Identity(),
            ]))  # fmt: skip
        mid = down_dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, c, kernel, groups), FiLMResBlock(mid, mid, c, kernel, groups)])
        self.up = nn.ModuleList()
        for d_in, d_out in reversed(list(zip(dims[1:-1], dims[2:], strict=True))):
            self.up.append(nn.ModuleList([
                FiLMResBlock(d_out * 2, d_in, c, kernel, groups), FiLMResBlock(d_in, d_in, c, kernel, groups),
                nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1),
            ]))  # fmt: skip
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel, groups), nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([self.steps(t), cond], dim=-1)
        h = x.transpose(1, 2)  # (B, Da, T): convolve over time
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, c), c)
            skips.append(h)
            h = down(h)
        for res in self.mid:
            h = res(h, c)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, c), c))
        return self.final(h).transpose(1, 2)


class EMA:
    """Exponential moving average of a module's weights with Diffusion Policy's warm-up:
    ``decay = min(1 - (1 + step) ** -power, max_decay)`` (power 0.75: ~0.997 at 2k steps)."""

    def __init__(self, power: float = 0.75, max_decay: float = 0.9999) -> None:
        self.power, self.max_decay = power, max_decay

    def decay(self, step: int) -> float:
        return max(0.0, min(1.0 - (1.0 + step) ** -self.power, self.max_decay))

    @torch.no_grad()
    def update(self, ema: nn.Module, model: nn.Module, step: int) -> None:
        e_params, m_params = list(ema.parameters()), list(model.parameters())
        if e_params:
            torch._foreach_lerp_(e_params, m_params, 1.0 - self.decay(step))
        for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
            eb.copy_(mb)


def diffusion_loss(net: NoiseNet, schedule: NoiseSchedule, x0: torch.Tensor, cond: torch.Tensor, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DDPM's simplified objective ``E || eps - eps_theta(x_t, t, c) ||^2`` at a uniform
    step per sample; ``weight (B,)`` weights samples (EDP's IQL/CRR variants). Returns the
    loss and ``{"t", "x_t", "eps_pred"}`` (EDP reuses them for its action approximation)."""
    b = x0.shape[0]
    t = torch.randint(0, schedule.steps, (b,), device="cpu").to(x0.device)
    noise = torch.randn_like(x0)
    x_t = schedule.add_noise(x0, noise, t)
    eps = net(x_t, t, cond)
    per_sample = F.mse_loss(eps, noise, reduction="none").flatten(1).mean(1)
    loss = (per_sample * weight).mean() if weight is not None else per_sample.mean()
    return loss, {"t": t, "x_t": x_t, "eps_pred": eps}
