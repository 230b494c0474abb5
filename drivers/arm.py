"""What the UR, Franka and xArm drivers share: the config fields, the specs, the last-line
clip, fault bookkeeping, the lazy vendor-SDK import and rotation conversions.

Every arm driver speaks the same action and observation language:

- action ``(n + 1,)`` float32 (``n`` without a gripper): absolute joint targets (rad),
  then the gripper in ``[0, 1]`` (0 open, 1 closed);
- observations: ``joint_pos`` (n,) rad, ``joint_vel`` (n,) rad/s, ``eef_pos`` (3,) m and
  ``eef_quat`` (4,) (x, y, z, w) of the tool in the robot base frame, ``gripper_pos`` (1,)
  in [0, 1] when a gripper is configured, and ``fault`` (1,): 1.0 while the robot is in a
  state where it will not move (protective stop, reflex, controller error), else 0.0.

``send_action`` never sends a non-finite command (it raises ``ValueError``) and clips every
command to the config's joint bounds and to ``joint_velocity / fps`` around the measured
joints, whoever calls it; it returns exactly what was sent. While the robot reports a
fault it sends nothing and returns the hold action (the measured pose): the robot is not
moving, and the log says why and what to do (``robot.fault`` holds the text).
"""

from __future__ import annotations

import importlib
import logging
from abc import abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, Robot, RobotConfig
from robot_rl.safety import SafetyLimits

log = logging.getLogger(__name__)


@dataclass
class ArmConfig(RobotConfig):
    """Fields every arm driver has (subclasses set the defaults for their robot).

    Attributes:
        host: IP address or hostname of the robot controller (required unless ``fake``).
        fake: drive the package's fake of the vendor SDK instead of a robot (tests, dry runs).
        fps: control rate in Hz: one command per period.
        joint_low, joint_high: joint position bounds (rad), one per joint; keep them inside
            the robot's own safety limits.
        joint_velocity: maximum joint speed (rad/s) per joint, enforced per tick.
        max_delta: maximum change of a joint target per tick (rad).
        command_timeout: s without a new command before the robot holds its pose.
        gripper: whether a gripper is driven (adds the last action element and ``gripper_pos``).
        joint_calibration: id of a joint-offset calibration (``robot-rl calibrate joints --id ID``;
            ``ID`` for the latest version, ``ID/vN`` to pin one): observations are reported as
            ``sign * (raw - offset)`` and commands converted back before they are sent; "" = none.
    """

    joint_names: ClassVar[tuple[str, ...]] = ()
    host: str = ""
    fake: bool = False
    fps: float = 100.0
    joint_low: tuple[float, ...] = ()
    joint_high: tuple[float, ...] = ()
    joint_velocity: tuple[float, ...] = ()
    max_delta: float = 0.05
    command_timeout: float = 0.2
    gripper: bool = True
    joint_calibration: str = ""

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for field_name in ("joint_low", "joint_high", "joint_velocity"):
            value = getattr(self, field_name)
            if len(value) != n:
                joints = ", ".join(self.joint_names)
                raise ValueError(f"{self.name}: {field_name} needs {n} values (one per joint: {joints}), got {value!r}")
        if not (isinstance(self.max_delta, (int, float)) and np.isfinite(self.max_delta) and self.max_delta > 0):
            raise ValueError(f"{self.name}: max_delta must be a positive number (rad per tick), got {self.max_delta!r}")

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def safety_limits(self) -> SafetyLimits:
        grip = 1 if self.gripper else 0
        return SafetyLimits(
            mode="joint_position",
            low=(*self.joint_low, *(0.0,) * grip),
            high=(*self.joint_high, *(1.0,) * grip),
            max_delta=(self.max_delta,) * self.n_joints + (1.0,) * grip,
            dt=1.0 / self.fps,
            command_timeout=self.command_timeout,
            joint_velocity=self.joint_velocity,
        )

    def require_host(self) -> str:
        """The host to connect to; ValueError with the fix when none is set."""
        if not self.host and not self.fake:
            raise ValueError(
                f"{self.name}: no robot address: set the config field host, e.g. "
                f"robot_config:='{{\"host\": \"192.168.1.10\"}}' (or {{\"fake\": true}} to try it without a robot)"
            )
        return self.host or f"fake-{self.name}"


def import_sdk(modules: tuple[str, ...], extra: str, robot: str) -> tuple[ModuleType, ...]:
    """Import a vendor SDK's modules; ImportError naming the extra to install when missing."""
    try:
        return tuple(importlib.import_module(m) for m in modules)
    except ImportError as exc:
        raise ImportError(
            f"the {robot} driver needs {' and '.join(modules)} ({exc}): pip install 'robot-rl[{extra}]' "
            f"(or try it without a robot: robot_config:='{{\"fake\": true}}')"
        ) from exc


class ArmRobot(Robot):
    """Base of the arm drivers: specs, command checks and fault handling.

    Subclasses implement ``connect``/``disconnect``/``is_connected``, ``_read`` (one state
    read), ``_fault_now`` (the robot's fault, or None), ``_command`` (send one clipped
    target) and ``clear_fault``.
    """

    config: ArmConfig

    def __init__(self, config: ArmConfig) -> None:
        super().__init__(config)
        self.fault: str | None = None
        self._logged_fault: str | None = None
        self.joint_calibration = None  # a calibration.joints.JointCalibration when config.joint_calibration is set
        if config.joint_calibration:
            from robot_rl.calibration.joints import load_joint_calibration

            cal = load_joint_calibration(config.joint_calibration)
            if tuple(cal.names) != tuple(config.joint_names):
                raise ValueError(
                    f"{config.name}: joint calibration {config.joint_calibration!r} is for joints {list(cal.names)}, "
                    f"this arm has {list(config.joint_names)}"
                )
            self.joint_calibration = cal

    # ------------------------------------------------------------------ specs
    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        names = c.joint_names
        vel = tuple(float(v) for v in c.joint_velocity)
        unit = {"low": (0.0,), "high": (1.0,)}
        spec = {
            "joint_pos": KeySpec((c.n_joints,), "float32", "rad", names=names, low=c.joint_low, high=c.joint_high),
            "joint_vel": KeySpec((c.n_joints,), "float32", "rad/s", names=names, low=tuple(-v for v in vel), high=vel),
            "eef_pos": KeySpec((3,), "float32", "m", names=("x", "y", "z")),
            "eef_quat": KeySpec(
                (4,), "float32", "1 (unit quaternion)", names=("qx", "qy", "qz", "qw"), low=(-1.0,) * 4, high=(1.0,) * 4
            ),
            "fault": KeySpec((1,), "float32", "1 (1: robot stopped by a fault)", names=("fault",), **unit),
        }
        if c.gripper:
            spec["gripper_pos"] = KeySpec((1,), "float32", "1 (0 open, 1 closed)", names=("gripper",), **unit)
        return spec

    @property
    def action_spec(self) -> KeySpec:
        lim = self.config.safety_limits()
        names = self.config.joint_names + (("gripper",) if self.config.gripper else ())
        units = "rad" + (", 1 (gripper: 0 open, 1 closed)" if self.config.gripper else "")
        return KeySpec((lim.size,), "float32", units, names=names, low=lim.low, high=lim.high)

    # ------------------------------------------------------------------ device hooks
    @abstractmethod
    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """One state read: (q (n,) rad, dq (n,) rad/s, eef_pos (3,) m, eef_quat (4,) xyzw, gripper 0..1)."""

    @abstractmethod
    def _fault_now(self) -> str | None:
        """What keeps the robot from moving now (with what to do about it), or None."""

    @abstractmethod
    def _command(self, q: np.ndarray, gripper: float | None, q_measured: np.ndarray) -> bool:
        """Send one joint target (rad) and gripper target (0..1, None without a gripper);
        False when the controller refused it (nothing moves)."""

    @abstractmethod
    def clear_fault(self) -> bool:
        """Try to clear the robot's fault (where the robot allows it from here); True when clear."""

    def _gripper_command(self, g: float) -> float:
        """The gripper command (0..1) this gripper actually gets for ``g`` (e.g. on/off grippers: 0 or 1)."""
        return g

    def _require_connected(self) -> None:
        if not self.is_connected:
            where = self.config.host or "fake"
            raise RuntimeError(f"{self.config.name} at {where} is not connected: call connect() first")

    def _read_calibrated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """``_read`` with the joint calibration applied (positions and, by its sign, velocities)."""
        q, dq, pos, quat, grip = self._read()
        if self.joint_calibration is not None:
            q = self.joint_calibration.to_calibrated(q)
            dq = np.asarray(self.joint_calibration.signs) * dq
        return q, dq, pos, quat, grip

    # ------------------------------------------------------------------ Robot
    def get_observation(self) -> Obs:
        self._require_connected()
        q, dq, pos, quat, grip = self._read_calibrated()
        self._update_fault(q)
        obs = {
            "joint_pos": q.astype(np.float32),
            "joint_vel": dq.astype(np.float32),
            "eef_pos": pos.astype(np.float32),
            "eef_quat": quat.astype(np.float32),
            "fault": np.array([1.0 if self.fault else 0.0], np.float32),
        }
        if self.config.gripper:
            obs["gripper_pos"] = np.array([grip], np.float32)
        return obs

    def hold_action(self, obs: Obs) -> np.ndarray:
        parts = [np.asarray(obs["joint_pos"], np.float64)]
        if self.config.gripper:
            parts.append(np.asarray(obs["gripper_pos"], np.float64))
        return np.concatenate(parts)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Send ``action`` ((n [+1],): joint targets in rad [, gripper 0..1]) clipped to the
        config limits; returns what was sent (float32). While the robot reports a fault or
        refuses the command, the hold action (the measured pose: the robot is not moving) is returned."""
        self._require_connected()
        c = self.config
        a = np.asarray(action, dtype=np.float64)
        size = c.safety_limits().size
        if a.shape != (size,):
            names = ", ".join(self.action_spec.names or ())
            raise ValueError(f"{c.name}: action has shape {a.shape}, expected ({size},): {names}")
        if not np.all(np.isfinite(a)):
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(
                f"{c.name}: refusing non-finite command {a[bad]} at index {bad}; "
                "send commands through GuardedRobot, which rejects them"
            )
        q, _, _, _, grip = self._read_calibrated()
        self._update_fault(q)
        hold = self.hold_action({"joint_pos": q, "gripper_pos": np.array([grip])}).astype(np.float32)
        if self.fault:
            return hold
        step = np.asarray(c.joint_velocity, np.float64) / c.fps
        lo = np.maximum(np.asarray(c.joint_low, np.float64), q - step)
        hi = np.minimum(np.asarray(c.joint_high, np.float64), q + step)
        # float32 is what the caller gets back: round before sending so that sent == returned
        # exactly (the rounding moves a target by < 1e-6 rad)
        target = np.clip(a[: c.n_joints], lo, hi).astype(np.float32).astype(np.float64)
        gripper = self._gripper_command(float(np.float32(np.clip(a[c.n_joints], 0.0, 1.0)))) if c.gripper else None
        raw = (target, q) if self.joint_calibration is None else (self.joint_calibration.to_raw(target), self.joint_calibration.to_raw(q))
        if not self._command(*raw[:1], gripper, raw[1]):
            self._update_fault(q)
            return hold
        sent = target if gripper is None else np.append(target, gripper)
        return sent.astype(np.float32)

    def _update_fault(self, q: np.ndarray) -> None:
        self.fault = self._fault_now() or self._outside_bounds(q)
        if self.fault and self.fault != self._logged_fault:
            log.warning("%s at %s: %s", self.config.name, self.config.host or "fake", self.fault)
        elif not self.fault and self._logged_fault:
            where = self.config.host or "fake"
            log.warning("%s at %s: fault cleared, commands move the robot again", self.config.name, where)
        self._logged_fault = self.fault


    def _outside_bounds(self, q: np.ndarray) -> str | None:
        """A fault when the measured joints are outside the config bounds (beyond a small
        tolerance): no command is both inside the bounds and a safe step from there."""
        c = self.config
        tol = np.asarray(c.joint_velocity, np.float64) / c.fps
        out = np.flatnonzero((q < np.asarray(c.joint_low) - tol) | (q > np.asarray(c.joint_high) + tol))
        if out.size == 0:
            return None
        i = int(out[0])
        return (
            f"joint {c.joint_names[i]} is at {q[i]:.3f} rad, outside the config bounds "
            f"[{c.joint_low[i]:.3f}, {c.joint_high[i]:.3f}]: "
            f"move it inside (teach pendant / freedrive) or widen joint_low / joint_high in robot_config"
        )


# ---------------------------------------------------------------------- rotations
def quat_from_matrix(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) unit quaternion (x, y, z, w), w >= 0."""
    m = np.asarray(r, np.float64)
    w = np.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = np.copysign(x, m[2, 1] - m[1, 2])
    y = np.copysign(y, m[0, 2] - m[2, 0])
    z = np.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)


def quat_from_rotvec(rv: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (axis * angle, rad; UR's TCP pose) -> (4,) quaternion (x, y, z, w)."""
    v = np.asarray(rv, np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = v / angle
    q = np.append(axis * np.sin(angle / 2), np.cos(angle / 2))
    return q if q[3] >= 0 else -q


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Roll, pitch, yaw (rad; R = Rz(yaw) Ry(pitch) Rx(roll), xArm's convention) -> (x, y, z, w)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    x = sr * cp * cy - cr * sp * sy
    y = cr * sp * cy + sr * cp * sy
    z = cr * cp * sy - sr * sp * cy
    q = np.array([x, y, z, cr * cp * cy + sr * sp * sy])
    return q if q[3] >= 0 else -q
