"""Implicit Q-learning."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robot_rl.algos.base import (
    CRITIC_LIMITS,
    OPTIMISER_LIMITS,
    Learner,
    LearnerConfig,
    expectile_loss,
    register_learner,
)
from robot_rl.algos.nets import GaussianActor, QEnsemble, mlp, soft_update


@dataclass
class IQLConfig(LearnerConfig):
    """IQL (Kostrikov, Nair & Levine 2022, "Offline Reinforcement Learning with Implicit
    Q-Learning"). Never queries Q on actions outside the data::

        L_V  = E L2_tau( min_i Q'_i(s, a) - V(s) ),   L2_tau(u) = |tau - 1(u < 0)| u^2
        L_Q  = sum_i E ( r + gamma (1 - d) V(s') - Q_i(s, a) )^2
        L_pi = -E [ min(exp(beta (min_i Q'_i(s, a) - V(s))), max_weight) log pi(a | s) ]

    ``tau`` is ``expectile`` (0.5: SARSA-like; -> 1: max over in-support actions),
    ``beta`` the inverse temperature of the advantage weights. The actor is a Gaussian
    with a state-independent std; it acts with its mean.
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "expectile": "(0, 1)", "beta": "[0, inf)", "max_weight": "(0, inf)",
    }

    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the Q ensemble and the value network."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target Q networks."""
    n_critics: int = 2
    """Q ensemble size."""
    expectile: float = 0.7
    """tau of the expectile value loss."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Clip of the advantage weights."""


@register_learner("iql")
class IQL(Learner):
    config: IQLConfig
    config_class = IQLConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        self.nets["encoder"] = enc = self.encoder()
        self.nets["critic"] = QEnsemble(c.n_critics, enc.out_dim, s.action_dim, c.hidden)
        self.nets["value"] = mlp(enc.out_dim, c.hidden, 1)
        self.nets["actor"] = GaussianActor(enc.out_dim, s.action_dim, c.hidden)
        self.nets["target_critic"] = copy.deepcopy(self.nets["critic"])
        self.nets["target_encoder"] = copy.deepcopy(enc)
        self.nets["target_critic"].requires_grad_(False)
        self.nets["target_encoder"].requires_grad_(False)
        self.optimizers["critic"] = self.adam([enc, self.nets["critic"], self.nets["value"]], c.critic_lr)
        self.optimizers["actor"] = self.adam([self.nets["actor"]], c.actor_lr)

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        with torch.no_grad():
            target_q = n["target_critic"](self.encode(n["target_encoder"], batch), batch["action"]).min(0).values
            next_feat = self.encode(n["encoder"], batch, next_=True)
            next_v = n["value"](next_feat).squeeze(-1)
            y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_v
        v = n["value"](feat.detach()).squeeze(-1)
        value_loss = expectile_loss(target_q - v, c.expectile)
        q = n["critic"](feat, batch["action"])
        q_loss = (q - y).pow(2).mean(1).sum()
        self.step(self.optimizers["critic"], q_loss + value_loss)

        weight = torch.exp(c.beta * (target_q - v.detach())).clamp(max=c.max_weight)
        actor_loss = -(weight * n["actor"].log_prob(feat.detach(), batch["action"])).mean()
        self.step(self.optimizers["actor"], actor_loss)
        soft_update(n["target_critic"], n["critic"], c.tau)
        soft_update(n["target_encoder"], n["encoder"], c.tau)
        self.steps += 1
        return {
            "critic_loss": (q_loss + value_loss).detach(),
            "q_loss": q_loss.detach(),
            "value_loss": value_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q": q.detach().mean(),
            "v": v.detach().mean(),
            "weight": weight.mean(),
        }

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.nets["actor"].mode(self.nets["encoder"](state, images))
