"""Offline training data: a store's episodes as normalised tensors and batches.

    spec = LearnerSpec.from_schema(store.schema, obs_keys=None, obs_horizon=1)
    data = OfflineData(store, spec, rewards="success")
    batch = data.sample(256, generator)

A batch (every tensor on ``data.device``, actions normalised to [-1, 1]):

    state       (B, To, Ds) float32   normalised low-dim keys, concatenated in spec order
    next_state  (B, To, Ds)
    images      {key: (B, To, H, W, C) uint8}, next_images likewise
    action      (B, Da)     float32   the action taken at s (the one that was sent)
    action_chunk (B, T, Da)           with ``action_horizon`` T > 1: the actions taken at
                                      s and the T - 1 steps after it; past the episode's
                                      end the last action repeats (Diffusion Policy's padding)
    next_action (B, Da)               the dataset action at s' (ReBRAC's critic penalty)
    reward      (B,)        float32   scaled: reward * reward_scale + reward_bias
    done        (B,)        float32   1 where nothing is bootstrapped from s'

Frame stacking: the To frames end at the sampled step and repeat the episode's first
step before it starts. Sampling is vectorised: one ``torch.randint`` and gathers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robot_rl.algos.normalize import Normalizer
from robot_rl.data.relabel import read_rewards, success_rewards
from robot_rl.data.sampler import TransitionSampler, load_episodes
from robot_rl.data.schema import KeySpec, StoreSchema
from robot_rl.data.store import EpisodeStore

REWARD_SCHEMES = ("store", "success")
"""``store``: the recorded ``reward`` / ``done`` keys. ``success``: sparse relabelling from
the episodes' success flags (:func:`robot_rl.data.relabel.success_rewards`). Any other
value names relabelled rewards written by ``robot-rl data relabel``."""


@dataclass
class LearnerSpec:
    """What a learner's networks are built for, and what a policy needs at run time.

    ``keys``: the observation keys used (``obs.<name>``) and ``action``, with their store
    specs; low-dim keys are concatenated in ``state_keys`` order.
    """

    keys: dict[str, KeySpec]
    state_keys: list[str]
    image_keys: list[str]
    obs_horizon: int = 1
    fps: float = 0.0
    robot: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_schema(cls, schema: StoreSchema, obs_keys: Sequence[str] | None = None, obs_horizon: int = 1) -> LearnerSpec:
        """``obs_keys`` (``obs.<name>`` or ``<name>``): default every low-dim key plus every camera."""
        if obs_horizon < 1:
            raise ValueError(f"obs_horizon must be >= 1, got {obs_horizon}")
        available = schema.obs_keys
        if obs_keys is None or len(obs_keys) == 0:
            chosen = list(available)
        else:
            chosen = [k if k.startswith("obs.") else f"obs.{k}" for k in obs_keys]
            missing = [k for k in chosen if k not in available]
            if missing:
                raise KeyError(f"observation keys {missing} are not in the store; it has {available}")
        specs = {k: schema.keys[k] for k in chosen}
        for k, s in specs.items():
            if not s.is_image and len(s.shape) > 1:
                raise ValueError(f"{k} has shape {s.shape}: low-dim keys must be scalars or vectors")
        action = schema.keys["action"]
        if len(action.shape) != 1:
            raise ValueError(f"action must be a vector, the store's is {action.shape}")
        return cls(
            keys={**specs, "action": action},
            state_keys=[k for k in chosen if not specs[k].is_image],
            image_keys=[k for k in chosen if specs[k].is_image],
            obs_horizon=obs_horizon,
            fps=schema.fps,
            robot=dict(schema.robot),
        )

    @property
    def state_dims(self) -> list[int]:
        return [int(np.prod(self.keys[k].shape)) if self.keys[k].shape else 1 for k in self.state_keys]

    @property
    def state_dim(self) -> int:
        return int(sum(self.state_dims))

    @property
    def action_dim(self) -> int:
        return int(self.keys["action"].shape[0])

    @property
    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.keys[k].shape for k in self.image_keys}

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": {k: s.to_json() for k, s in self.keys.items()},
            "state_keys": list(self.state_keys),
            "image_keys": list(self.image_keys),
            "obs_horizon": self.obs_horizon,
            "fps": self.fps,
            "robot": self.robot,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LearnerSpec:
        return cls(
            keys={k: KeySpec.from_json(v) for k, v in data["keys"].items()},
            state_keys=list(data["state_keys"]),
            image_keys=list(data["image_keys"]),
            obs_horizon=int(data["obs_horizon"]),
            fps=float(data.get("fps", 0.0)),
            robot=dict(data.get("robot", {})),
        )

    def check_robot(self, observation_spec: dict[str, KeySpec], action_spec: KeySpec) -> None:
        """Raise ValueError naming every key the robot lacks or shapes differently."""
        problems = []
        for key in self.state_keys + self.image_keys:
            name = key.removeprefix("obs.")
            want = self.keys[key]
            have = observation_spec.get(name)
            if have is None:
                problems.append(f"{key}: the robot has no observation {name!r} (it has {sorted(observation_spec)})")
            elif have.shape != want.shape:
                problems.append(f"{key}: trained on shape {want.shape}, the robot gives {have.shape}")
            elif want.names and have.names and want.names != have.names:
                problems.append(f"{key}: trained on elements {want.names}, the robot gives {have.names}")
        want_a = self.keys["action"]
        if action_spec.shape != want_a.shape:
            problems.append(f"action: trained on shape {want_a.shape}, the robot takes {action_spec.shape}")
        elif want_a.names and action_spec.names and want_a.names != action_spec.names:
            problems.append(f"action: trained on {want_a.names}, the robot takes {action_spec.names}")
        if problems:
            raise ValueError("checkpoint does not match this robot:\n  " + "\n  ".join(problems))

    def state_vector(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Concatenate one step's low-dim observations (robot-style names, no ``obs.``)."""
        parts = []
        for key in self.state_keys:
            name = key.removeprefix("obs.")
            if name not in obs:
                raise KeyError(f"observation {name!r} is missing (the policy was trained on {self.state_keys})")
            value = np.asarray(obs[name], dtype=np.float32).reshape(-1)
            if value.size != (int(np.prod(self.keys[key].shape)) if self.keys[key].shape else 1):
                raise ValueError(f"observation {name!r} has {value.size} elements, expected shape {self.keys[key].shape}")
            parts.append(value)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class OfflineData:
    """A store's transitions as tensors, sampled in batches (see the module docstring).

    ``with_next``: False keeps every step, including the last of a truncated episode
    (behaviour cloning needs no s'); True drops those (no recorded s').
    """

    def __init__(
        self,
        store: EpisodeStore,
        spec: LearnerSpec,
        rewards: str = "store",
        reward_scale: float = 1.0,
        reward_bias: float = 0.0,
        episodes: Sequence[int] | np.ndarray | None = None,
        with_next: bool = True,
        normalizer: Normalizer | None = None,
        device: str | torch.device = "cpu",
        progress: bool = False,
        action_horizon: int = 1,
    ) -> None:
        if action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
        if len(store) == 0:
            raise ValueError(f"{store.path} has no committed episodes to train on")
        keys = spec.state_keys + spec.image_keys + ["action", "done", "reward"]
        relabelled = read_rewards(store, rewards) if rewards not in REWARD_SCHEMES else None
        arrays = load_episodes(store, keys=keys, episodes=episodes, progress=progress)
        if arrays.n_steps == 0:
            raise ValueError("the selected episodes have no steps")
        records = store.records
        success = np.array([bool(records[int(i)].get("success", False)) for i in arrays.episodes])
        reward = np.asarray(arrays.data["reward"], dtype=np.float32).reshape(-1)
        done = np.asarray(arrays.data["done"], dtype=bool).reshape(-1)
        if rewards == "success":
            reward, done = success_rewards(arrays.ends, success, done)
        elif relabelled is not None:
            rows = np.concatenate([np.arange(*store.bounds(int(i))) for i in arrays.episodes])
            reward, done = relabelled[0][rows], relabelled[1][rows]
        arrays.data["done"] = done
        for name, values in (("reward", reward), ("action", arrays.data["action"])):
            if not np.all(np.isfinite(values)):
                bad = int(np.argwhere(~np.isfinite(np.asarray(values).reshape(len(values), -1)))[0, 0])
                ep = int(arrays.episodes[np.searchsorted(arrays.ends, bad, side="right")])
                raise ValueError(f"{name} has non-finite values (first at episode {ep}): fix or drop that episode")

        state = np.concatenate(
            [np.asarray(arrays.data[k], dtype=np.float32).reshape(arrays.n_steps, -1) for k in spec.state_keys], axis=1
        ) if spec.state_keys else np.zeros((arrays.n_steps, 0), np.float32)  # fmt: skip
        if not np.all(np.isfinite(state)):
            raise ValueError("observations have non-finite values: run `robot-rl data verify` and drop the bad episodes")
        action = np.asarray(arrays.data["action"], dtype=np.float32)
        self.normalizer = normalizer or Normalizer.fit(state, action)
        self.spec = spec
        self.device = torch.device(device)
        self.episodes = arrays.episodes
        self.n_steps = arrays.n_steps
        self.n_episodes = len(arrays.episodes)
        self.success_rate = float(success.mean()) if success.size else 0.0

        sampler = TransitionSampler(arrays, obs_keys=[], drop_truncated_last=with_next)
        start_of_row = np.repeat(arrays.starts, np.diff(np.concatenate([[0], arrays.ends])))
        t = spec.obs_horizon
        offsets = np.arange(t, dtype=np.int64) - (t - 1)
        rows, nxt = sampler.rows, sampler.next_rows
        self._rows = np.maximum(rows[:, None] + offsets, start_of_row[rows][:, None])
        self._next_rows = np.maximum(nxt[:, None] + offsets, start_of_row[nxt][:, None])
        self.action_horizon = action_horizon
        if action_horizon > 1:
            last_of_row = np.repeat(arrays.ends - 1, np.diff(np.concatenate([[0], arrays.ends])))
            chunk = np.minimum(rows[:, None] + np.arange(action_horizon), last_of_row[rows][:, None])
            self._chunk_rows_t = torch.from_numpy(chunk).to(device)
        dev = self.device
        self._rows_t = torch.from_numpy(self._rows).to(dev)
        self._next_rows_t = torch.from_numpy(self._next_rows).to(dev)
        self._state = torch.from_numpy(self.normalizer.state(state)).to(dev)
        self._action = torch.from_numpy(self.normalizer.action(action)).to(dev)
        self._reward = torch.from_numpy(reward * np.float32(reward_scale) + np.float32(reward_bias)).to(dev)
        self._done = torch.from_numpy(sampler.dones).to(dev)
        self._images = {k: arrays.data[k] for k in spec.image_keys}

    def __len__(self) -> int:
        return int(self._rows_t.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
        idx = torch.randint(0, len(self), (batch_size,), generator=generator).to(self.device)
        return self.get(idx)

    def get(self, idx: torch.Tensor) -> dict[str, Any]:
        rows, nrows = self._rows_t[idx], self._next_rows_t[idx]
        row, nrow = rows[:, -1], nrows[:, -1]  # the sampled step ends its frame stack
        batch: dict[str, Any] = {
            "state": self._state[rows],
            "next_state": self._state[nrows],
            "action": self._action[row],
            "next_action": self._action[nrow],
            "reward": self._reward[row],
            "done": self._done[idx],
        }
        if self.action_horizon > 1:
            batch["action_chunk"] = self._action[self._chunk_rows_t[idx]]
        if self._images:
            r_np, n_np = rows.cpu().numpy(), nrows.cpu().numpy()
            batch["images"] = {k: torch.from_numpy(np.ascontiguousarray(v[r_np])).to(self.device) for k, v in self._images.items()}
            batch["next_images"] = {k: torch.from_numpy(np.ascontiguousarray(v[n_np])).to(self.device) for k, v in self._images.items()}
        return batch
