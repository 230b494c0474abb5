"""The Robot interface: one small ABC for sim twins and real drivers alike.

A robot is a registered config dataclass plus a class (see ``registry.py``). Specs
reuse the store's ``KeySpec`` so a robot's observations and actions map one-to-one
onto store keys: ``StoreSchema.build(obs=robot.observation_spec, action=robot.action_spec, fps=...)``.

Observations are ``{name: array}`` with the names of ``observation_spec`` (``joint_pos``,
``eef_pos``, ``image.agentview``...). Actions are one float vector shaped as
``action_spec``; every action passes the ``SafetyFilter`` (``robot_rl.safety``) built
from ``config.safety_limits()`` before ``send_action``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.policies import Policy
from robot_rl.safety import SafetyLimits

Obs = dict[str, np.ndarray]


@dataclass
class RobotConfig:
    """Base of every robot config. Subclasses add their own fields (ports, limits...).

    Attributes:
        fps: control rate in Hz; one ``send_action`` per period.
    """

    name: ClassVar[str] = ""
    fps: float = 20.0

    def safety_limits(self) -> SafetyLimits:
        """Command limits for the SafetyFilter, from this config (never from a policy)."""
        raise NotImplementedError


class Robot(ABC):
    """A robot arm or mobile base, real or simulated.

    Lifecycle: ``connect()`` -> ``get_observation()`` / ``send_action()`` at ``config.fps``
    -> ``stop()`` (hold or brake) -> ``disconnect()``.
    """

    config: RobotConfig

    def __init__(self, config: RobotConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def observation_spec(self) -> dict[str, KeySpec]:
        """Name -> spec of every observation (shapes, dtypes, units, names, limits)."""

    @property
    @abstractmethod
    def action_spec(self) -> KeySpec:
        """Spec of the action vector (names and units per element, low/high)."""

    @property
    def is_mobile_base(self) -> bool:
        return self.config.safety_limits().mode == "base_velocity"

    @abstractmethod
    def connect(self) -> None: ...

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def get_observation(self) -> Obs: ...

    @abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command the robot; return the action actually sent (after the device's own clipping)."""

    @abstractmethod
    def hold_action(self, obs: Obs) -> np.ndarray:
        """The command that holds the robot still given ``obs`` (arm: current pose or a
        zero delta; base: zero velocity). Used on timeouts, e-stop and rejected commands."""

    def stop(self) -> None:
        """Hold (arm) or brake (base) now."""
        self.send_action(self.hold_action(self.get_observation()))

    @abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self) -> Robot:
        if not self.is_connected:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_connected:
            self.disconnect()


class SimRobot(Robot):
    """A simulated robot with its task: adds reset, reward, success and failure.

    ``send_action`` advances the simulation by one control period (1 / fps).
    """

    @abstractmethod
    def reset(self, seed: int | None = None) -> Obs:
        """Start a new episode (deterministic for a given seed); returns the first observation."""

    @abstractmethod
    def reward(self) -> float:
        """Task reward for the state reached by the last ``send_action``."""

    @abstractmethod
    def is_success(self) -> bool:
        """Whether the task reports success now."""

    def is_failure(self) -> bool:
        """Whether the episode failed irrecoverably (e.g. a collision); ends the episode."""
        return False

    def task_info(self) -> dict[str, Any]:
        """Extra per-step facts worth logging (object poses, distances...)."""
        return {}

    @property
    def max_episode_steps(self) -> int:
        """Episode length limit (config field ``max_steps`` when the config has one)."""
        return int(getattr(self.config, "max_steps", 500))

    def scripted_expert(self, noise: float = 0.0, seed: int | None = None) -> Policy:
        """A scripted expert for this task (stands in for a human operator).

        ``noise`` is the skill knob: 0 is the best the script does; larger values add
        Gaussian action noise (std in normalised action units) and mistakes, giving
        mixed-quality data with some failures.
        """
        raise NotImplementedError(f"{type(self).__name__} has no scripted expert")
