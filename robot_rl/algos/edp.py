"""Efficient Diffusion Policies (EDP) for offline RL, and Diffusion-QL as its baseline."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
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
from robot_rl.algos.diffusion import check_sampling
from robot_rl.algos.diffusion_nets import EMA, MLPNoiseNet, NoiseSchedule, diffusion_loss, sample
from robot_rl.algos.nets import QEnsemble, frozen, mlp, soft_update

RL_VARIANTS = ("td3", "iql")


@dataclass
class EDPConfig(LearnerConfig):
    """EDP (Kang, Ma, Du, Pang & Yan 2023, "Efficient Diffusion Policies for Offline
    Reinforcement Learning"): a diffusion policy pi_theta(a | s) (noise network
    eps_theta(a_k, k, s), K steps) trained with an offline RL objective.

    ``rl = "td3"`` (Diffusion-QL's objective, Wang, Hunt & Zhou 2023)::

        L_pi = L_diffusion - eta / E|Q| * E min_i Q_i(s, a0_hat)
        L_Q  = sum_i E (r + gamma (1 - d) min_j Q'_j(s', a') - Q_i(s, a))^2,  a' ~ pi_ema(. | s')

    With ``action_approx`` (EDP) ``a0_hat`` is reconstructed from the one noised data
    action the diffusion loss already drew: ``a0_hat = (a_k - sqrt(1 - ab_k) eps_theta) /
    sqrt(ab_k)``, so the Q term costs one network pass; a' is drawn with the fast sampler
    (DPM-Solver, ``inference_steps``). Without it (Diffusion-QL), ``a0_hat`` is sampled
    through the full K-step DDPM chain with gradients through every step, and a' with the
    K-step chain too.

    ``rl = "iql"`` (EDP's likelihood-free IQL variant): critics as in IQL (expectile value
    ``V``, ``y = r + gamma (1 - d) V(s')``) and the diffusion loss weighted per sample by
    ``min(exp(beta (Q'(s, a) - V(s))), max_weight)``.

    Acting (energy-based selection): ``n_action_candidates`` actions are sampled with
    the fast sampler and one is drawn with probability ``softmax(Q(s, a) / temperature)``
    (``temperature = 0``: the argmax). The policy acts with an EMA of the weights.
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "diffusion_steps": "[1, inf)", "inference_steps": "[1, inf)",
        "eta": "[0, inf)", "expectile": "(0, 1)", "beta": "[0, inf)", "max_weight": "(0, inf)",
        "n_action_candidates": "[1, inf)", "temperature": "[0, inf)", "ema_power": "[0, inf)",
    }

    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden widths of the noise network, critics and value network."""
    rl: str = "td3"
    """``td3`` (Q-gradient through the approximated action) or ``iql`` (advantage weights)."""
    action_approx: bool = True
    """EDP's one-step action approximation; False: Diffusion-QL (back-propagate the chain)."""
    diffusion_steps: int = 100
    """K: steps of the diffusion process."""
    sampler: str = "dpm"
    """Fast sampler for targets and acting: ``dpm`` (DPM-Solver++ 2M) or ``ddim``."""
    inference_steps: int = 15
    """Sampling steps of the fast sampler."""
    actor_lr: float = 3e-4
    """Adam learning rate of the noise network."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics (and value network)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    n_critics: int = 2
    """Q ensemble size (one batched pass)."""
    eta: float = 1.0
    """td3: weight of the normalised Q term."""
    expectile: float = 0.7
    """iql: tau of the expectile value loss."""
    beta: float = 3.0
    """iql: inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """iql: clip of the advantage weights."""
    n_action_candidates: int = 10
    """Actions sampled per state when acting (1: no selection)."""
    temperature: float = 0.0
    """Softmax temperature of the selection over Q (0: argmax)."""
    ema_power: float = 0.75
    """EMA warm-up power of the acting / target-sampling noise network."""


@register_learner("edp")
class EDP(Learner):
    config: EDPConfig
    config_class = EDPConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        if c.rl not in RL_VARIANTS:
            raise ValueError(f"rl must be one of {RL_VARIANTS}, got {c.rl!r}")
        check_sampling(c, allowed=("dpm", "ddim"))  # the fast samplers
        self.nets["schedule"] = self.schedule = NoiseSchedule(c.diffusion_steps)  # buffers only, moved with the nets
        self.nets["encoder"] = enc = self.encoder()
        self.nets["noise"] = MLPNoiseNet(s.action_dim, 1, enc.out_dim, c.hidden)
        self.nets["critic"] = QEnsemble(c.n_critics, enc.out_dim, s.action_dim, c.hidden)
        critic_modules: list[torch.nn.Module] = [enc, self.nets["critic"]]
        if c.rl == "iql":
            self.nets["value"] = mlp(enc.out_dim, c.hidden, 1)
            critic_modules.append(self.nets["value"])
        for name in ("encoder", "critic", "noise"):
            self.nets[f"target_{name}" if name != "noise" else "ema_noise"] = copy.deepcopy(self.nets[name]).requires_grad_(False)
        self.optimizers["critic"] = self.adam(critic_modules, c.critic_lr)
        self.optimizers["actor"] = self.adam([self.nets["noise"]], c.actor_lr)
        self.ema = EMA(c.ema_power)
        self.sample_generator = torch.Generator().manual_seed(self.seed + 2)

    def _sample(self, net: torch.nn.Module, feat: torch.Tensor, full_chain: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        shape = (feat.shape[0], 1, self.spec.action_dim)
        if full_chain:
            return sample(net, feat, shape, self.schedule, "ddpm", generator=generator)[:, 0]
        return sample(net, feat, shape, self.schedule, c.sampler, c.inference_steps, generator)[:, 0]

    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        feat = self.encode(n["encoder"], batch)
        metrics: dict[str, torch.Tensor] = {}
        q = n["critic"](feat, batch["action"])  # (E, B)
        if c.rl == "td3":
            with torch.no_grad():
                next_target_feat = self.encode(n["target_encoder"], batch, next_=True)
                next_a = self._sample(n["ema_noise"], next_target_feat, full_chain=not c.action_approx)
                next_q = n["target_critic"](next_target_feat, next_a).min(0).values
                y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_q
            critic_loss = (q - y).pow(2).mean(1).sum()
            weight = None
        else:
            with torch.no_grad():
                target_q = n["target_critic"](self.encode(n["target_encoder"], batch), batch["action"]).min(0).values
                next_v = n["value"](self.encode(n["encoder"], batch, next_=True)).squeeze(-1)
                y = batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_v
            v = n["value"](feat.detach()).squeeze(-1)
            value_loss = expectile_loss(target_q - v, c.expectile)
            critic_loss = (q - y).pow(2).mean(1).sum() + value_loss
            weight = torch.exp(c.beta * (target_q - v.detach())).clamp(max=c.max_weight)
            metrics.update(value_loss=value_loss.detach(), v=v.detach().mean(), weight=weight.mean())
        self.step(self.optimizers["critic"], critic_loss)

        feat_d = feat.detach()
        diff_loss, aux = diffusion_loss(n["noise"], self.schedule, batch["action"][:, None], feat_d, weight)
        actor_loss = diff_loss
        if c.rl == "td3":
            if c.action_approx:
                a0 = self.schedule.predict_x0(aux["x_t"], aux["eps_pred"], aux["t"]).clamp(-1.0, 1.0)[:, 0]
            else:
                a0 = self._sample(n["noise"], feat_d, full_chain=True)
            with frozen(n["critic"]):
                q_new = n["critic"](feat_d, a0).min(0).values
                q_loss = -(c.eta / q_new.abs().mean().detach().clamp(min=1e-6)) * q_new.mean()
                actor_loss = diff_loss + q_loss
                self.step(self.optimizers["actor"], actor_loss)
            metrics["q_pi"] = q_new.detach().mean()
        else:
            self.step(self.optimizers["actor"], actor_loss)
        self.ema.update(n["ema_noise"], n["noise"], self.steps)
        soft_update(n["target_critic"], n["critic"], c.tau)
        soft_update(n["target_encoder"], n["encoder"], c.tau)
        self.steps += 1
        metrics.update(critic_loss=critic_loss.detach(), diffusion_loss=diff_loss.detach(), actor_loss=actor_loss.detach(), q=q.detach().mean())
        return metrics

    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        c, n = self.config, self.nets
        feat = n["encoder"](state, images)
        b, k = feat.shape[0], c.n_action_candidates
        feats = feat.repeat_interleave(k, dim=0)  # (B * k, F): candidates of one state are adjacent
        actions = self._sample(n["ema_noise"], feats, full_chain=False, generator=self.sample_generator)
        if k == 1:
            return actions
        q = n["critic"](feats, actions).min(0).values.view(b, k)
        if c.temperature > 0:
            choice = torch.multinomial(torch.softmax(q / c.temperature, dim=1).cpu(), 1, generator=self.sample_generator).squeeze(1).to(q.device)
        else:
            choice = q.argmax(1)
        return actions.view(b, k, -1)[torch.arange(b, device=q.device), choice]
