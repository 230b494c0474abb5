"""Deterministic episodes for store tests (content is a pure function of the episode index,
so a test can regenerate exactly what a killed writer was writing)."""

from __future__ import annotations

import numpy as np

from robot_rl.data import EpisodeWriter, KeySpec, StoreSchema

IMAGE = (24, 32, 3)


def small_schema(image: bool = True) -> StoreSchema:
    obs = {"joint_pos": KeySpec((7,), "float32", "rad", names=tuple(f"j{i}" for i in range(7)))}
    if image:
        obs["image.wrist"] = KeySpec(IMAGE, "uint8")
    return StoreSchema.build(obs=obs, action=KeySpec((7,), "float32", "rad"), fps=20.0, robot={"name": "test_arm"})


def episode_length(index: int) -> int:
    return 17 + (index * 37) % 45


def episode_data(index: int, image: bool = True) -> dict[str, np.ndarray]:
    """Flat step arrays ``{key: (T, ...)}`` for episode ``index``; no row is all zeros."""
    rng = np.random.default_rng(1000 + index)
    n = episode_length(index)
    data = {
        "obs.joint_pos": rng.uniform(-3, 3, (n, 7)).astype(np.float32) + 10.0,
        "action": rng.uniform(-1, 1, (n, 7)).astype(np.float32) + 5.0,
        "reward": np.linspace(0.1, 1.0, n, dtype=np.float32),
        "done": np.arange(n) == n - 1,
        "timestamp": 0.05 * np.arange(n) + 1.0,
    }
    if image:
        data["obs.image.wrist"] = rng.integers(1, 255, (n, *IMAGE), dtype=np.uint8)
    return data


def write_episode(writer: EpisodeWriter, index: int, image: bool = True, **meta) -> int:
    data = episode_data(index, image)
    for t in range(len(data["action"])):
        writer.add_step_dict({k: v[t] for k, v in data.items()})
    return writer.end_episode({"success": index % 3 != 0, "task": "lift" if index % 2 else "stack", **meta})


def write_store(path, n_episodes: int, image: bool = True, **writer_kwargs) -> None:
    with EpisodeWriter(path, small_schema(image), defaults={"source": "teleop"}, **writer_kwargs) as w:
        for i in range(n_episodes):
            write_episode(w, i, image)
