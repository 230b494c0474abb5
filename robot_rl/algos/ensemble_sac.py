"""Ensemble SAC: the learner of uncertainty-regularised offline-to-online fine-tuning
(RLPD, RO2O, E2O and WSRL are presets of its config), and :func:`warm_start`, which
starts it from a CQL checkpoint."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.base import CRITIC_LIMITS, OPTIMISER_LIMITS, Learner, LearnerConfig, register_learner
from robot_rl.algos.nets import QEnsemble, TanhGaussianActor, frozen, soft_update

TARGETS = ("min_subset", "penalty")
EXPLORE = ("sample", "ucb")
ACTOR_Q = ("mean", "min")


@dataclass
class EnsembleSACConfig(LearnerConfig):
    """Soft actor-critic on an E-member Q ensemble (one batched pass), the common core of
    RLPD (Ball, Smith, Kostrikov & Levine 2023, "Efficient Online Reinforcement Learning
    with Offline Data"), RO2O ("Towards Robust Offline-to-Online Reinforcement Learning via
    Uncertainty and Smoothness"), E2O ("Improving Offline-to-Online Reinforcement Learning
    with Q-Ensembles", ensemble-based offline-to-online RL) and WSRL (Zhou et al. 2024,
    "Efficient Online Reinforcement Learning Fine-Tuning Need Not Retain Offline Data";
    the warm-up and the data mixing are the fine-tuning loop's, not the learner's)::

        y    = r + gamma (1 - d) [ T(Q'(s', a')) (- alpha log pi(a' | s') if backup_entropy) ],  a' ~ pi(. | s')
        T    = min_{j in J} Q'_j                        target="min_subset": J a random subset of subset_size
                                                         members, drawn fresh each update (RLPD / REDQ)
             = mean_j Q'_j - beta std_j Q'_j            target="penalty" (RO2O / E2O; std over members,
                                                         population form; beta = the ``uncertainty_penalty``
                                                         attribute, which a fine-tuning loop may anneal)
        L_Q  = sum_i E (Q_i(s, a) - y)^2 + w_V L_V + w_O L_O
        L_pi = E [ alpha log pi(a | s) - A_i Q_i(s, a) + lambda std_i Q_i(s, a) ] + w_P L_P,  a ~ pi(. | s)
               (A = mean or min over members: ``actor_q``; lambda = ``actor_penalty``)
        L_alpha = -E log_alpha (log pi(a | s) + target_entropy)

    Smoothness (RO2O, after RORL: Yang et al. 2022, "RORL: Robust Offline Reinforcement
    Learning via Conservative Smoothing"), on when ``smooth_eps`` > 0: K = ``smooth_samples``
    perturbations ``delta ~ U[-eps, eps]`` of each normalised state window ``s`` (B, To, Ds)
    (camera features are kept: only the low-dim state is perturbed), s~ = s + delta::

        L_V = E_s max_delta mean_i (Q_i(s~, a) - sg Q_i(s, a))^2                 (value smoothness)
        L_P = E_s max_delta || tanh mu(s~) - tanh mu(s) ||^2                     (policy smoothness, on the actor's
                                                                                 mean action, the one it deploys)
        L_O = E_{s~, i} (Q_i(s~, a~) - sg[Q_i(s~, a~) - ood_beta std_j Q_j(s~, a~)])^2,  a~ ~ pi(. | s~)
                                                                                 (RORL's OOD penalty: pushes Q down
                                                                                 where the members disagree)

    The max over delta is taken per state (the adversarial sample of each state, picked
    without autograd; only it is differentiated, which is the max's gradient at B rows
    instead of K B); L_V averages over members where the TD term sums them. L_P has no stop-gradient (unlike
    L_V): the gradient of both ends is the gradient of the actor's sensitivity, and with
    the clean end stopped the actor got more sensitive as w_P grew. (sg: stop-gradient.)

    Exploration (``explore()``, for collecting online data): ``sample`` draws a ~ pi(. | s);
    ``ucb`` draws ``ucb_candidates`` actions from pi and takes the argmax of
    ``mean_i Q_i + ucb_coef std_i Q_i`` (E2O's optimistic exploration). ``act()`` is the
    deterministic ``tanh(mu)`` (evaluation, deployment).

    Presets (the rest at their defaults): RLPD ``target=min_subset, subset_size=2,
    n_critics=10, critic_layer_norm=True``; RO2O ``target=penalty`` with ``smooth_eps`` and
    the three weights; E2O ``target=penalty`` with the penalty loosened online and
    ``explore=ucb``; WSRL the RLPD critic without offline data in the batches.
    """

    limits: ClassVar[dict[str, str]] = {
        **OPTIMISER_LIMITS, **CRITIC_LIMITS, "temp_lr": "[0, inf)", "init_temperature": "(0, inf)",
        "uncertainty_penalty": "[0, inf)", "actor_penalty": "[0, inf)", "smooth_eps": "[0, inf)",
        "smooth_samples": "[1, inf)", "value_smooth_weight": "[0, inf)", "policy_smooth_weight": "[0, inf)",
        "ood_weight": "[0, inf)", "ood_beta": "[0, inf)", "ood_samples": "[0, inf)", "ucb_candidates": "[1, inf)",
    }

    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics (and the camera encoders)."""
    temp_lr: float = 3e-4
    """Adam learning rate of the entropy temperature."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha."""
    target_entropy: float | None = None
    """Entropy the temperature aims for (None: -Da)."""
    n_critics: int = 10
    """Q ensemble size E (one batched pass)."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden layer of the critics (RLPD)."""
    target: str = "min_subset"
    """Ensemble reduction in the TD target: ``min_subset`` (RLPD/REDQ) or ``penalty`` (mean - beta std; RO2O/E2O)."""
    subset_size: int = 2
    """Members in the random subset of ``min_subset`` (E: the minimum over all)."""
    uncertainty_penalty: float = 1.0
    """beta of the ``penalty`` target (the initial value of the learner's ``uncertainty_penalty`` attribute)."""
    backup_entropy: bool = True
    """Subtract alpha log pi(a' | s') in the critic target (SAC's soft backup)."""
    actor_q: str = "mean"
    """The actor maximises the ``mean`` or the ``min`` over members."""
    actor_penalty: float = 0.0
    """lambda: the actor also minimises lambda * the members' std of Q(s, a)."""
    smooth_eps: float = 0.0
    """L-infinity radius of the state perturbations, in normalised state units (0: smoothness off)."""
    smooth_samples: int = 10
    """K: perturbations sampled per state; the adversarial one is the one with the largest loss."""
    value_smooth_weight: float = 0.0
    """w_V: weight of the value-smoothness loss (critic)."""
    policy_smooth_weight: float = 0.0
    """w_P: weight of the policy-smoothness loss (actor)."""
    ood_weight: float = 0.0
    """w_O: weight of the OOD penalty on perturbed states and policy actions (critic)."""
    ood_beta: float = 1.0
    """Std multiple the OOD penalty pushes Q down by."""
    ood_samples: int = 0
    """Perturbed states per state in the OOD penalty (0: all K; fewer: the first ones, for speed on a CPU)."""
    explore: str = "sample"
    """Exploration of ``explore()``: ``sample`` from pi, or ``ucb`` over candidates from pi."""
    ucb_candidates: int = 10
    """Candidate actions drawn from pi for ``ucb``."""
    ucb_coef: float = 1.0
    """Weight of the members' std in the ``ucb`` score."""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"ensemble_sac.{name} must be one of {list(allowed)}, got {value!r}")


@register_learner("ensemble_sac")
class EnsembleSAC(Learner):
    config: EnsembleSACConfig
    config_class = EnsembleSACConfig

    def build(self) -> None:
        c, s = self.config, self.spec
        self._validate()
        self.nets["encoder"] = enc = self.encoder()
        if c.smooth_eps > 0 and enc.state_dim == 0:
            raise ValueError("ensemble_sac.smooth_eps > 0 perturbs the low-dim state, and this learner has none (cameras only)")
        self.nets["actor"] = TanhGaussianActor(enc.out_dim, s.action_dim, c.hidden)
        self.nets["critic"] = QEnsemble(c.n_critics, enc.out_dim, s.action_dim, c.hidden, layer_norm=c.critic_layer_norm)
        self.nets["target_critic"] = copy.deepcopy(self.nets["critic"])
        self.nets["target_encoder"] = copy.deepcopy(enc)
        self.nets["target_critic"].requires_grad_(False)
        self.nets["target_encoder"].requires_grad_(False)
        scalars = nn.Module()
        scalars.log_alpha = nn.Parameter(torch.tensor(math.log(c.init_temperature)))
        self.nets["scalars"] = scalars
        self.optimizers["critic"] = self.adam([enc, self.nets["critic"]], c.critic_lr)
        self.optimizers["actor"] = self.adam([self.nets["actor"]], c.actor_lr)
        self.optimizers["temperature"] = torch.optim.Adam([scalars.log_alpha], lr=c.temp_lr)
        self.target_entropy = -float(s.action_dim) if c.target_entropy is None else float(c.target_entropy)
        # beta of the ``penalty`` target, read at every update: a fine-tuning loop may anneal it (E2O loosens pessimism online)
        self.uncertainty_penalty = float(c.uncertainty_penalty)

    def _validate(self) -> None:
        c = self.config
        _choice("target", c.target, TARGETS)
        _choice("explore", c.explore, EXPLORE)
        _choice("actor_q", c.actor_q, ACTOR_Q)
        if not 1 <= c.subset_size <= c.n_critics:
            raise ValueError(f"ensemble_sac.subset_size must be in [1, n_critics={c.n_critics}], got {c.subset_size}")
        if c.target_entropy is not None and (isinstance(c.target_entropy, bool) or not isinstance(c.target_entropy, (int, float))):
            raise ValueError(f"ensemble_sac.target_entropy must be a number or None (-Da), got {c.target_entropy!r}")
        weights = {n: getattr(c, n) for n in ("value_smooth_weight", "policy_smooth_weight", "ood_weight") if getattr(c, n) > 0}
        if weights and c.smooth_eps == 0:
            raise ValueError(f"ensemble_sac {weights} have no effect with smooth_eps=0: set smooth_eps > 0 (e.g. 0.01)")

    # ----------------------------------------------------------------- targets
    def ensemble_target(self, q: torch.Tensor) -> torch.Tensor:
        """Reduce target-critic values ``(E, B)`` over members per ``target`` -> ``(B,)``.
        ``min_subset`` draws its subset here (global RNG), fresh at every call."""
        if self.config.target == "penalty":
            return q.mean(0) - self.uncertainty_penalty * q.std(0, unbiased=False)
        idx = torch.randperm(q.shape[0], device=q.device)[: self.config.subset_size]
        return q[idx].min(0).values

    @torch.no_grad()
    def target_values(self, batch: dict[str, Any]) -> torch.Tensor:
        """The TD target ``y`` ``(B,)`` of a batch (draws a' ~ pi(. | s') from the global RNG)."""
        c, n = self.config, self.nets
        next_a, next_logp = n["actor"].sample(self.encode(n["encoder"], batch, next_=True))
        next_q = self.ensemble_target(n["target_critic"](self.encode(n["target_encoder"], batch, next_=True), next_a[0]))
        if c.backup_entropy:
            next_q = next_q - n["scalars"].log_alpha.exp() * next_logp[0]
        return batch["reward"] + c.gamma * (1.0 - batch["done"]) * next_q

    # -------------------------------------------------------------- smoothness
    @property
    def smoothing(self) -> bool:
        c = self.config
        return c.smooth_eps > 0 and (c.value_smooth_weight > 0 or c.policy_smooth_weight > 0 or c.ood_weight > 0)

    def perturbed_features(self, feat: torch.Tensor, state: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Features of the states ``state + delta`` (``delta`` ``(K, B, To, Ds)``) with the
        cameras' features of ``feat`` ``(B, F)`` kept -> ``(K * B, F)``, sample-major.

        Equal to running the encoder on the perturbed state with the same (augmented)
        images, without running the conv encoders K more times: ``ObsEncoder``'s features
        are ``[state.flatten(1), camera features...]`` and its state part has no weights.
        """
        k = delta.shape[0]
        n_state = self.nets["encoder"].state_dim
        perturbed = (state.unsqueeze(0) + delta).flatten(2)  # (K, B, To * Ds)
        cameras = feat[:, n_state:].unsqueeze(0).expand(k, -1, -1)
        return torch.cat([perturbed, cameras], dim=-1).flatten(0, 1)

    @staticmethod
    def adversarial(pert_feat: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Per state, the perturbed features ``(K * B, F)`` of the sample with the largest
        ``loss`` ``(K, B)`` -> ``(B, F)`` (differentiable in ``pert_feat``)."""
        k, b = loss.shape
        return pert_feat.reshape(k, b, -1)[loss.argmax(0), torch.arange(b, device=loss.device)]

    def sample_deltas(self, state: torch.Tensor) -> torch.Tensor:
        """K uniform perturbations in the L-infinity ball of radius ``smooth_eps``: ``(K, B, To, Ds)``."""
        c = self.config
        return (torch.rand((c.smooth_samples, *state.shape), dtype=state.dtype, device=state.device) * 2 - 1) * c.smooth_eps

    # ------------------------------------------------------------------ update
    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, n = self.config, self.nets
        scal = n["scalars"]
        feat = self.encode(n["encoder"], batch)
        b = feat.shape[0]
        k = c.smooth_samples
        alpha = scal.log_alpha.exp().detach()
        y = self.target_values(batch)

        # every critic evaluation with a gradient in one batched pass: data, adversarial perturbation, OOD
        feats, actions = [feat], [batch["action"]]
        pert_feat = None
        if self.smoothing:
            pert_feat = self.perturbed_features(feat, batch["state"], self.sample_deltas(batch["state"]))
            if c.value_smooth_weight > 0:
                with torch.no_grad():  # the max over delta: only the argmax sample carries a gradient, so only it gets one
                    q_k = n["critic"](torch.cat([feat, pert_feat]), batch["action"].repeat(k + 1, 1))  # (E, (K + 1) B)
                    gap = (q_k[:, b:].reshape(-1, k, b) - q_k[:, :b].unsqueeze(1)).pow(2).mean(0)  # (K, B): mean over members
                feats.append(self.adversarial(pert_feat, gap))
                actions.append(batch["action"])
            if c.ood_weight > 0:
                ood_feat = pert_feat if not 0 < c.ood_samples < k else pert_feat.reshape(k, b, -1)[: c.ood_samples].reshape(c.ood_samples * b, -1)
                with torch.no_grad():
                    ood_a = n["actor"].sample(ood_feat.detach())[0][0]
                feats.append(ood_feat)
                actions.append(ood_a)
        q_all = n["critic"](torch.cat(feats), torch.cat(actions))  # (E, rows)
        q, q_rest = q_all[:, :b], q_all[:, b:]
        td_loss = (q - y).pow(2).mean(1).sum()
        critic_loss = td_loss
        metrics: dict[str, torch.Tensor] = {}
        if c.value_smooth_weight > 0 and pert_feat is not None:
            q_adv, q_rest = q_rest[:, :b], q_rest[:, b:]
            value_smooth = (q_adv - q.detach()).pow(2).mean()
            critic_loss = critic_loss + c.value_smooth_weight * value_smooth
            metrics["value_smooth"] = value_smooth.detach()
        if c.ood_weight > 0 and pert_feat is not None:
            ood_target = (q_rest - c.ood_beta * q_rest.std(0, unbiased=False)).detach()
            ood_loss = (q_rest - ood_target).pow(2).mean()
            critic_loss = critic_loss + c.ood_weight * ood_loss
            metrics["ood_loss"] = ood_loss.detach()
        self.step(self.optimizers["critic"], critic_loss)

        feat_d = feat.detach()
        a, logp = n["actor"].sample(feat_d)
        with frozen(n["critic"]):
            q_pi_all = n["critic"](feat_d, a[0])  # (E, B)
            q_pi = q_pi_all.mean(0) if c.actor_q == "mean" else q_pi_all.min(0).values
            if c.actor_penalty > 0:
                q_pi = q_pi - c.actor_penalty * q_pi_all.std(0, unbiased=False)
            actor_loss = (alpha * logp[0] - q_pi).mean()
            if c.policy_smooth_weight > 0 and pert_feat is not None:
                pert_d = pert_feat.detach()
                with torch.no_grad():
                    modes_k = n["actor"].mode(torch.cat([feat_d, pert_d]))
                    gap = (modes_k[b:].reshape(k, b, -1) - modes_k[:b]).pow(2).sum(-1)  # (K, B)
                # both ends differentiated: with a stop-gradient on the clean end the step drags tanh mu(s) along
                # with tanh mu(s~) and, for large weights, made the actor *more* sensitive (tests/test_ensemble_sac.py)
                modes = n["actor"].mode(torch.cat([feat_d, self.adversarial(pert_d, gap)]))
                policy_smooth = (modes[b:] - modes[:b]).pow(2).sum(-1).mean()
                actor_loss = actor_loss + c.policy_smooth_weight * policy_smooth
                metrics["policy_smooth"] = policy_smooth.detach()
            self.step(self.optimizers["actor"], actor_loss)
        temp_loss = -(scal.log_alpha * (logp[0].detach() + self.target_entropy)).mean()
        self.step(self.optimizers["temperature"], temp_loss)
        soft_update(n["target_critic"], n["critic"], c.tau)
        soft_update(n["target_encoder"], n["encoder"], c.tau)
        self.steps += 1
        q_d = q.detach()
        return {
            "critic_loss": critic_loss.detach(),
            "td_loss": td_loss.detach(),
            "q": q_d.mean(),
            "q_std": q_d.std(0, unbiased=False).mean(),
            "target_q": y.mean(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
            **metrics,
        }

    # --------------------------------------------------------------- actions
    @torch.no_grad()
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.nets["actor"].mode(self.nets["encoder"](state, images))

    @torch.no_grad()
    def explore(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exploration action ``(B, Da)``, normalised, per ``config.explore``. The Gaussian
        noise comes from ``generator`` (on its own device; None: the global RNG)."""
        c, n = self.config, self.nets
        feat = n["encoder"](state, images)
        k = c.ucb_candidates if c.explore == "ucb" else 1
        candidates = self.sample_actions(feat, k, generator)  # (K, B, Da)
        if c.explore == "sample":
            return candidates[0]
        qs = n["critic"](feat, candidates)  # (E, K, B)
        score = qs.mean(0) + c.ucb_coef * qs.std(0, unbiased=False)
        best = score.argmax(0)  # (B,)
        return candidates[best, torch.arange(feat.shape[0], device=feat.device)]

    def sample_actions(self, feat: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` actions ``tanh(mu + sigma eps)`` per state from the actor, ``(n, B, Da)``, with
        ``eps`` from ``generator`` (``TanhGaussianActor.sample`` draws from the global RNG)."""
        mu, log_std = self.nets["actor"]._dist(feat)
        device = generator.device if generator is not None else mu.device
        eps = torch.randn((n, *mu.shape), generator=generator, dtype=mu.dtype, device=device).to(mu.device)
        return torch.tanh(mu + log_std.exp() * eps)


CORE_NETS = ("encoder", "actor", "critic")
TARGET_NETS = {"target_critic": "critic", "target_encoder": "encoder"}


def warm_start(target: Learner, source: Learner) -> list[str]:
    """Start ``target`` (an ``ensemble_sac`` learner) from ``source`` (e.g. a loaded CQL
    checkpoint's learner): copy every tensor of ``source.state_dict()`` whose name the
    target has (encoder, actor, critic, target_critic, target_encoder, scalars.log_alpha);
    returns the copied names. Nothing is copied unless all of it fits:

    - ``source`` must have an encoder, an actor and a critic, built for the same
      observation keys and action, with the same normalizer (build the target with
      ``source.normalizer``), and their tensors must have the target's names and shapes
      (ValueError naming the tensor; e.g. a critic-count or LayerNorm mismatch says what
      to pretrain with);
    - a target net the source lacks (``target_critic``, ``target_encoder``) starts as a
      copy of its online net; a source tensor the target lacks (CQL's
      ``scalars.log_cql_weight``) is ignored.

    Optimiser state, ``steps`` and the target's ``uncertainty_penalty`` are left as they are.
    """
    missing = [name for name in CORE_NETS if name not in source.nets]
    if missing:
        raise ValueError(f"cannot warm-start from {source.name!r}: it has no {missing} (it has {sorted(source.nets)})")
    s_spec, t_spec = source.spec, target.spec
    for what, a, b in (
        ("state keys", s_spec.state_keys, t_spec.state_keys),
        ("camera keys", s_spec.image_keys, t_spec.image_keys),
        ("obs_horizon", s_spec.obs_horizon, t_spec.obs_horizon),
        ("key shapes", {k: v.shape for k, v in s_spec.keys.items()}, {k: v.shape for k, v in t_spec.keys.items()}),
    ):
        if a != b:
            raise ValueError(f"cannot warm-start: the checkpoint was trained with {what} {a}, the fine-tuning learner has {b}")
    if source.normalizer.to_json() != target.normalizer.to_json():
        raise ValueError(
            "cannot warm-start: the fine-tuning learner's normalizer differs from the checkpoint's; build it with the checkpoint's normalizer"
        )

    src = source.state_dict()
    dst = target.nets.state_dict()
    for net in (*CORE_NETS, *(t for t in TARGET_NETS if t in source.nets)):
        s_names = {k for k in src if k.startswith(f"{net}.")}
        t_names = {k for k in dst if k.startswith(f"{net}.")}
        if s_names != t_names:
            hint = ""
            if net.endswith("critic"):
                s_ln, t_ln = getattr(source.config, "critic_layer_norm", False), getattr(target.config, "critic_layer_norm", False)
                if s_ln != t_ln:
                    hint = f": the checkpoint has critic_layer_norm={s_ln}, the fine-tuning config {t_ln}: pretrain with critic_layer_norm={t_ln}"
            raise ValueError(
                f"cannot warm-start {net}: tensors only in the checkpoint {sorted(s_names - t_names)[:4]}, "
                f"only in the fine-tuning learner {sorted(t_names - s_names)[:4]}{hint}"
            )
    copied = [name for name in src if name in dst]
    for name in copied:
        have, want = tuple(src[name].shape), tuple(dst[name].shape)
        if have == want:
            continue
        hint = ""
        if name.split(".")[0].endswith("critic") and have[0] != want[0]:
            hint = f": the checkpoint has {have[0]} critics, the fine-tuning config {want[0]}: pretrain with n_critics={want[0]}"
        elif getattr(source.config, "hidden", None) != getattr(target.config, "hidden", None):
            hint = f": hidden {source.config.hidden} in the checkpoint, {target.config.hidden} in the fine-tuning config"
        raise ValueError(f"cannot warm-start: tensor {name} has shape {have} in the checkpoint, {want} in the fine-tuning learner{hint}")
    with torch.no_grad():
        for name in copied:
            dst[name].copy_(src[name])
        for tnet, online in TARGET_NETS.items():
            if tnet not in source.nets and tnet in target.nets:
                target.nets[tnet].load_state_dict(target.nets[online].state_dict())
    return copied
