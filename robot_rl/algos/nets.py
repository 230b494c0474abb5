"""Networks shared by the learners: MLPs, batched ensembles, actors, the image encoder.

Shapes: B batch, To observation frames, E ensemble members, D feature width,
Da action width. Actions inside the learners are normalised to [-1, 1].

Ensembles run every member in one batched matmul (``EnsembleLinear``: weights
``(E, in, out)``, ``torch.baddbmm``), never a Python loop over networks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    """``in -> [Linear (LayerNorm) ReLU] * len(hidden) -> out`` (no output activation)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.ReLU())
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied in one ``baddbmm``: ``(E, B, in) -> (E, B, out)``."""

    def __init__(self, ensemble: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine per member: ``(E, B, D)``."""

    def __init__(self, ensemble: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,)) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """E MLPs evaluated together. ``forward(x)``: x ``(B, in)`` (shared) or ``(E, B, in)``
    -> ``(E, B, out)``."""

    def __init__(self, ensemble: int, in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> None:
        super().__init__()
        self.ensemble = ensemble
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(EnsembleLinear(ensemble, d, h))
            if layer_norm:
                layers.append(EnsembleLayerNorm(ensemble, h))
            layers.append(nn.ReLU())
            d = h
        layers.append(EnsembleLinear(ensemble, d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble, -1, -1)
        return self.net(x)


class QEnsemble(nn.Module):
    """Q(s, a) for E members: ``forward(feat (B, F), action (B, Da)) -> (E, B)``.

    ``action`` may also be ``(N, B, Da)`` (N candidate actions per state, as CQL samples):
    the result is then ``(E, N, B)``.
    """

    def __init__(self, ensemble: int, feat_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.net = EnsembleMLP(ensemble, feat_dim + action_dim, hidden, 1, layer_norm)

    def forward(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if action.dim() == 3:
            n, b, _ = action.shape
            x = torch.cat([feat.unsqueeze(0).expand(n, -1, -1), action], dim=-1).reshape(n * b, -1)
            return self.net(x).reshape(self.ensemble, n, b)
        return self.net(torch.cat([feat, action], dim=-1)).squeeze(-1)


class DeterministicActor(nn.Module):
    """``a = tanh(mlp(feat))`` in [-1, 1]: ``(B, F) -> (B, Da)``."""

    def __init__(self, feat_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(feat_dim, hidden, action_dim, layer_norm)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(feat))


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian: ``u ~ N(mu, sigma)``, ``a = tanh(u)``.

    ``sample(feat, n)`` -> actions ``(n, B, Da)`` and log-probabilities ``(n, B)`` with the
    tanh change of variables; ``mode(feat)`` -> ``tanh(mu)`` ``(B, Da)``;
    ``log_prob(feat, a)`` for dataset actions (clipped inside (-1, 1)).
    """

    def __init__(self, feat_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(feat_dim, hidden, 2 * action_dim, layer_norm)

    def _dist(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.net(feat).chunk(2, dim=-1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, feat: torch.Tensor, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self._dist(feat)
        std = log_std.exp()
        eps = torch.randn((n, *mu.shape), dtype=mu.dtype, device=mu.device)
        u = mu + std * eps
        a = torch.tanh(u)
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, logp

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._dist(feat)[0])

    def log_prob(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mu, log_std = self._dist(feat)
        a = action.clamp(-1 + 1e-5, 1 - 1e-5)
        u = torch.atanh(a)
        z = (u - mu) / log_std.exp()
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return logp - torch.log1p(-a.pow(2)).sum(-1)


class GaussianActor(nn.Module):
    """Unsquashed Gaussian with a state-independent log std (IQL's actor):
    ``log_prob(feat, a)`` ``(B,)``; ``mode(feat) = tanh(mu)``, ``(B, Da)``."""

    def __init__(self, feat_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(feat_dim, hidden, action_dim, layer_norm)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(feat))

    def log_prob(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mu = self.mode(feat)
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (action - mu) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: replicate-pad by ``pad`` pixels, crop back at a random offset
    per sample. ``(B, C, H, W)`` float -> same shape. Done with one ``grid_sample``."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    eps_h, eps_w = 1.0 / (h + 2 * pad), 1.0 / (w + 2 * pad)
    ar_h = torch.linspace(-1.0 + eps_h, 1.0 - eps_h, h + 2 * pad, device=images.device)[:h]
    ar_w = torch.linspace(-1.0 + eps_w, 1.0 - eps_w, w + 2 * pad, device=images.device)[:w]
    base = torch.stack(torch.meshgrid(ar_w, ar_h, indexing="xy"), dim=-1).unsqueeze(0)  # (1, H, W, 2)
    shift = torch.randint(0, 2 * pad + 1, (b, 1, 1, 2), generator=generator, device="cpu").to(images.device)
    shift = shift.to(images.dtype) * torch.tensor([2.0 * eps_w, 2.0 * eps_h], device=images.device)
    return F.grid_sample(padded, base + shift, padding_mode="zeros", align_corners=False)


class ConvEncoder(nn.Module):
    """A small CNN per camera (DrQ-style): 4 conv layers of ``channels`` (the first with
    stride 2), flatten, Linear -> LayerNorm -> tanh to ``feature_dim``.

    Input: uint8 frames ``(B, To, H, W, C)``; the To frames are stacked on channels.
    """

    def __init__(self, image_shape: Sequence[int], obs_horizon: int, channels: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        h, w, c = image_shape
        self.convs = nn.Sequential(
            nn.Conv2d(c * obs_horizon, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
        )  # fmt: skip
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, c * obs_horizon, h, w)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim

    def forward(self, frames: torch.Tensor, augment_pad: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        b, t, h, w, c = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w).float().div_(255.0).sub_(0.5)
        if augment_pad > 0:
            x = random_shift(x, augment_pad, generator)
        return self.head(self.convs(x).flatten(1))


class ObsEncoder(nn.Module):
    """All observations of a step window -> one feature vector ``(B, F)``.

    ``state``: the normalised low-dim keys concatenated, ``(B, To, Ds)``, flattened;
    ``images``: ``{camera: (B, To, H, W, C) uint8}``, one ``ConvEncoder`` each. With no
    cameras the encoder has no parameters (features = flattened state).
    """

    def __init__(
        self,
        state_dim: int,
        image_shapes: dict[str, Sequence[int]],
        obs_horizon: int,
        channels: int = 32,
        feature_dim: int = 64,
    ) -> None:
        super().__init__()
        self.state_dim = state_dim * obs_horizon
        self.cameras = nn.ModuleDict(
            {name.replace(".", "_"): ConvEncoder(shape, obs_horizon, channels, feature_dim) for name, shape in image_shapes.items()}
        )
        self.camera_keys = list(image_shapes)
        self.out_dim = self.state_dim + feature_dim * len(image_shapes)

    @property
    def has_images(self) -> bool:
        return bool(self.camera_keys)

    def forward(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None = None,
        augment_pad: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        parts = [state.flatten(1)] if self.state_dim else []
        for key in self.camera_keys:
            assert images is not None
            parts.append(self.cameras[key.replace(".", "_")](images[key], augment_pad, generator))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside the block (inputs still get theirs):
    an actor loss through a critic skips the critic's weight-gradient matmuls."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source`` (fused over all tensors)."""
    t_params, s_params = list(target.parameters()), list(source.parameters())
    if t_params:
        torch._foreach_lerp_(t_params, s_params, tau)
