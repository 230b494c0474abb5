"""A Gymnasium env over any Robot, through the same GuardedRobot (SafetyFilter) path
the ROS robot node uses.

    env = RobotEnv(make_robot("sim_lift"))
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    info["success"], info["action_sent"], info["safety"]

Episodes terminate on task success or failure (a collision), and are truncated at the
robot's ``max_episode_steps``. For a real robot (not a ``SimRobot``) pass ``reset_fn``
(e.g. wait for the operator) and ``success_fn``; reward is then 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, Robot, SimRobot
from robot_rl.robots.guard import GuardedRobot


def spec_space(spec: KeySpec) -> spaces.Box:
    if spec.is_image:
        return spaces.Box(0, 255, spec.shape, np.uint8)
    low = np.array(spec.low, dtype=spec.np_dtype) if spec.low is not None else np.full(spec.shape, -np.inf, spec.np_dtype)
    high = np.array(spec.high, dtype=spec.np_dtype) if spec.high is not None else np.full(spec.shape, np.inf, spec.np_dtype)
    return spaces.Box(low, high, spec.shape, spec.np_dtype)


class RobotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        robot: Robot,
        max_steps: int | None = None,
        reset_fn: Callable[[Robot], Obs] | None = None,
        success_fn: Callable[[Obs], bool] | None = None,
    ) -> None:
        if not isinstance(robot, SimRobot) and reset_fn is None:
            raise TypeError(f"{type(robot).__name__} is not a SimRobot: pass reset_fn (and success_fn) for a real robot")
        self.robot = robot
        if not robot.is_connected:
            robot.connect()
        self.max_steps = max_steps or (robot.max_episode_steps if isinstance(robot, SimRobot) else 1000)
        self.reset_fn, self.success_fn = reset_fn, success_fn
        self.observation_space = spaces.Dict({k: spec_space(s) for k, s in robot.observation_spec.items()})
        self.action_space = spec_space(robot.action_spec)
        self.guard = GuardedRobot(robot)
        self._t = 0
        self._obs: Obs | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31 - 1))
        if isinstance(self.robot, SimRobot):
            obs = self.robot.reset(seed)
        else:
            assert self.reset_fn is not None
            obs = self.reset_fn(self.robot)
        self.guard = GuardedRobot(self.robot)  # fresh filter state per episode
        self.guard.last_obs = obs
        self._t = 0
        self._obs = obs
        return obs, {"success": False, "seed": seed}

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        sent, decision = self.guard.command(action)
        obs = self.guard.observe()
        self._obs = obs
        self._t += 1
        if isinstance(self.robot, SimRobot):
            reward, success, failure = self.robot.reward(), self.robot.is_success(), self.robot.is_failure()
            extra = self.robot.task_info()
        else:
            reward, failure, extra = 0.0, False, {}
            success = bool(self.success_fn(obs)) if self.success_fn else False
        info = {
            "success": success,
            "failure": failure,
            "action_sent": sent,
            "safety": decision.reasons,
            "accepted": decision.accepted,
            **extra,
        }
        return obs, float(reward), bool(success or failure), self._t >= self.max_steps, info

    def render(self) -> np.ndarray | None:
        if self._obs is None:
            return None
        for key, value in self._obs.items():
            if key.startswith("image."):
                return value
        return None

    def close(self) -> None:
        if self.robot.is_connected:
            self.robot.disconnect()
