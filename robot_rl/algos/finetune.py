"""Offline-to-online fine-tuning: the learner side, shared by the Gymnasium path and ROS.

    config = FinetuneConfig(method="rlpd")
    tuner = Finetuner(build_learner(load_checkpoint(ckpt).learner, config), config, offline=data)
    action = tuner.explore(obs)                 # robot units; exploration per the method
    tuner.add(obs, action_sent, reward, next_obs, done)
    metrics = tuner.train(n_updates)            # UTD: the caller calls train(utd) per env step

Methods (``FinetuneConfig.method``), each a preset over one loop; every number is a
config field (``robot-rl finetune --set``):

======== ============================================================================
naive    the checkpoint's own learner (CQL or IQL) keeps training, online transitions
         appended to the offline data and sampled uniformly from the pool
ro2o     ``ensemble_sac`` warm-started from the checkpoint: target = mean - beta std over
         the Q-ensemble, adversarial state perturbations for policy / value smoothness
         and the OOD penalty (RO2O, terms from RORL), optimised on every batch, whose
         offline half keeps them optimised on the offline data; 50/50 offline / online
         (``offline_updates`` > 0 adds a phase of this loss on the offline data alone)
e2o      ``ensemble_sac``: the same penalised target with beta annealed from
         ``uncertainty_penalty`` to ``penalty_end`` over the online phase (pessimism
         loosened), UCB exploration over the ensemble (optimism), 50/50 sampling
rlpd     ``ensemble_sac``: LayerNorm critics, min over a random 2 of the ensemble,
         symmetric 50/50 offline / online batches (RLPD), same UTD as the others
wsrl     ``ensemble_sac``: ``warmup_steps`` environment steps with the pre-trained
         policy (no updates), then online RL on online data only (WSRL: no offline
         data retained)
======== ============================================================================

The ensemble methods need a checkpoint whose critics match ``ensemble_sac``'s: train
the offline CQL with ``n_critics=10 critic_layer_norm=true`` (the benchmark does).

Human interventions: transitions whose action came from a person (or a stand-in
expert) are added with ``source="intervention"``; they are counted, and also added to
the offline side of the sampler (RLPD-style methods then replay them at the offline
ratio; ``naive`` pools them like any transition).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.algos.base import Learner, make_learner
from robot_rl.algos.data import OfflineData

METHODS = ("naive", "ro2o", "e2o", "rlpd", "wsrl")

PRESETS: dict[str, dict[str, Any]] = {
    "naive": {},
    "ro2o": {
        "target": "penalty",
        "uncertainty_penalty": 1.0,
        "actor_penalty": 1.0,
        "smooth_eps": 0.05,
        "smooth_samples": 10,
        "value_smooth_weight": 0.1,
        "policy_smooth_weight": 0.1,
        "ood_weight": 0.1,
        "ood_beta": 1.0,
        "ood_samples": 2,
    },
    "e2o": {"target": "penalty", "uncertainty_penalty": 1.0, "explore": "ucb", "ucb_candidates": 10, "ucb_coef": 1.0},
    "rlpd": {"target": "min_subset", "subset_size": 2, "critic_layer_norm": True},
    "wsrl": {"target": "min_subset", "subset_size": 2, "critic_layer_norm": True},
}
"""``ensemble_sac`` config of each method (naive keeps the checkpoint's learner and config)."""


@dataclass
class FinetuneConfig:
    """How the online phase samples, updates and explores (method defaults in PRESETS / below)."""

    method: str = "rlpd"
    """One of METHODS."""
    utd: int = 2
    """Gradient updates per environment step (update-to-data ratio)."""
    batch_size: int = 256
    """Transitions per update (offline + online)."""
    offline_ratio: float | None = None
    """Share of each batch drawn from the offline data (None: 0.5; naive: pooled uniformly; wsrl: 0)."""
    warmup_steps: int | None = None
    """Environment steps with the pre-trained policy before any update (None: 1000 for wsrl, else 0)."""
    offline_updates: int | None = None
    """Updates on the offline data alone before going online (None: 0)."""
    penalty_end: float | None = None
    """e2o: the ensemble penalty at the end of the online phase (None: 0.1 for e2o; others: no annealing)."""
    buffer_size: int = 200_000
    """Online transitions kept (oldest dropped first)."""
    learner: dict[str, Any] = field(default_factory=dict)
    """Overrides of the learner config (over the method's preset)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"fine-tuning method {self.method!r} is not one of {METHODS}")
        if self.utd < 1 or self.batch_size < 2:
            raise ValueError("utd must be >= 1 and batch_size >= 2")
        if self.offline_ratio is not None and not 0.0 <= self.offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {self.offline_ratio}")

    @property
    def resolved_offline_ratio(self) -> float | None:
        """None means: pool offline and online transitions and sample uniformly."""
        if self.offline_ratio is not None:
            return self.offline_ratio
        return {"naive": None, "wsrl": 0.0}.get(self.method, 0.5)

    @property
    def resolved_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else (1000 if self.method == "wsrl" else 0)

    @property
    def resolved_offline_updates(self) -> int:
        return self.offline_updates if self.offline_updates is not None else 0

    @property
    def resolved_penalty_end(self) -> float | None:
        return self.penalty_end if self.penalty_end is not None else (0.1 if self.method == "e2o" else None)


class OnlineBuffer:
    """Online transitions, normalised like the offline data, in a ring of ``capacity``."""

    def __init__(self, capacity: int, state_dim: int, action_dim: int, device: str | torch.device = "cpu") -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.state = torch.zeros((capacity, 1, state_dim))
        self.next_state = torch.zeros((capacity, 1, state_dim))
        self.action = torch.zeros((capacity, action_dim))
        self.reward = torch.zeros(capacity)
        self.done = torch.zeros(capacity)
        self.size = 0
        self._next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, state: np.ndarray, action: np.ndarray, reward: float, next_state: np.ndarray, done: bool) -> None:
        i = self._next
        self.state[i, 0] = torch.as_tensor(state, dtype=torch.float32)
        self.next_state[i, 0] = torch.as_tensor(next_state, dtype=torch.float32)
        self.action[i] = torch.as_tensor(action, dtype=torch.float32)
        self.reward[i] = float(reward)
        self.done[i] = float(done)
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (n,), generator=generator)
        batch = {
            "state": self.state[idx],
            "next_state": self.next_state[idx],
            "action": self.action[idx],
            "next_action": self.action[idx],  # not used by the online learners; keeps the batch layout
            "reward": self.reward[idx],
            "done": self.done[idx],
        }
        return {k: v.to(self.device) for k, v in batch.items()}


def concat_batches(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    parts = [p for p in parts if p and next(iter(p.values())).shape[0] > 0]
    keys = ("state", "next_state", "action", "next_action", "reward", "done")
    return {k: torch.cat([p[k].float() for p in parts]) for k in keys}


class Finetuner:
    """A learner plus its online buffer and sampling rule; no environment, no ROS."""

    def __init__(
        self,
        learner: Learner,
        config: FinetuneConfig,
        offline: OfflineData | None,
        seed: int = 0,
        online_steps: int = 0,
    ) -> None:
        spec = learner.spec
        self.policy = ExplorationPolicy(learner, seed + 1)  # refuses cameras, frame stacks and chunks
        ratio = config.resolved_offline_ratio
        if offline is None and (ratio is None or ratio > 0):
            raise ValueError(f"method {config.method} samples offline data: pass the store the checkpoint was trained on")
        self.learner, self.config, self.offline = learner, config, offline
        self.normalizer = learner.normalizer
        self.spec = spec
        self.buffer = OnlineBuffer(config.buffer_size, spec.state_dim, spec.action_dim, learner.device)
        self.demos = OnlineBuffer(max(config.buffer_size // 10, 1000), spec.state_dim, spec.action_dim, learner.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.online_steps = online_steps
        self.env_steps = 0
        self.interventions = 0
        self.updates = 0
        self._start_penalty = float(getattr(learner, "uncertainty_penalty", 0.0))

    def explore(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """An exploratory action in robot units (the method's exploration). The deterministic
        policy is ``learner.policy()``."""
        return self.policy.act(obs)

    # ------------------------------------------------------------------ data
    def add(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, next_obs: dict[str, np.ndarray], done: bool, source: str = "policy") -> None:
        """One transition; ``action`` is what was sent (robot units), ``done`` a true terminal."""
        self.add_vectors(self.spec.state_vector(obs), action, reward, self.spec.state_vector(next_obs), done, source)

    def add_vectors(self, state: np.ndarray, action: np.ndarray, reward: float, next_state: np.ndarray, done: bool, source: str = "policy") -> None:
        """``add`` with the low-dim observations already concatenated (``spec.state_vector``), robot units."""
        if np.shape(state) != (self.spec.state_dim,) or np.shape(next_state) != (self.spec.state_dim,) or np.shape(action) != (self.spec.action_dim,):
            raise ValueError(f"a transition must have states of {self.spec.state_dim} and an action of {self.spec.action_dim} values")
        action_n = np.clip(self.normalizer.action(np.asarray(action, np.float32)[None])[0], -1.0, 1.0)
        s = self.normalizer.state(np.asarray(state, np.float32)[None])[0]
        s2 = self.normalizer.state(np.asarray(next_state, np.float32)[None])[0]
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(s2)) and np.all(np.isfinite(action_n)) and np.isfinite(reward)):
            raise ValueError("a transition with non-finite values: not added")
        self.buffer.add(s, action_n, reward, s2, done)
        if source == "intervention":
            self.interventions += 1
            self.demos.add(s, action_n, reward, s2, done)
        self.env_steps += 1

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        ratio = self.config.resolved_offline_ratio
        online = len(self.buffer)
        n_off_total = (len(self.offline) if self.offline is not None else 0) + len(self.demos)
        if ratio is None:  # pooled: each transition equally likely
            p = n_off_total / max(n_off_total + online, 1)
            n_off = int(torch.binomial(torch.tensor(float(n)), torch.tensor(p), generator=self.generator)) if online else n
        else:
            n_off = int(round(n * ratio)) if online else n
        if n_off_total == 0:
            n_off = 0
        parts = []
        if n_off:
            # interventions are replayed as demonstrations, in proportion to their number
            n_demo = int(round(n_off * len(self.demos) / n_off_total)) if len(self.demos) else 0
            if self.offline is not None and n_off - n_demo > 0:
                parts.append(self.offline.sample(n_off - n_demo, self.generator))
            if n_demo:
                parts.append(self.demos.sample(n_demo, self.generator))
        if n - n_off > 0:
            parts.append(self.buffer.sample(n - n_off, self.generator))
        return concat_batches(parts)

    # ------------------------------------------------------------------ updates
    def offline_phase(self, progress: bool = False) -> dict[str, float]:
        """The method's offline updates (ro2o), on the offline data alone."""
        metrics: dict[str, float] = {}
        for _ in range(self.config.resolved_offline_updates):
            assert self.offline is not None
            metrics = {k: float(v) for k, v in self.learner.update(concat_batches([self.offline.sample(self.config.batch_size, self.generator)])).items()}
            self.updates += 1
        return metrics

    @property
    def pending_updates(self) -> int:
        """Online updates the UTD ratio allows for the transitions so far, not yet done."""
        if self.warming_up or len(self.buffer) == 0:
            return 0
        online_updates = self.updates - self.config.resolved_offline_updates
        return (self.env_steps - self.config.resolved_warmup) * self.config.utd - online_updates

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One online gradient step on ``batch`` (from ``sample``), with the pessimism annealed to
        where the online phase is."""
        end = self.config.resolved_penalty_end
        if end is not None and hasattr(self.learner, "uncertainty_penalty") and self.online_steps > 0:
            frac = min(self.env_steps / self.online_steps, 1.0)
            self.learner.uncertainty_penalty = self._start_penalty + frac * (end - self._start_penalty)
        metrics = {k: float(v) for k, v in self.learner.update(batch).items()}
        self.updates += 1
        return metrics

    def train(self, n_updates: int) -> dict[str, float]:
        """``n_updates`` gradient steps on mixed batches (nothing while warming up)."""
        if self.warming_up or len(self.buffer) == 0:
            return {}
        sums: dict[str, float] = {}
        for _ in range(n_updates):
            for k, v in self.update(self.sample(self.config.batch_size)).items():
                sums[k] = sums.get(k, 0.0) + v
        return {k: v / n_updates for k, v in sums.items()}

    @property
    def warming_up(self) -> bool:
        return self.env_steps < self.config.resolved_warmup


@torch.no_grad()
def explore_action(learner: Learner, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """An exploratory normalised action ``(B, Da)`` for ``state`` ``(B, To, Ds)``: the learner's own
    ``explore`` (ensemble_sac: sampling or UCB), else a sample of its actor (CQL's tanh-Gaussian,
    IQL's Gaussian)."""
    if hasattr(learner, "explore"):
        return learner.explore(state, None, generator)
    actor, feat = learner.nets["actor"], learner.nets["encoder"](state, None)
    if hasattr(actor, "sample"):
        return actor.sample(feat)[0][0]
    mean = actor.mode(feat)
    return (mean + torch.randn(mean.shape, generator=generator) * actor.log_std.exp()).clamp(-1, 1)


class ExplorationPolicy:
    """A learner's exploratory actions as a Policy over robot observations (single-step, To = 1):
    what the fine-tuning actor runs."""

    def __init__(self, learner: Learner, seed: int = 0) -> None:
        spec = learner.spec
        if spec.image_keys or spec.obs_horizon != 1 or learner.action_horizon != 1:
            raise ValueError("online fine-tuning supports low-dim observations, obs_horizon 1 and single actions for now "
                             f"(this checkpoint: cameras {spec.image_keys}, obs_horizon {spec.obs_horizon}, "
                             f"action_horizon {learner.action_horizon})")  # fmt: skip
        self.learner, self.spec, self.normalizer = learner, learner.spec, learner.normalizer
        self.generator = torch.Generator().manual_seed(seed)
        self.inferences = 0

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = self.normalizer.state(self.spec.state_vector(obs)[None])[0]
        if not np.all(np.isfinite(state)):
            raise ValueError(f"observation has non-finite values: {state}")
        a = explore_action(self.learner, torch.from_numpy(state)[None, None].to(self.learner.device), self.generator)
        self.inferences += 1
        return self.normalizer.unaction(a[0].cpu().numpy())


def offline_data(checkpoint_config: dict[str, Any], source: Learner, config: FinetuneConfig, store: str | Path | None = None, device: str = "cpu") -> OfflineData | None:
    """The offline transitions a method samples (None for a method that keeps none), read from
    ``store`` or the store the checkpoint was trained on, with its reward scheme and normaliser."""
    if config.resolved_offline_ratio == 0.0 and config.resolved_offline_updates == 0:
        return None
    from robot_rl.data import EpisodeStore

    info = checkpoint_config.get("data", {})
    path = store or info.get("store")
    if not path:
        raise ValueError("the checkpoint does not record its training store: pass the offline store")
    return OfflineData(
        EpisodeStore(path), source.spec, info.get("rewards", "success"), float(info.get("reward_scale", 1.0)),
        float(info.get("reward_bias", 0.0)), normalizer=source.normalizer, device=device,
    )  # fmt: skip


def build_learner(source: Learner, config: FinetuneConfig, seed: int = 0, device: str = "cpu") -> Learner:
    """The learner that fine-tunes ``source`` under ``config.method``."""
    if config.method == "naive":
        if config.learner:
            unknown = set(config.learner) - {f.name for f in dataclasses.fields(source.config)}
            if unknown:
                raise ValueError(f"{source.name} has no config field(s) {sorted(unknown)}")
            for k, v in config.learner.items():
                setattr(source.config, k, v)
        return source
    from robot_rl.algos.ensemble_sac import warm_start

    overrides = {**PRESETS[config.method], **config.learner}
    src = source.config
    for name in ("hidden", "n_critics", "gamma", "batch_size"):
        if hasattr(src, name) and name not in config.learner:
            overrides.setdefault(name, getattr(src, name))
    # the critics keep the architecture and the target they were trained with (CQL: no entropy
    # term in the backup), so the first online updates do not start by moving the targets
    for name in ("critic_layer_norm", "backup_entropy"):
        if getattr(src, name, None) is not None and name not in config.learner:
            overrides[name] = getattr(src, name)
    overrides["batch_size"] = config.batch_size
    learner = make_learner("ensemble_sac", source.spec, source.normalizer, overrides, seed=seed, device=device)
    warm_start(learner, source)
    learner.steps = 0
    return learner
