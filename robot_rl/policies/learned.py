"""A trained learner as a ``Policy`` over robot observations.

    policy = load_policy("runs/lift_bc/checkpoint")   # never unpickles
    policy.reset()
    action = policy.act(obs)    # obs: {name: array} as the robot's observation_spec names it

The policy keeps the last To observations (the episode's first repeated until To have
been seen), normalises with the statistics saved in the checkpoint, and returns the
action in the robot's units, shaped as its action spec.

Action chunks: a learner that predicts T actions at once (Diffusion Policy) fills a
queue with the first Ta (``exec_horizon``) of them; the next Ta - 1 calls pop the queue
without running the network (observations are still pushed into the history).
``reuse_chunks=False`` predicts at every step and executes only the first action.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from robot_rl.algos.base import Learner


class LearnedPolicy:
    def __init__(self, learner: Learner, reuse_chunks: bool = True) -> None:
        self.learner = learner
        self.reuse_chunks = reuse_chunks
        self.inferences = 0
        """Network evaluations so far (chunk reuse makes it fewer than ``act`` calls)."""
        self._queue: deque[np.ndarray] = deque()
        self.spec = learner.spec
        self.normalizer = learner.normalizer
        self._states: deque[np.ndarray] = deque(maxlen=self.spec.obs_horizon)
        self._images: deque[dict[str, np.ndarray]] = deque(maxlen=self.spec.obs_horizon)

    @property
    def obs_horizon(self) -> int:
        return self.spec.obs_horizon

    def reset(self) -> None:
        self._queue.clear()
        self._states.clear()
        self._images.clear()

    def _push(self, obs: dict[str, np.ndarray]) -> None:
        state = self.spec.state_vector(obs)
        if not np.all(np.isfinite(state)):
            raise ValueError(f"observation has non-finite values: {state}")
        images = {}
        for key in self.spec.image_keys:
            name = key.removeprefix("obs.")
            if name not in obs:
                raise KeyError(f"camera {name!r} is missing (the policy was trained on {self.spec.image_keys})")
            frame = np.asarray(obs[name])
            if frame.shape != self.spec.keys[key].shape or frame.dtype != np.uint8:
                raise ValueError(f"camera {name!r}: got {frame.shape} {frame.dtype}, trained on {self.spec.keys[key].shape} uint8")
            images[key] = frame
        if not self._states:  # episode start: repeat the first observation
            for _ in range(self.obs_horizon - 1):
                self._states.append(state)
                self._images.append(images)
        self._states.append(state)
        self._images.append(images)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self._push(obs)
        if not self._queue:
            dev = self.learner.device
            state = torch.from_numpy(self.normalizer.state(np.stack(self._states)))[None].to(dev)
            images = {k: torch.from_numpy(np.stack([f[k] for f in self._images]))[None].to(dev) for k in self.spec.image_keys}
            actions = self.learner.act(state, images or None)[0].cpu().numpy()
            self.inferences += 1
            if actions.ndim == 1:
                actions = actions[None]
            self._queue.extend(actions[: self.learner.exec_horizon if self.reuse_chunks else 1])
        return self.normalizer.unaction(self._queue.popleft())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.learner.state_dict()


def load_policy(path: str | Path, device: str = "cpu") -> LearnedPolicy:
    from robot_rl.algos.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device).learner.policy()
