"""Teleoperation devices (no ROS here): ``get_action(obs)`` and episode ``events()``.

A device is a registered class; the ROS teleop node (``robot_rl/ros/teleop_node.py``)
hosts any of them, publishes its actions as commands and turns its events into
robot / recorder service calls. Events:

    reset    (sim twins) reset the scene
    start    start recording an episode
    success  stop, label success, commit
    failure  stop, label failure, commit
    discard  drop the episode in progress
    intervene  toggle: a human takes over from a policy / gives control back (teleop
               node with ``mode:=intervene``, online fine-tuning)
    quit     the device is done (the node exits)

Devices: ``scripted`` and ``scripted_rescue`` (below), ``keyboard``, ``gamepad``, ``spacemouse``, ``leader_arm``
(one module each; their hardware libraries are imported only when a device is made).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

EVENTS = ("reset", "start", "success", "failure", "discard", "intervene", "quit")

_DEVICES: dict[str, type[Teleop]] = {}
# Devices in their own modules; importing the module registers the device.
_MODULES = {name: f"robot_rl.teleop.{name}" for name in ("keyboard", "gamepad", "spacemouse", "leader_arm")}


def register_teleop(name: str) -> Callable[[type[Teleop]], type[Teleop]]:
    def wrap(cls: type[Teleop]) -> type[Teleop]:
        _DEVICES[name] = cls
        return cls

    return wrap


def available_teleops() -> list[str]:
    return sorted(set(_DEVICES) | set(_MODULES))


def make_teleop(name: str, **kwargs: Any) -> Teleop:
    if name not in _DEVICES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _DEVICES:
        raise KeyError(f"unknown teleop device {name!r}; available: {available_teleops()}")
    return _DEVICES[name](**kwargs)


class Teleop(ABC):
    usage: str = ""
    """One line for the operator: the device's keys or buttons (the teleop node logs it)."""

    @abstractmethod
    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The operator's command for this observation, or None to send nothing."""

    @abstractmethod
    def events(self) -> list[str]:
        """Episode events since the last call (names from EVENTS)."""

    def observe_task(self, reward: float, success: bool, failure: bool) -> None:
        """Task feedback from a sim twin (used by the scripted expert to end episodes)."""

    def close(self) -> None:
        """Release the device (restore the terminal, close the port)."""


@register_teleop("scripted")
class ScriptedTeleop(Teleop):
    """The sim twin's scripted expert standing in for a human operator (CI, demos).

    Runs ``episodes`` episodes: reset, start, act until the task reports success or
    failure or ``max_steps`` pass, then label and commit; then quits.

    Experts may plan on privileged scene state (the base's obstacle map), so the device
    keeps its own copy of the twin in step with the robot node's: episode k is reset
    with seed ``seed + k + 1``, as the robot node's ``reset`` service does (its ``seed``
    parameter must equal this one; both default to 0).
    """

    def __init__(self, robot: str, robot_config: dict[str, Any] | None = None, episodes: int = 1, noise: float = 0.0, seed: int = 0, max_steps: int = 0) -> None:
        from robot_rl.robots import SimRobot, make_robot

        sim = make_robot(robot, **(robot_config or {}))
        if not isinstance(sim, SimRobot):
            raise TypeError(f"{robot} has no scripted expert (not a sim twin)")
        self._sim = sim
        self.max_steps = max_steps or sim.max_episode_steps
        self.episodes, self.noise, self.seed = episodes, noise, seed
        self.done_episodes = 0
        self._events: list[str] = []
        self.active = False
        if episodes > 0:
            self._begin()
        else:
            self._events.append("quit")

    def _begin(self) -> None:
        episode_seed = self.seed + self.done_episodes + 1
        if not self._sim.is_connected:
            self._sim.connect()
        self._sim.reset(episode_seed)
        self._expert = self._sim.scripted_expert(noise=self.noise, seed=episode_seed)
        self._expert.reset()
        self.steps = 0
        self._events += ["reset", "start"]
        self.active = True

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        if not self.active:
            return None
        self.steps += 1
        if self.steps > self.max_steps:
            self._finish("failure")
            return None
        return np.asarray(self._expert.act(obs), dtype=np.float64)

    def observe_task(self, reward: float, success: bool, failure: bool) -> None:
        if self.active and (success or failure):
            self._finish("success" if success else "failure")

    def _finish(self, label: str) -> None:
        self.active = False
        self.done_episodes += 1
        self._events.append(label)
        if self.done_episodes >= self.episodes:
            self._events.append("quit")
            return
        self._begin()

    def events(self) -> list[str]:
        out, self._events = self._events, []
        return out


@register_teleop("scripted_rescue")
class ScriptedRescue(Teleop):
    """A stand-in for a supervisor watching a policy (tests, benchmarks): after ``after``
    steps of an episode without success, the scripted expert takes over (one ``intervene``
    event) until the next reset. For the teleop node's ``mode:=intervene`` and for
    ``robot_rl.envs.online.run_online``. ``robot``: a registered name, or a SimRobot (its
    scripted expert is used; nothing is stepped).
    """

    usage = "takes over an episode that ran `after` steps"

    def __init__(self, robot: Any, robot_config: dict[str, Any] | None = None, after: int = 100, seed: int = 0) -> None:
        from robot_rl.robots import SimRobot, make_robot

        sim = make_robot(robot, **(robot_config or {})) if isinstance(robot, str) else robot
        if not isinstance(sim, SimRobot):
            raise TypeError(f"{robot} has no scripted expert (not a sim twin)")
        self._sim, self.after, self.seed = sim, after, seed
        self.steps = 0
        self.intervening = False
        self._events: list[str] = []
        self.on_reset(seed)

    def on_reset(self, seed: int) -> None:
        """A new episode (the robot node announced a reset): hand control back to the policy."""
        self._expert = self._sim.scripted_expert(noise=0.0, seed=seed)
        self._expert.reset()
        self.steps = 0
        if self.intervening:
            self.intervening = False
            self._events.append("intervene")

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        self.steps += 1
        if not self.intervening and self.steps > self.after:
            self.intervening = True
            self._events.append("intervene")
        return np.asarray(self._expert.act(obs), dtype=np.float64)

    def events(self) -> list[str]:
        out, self._events = self._events, []
        return out

