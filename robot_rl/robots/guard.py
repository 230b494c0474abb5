"""A Robot behind its SafetyFilter: the code path shared by the Gymnasium env and the
ROS robot node. Every command goes through ``command()``; ``tick()`` enforces the
command timeout and the e-stop; what ``send_action`` returned is what gets logged."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.robots.base import Obs, Robot
from robot_rl.safety import FilterResult, SafetyFilter


class GuardedRobot:
    def __init__(self, robot: Robot, clock: Callable[[], float] = time.monotonic) -> None:
        self.robot = robot
        self.filter = SafetyFilter(robot.config.safety_limits(), self._hold_fn, clock=clock)
        self.last_obs: Obs | None = None
        self.last_sent: np.ndarray | None = None

    def _hold_fn(self, obs: Obs | None) -> np.ndarray:
        if obs is None:
            obs = self.observe()
        return np.asarray(self.robot.hold_action(obs), dtype=np.float64)

    def observe(self) -> Obs:
        self.last_obs = self.robot.get_observation()
        return self.last_obs

    def command(self, requested: Any, fresh: bool = True, received_at: float | None = None) -> tuple[np.ndarray, FilterResult]:
        """Filter ``requested`` and send the result; returns (action actually sent, decision).

        ``fresh=False``: re-apply the last received command (it does not reset the timeout).
        ``received_at``: when the command arrived (on the filter's clock; default now).
        """
        obs = self.last_obs if self.last_obs is not None else self.observe()
        result = self.filter.filter(requested, obs, fresh=fresh, received_at=received_at)
        return self._send(result), result

    def tick(self) -> tuple[np.ndarray, FilterResult] | None:
        """Hold the robot if commands went stale or the e-stop is latched (call every period)."""
        obs = self.last_obs if self.last_obs is not None else self.observe()
        result = self.filter.tick(obs)
        if result is None:
            return None
        return self._send(result), result

    def _send(self, result: FilterResult) -> np.ndarray:
        sent = np.asarray(self.robot.send_action(result.action.astype(self.robot.action_spec.np_dtype)))
        self.last_sent = sent
        return sent

    def estop(self) -> None:
        self.filter.estop()

    def reset_estop(self) -> None:
        self.filter.reset_estop()
