"""TD3+BC and ReBRAC: deterministic actor-critic with behaviour-cloning penalties."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robot_rl.algos.base import CRITIC_LIMITS, OPTIMISER_LIMITS, Learner, LearnerConfig, register_learner
from robot_rl.algos.nets import DeterministicActor, QEnsemble, frozen, soft_update


@dataclass
class TD3BCConfig(LearnerConfig):
    """TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

    Critic (E members, one batched pass), with the TD3 target-policy smoothing
    ``a' = clip(pi'(s') + clip(eps, -c, c), -1, 1)``, ``eps ~ N(0, policy_noise)``::

        y = r + gamma (1 - d) [ min_i Q'_i(s', a') - critic_bc_coef * ||a' - a'_data||^2 ]
        L_Q = sum_i E (Q_i(s, a) - y)^2

    Actor, every ``policy_freq`` updates, with ``Q_pi = Q_1(s, pi(s))`` (or the minimum
    over members with ``actor_q_min``) and ``lambda = alpha / mean|Q_pi|`` (no gradient
    through lambda)::

        L_pi = E [ actor_bc_coef * bc(pi(s), a) - lambda * Q_pi ]

    where ``bc`` is the mean (``bc_reduce="mean"``, TD3+BC) or the sum (ReBRAC) of the
    squared error over action elements. TD3+BC is ``alpha=2.5, actor_bc_coef=1,
    critic_bc_coef=0``, no LayerNorm.
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "policy_noise": "[0, inf)", "noise_clip": "[0, inf)",
        "policy_freq": "[1, inf)", "alpha": "[0, inf)", "actor_bc_coef": "[0, inf)", "critic_bc_coef": "[0, inf)",
    }

    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    n_critics: int = 2
    """Ensemble size; the target takes the minimum over all members."""
    policy_noise: float = 0.2
    """Std of the target-policy smoothing noise (normalised action units)."""
    noise_clip: float = 0.5
    """Clip of that noise."""
    policy_freq: int = 2
    """Actor and target updates once per this many critic updates."""
    alpha: float = 2.5
    """Weight of the normalised Q term in the actor loss."""
    actor_bc_coef: float = 1.0
    """Weight of the actor's behaviour-cloning penalty (ReBRAC's beta_1)."""
    critic_bc_coef: float = 0.0
    """Weight of the next-action penalty in the critic target (ReBRAC's beta_2)."""
    bc_reduce: str = "mean"
    """``mean`` or ``sum`` of the squared action error over elements."""
    actor_q_min: bool = False
    """Actor maximises the minimum over critics instead of the first critic."""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden layer of the actor."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden layer of the critics."""


@dataclass
class ReBRACConfig(TD3BCConfig):
    """ReBRAC (Tarasov et al. 2023, "Revisiting the Minimalist Approach to Offline
    Reinforcement Learning"): TD3+BC with its design choices — LayerNorm critics, deeper
    networks, a larger batch, larger learning rates, and BC penalties on both the actor
    (beta_1) and the critic target (beta_2), summed over action elements, actor on the
    minimum over critics. The same losses as :class:`TD3BCConfig`. The paper tunes
    beta_1 and beta_2 per dataset (from 0.001 up); the defaults here are the reference
    implementation's (CORL), 1 and 1: small, sparse-reward robot datasets need strong
    BC (on 50 Lift demonstrations, beta_1 = beta_2 = 0.1 gave 0% success after 2000
    updates, 1 and 1 gave 85%; benchmarks/RESULTS.md).
    """

    batch_size: int = 1024
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    alpha: float = 1.0
    actor_bc_coef: float = 1.0
    critic_bc_coef: float = 1.0
    bc_reduce: str = "sum"
    actor_q_min: bool = True
    critic_layer_norm: bool = True


@register_learner("td3bc")
class TD3BC(Learner):
    config: TD3BCConfig
    config_class = TD3BCConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        if c.bc_reduce not in ("mean", "sum"):
            raise ValueError(f"bc_reduce must be 'mean' or 'sum', got {c.bc_reduce!r}")
        self.nets["encoder"] = enc = self.encoder()
        self.nets["actor"] = DeterministicActor(enc.out_dim, s.action_dim, c.hidden, c.actor_layer_norm)
        self.nets["critic"] = QEnsemble(c.n_critics, enc.out_dim, s.action_dim, c.hidden, c.critic_layer_norm)
        self.nets["target_encoder"] = copy.deepcopy(enc)
        self.nets["target_actor"] = copy.deepcopy(self.nets["actor"])
        self.nets["target_critic"] = copy.deepcopy(self.nets["critic"])
        for name in ("target_encoder", "target_actor", "target_critic"):
            self.nets[name].requires_grad_(False)
        self.optimizers["critic"] = self.adam([enc, self.nets["critic"]], c.critic_lr)
        self.optimizers["actor"] = self.adam([self.nets["actor"]], c.actor_lr)

    def _bc(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sq = (pred - target).pow(2)
        return sq.mean(-1) if self.config.bc_reduce == "mean" else sq.sum(-1)

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        with torch.no_grad():
            next_feat_t = self.encode(n["target_encoder"], batch, next_=True)
            noise = (torch.randn_like(batch["action"]) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            next_action = (n["target_actor"](next_feat_t) + noise).clamp(-1.0, 1.0)
            next_q = n["target_critic"](next_feat_t, next_action).min(0).values
            if c.critic_bc_coef:
                next_q = next_q - c.critic_bc_coef * self._bc(next_action, batch["next_action"])
            target = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_q
        q = n["critic"](feat, batch["action"])
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.step(self.optimizers["critic"], critic_loss)
        metrics = {"critic_loss": critic_loss.detach(), "q": q.detach().mean()}

        self.steps += 1
        if self.steps % c.policy_freq == 0:
            feat = feat.detach()
            pi = n["actor"](feat)
            with frozen(n["critic"]):
                q_all = n["critic"](feat, pi)
                q_pi = q_all.min(0).values if c.actor_q_min else q_all[0]
                lam = c.alpha / q_pi.abs().mean().detach().clamp_min(1e-6)
                bc = self._bc(pi, batch["action"])
                actor_loss = (c.actor_bc_coef * bc - lam * q_pi).mean()
                self.step(self.optimizers["actor"], actor_loss)
            soft_update(n["target_critic"], n["critic"], c.tau)
            soft_update(n["target_actor"], n["actor"], c.tau)
            soft_update(n["target_encoder"], n["encoder"], c.tau)
            metrics.update(actor_loss=actor_loss.detach(), bc=bc.detach().mean())
        return metrics

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.nets["actor"](self.nets["encoder"](state, images))


@register_learner("rebrac")
class ReBRAC(TD3BC):
    config: ReBRACConfig
    config_class = ReBRACConfig
