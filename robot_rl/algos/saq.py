"""SAQ: offline RL over a learned discrete action codebook (a state-conditioned VQ-VAE).

Training has two phases in one ``update`` stream: the first ``vqvae_steps`` updates fit
the VQ-VAE alone; afterwards it is frozen, every dataset action becomes its code
``k(s, a)`` in {0..K-1}, and a discrete-action learner (IQL, CQL or BRAC) trains on
``(s, k, r, s')``. Acting picks a code and decodes it: ``a = dec(s, e_k)``.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.base import (
    CRITIC_LIMITS,
    OPTIMISER_LIMITS,
    Learner,
    LearnerConfig,
    expectile_loss,
    register_learner,
)
from robot_rl.algos.nets import EnsembleMLP, ObsEncoder, mlp, soft_update

LAPLACE_EPS = 1e-5
"""Additive smoothing of the EMA code counts (keeps e_j = m_j / N_j finite)."""


@dataclass
class SAQConfig(LearnerConfig):
    """SAQ (Luo et al. 2023, "Action-Quantized Offline Reinforcement Learning for Robotic
    Skill Learning"). A state-conditioned VQ-VAE (van den Oord et al. 2017) discretises
    actions, with features ``f(s)`` from its own observation encoder::

        z = enc(f(s), a) in R^D,   k(s, a) = argmin_j ||z - e_j||^2,   e: (K, D) codebook
        a_hat = tanh(dec(f(s), z + sg(e_k - z)))                    (straight-through)
        L_VQ = E ||a - a_hat||^2 + beta mean (z - sg(e_k))^2  [+ mean (sg(z) - e_k)^2]

    (squared error summed over action elements; the latent terms are means over
    elements, as in Sonnet's quantiser). The bracketed codebook loss is used when
    ``codebook_ema`` = 0; with ``codebook_ema`` = lambda > 0 the codebook is instead an
    exponential moving average of its assigned encoder outputs (VQ-VAE, App. A.1; used
    by VQ-VAE-2, Razavi et al. 2019), n_j codes in the batch, N = sum_j N_j::

        N_j <- lambda N_j + (1 - lambda) n_j,   m_j <- lambda m_j + (1 - lambda) sum_{k_i = j} z_i
        e_j  = m_j / ((N_j + eps) N / (N + K eps))                (Laplace-smoothed counts)

    Code usage u_j (fraction of the batch, EMA with ``usage_decay``, starts at 1/K) is
    tracked in a buffer; a code with u_j < ``dead_code_threshold`` is dead, and with
    ``restart_dead_codes`` moved onto a random encoder output of the batch, its usage
    reset to 1/K (Jukebox's random restarts, Dhariwal et al. 2020). After
    ``vqvae_steps`` updates nothing of the VQ-VAE changes any more (weights, codebook,
    usage). The discrete critics ``Q_i(s, .) in R^K`` are an ensemble on features of
    a separate encoder; targets use Polyak-averaged copies Q'.
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "codebook_size": "[1, inf)", "code_dim": "[1, inf)",
        "commitment_cost": "[0, inf)", "vq_hidden": "[1, inf)", "vqvae_lr": "[0, inf)", "vqvae_steps": "[0, inf)",
        "codebook_ema": "[0, 1)", "usage_decay": "[0, 1)", "dead_code_threshold": "[0, inf)",
    }

    codebook_size: int = 16
    """K: codes (discrete actions)."""
    code_dim: int = 16
    """D: width of the latent codes."""
    commitment_cost: float = 0.25
    """beta: weight of the commitment loss pulling z towards its code."""
    vq_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the VQ-VAE's encoder and decoder MLPs."""
    vqvae_lr: float = 3e-4
    """Adam learning rate of the VQ-VAE (and of its observation encoder)."""
    vqvae_steps: int = 1000
    """Updates that train only the VQ-VAE; later updates train the discrete RL on frozen codes."""
    codebook_ema: float = 0.99
    """lambda: EMA decay of the codebook (0: learn it by the codebook loss instead)."""
    usage_decay: float = 0.99
    """EMA decay of the per-code usage fractions (dead-code detection)."""
    dead_code_threshold: float = 1e-3
    """A code whose EMA usage fraction is below this is dead (counted in ``dead_codes``)."""
    restart_dead_codes: bool = True
    """Move dead codes onto random encoder outputs of the batch (VQ phase only)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy (and of the behaviour model)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics, their encoder (and the value network)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics and their encoder."""
    n_critics: int = 2
    """Q ensemble size; targets take the minimum over members."""


class ActionVQVAE(nn.Module):
    """The VQ-VAE on feature ``(B, F)`` and action ``(B, Da)`` pairs (see ``SAQConfig``).

    ``encode -> z (B, D)``, ``nearest(z) -> k (B,)``, ``decode(feat, e (B, D)) -> (B, Da)``
    in [-1, 1]. Buffers (saved with the weights): ``usage (K,)``; with EMA also
    ``codebook (K, D)``, ``ema_count (K,)``, ``ema_sum (K, D)`` (else ``codebook`` is a
    parameter).
    """

    def __init__(
        self, feat_dim: int, action_dim: int, hidden: Sequence[int], codebook_size: int, code_dim: int, ema: float
    ) -> None:
        super().__init__()
        self.ema = ema
        self.enc = mlp(feat_dim + action_dim, hidden, code_dim)
        self.dec = mlp(feat_dim + code_dim, hidden, action_dim)
        init = torch.empty(codebook_size, code_dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        if ema > 0:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def encode(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.enc(torch.cat([feat, action], dim=-1))

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest code, ``(B, D) -> (B,)``."""
        return torch.cdist(z, self.codebook).argmin(-1)

    def decode(self, feat: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec(torch.cat([feat, code], dim=-1)))

    @torch.no_grad()
    def track(self, z: torch.Tensor, k: torch.Tensor, decay: float) -> torch.Tensor:
        """One batch's EMA updates of the usage (and of an EMA codebook); returns its
        code counts ``(K,)``."""
        onehot = F.one_hot(k, self.size).to(z.dtype)  # (B, K)
        counts = onehot.sum(0)
        self.usage.lerp_(counts / len(k), 1.0 - decay)
        if self.ema > 0:
            self.ema_count.lerp_(counts, 1.0 - self.ema)
            self.ema_sum.lerp_(onehot.T @ z, 1.0 - self.ema)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + LAPLACE_EPS) / (n + self.size * LAPLACE_EPS) * n
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        return counts

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, z: torch.Tensor) -> None:
        """Move the ``dead (K,)`` codes onto distinct random rows of ``z (B, D)`` (torch's
        global RNG, on the CPU, so a seed fixes the choice)."""
        idx = dead.nonzero().squeeze(1)
        rows = torch.randperm(len(z))[torch.arange(len(idx)) % len(z)].to(z.device)
        self.codebook[idx] = z[rows]
        self.usage[idx] = 1.0 / self.size
        if self.ema > 0:
            self.ema_sum[idx] = z[rows]
            self.ema_count[idx] = 1.0


def pick(values: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``values[..., b, k[b]]``: ``(..., B, K)``, ``(B,) -> (..., B)``."""
    index = k.expand(*values.shape[:-1]).unsqueeze(-1)
    return values.gather(-1, index).squeeze(-1)


def conservative_gap(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Discrete CQL's regulariser per member, exact over the K codes:
    ``E_s [logsumexp_j Q_i(s, j) - Q_i(s, k)]``, ``q (E, B, K)``, ``k (B,) -> (E,)``."""
    return (torch.logsumexp(q, dim=-1) - pick(q, k)).mean(-1)


def categorical_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_j p_j (log p_j - log q_j)`` from log-probabilities ``(B, K) -> (B,)``."""
    return (logp.exp() * (logp - logq)).sum(-1)


class SAQ(Learner):
    """The VQ phase, the frozen codes and decoding; subclasses add the discrete RL."""

    config: SAQConfig
    config_class = SAQConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        self.nets["vq_encoder"] = vq_enc = self.encoder()
        self.nets["vqvae"] = ActionVQVAE(
            vq_enc.out_dim, s.action_dim, c.vq_hidden, c.codebook_size, c.code_dim, c.codebook_ema
        )
        self.nets["encoder"] = enc = self.encoder()
        self.nets["critic"] = EnsembleMLP(c.n_critics, enc.out_dim, c.hidden, c.codebook_size)
        self.nets["target_critic"] = copy.deepcopy(self.nets["critic"])
        self.nets["target_encoder"] = copy.deepcopy(enc)
        self.nets["target_critic"].requires_grad_(False)
        self.nets["target_encoder"].requires_grad_(False)
        self.optimizers["vqvae"] = self.adam([vq_enc, self.nets["vqvae"]], c.vqvae_lr)
        critic_modules = [enc, self.nets["critic"], *self.build_rl(enc)]
        self.optimizers["critic"] = self.adam(critic_modules, c.critic_lr)

    @abstractmethod
    def build_rl(self, encoder: ObsEncoder) -> list[nn.Module]:
        """Add the algorithm's networks and optimisers; return extra modules the critic optimiser trains."""

    @abstractmethod
    def update_rl(self, batch: dict[str, Any], k: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discrete RL step with data codes ``k (B,)``; returns metrics incl. ``critic_loss`` and ``q``."""

    @abstractmethod
    def choose(self, feat: torch.Tensor) -> torch.Tensor:
        """Code to execute, ``(B, F) -> (B,)``."""

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.steps < self.config.vqvae_steps:
            metrics = self.update_vqvae(batch)
        else:
            metrics, k = self.code_batch(batch)
            metrics.update(self.update_rl(batch, k))
        self.steps += 1
        return metrics

    def update_vqvae(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, vq = self.config, self.nets["vqvae"]
        feat = self.encode(self.nets["vq_encoder"], batch)
        z = vq.encode(feat, batch["action"])
        k = vq.nearest(z)
        e = vq.codebook[k]
        recon = vq.decode(feat, z + (e - z).detach())
        recon_loss = (recon - batch["action"]).pow(2).sum(-1).mean()
        loss = recon_loss + c.commitment_cost * F.mse_loss(z, e.detach())
        if c.codebook_ema == 0:
            loss = loss + F.mse_loss(e, z.detach())
        self.step(self.optimizers["vqvae"], loss)
        counts = vq.track(z.detach(), k, c.usage_decay)
        dead = vq.usage < c.dead_code_threshold
        metrics = self.usage_metrics(counts, dead)
        if c.restart_dead_codes and bool(dead.any()):
            vq.restart(dead, z.detach())
        return {"vq_loss": loss.detach(), "recon_loss": recon_loss.detach(), **metrics}

    @torch.no_grad()
    def code_batch(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The frozen VQ-VAE's codes ``k (B,)`` of the batch's (s, a), and its metrics."""
        c, vq = self.config, self.nets["vqvae"]
        feat = self.encode(self.nets["vq_encoder"], batch, augment=False)
        z = vq.encode(feat, batch["action"])
        k = vq.nearest(z)
        e = vq.codebook[k]
        recon_loss = (vq.decode(feat, e) - batch["action"]).pow(2).sum(-1).mean()
        latent_weight = c.commitment_cost + (1.0 if c.codebook_ema == 0 else 0.0)  # commitment (+ codebook) loss
        vq_loss = recon_loss + latent_weight * F.mse_loss(z, e)
        counts = F.one_hot(k, vq.size).sum(0).to(z.dtype)
        metrics = self.usage_metrics(counts, vq.usage < c.dead_code_threshold)
        return {"vq_loss": vq_loss, "recon_loss": recon_loss, **metrics}, k

    @staticmethod
    def usage_metrics(counts: torch.Tensor, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        """``perplexity``: exp of the entropy of the batch's code frequencies (K when
        uniform, 1 when one code); ``dead_codes``: codes below the usage threshold."""
        p = counts / counts.sum()
        return {"perplexity": torch.special.entr(p).sum().exp(), "dead_codes": dead.sum().to(counts.dtype)}

    def decode(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, k: torch.Tensor) -> torch.Tensor:
        """Action of code ``k (B,)`` at the observation: ``(B, Da)`` in [-1, 1]."""
        vq = self.nets["vqvae"]
        return vq.decode(self.nets["vq_encoder"](state, images), vq.codebook[k])

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.decode(state, images, self.choose(self.nets["encoder"](state, images)))

    def soft_update_targets(self) -> None:
        n, tau = self.nets, self.config.tau
        soft_update(n["target_critic"], n["critic"], tau)
        soft_update(n["target_encoder"], n["encoder"], tau)


@dataclass
class SAQIQLConfig(SAQConfig):
    """SAQ-IQL: IQL (Kostrikov et al. 2022) over the codes k = k(s, a)::

        L_V  = E L2_tau( min_i Q'_i(s, k) - V(s) ),   L2_tau(u) = |tau - 1(u < 0)| u^2
        L_Q  = sum_i E ( r + gamma (1 - d) V(s') - Q_i(s, k) )^2
        L_pi = -E [ min(exp(beta (min_i Q'_i(s, k) - V(s))), max_weight) log pi(k | s) ]

    pi is a categorical over the K codes; it acts with ``argmax_k pi(k | s)``.
    """

    limits: ClassVar[dict[str, str]] = {"expectile": "(0, 1)", "beta": "[0, inf)", "max_weight": "(0, inf)"}

    expectile: float = 0.7
    """tau of the expectile value loss."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Clip of the advantage weights."""


@register_learner("saq_iql")
class SAQIQL(SAQ):
    config: SAQIQLConfig
    config_class = SAQIQLConfig

    def build_rl(self, encoder: ObsEncoder) -> list[nn.Module]:
        c = self.config
        self.nets["value"] = mlp(encoder.out_dim, c.hidden, 1)
        self.nets["actor"] = mlp(encoder.out_dim, c.hidden, c.codebook_size)
        self.optimizers["actor"] = self.adam([self.nets["actor"]], c.actor_lr)
        return [self.nets["value"]]

    def update_rl(self, batch: dict[str, Any], k: torch.Tensor) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        with torch.no_grad():
            target_q = pick(n["target_critic"](self.encode(n["target_encoder"], batch)), k).min(0).values
            next_v = n["value"](self.encode(n["encoder"], batch, next_=True)).squeeze(-1)
            y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_v
        v = n["value"](feat.detach()).squeeze(-1)
        value_loss = expectile_loss(target_q - v, c.expectile)
        q = pick(n["critic"](feat), k)  # (E, B)
        q_loss = (q - y).pow(2).mean(1).sum()
        self.step(self.optimizers["critic"], q_loss + value_loss)

        weight = torch.exp(c.beta * (target_q - v.detach())).clamp(max=c.max_weight)
        actor_loss = (weight * F.cross_entropy(n["actor"](feat.detach()), k, reduction="none")).mean()
        self.step(self.optimizers["actor"], actor_loss)
        self.soft_update_targets()
        return {
            "critic_loss": (q_loss + value_loss).detach(),
            "q_loss": q_loss.detach(),
            "value_loss": value_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q": q.detach().mean(),
            "v": v.detach().mean(),
            "weight": weight.mean(),
        }

    def choose(self, feat: torch.Tensor) -> torch.Tensor:
        return self.nets["actor"](feat).argmax(-1)


@dataclass
class SAQCQLConfig(SAQConfig):
    """SAQ-CQL: discrete CQL(H) (Kumar et al. 2020) over the codes k = k(s, a), the
    logsumexp exact over all K codes, per member i::

        L_Q = E (Q_i(s, k) - y)^2 + cql_weight * E [ logsumexp_j Q_i(s, j) - Q_i(s, k) ]
        y   = r + gamma (1 - d) min_i Q'_i(s', k'),   k' = argmax_j min_i Q_i(s', j)

    The next code is chosen by the online critics and valued by the targets (double
    DQN, as the SAQ code does). Acts with ``argmax_k min_i Q_i(s, k)``.
    """

    limits: ClassVar[dict[str, str]] = {"cql_weight": "[0, inf)"}

    cql_weight: float = 1.0
    """Weight of the conservative term."""


@register_learner("saq_cql")
class SAQCQL(SAQ):
    config: SAQCQLConfig
    config_class = SAQCQLConfig

    def build_rl(self, encoder: ObsEncoder) -> list[nn.Module]:
        return []

    def update_rl(self, batch: dict[str, Any], k: torch.Tensor) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        with torch.no_grad():
            next_k = self.choose(self.encode(n["encoder"], batch, next_=True))
            next_q = pick(n["target_critic"](self.encode(n["target_encoder"], batch, next_=True)), next_k).min(0).values
            y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_q
        q_all = n["critic"](feat)  # (E, B, K)
        q = pick(q_all, k)
        td_loss = (q - y).pow(2).mean(1).sum()
        gap = conservative_gap(q_all, k)
        cql_loss = c.cql_weight * gap.sum()
        self.step(self.optimizers["critic"], td_loss + cql_loss)
        self.soft_update_targets()
        return {
            "critic_loss": (td_loss + cql_loss).detach(),
            "td_loss": td_loss.detach(),
            "cql_gap": gap.detach().mean(),
            "q": q.detach().mean(),
        }

    def choose(self, feat: torch.Tensor) -> torch.Tensor:
        return self.nets["critic"](feat).min(0).values.argmax(-1)


@dataclass
class SAQBRACConfig(SAQConfig):
    """SAQ-BRAC: BRAC (Wu, Tucker & Nachum 2019, "Behavior Regularized Offline
    Reinforcement Learning") with the KL divergence, exact over the K codes. A behaviour
    model b(k | s) is fit by cross-entropy on the data codes; with
    ``Qmin = min_i Q_i``, ``KL(s) = sum_j pi(j|s) (log pi(j|s) - log b(j|s))``::

        L_b  = -E log b(k | s)
        L_pi = E [ alpha KL(s) - sum_j pi(j | s) Qmin(s, j) ]
        L_Q  = sum_i E ( Q_i(s, k) - y )^2
        y    = r + gamma (1 - d) [ sum_j pi(j | s') min_i Q'_i(s', j) - alpha KL(s') ]

    The KL term in ``y`` is BRAC's value penalty (``value_penalty``; off: policy
    regularisation only). Acts with ``argmax_k pi(k | s)``.
    """

    limits: ClassVar[dict[str, str]] = {"alpha": "[0, inf)"}

    alpha: float = 0.1
    """Weight of the KL penalty, in Q units per nat (larger: pi stays closer to b)."""
    value_penalty: bool = True
    """Subtract alpha KL in the critic target as well as in the actor loss."""


@register_learner("saq_brac")
class SAQBRAC(SAQ):
    config: SAQBRACConfig
    config_class = SAQBRACConfig

    def build_rl(self, encoder: ObsEncoder) -> list[nn.Module]:
        c = self.config
        self.nets["actor"] = mlp(encoder.out_dim, c.hidden, c.codebook_size)
        self.nets["behaviour"] = mlp(encoder.out_dim, c.hidden, c.codebook_size)
        self.optimizers["actor"] = self.adam([self.nets["actor"], self.nets["behaviour"]], c.actor_lr)
        return []

    def update_rl(self, batch: dict[str, Any], k: torch.Tensor) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        with torch.no_grad():
            next_feat = self.encode(n["encoder"], batch, next_=True)
            next_logp = F.log_softmax(n["actor"](next_feat), -1)
            next_q = n["target_critic"](self.encode(n["target_encoder"], batch, next_=True)).min(0).values  # (B, K)
            next_v = (next_logp.exp() * next_q).sum(-1)
            if c.value_penalty:
                next_v = next_v - c.alpha * categorical_kl(next_logp, F.log_softmax(n["behaviour"](next_feat), -1))
            y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_v
        q = pick(n["critic"](feat), k)
        critic_loss = (q - y).pow(2).mean(1).sum()
        self.step(self.optimizers["critic"], critic_loss)

        feat_d = feat.detach()
        behaviour_logits = n["behaviour"](feat_d)
        behaviour_loss = F.cross_entropy(behaviour_logits, k)
        logp = F.log_softmax(n["actor"](feat_d), -1)
        kl = categorical_kl(logp, F.log_softmax(behaviour_logits.detach(), -1))
        with torch.no_grad():
            q_pi = n["critic"](feat_d).min(0).values  # (B, K)
        actor_loss = (c.alpha * kl - (logp.exp() * q_pi).sum(-1)).mean()
        self.step(self.optimizers["actor"], actor_loss + behaviour_loss)
        self.soft_update_targets()
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "behaviour_loss": behaviour_loss.detach(),
            "kl": kl.detach().mean(),
            "q": q.detach().mean(),
        }

    def choose(self, feat: torch.Tensor) -> torch.Tensor:
        return self.nets["actor"](feat).argmax(-1)
