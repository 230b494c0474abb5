"""Policies: anything with ``reset()`` and ``act(obs) -> action``.

Scripted experts (``robot_rl.sim``) and learned policies (later issues) share this
protocol, so the evaluation runner, data collection and the ROS policy node take any
of them. ``obs`` is ``{name: array}`` as the robot's ``observation_spec`` names it; the
action is one vector shaped as the robot's ``action_spec``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Forget per-episode state (action queues, phases of a scripted expert)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One action for the current observation."""
