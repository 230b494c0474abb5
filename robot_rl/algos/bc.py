"""Behaviour cloning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robot_rl.algos.base import Learner, LearnerConfig, register_learner
from robot_rl.algos.nets import DeterministicActor, TanhGaussianActor


@dataclass
class BCConfig(LearnerConfig):
    """Behaviour cloning (Pomerleau 1989; the robomimic BC baseline, Mandlekar et al. 2021).

    Deterministic: ``L = E ||pi(s) - a||^2`` with ``pi = tanh(MLP)`` on actions normalised
    to [-1, 1]. Stochastic: a tanh-Gaussian, ``L = -E log pi(a | s)``; it acts with the
    mode. The observation encoder (cameras) is trained by the same loss.
    """

    limits: ClassVar[dict[str, str]] = {"lr": "[0, inf)", "weight_decay": "[0, inf)"}

    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """L2 penalty on the weights (Adam's weight_decay)."""
    stochastic: bool = False
    """Tanh-Gaussian likelihood instead of mean squared error."""


@register_learner("bc")
class BC(Learner):
    config: BCConfig
    config_class = BCConfig
    uses_next = False

    def build(self) -> None:
        c, s = self.config, self.spec
        self.nets["encoder"] = enc = self.encoder()
        actor_cls = TanhGaussianActor if c.stochastic else DeterministicActor
        self.nets["actor"] = actor_cls(enc.out_dim, s.action_dim, c.hidden)
        params = list(self.nets.parameters())
        self.optimizers["actor"] = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feat = self.encode(self.nets["encoder"], batch)
        actor = self.nets["actor"]
        if self.config.stochastic:
            loss = -actor.log_prob(feat, batch["action"]).mean()
        else:
            loss = (actor(feat) - batch["action"]).pow(2).sum(-1).mean()
        self.step(self.optimizers["actor"], loss)
        self.steps += 1
        return {"loss": loss.detach()}

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        feat = self.nets["encoder"](state, images)
        actor = self.nets["actor"]
        return actor.mode(feat) if self.config.stochastic else actor(feat)
