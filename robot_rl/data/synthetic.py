"""A synthetic point-mass reaching task that writes real stores with no simulator.

Used by the data-store demo, the store benchmarks and tests. It is honest synthetic
data (a 2-D point mass driven by a noisy proportional expert, optional top-down
"camera" frames drawn with numpy), not a stand-in for the MuJoCo/robosuite twin.

State (``obs.state``, ``state_dim`` >= 6): position (2, m), velocity (2, m/s),
goal (2, m), then zero padding. Action: acceleration command (2, m/s^2) in [-1, 1].
Success: within 5 cm of the goal before the episode ends.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from robot_rl.data.schema import KeySpec, StoreSchema
from robot_rl.data.writer import EpisodeWriter

DT = 0.05
GOAL_TOL = 0.05


def synthetic_schema(state_dim: int = 20, cameras: Sequence[str] = (), image_size: int = 64) -> StoreSchema:
    if state_dim < 6:
        raise ValueError("state_dim must be >= 6 (position, velocity, goal)")
    obs = {"state": KeySpec((state_dim,), "float32", units="m, m/s")}
    for cam in cameras:
        obs[f"image.{cam}"] = KeySpec((image_size, image_size, 3), "uint8")
    action = KeySpec((2,), "float32", units="m/s^2", names=("ax", "ay"), low=(-1.0, -1.0), high=(1.0, 1.0))
    return StoreSchema.build(obs=obs, action=action, fps=1.0 / DT, robot={"name": "synthetic_point_mass"})


class PointMassReach:
    """The task itself: ``reset(rng)``, ``step(action)``, ``expert_action(noise, rng)``."""

    def __init__(self, state_dim: int = 20, cameras: Sequence[str] = (), image_size: int = 64) -> None:
        self.state_dim, self.cameras, self.image_size = state_dim, tuple(cameras), image_size
        self.pos = np.zeros(2)
        self.vel = np.zeros(2)
        self.goal = np.zeros(2)

    def reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        self.pos = rng.uniform(-1, 1, 2)
        self.vel = np.zeros(2)
        self.goal = rng.uniform(-1, 1, 2)
        return self.observe()

    def observe(self) -> dict[str, np.ndarray]:
        state = np.zeros(self.state_dim, dtype=np.float32)
        state[:6] = np.concatenate([self.pos, self.vel, self.goal])
        obs = {"state": state}
        for i, cam in enumerate(self.cameras):
            obs[f"image.{cam}"] = self._render(i)
        return obs

    def _render(self, cam_index: int) -> np.ndarray:
        n = self.image_size
        img = np.full((n, n, 3), 40 + 20 * cam_index, dtype=np.uint8)
        for point, colour in ((self.goal, (40, 200, 40)), (self.pos, (220, 60, 40))):
            cx, cy = ((np.clip(point, -1.2, 1.2) + 1.2) / 2.4 * (n - 1)).astype(int)
            img[max(cy - 2, 0) : cy + 3, max(cx - 2, 0) : cx + 3] = colour
        return img

    def expert_action(self, noise: float, rng: np.random.Generator) -> np.ndarray:
        action = 4.0 * (self.goal - self.pos) - 2.0 * self.vel + noise * rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool]:
        self.vel = 0.95 * self.vel + DT * np.asarray(action, dtype=np.float64)
        self.pos = self.pos + DT * self.vel
        reached = bool(np.linalg.norm(self.goal - self.pos) < GOAL_TOL)
        return self.observe(), float(reached), reached


def write_synthetic_store(
    path: str | os.PathLike[str],
    episodes: int = 20,
    max_steps: int = 200,
    *,
    state_dim: int = 20,
    cameras: Sequence[str] = (),
    image_size: int = 64,
    noise: float = 0.3,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> None:
    """Roll out the noisy expert and write ``episodes`` episodes (source ``scripted``)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    task = PointMassReach(state_dim, cameras, image_size)
    schema = synthetic_schema(state_dim, cameras, image_size)
    defaults = {"source": "scripted", "task": "point_mass_reach", "robot": "synthetic_point_mass"}
    with EpisodeWriter(path, schema, defaults=defaults, overwrite=overwrite) as writer:
        for _ in tqdm(range(episodes), desc="episodes", disable=not progress):
            obs = task.reset(rng)
            success = False
            for t in range(max_steps):
                action = task.expert_action(noise, rng)
                next_obs, reward, reached = task.step(action)
                writer.add_step(obs, action, reward=reward, done=reached, timestamp=t * DT)
                obs = next_obs
                if reached:
                    success = True
                    break
            writer.end_episode(success=success)
