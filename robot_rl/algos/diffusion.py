"""Diffusion Policy: a denoising diffusion model over action chunks."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robot_rl.algos.base import Learner, LearnerConfig, register_learner
from robot_rl.algos.diffusion_nets import EMA, SAMPLERS, MLPNoiseNet, NoiseSchedule, UNet1D, diffusion_loss, sample


@dataclass
class DiffusionPolicyConfig(LearnerConfig):
    """Diffusion Policy (Chi, Feng, Du, Xu, Cousineau, Burchfiel & Song 2023, "Diffusion
    Policy: Visuomotor Policy Learning via Action Diffusion"). A noise-prediction network
    eps_theta(A_k, k, O) over a chunk A of T actions starting at the current step,
    conditioned on the features of the last To observations (FiLM), trained with DDPM's
    objective::

        L = E_{k ~ U{0..K-1}, eps ~ N(0, I)} || eps - eps_theta(sqrt(ab_k) A + sqrt(1 - ab_k) eps, k, O) ||^2

    At run time ``inference_steps`` DDIM (or DPM-Solver++ / DDPM) steps denoise Gaussian
    noise into a chunk; the first ``exec_horizon`` (Ta) actions are executed before the
    next prediction (receding horizon). The policy acts with an exponential moving
    average of the weights. Chi et al. use To = 2 (``--obs-horizon 2``), T = 16, Ta = 8,
    K = 100, and a U-Net with down_dims [256, 512, 1024]. The defaults here are sized
    for CPU budgets of a few thousand updates: a narrower U-Net, lr 1e-3 and T = 8, Ta = 4 (at
    3000 updates on Lift, T = 16 chunks were still underfit: 50% success against 100%
    for T = 8 and T = 4; benchmarks/RESULTS.md).
    """

    limits: ClassVar[dict[str, str]] = {
        "action_horizon": "[1, inf)", "exec_horizon": "[1, inf)", "down_dims": "[1, inf)", "kernel_size": "[1, inf)",
        "n_groups": "[1, inf)", "step_embed_dim": "[1, inf)", "diffusion_steps": "[1, inf)",
        "inference_steps": "[1, inf)", "lr": "[0, inf)", "weight_decay": "[0, inf)", "ema_power": "[0, inf)",
    }

    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden widths of the ``mlp`` noise network."""
    action_horizon: int = 8
    """T: actions predicted per inference."""
    exec_horizon: int = 4
    """Ta: actions executed from each prediction (<= T)."""
    network: str = "unet"
    """``unet`` (temporal conv U-Net with FiLM) or ``mlp`` (low-dim, small T)."""
    down_dims: list[int] = field(default_factory=lambda: [32, 64, 128])
    """U-Net channels per level (T must be divisible by 2^(levels - 1))."""
    kernel_size: int = 5
    """U-Net temporal convolution width."""
    n_groups: int = 8
    """GroupNorm groups in the U-Net."""
    step_embed_dim: int = 64
    """Width of the diffusion-step embedding."""
    diffusion_steps: int = 100
    """K: steps of the forward process at training."""
    sampler: str = "ddim"
    """Inference sampler: ``ddim``, ``dpm`` (DPM-Solver++ 2M) or ``ddpm`` (all K steps)."""
    inference_steps: int = 10
    """Denoising steps at inference (ddim / dpm)."""
    lr: float = 1e-3
    """AdamW learning rate (Chi et al.: 1e-4 over ~10^5+ updates; at 2000 updates on Lift
    1e-4 reached 8% and 1e-3 100%, benchmarks/RESULTS.md)."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    ema_power: float = 0.75
    """EMA warm-up power (decay = 1 - (1 + step)^-power, at most 0.9999)."""


def make_noise_net(c: Any, action_dim: int, cond_dim: int) -> torch.nn.Module:
    if c.network == "unet":
        return UNet1D(action_dim, c.action_horizon, cond_dim, c.down_dims, c.kernel_size, c.n_groups, c.step_embed_dim)
    if c.network == "mlp":
        return MLPNoiseNet(action_dim, c.action_horizon, cond_dim, c.hidden, c.step_embed_dim)
    raise ValueError(f"network must be 'unet' or 'mlp', got {c.network!r}")


def check_sampling(c: Any, allowed: tuple[str, ...] = SAMPLERS) -> None:
    """``c.sampler`` is one of ``allowed`` and ``c.inference_steps`` fits the chain."""
    if c.sampler not in allowed:
        raise ValueError(f"sampler must be one of {allowed}, got {c.sampler!r}")
    if not 1 <= c.inference_steps <= c.diffusion_steps:
        raise ValueError(f"inference_steps must be in [1, diffusion_steps={c.diffusion_steps}], got {c.inference_steps}")


@register_learner("diffusion")
class DiffusionPolicy(Learner):
    config: DiffusionPolicyConfig
    config_class = DiffusionPolicyConfig
    uses_next = False

    def build(self) -> None:
        c, s = self.config, self.spec
        if not 1 <= c.exec_horizon <= c.action_horizon:
            raise ValueError(f"exec_horizon must be in [1, action_horizon={c.action_horizon}], got {c.exec_horizon}")
        check_sampling(c)
        self.nets["schedule"] = self.schedule = NoiseSchedule(c.diffusion_steps)  # buffers only, moved with the nets
        self.nets["encoder"] = enc = self.encoder()
        self.nets["noise"] = make_noise_net(c, s.action_dim, enc.out_dim)
        self.nets["ema_encoder"] = copy.deepcopy(enc).requires_grad_(False)
        self.nets["ema_noise"] = copy.deepcopy(self.nets["noise"]).requires_grad_(False)
        params = [*enc.parameters(), *self.nets["noise"].parameters()]
        self.optimizers["model"] = torch.optim.AdamW(params, lr=c.lr, betas=(0.95, 0.999), weight_decay=c.weight_decay, foreach=True)
        self.ema = EMA(c.ema_power)
        self.sample_generator = torch.Generator().manual_seed(self.seed + 2)

    def chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["action_chunk"] if self.config.action_horizon > 1 else batch["action"][:, None]

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        n = self.nets
        feat = self.encode(n["encoder"], batch)
        loss, _ = diffusion_loss(n["noise"], self.schedule, self.chunk(batch), feat)
        self.step(self.optimizers["model"], loss)
        self.ema.update(n["ema_encoder"], n["encoder"], self.steps)
        self.ema.update(n["ema_noise"], n["noise"], self.steps)
        self.steps += 1
        return {"loss": loss.detach()}

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        c = self.config
        feat = self.nets["ema_encoder"](state, images)
        shape = (state.shape[0], c.action_horizon, self.spec.action_dim)
        chunk = sample(self.nets["ema_noise"], feat, shape, self.schedule, c.sampler, c.inference_steps, self.sample_generator)
        return chunk if c.action_horizon > 1 else chunk[:, 0]
