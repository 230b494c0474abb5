"""Franka Emika Panda / FR3 over FCI with franky (franky-control), joint-position control.

    robot = make_robot("franka", host="172.16.0.2")          # pip install 'robot-rl[franka]'
    robot = make_robot("franka", fake=True)                  # the in-package fake of franky
    robot-rl launch sim.launch.yaml robot:=franka robot_config:='{"host": "172.16.0.2"}'

Each ``send_action`` starts an asynchronous franky ``JointMotion`` to the joint target,
which replaces the previous one without stopping (franky's motion generator keeps the
trajectory smooth within ``relative_dynamics_factor`` of the robot's limits); the Franka
Hand follows the gripper command (``move_async``, only when it changes by more than
``gripper_deadband``). A reflex or control error (a collision, a limit) is surfaced as
the ``fault`` observation and in ``robot.fault``; nothing is commanded until
``robot.clear_fault()`` (franky's ``recover_from_errors``), a restart of the robot node,
or, with ``auto_recover=True``, automatically at the next command. Set-up (FCI, the
real-time kernel): docs/robots/franka.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from robot_rl.drivers.arm import ArmConfig, ArmRobot, import_sdk
from robot_rl.robots.registry import register_robot

log = logging.getLogger(__name__)


@dataclass
class FrankaConfig(ArmConfig):
    """A Franka Panda / FR3 (7 joints) with the Franka Hand.

    Attributes:
        host: the robot's FCI address (the Control box's robot network, e.g. 172.16.0.2).
        fps: control rate in Hz: one new JointMotion per period (franky blends them).
        joint_low, joint_high: joint bounds (rad); the defaults sit 0.05 rad inside the
            Panda's hardware range.
        joint_velocity: max joint speed (rad/s) per joint (the Panda's: 2.175 / 2.61).
        relative_dynamics_factor: franky's scale (0, 1] of the robot's velocity,
            acceleration and jerk limits for every motion.
        realtime: require a real-time kernel (franky ``RealtimeConfig.Enforce``); False
            only for trying things out (``Ignore``: control may be jittery).
        auto_recover: after a reflex, call ``recover_from_errors`` at the next command
            instead of waiting for ``clear_fault()``.
        gripper: drive the Franka Hand.
        gripper_speed: Franka Hand speed (m/s).
        gripper_deadband: smallest change of the gripper command (0..1) that starts a new
            gripper move (the Hand takes one move at a time).
    """

    name = "franka"
    joint_names: ClassVar[tuple[str, ...]] = tuple(f"joint_{i}" for i in range(1, 8))
    fps: float = 50.0
    joint_low: tuple[float, ...] = (-2.8473, -1.7128, -2.8473, -3.0218, -2.8473, 0.0325, -2.8473)
    joint_high: tuple[float, ...] = (2.8473, 1.7128, 2.8473, -0.1198, 2.8473, 3.7025, 2.8473)
    joint_velocity: tuple[float, ...] = (1.0,) * 7
    max_delta: float = 0.05
    command_timeout: float = 0.2
    gripper: bool = True
    relative_dynamics_factor: float = 0.2
    realtime: bool = True
    auto_recover: bool = False
    gripper_speed: float = 0.1
    gripper_deadband: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.relative_dynamics_factor <= 1:
            raise ValueError(f"franka: relative_dynamics_factor must be in (0, 1], got {self.relative_dynamics_factor}")
        if not 0 < self.gripper_speed <= 0.2:
            raise ValueError(f"franka: gripper_speed must be in (0, 0.2] m/s, got {self.gripper_speed!r}")
        if not 0 <= self.gripper_deadband < 1:
            raise ValueError(f"franka: gripper_deadband must be in [0, 1), got {self.gripper_deadband!r}")


def _sdk(fake: bool) -> ModuleType:
    if fake:
        from robot_rl.drivers import fake_franka

        return fake_franka
    (franky,) = import_sdk(("franky",), "franka", "Franka")
    return franky


@register_robot(FrankaConfig)
class FrankaRobot(ArmRobot):
    config: FrankaConfig

    def __init__(self, config: FrankaConfig) -> None:
        super().__init__(config)
        self._sdk: Any = None
        self._robot: Any = None
        self._gripper: Any = None
        self._gripper_sent: float | None = None
        self.last_error: str | None = None

    def connect(self) -> None:
        c = self.config
        host = c.require_host()
        sdk = _sdk(c.fake)
        try:
            rt = sdk.RealtimeConfig.Enforce if c.realtime else sdk.RealtimeConfig.Ignore
            rdf = sdk.RelativeDynamicsFactor(c.relative_dynamics_factor)
            self._robot = sdk.Robot(host, relative_dynamics_factor=rdf, realtime_config=rt)
            if c.gripper:
                self._gripper = sdk.Gripper(host)
        except sdk.RealtimeException as exc:
            self._robot = self._gripper = None
            raise ConnectionError(
                f"franka at {host!r}: {exc} franky needs a PREEMPT_RT kernel for 1 kHz control "
                "(docs/robots/franka.md); "
                'to try things out without one: robot_config:=\'{"realtime": false}\''
            ) from exc
        except (sdk.NetworkException, sdk.IncompatibleVersionException) as exc:
            self._robot = self._gripper = None
            raise ConnectionError(
                f"franka: cannot connect to FCI at {host!r} ({exc}). Check that `ping {host}` answers, "
                "that the joints are unlocked and FCI is activated in Desk, and that the robot's system version "
                "matches franky's libfranka; see docs/robots/franka.md"
            ) from exc
        self._sdk = sdk
        self._gripper_sent = None
        if self._robot.has_errors:
            log.warning("franka at %s: clearing the errors the robot had before connecting", host)
            self._robot.recover_from_errors()
        self._update_fault(np.asarray(self._robot.current_joint_state.position, np.float64))

    @property
    def is_connected(self) -> bool:
        return self._robot is not None

    def disconnect(self) -> None:
        if self._robot is not None:
            try:
                self._robot.stop()
            except (self._sdk.ControlException, self._sdk.CommandException, self._sdk.NetworkException) as exc:
                log.warning("franka: while stopping: %s", exc)
        self._robot = self._gripper = None

    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        js = self._robot.current_joint_state
        ee = self._robot.current_cartesian_state.pose.end_effector_pose
        grip = 0.0
        if self._gripper is not None:
            grip = float(np.clip(1.0 - self._gripper.width / self._gripper.max_width, 0.0, 1.0))
        q, dq = np.asarray(js.position, np.float64), np.asarray(js.velocity, np.float64)
        return q, dq, np.asarray(ee.translation, np.float64), np.asarray(ee.quaternion, np.float64), grip

    def _fault_now(self) -> str | None:
        try:
            self._robot.poll_motion()
        except self._sdk.ControlException as exc:
            self.last_error = str(exc)
        if not self._robot.has_errors:
            return None
        if self.config.auto_recover and self._robot.recover_from_errors():
            log.warning("franka at %s: recovered from %s (auto_recover)", self.config.host or "fake", self.last_error)
            return None
        return (
            f"control error / reflex ({self.last_error or 'the robot reports errors'}): the robot stopped; "
            "clear it with "
            "robot.clear_fault() (franky recover_from_errors) or by restarting the robot node, once the cause is gone"
        )

    def clear_fault(self) -> bool:
        self._require_connected()
        if self._robot.has_errors:
            self._robot.recover_from_errors()
        self._update_fault(np.asarray(self._robot.current_joint_state.position, np.float64))
        return self.fault is None

    def _gripper_command(self, g: float) -> float:
        if self._gripper_sent is not None and abs(g - self._gripper_sent) <= self.config.gripper_deadband:
            return self._gripper_sent  # the Hand keeps its current move
        return g

    def _command(self, q: np.ndarray, gripper: float | None, q_measured: np.ndarray) -> bool:
        sdk, c = self._sdk, self.config
        motion = sdk.JointMotion(sdk.JointState(q), return_when_finished=False)
        try:
            self._robot.move(motion, asynchronous=True)
        except sdk.ControlException as exc:
            self.last_error = str(exc)
            log.warning("franka at %s: motion refused: %s", c.host or "fake", exc)
            return False
        if gripper is not None and gripper != self._gripper_sent:
            self._gripper.move_async((1.0 - gripper) * self._gripper.max_width, c.gripper_speed)
            self._gripper_sent = gripper
        return True
