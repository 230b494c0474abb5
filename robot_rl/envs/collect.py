"""Record scripted-expert episodes from a sim twin into an episode store.

The expert stands in for the human operator; its actions pass the same SafetyFilter
as teleop commands would, and the action recorded is the action that was sent.
Several noise levels in one call give mixed-quality data (like robomimic MH).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from robot_rl.data import EpisodeWriter, StoreSchema
from robot_rl.envs.robot_env import RobotEnv
from robot_rl.robots.base import SimRobot


def store_schema(robot: SimRobot, robot_name: str) -> StoreSchema:
    config = {k: v for k, v in dataclasses.asdict(robot.config).items()}
    return StoreSchema.build(
        obs=robot.observation_spec,
        action=robot.action_spec,
        fps=robot.config.fps,
        robot={"name": robot_name, "config": config},
    )


def collect_episodes(
    robot: SimRobot,
    robot_name: str,
    task: str,
    out: Path,
    episodes: int,
    noise: Sequence[float] = (0.0,),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[float, list[bool]]:
    """Write ``episodes`` episodes (noise levels round-robin); returns successes per noise."""
    env = RobotEnv(robot)
    results: dict[float, list[bool]] = defaultdict(list)
    defaults = {"source": "scripted", "task": task, "robot": robot_name}
    with EpisodeWriter(out, store_schema(robot, robot_name), defaults=defaults, overwrite=overwrite) as writer:
        bar = tqdm(range(episodes), desc=f"collect {task}", unit="episode", disable=not progress)
        for ep in bar:
            level = float(noise[ep % len(noise)])
            episode_seed = seed + ep
            expert = robot.scripted_expert(noise=level, seed=episode_seed)
            expert.reset()
            obs, _ = env.reset(seed=episode_seed)
            dt = 1.0 / robot.config.fps
            t = 0
            while True:
                next_obs, reward, terminated, truncated, info = env.step(expert.act(obs))
                writer.add_step(obs, info["action_sent"], reward=reward, done=terminated, timestamp=t * dt)
                obs, t = next_obs, t + 1
                if terminated or truncated:
                    break
            writer.end_episode(success=bool(info["success"]), noise=level, seed=episode_seed)
            results[level].append(bool(info["success"]))
            done = sum(sum(v) for v in results.values())
            bar.set_postfix(success=f"{done}/{ep + 1}")
    return dict(results)
