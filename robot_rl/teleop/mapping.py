"""Pure mapping helpers shared by the human teleop devices (no hardware, no ROS).

A device picks the action layout it drives from the robot's action spec names
(``action_layout``), computes a normalised command ``u`` in [-1, 1] per element and
scales it onto the robot's action range with ``to_action``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robot_rl.data.schema import KeySpec

EE_DELTA = ("dx", "dy", "dz", "dax", "day", "daz", "gripper")
"""End-effector delta arms (the sim arm's ``ee_delta`` mode): normalised, gripper -1 open +1 closed."""
BASE = ("v", "omega")
"""Mobile bases: linear (m/s) and angular (rad/s) velocity."""
LAYOUTS = {"ee_delta": EE_DELTA, "base": BASE}


def action_layout(spec: KeySpec, device: str, supported: Sequence[str]) -> str:
    """The layout (a key of LAYOUTS) whose element names are exactly ``spec.names``."""
    names = tuple(spec.names or ())
    for layout in supported:
        if names == LAYOUTS[layout]:
            return layout
    drives = "; ".join(f"{layout} {LAYOUTS[layout]}" for layout in supported)
    raise ValueError(f"the {device} device drives {drives}; this robot's action elements are {names}")


def joint_indices(spec: KeySpec) -> list[int]:
    """Indices of the action's ``joint_*`` elements (joint-position arms), in order; [] when there are none."""
    return [i for i, name in enumerate(spec.names or ()) if str(name).startswith("joint_")]


def to_action(u: np.ndarray, spec: KeySpec) -> np.ndarray:
    """Normalised ``u`` (D,) -> the action range: +1 -> high, -1 -> low, 0 -> 0.

    Layouts in LAYOUTS have low < 0 < high per element, so 0 means "no motion".
    Without limits in the spec, ``u`` is the action. Returns float64 (D,).
    """
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    if spec.low is None or spec.high is None:
        return u
    return np.where(u >= 0.0, u * np.asarray(spec.high), -u * np.asarray(spec.low))


def deadzone(x: np.ndarray | float, width: float) -> np.ndarray:
    """Zero for |x| <= width; outside, rescaled so the output still spans [-1, 1] with no jump."""
    if not 0.0 <= width < 1.0:
        raise ValueError(f"deadzone {width} must be in [0, 1)")
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    return np.sign(x) * np.clip((np.abs(x) - width) / (1.0 - width), 0.0, 1.0)


def rising_edges(previous: Sequence[bool], current: Sequence[bool]) -> list[int]:
    """Indices of buttons down now and up at the previous read: a held button fires once."""
    return [i for i, down in enumerate(current) if down and not (i < len(previous) and previous[i])]
