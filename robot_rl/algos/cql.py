"""Conservative Q-learning (on SAC)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.base import CRITIC_LIMITS, OPTIMISER_LIMITS, Learner, LearnerConfig, register_learner
from robot_rl.algos.nets import QEnsemble, TanhGaussianActor, frozen, soft_update


@dataclass
class CQLConfig(LearnerConfig):
    """CQL(H) (Kumar, Zhou, Tucker & Levine 2020, "Conservative Q-Learning for Offline
    Reinforcement Learning") on soft actor-critic. Per critic i, with N sampled actions
    each from Uniform[-1, 1]^Da, pi(.|s) and pi(.|s') (importance-weighted)::

        L_Q  = E (Q_i(s, a) - y)^2 + w * ( E_s logsumexp_a~mu Q_i(s, a) - E Q_i(s, a) )
        y    = r + gamma (1 - d) [ min_j Q'_j(s', a') (- alpha log pi(a' | s') if backup_entropy) ]
        L_pi = E [ alpha log pi(a | s) - min_j Q_j(s, a) ],  a ~ pi(. | s)
        L_alpha = -E log_alpha (log pi(a | s) + target_entropy)   (target_entropy = -Da)

    With ``lagrange``: ``w = clip(exp(log_w), 0, 1e6)`` learned so that the gap
    (logsumexp minus data Q) stays at ``target_action_gap`` (CQL's Lagrange variant).
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "temp_lr": "[0, inf)", "init_temperature": "(0, inf)",
        "conservative_weight": "[0, inf)", "n_action_samples": "[1, inf)",
    }

    actor_lr: float = 1e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    temp_lr: float = 1e-4
    """Adam learning rate of the entropy temperature (and the Lagrange weight)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    n_critics: int = 2
    """Q ensemble size (one batched pass)."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha."""
    conservative_weight: float = 5.0
    """w: weight of the conservative term (the initial weight with ``lagrange``)."""
    n_action_samples: int = 10
    """N: actions sampled per source for the logsumexp."""
    lagrange: bool = False
    """Learn w to hold the action gap at ``target_action_gap``."""
    target_action_gap: float = 10.0
    """The gap the Lagrange variant aims for."""
    backup_entropy: bool = False
    """Subtract the entropy term in the critic target (SAC's soft backup)."""
    critic_layer_norm: bool = False
    """LayerNorm in every critic layer (RLPD); lets an ensemble_sac fine-tune start from this checkpoint."""


@register_learner("cql")
class CQL(Learner):
    config: CQLConfig
    config_class = CQLConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        self.nets["encoder"] = enc = self.encoder()
        self.nets["actor"] = TanhGaussianActor(enc.out_dim, s.action_dim, c.hidden)
        self.nets["critic"] = QEnsemble(c.n_critics, enc.out_dim, s.action_dim, c.hidden, layer_norm=c.critic_layer_norm)
        self.nets["target_critic"] = copy.deepcopy(self.nets["critic"])
        self.nets["target_encoder"] = copy.deepcopy(enc)
        self.nets["target_critic"].requires_grad_(False)
        self.nets["target_encoder"].requires_grad_(False)
        scalars = nn.Module()
        scalars.log_alpha = nn.Parameter(torch.tensor(math.log(c.init_temperature)))
        scalars.log_cql_weight = nn.Parameter(torch.tensor(math.log(c.conservative_weight)))
        self.nets["scalars"] = scalars
        self.optimizers["critic"] = self.adam([enc, self.nets["critic"]], c.critic_lr)
        self.optimizers["actor"] = self.adam([self.nets["actor"]], c.actor_lr)
        self.optimizers["temperature"] = torch.optim.Adam([scalars.log_alpha], lr=c.temp_lr)
        self.optimizers["cql_weight"] = torch.optim.Adam([scalars.log_cql_weight], lr=c.temp_lr)
        self.target_entropy = -float(s.action_dim)

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        scal = n["scalars"]
        feat = self.encode(n["encoder"], batch)
        b, da = batch["action"].shape
        alpha = scal.log_alpha.exp().detach()
        with torch.no_grad():
            next_feat = self.encode(n["encoder"], batch, next_=True)
            next_a, next_logp = n["actor"].sample(next_feat)
            next_q = n["target_critic"](self.encode(n["target_encoder"], batch, next_=True), next_a[0]).min(0).values
            if c.backup_entropy:
                next_q = next_q - alpha * next_logp[0]
            y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_q
            # actions for the logsumexp: uniform, pi(.|s), pi(.|s'), with their log densities
            k = c.n_action_samples
            rand_a = torch.rand((k, b, da), device=feat.device) * 2 - 1
            pi_a, pi_logp = n["actor"].sample(feat.detach(), k)
            pi_next_a, pi_next_logp = n["actor"].sample(next_feat, k)
            log_density = torch.cat([torch.full((k, b), -da * math.log(2.0), device=feat.device), pi_logp, pi_next_logp])
        q = n["critic"](feat, batch["action"])  # (E, B)
        td_loss = (q - y).pow(2).mean(1).sum()
        q_samples = n["critic"](feat, torch.cat([rand_a, pi_a, pi_next_a]))  # (E, 3k, B)
        lse = torch.logsumexp(q_samples - log_density, dim=1)  # (E, B)
        gap = (lse - q).mean(1)  # (E,)
        weight = scal.log_cql_weight.exp().clamp(0.0, 1e6)
        if c.lagrange:
            cql_loss = (weight.detach() * (gap - c.target_action_gap)).sum()
        else:
            cql_loss = c.conservative_weight * gap.sum()
        self.step(self.optimizers["critic"], td_loss + cql_loss)
        metrics = {"critic_loss": (td_loss + cql_loss).detach(), "td_loss": td_loss.detach(), "cql_gap": gap.detach().mean(), "q": q.detach().mean()}
        if c.lagrange:
            weight_loss = -(weight * (gap.detach() - c.target_action_gap)).sum()
            self.step(self.optimizers["cql_weight"], weight_loss)
            metrics["cql_weight"] = weight.detach()

        feat_d = feat.detach()
        a, logp = n["actor"].sample(feat_d)
        with frozen(n["critic"]):
            q_pi = n["critic"](feat_d, a[0]).min(0).values
            actor_loss = (alpha * logp[0] - q_pi).mean()
            self.step(self.optimizers["actor"], actor_loss)
        temp_loss = -(scal.log_alpha * (logp[0].detach() + self.target_entropy)).mean()
        self.step(self.optimizers["temperature"], temp_loss)
        soft_update(n["target_critic"], n["critic"], c.tau)
        soft_update(n["target_encoder"], n["encoder"], c.tau)
        self.steps += 1
        metrics.update(actor_loss=actor_loss.detach(), alpha=alpha, entropy=-logp.detach().mean())
        return metrics

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.nets["actor"].mode(self.nets["encoder"](state, images))
