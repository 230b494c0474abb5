"""The simulated arm behind the fake vendor SDKs (``fake_ur``, ``fake_franka``, ``fake_xarm``).

A ``SimulatedArm`` is what a robot controller is to its SDK: joints that move toward a
position target (or at a commanded velocity) no faster than the arm's own speed limit,
on a clock (``time.monotonic`` by default; tests give it a manual one), with forward
kinematics from the robot's published Denavit-Hartenberg parameters so the tool pose
moves with the joints. Each fake SDK module keeps one simulated controller per host
(``fake_ur.controller("10.0.0.2")``), as a real controller is one box that all of its
SDK connections talk to; tests set ``controller(host).arm.clock`` to a manual clock.

Fault injection (protective stops, reflexes, error codes) lives in each fake SDK module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (a [m], d [m], alpha [rad], theta offset [rad]) per joint
DH = tuple[tuple[float, float, float, float], ...]

# UR5e, standard DH (Universal Robots' published parameters)
UR5E_DH: DH = (
    (0.0, 0.1625, np.pi / 2, 0.0),
    (-0.425, 0.0, 0.0, 0.0),
    (-0.3922, 0.0, 0.0, 0.0),
    (0.0, 0.1333, np.pi / 2, 0.0),
    (0.0, 0.0997, -np.pi / 2, 0.0),
    (0.0, 0.0996, 0.0, 0.0),
)
# Franka Panda / FR3, modified (Craig) DH, then the flange (d = 0.107 m)
PANDA_MDH: DH = (
    (0.0, 0.333, 0.0, 0.0),
    (0.0, 0.0, -np.pi / 2, 0.0),
    (0.0, 0.316, np.pi / 2, 0.0),
    (0.0825, 0.0, np.pi / 2, 0.0),
    (-0.0825, 0.384, -np.pi / 2, 0.0),
    (0.0, 0.0, np.pi / 2, 0.0),
    (0.088, 0.0, np.pi / 2, 0.0),
)
PANDA_FLANGE = 0.107
# xArm6, modified DH (UFactory's kinematic parameters)
XARM6_MDH: DH = (
    (0.0, 0.267, 0.0, 0.0),
    (0.0, 0.0, -np.pi / 2, -1.3849),
    (0.28949, 0.0, 0.0, 1.3849),
    (0.0775, 0.3425, -np.pi / 2, 0.0),
    (0.0, 0.0, np.pi / 2, 0.0),
    (0.076, 0.097, -np.pi / 2, 0.0),
)


def fk_standard(q: np.ndarray, dh: DH) -> np.ndarray:
    """Forward kinematics with standard DH rows: (4, 4) base -> tool flange."""
    t = np.eye(4)
    for qi, (a, d, alpha, off) in zip(q, dh, strict=True):
        th = qi + off
        ct, st, ca, sa = np.cos(th), np.sin(th), np.cos(alpha), np.sin(alpha)
        link = [[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]]
        t = t @ np.array(link)
    return t


def fk_modified(q: np.ndarray, dh: DH, flange: float = 0.0) -> np.ndarray:
    """Forward kinematics with modified (Craig) DH rows, plus ``flange`` m along the last z."""
    t = np.eye(4)
    for qi, (a, d, alpha, off) in zip(q, dh, strict=True):
        th = qi + off
        ct, st, ca, sa = np.cos(th), np.sin(th), np.cos(alpha), np.sin(alpha)
        link = [[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa], [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]]
        t = t @ np.array(link)
    tool = np.eye(4)
    tool[2, 3] = flange
    return t @ tool


def rotvec_from_matrix(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) rotation vector (axis * angle), as UR controllers report poses."""
    angle = float(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:
        axis = np.sqrt(np.clip((np.diag(r) + 1) / 2, 0.0, None))
        axis[1] = np.copysign(axis[1], r[0, 1]) if axis[0] > 1e-6 else axis[1]
        axis[2] = np.copysign(axis[2], r[0, 2]) if axis[0] > 1e-6 else np.copysign(axis[2], r[1, 2])
        return axis * angle
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def rpy_from_matrix(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (roll, pitch, yaw) rad with R = Rz(yaw) Ry(pitch) Rx(roll) (xArm's convention)."""
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    roll = float(np.arctan2(r[2, 1], r[2, 2]))
    yaw = float(np.arctan2(r[1, 0], r[0, 0]))
    return np.array([roll, pitch, yaw])


@dataclass
class SimulatedArm:
    """A joint-space arm on a clock: position targets tracked at ``max_speed`` (rad/s per
    joint) or joint velocities held; joints stay inside ``[hw_low, hw_high]`` (the robot's
    hardware range). ``advance()`` integrates up to ``clock()``; every SDK call runs it."""

    q: np.ndarray
    max_speed: np.ndarray
    hw_low: np.ndarray
    hw_high: np.ndarray
    fk: Callable[[np.ndarray], np.ndarray]
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.q = np.asarray(self.q, np.float64).copy()
        self.dq = np.zeros_like(self.q)
        self.target: np.ndarray | None = None
        self.velocity: np.ndarray | None = None
        self.t = self.clock()
        self.commands = 0  # motion commands accepted (position targets and velocities)

    def advance(self) -> None:
        now = self.clock()
        dt = max(0.0, now - self.t)
        self.t = now
        if dt == 0.0:
            return
        old = self.q.copy()
        if self.target is not None:
            self.q = self.q + np.clip(self.target - self.q, -self.max_speed * dt, self.max_speed * dt)
        elif self.velocity is not None:
            self.q = self.q + np.clip(self.velocity, -self.max_speed, self.max_speed) * dt
        self.q = np.clip(self.q, self.hw_low, self.hw_high)
        self.dq = (self.q - old) / dt

    def move_to(self, q: Sequence[float]) -> None:
        self.advance()
        self.target, self.velocity = np.asarray(q, np.float64).copy(), None
        self.commands += 1

    def move_at(self, qd: Sequence[float]) -> None:
        self.advance()
        self.target, self.velocity = None, np.asarray(qd, np.float64).copy()
        self.commands += 1

    def halt(self) -> None:
        """Stop where the arm is (a stop category 2: no further motion)."""
        self.advance()
        self.target, self.velocity = None, None
        self.dq = np.zeros_like(self.q)

    def pose(self) -> np.ndarray:
        """(4, 4) tool pose in the base frame (m)."""
        self.advance()
        return self.fk(self.q)
