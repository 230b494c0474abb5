"""UFactory xArm6 (and Lite 6, with its limits set) over the xArm Python SDK, joint-position
control in servo mode.

    robot = make_robot("xarm", host="192.168.1.185")         # pip install 'robot-rl[xarm]'
    robot = make_robot("xarm", fake=True)                    # the in-package fake of the SDK
    robot-rl launch sim.launch.yaml robot:=xarm robot_config:='{"host": "192.168.1.185"}'

``connect`` clears old errors, enables the motors and puts the arm in servo mode (mode 1);
each ``send_action`` streams the joint target with ``set_servo_angle_j`` and, when the
gripper command changes by more than ``gripper_deadband``, moves the xArm gripper. A
controller error or warning code, or the arm leaving servo mode / the ready state (an
emergency stop), is surfaced as the ``fault`` observation and in ``robot.fault`` (with
the code), and nothing is commanded until ``robot.clear_fault()`` (clean_error,
clean_warn, re-enable) or a restart of the robot node. Set-up: docs/robots/xarm.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from robot_rl.drivers.arm import ArmConfig, ArmRobot, import_sdk, quat_from_rpy
from robot_rl.robots.registry import register_robot

log = logging.getLogger(__name__)

SERVO_MODE = 1
READY_STATES = (1, 2)  # in motion, sleeping (ready for the next command)
GRIPPER_OPEN_PULSES = 850.0


@dataclass
class XArmConfig(ArmConfig):
    """A UFactory xArm6 (6 joints) with the xArm gripper.

    Attributes:
        host: the control box's IP address (default on the box's label, e.g. 192.168.1.185).
        fps: control rate in Hz (servo mode takes up to 250 Hz).
        joint_low, joint_high: joint bounds (rad); the defaults sit 0.05 rad inside the
            xArm6's range (Lite 6 and others: set yours).
        joint_velocity: max joint speed (rad/s) per joint (the xArm's own: pi).
        gripper: drive the xArm gripper (0 open .. 1 closed = 850 .. 0 pulses).
        gripper_speed: gripper speed (r/min, up to 5000).
        gripper_deadband: smallest change of the gripper command (0..1) that is sent.
    """

    name = "xarm"
    joint_names: ClassVar[tuple[str, ...]] = tuple(f"joint_{i}" for i in range(1, 7))
    fps: float = 100.0
    joint_low: tuple[float, ...] = (-6.2, -2.009, -3.877, -6.2, -1.643, -6.2)
    joint_high: tuple[float, ...] = (6.2, 2.044, 0.142, 6.2, 3.092, 6.2)
    joint_velocity: tuple[float, ...] = (1.0,) * 6
    max_delta: float = 0.05
    command_timeout: float = 0.2
    gripper: bool = True
    gripper_speed: float = 3000.0
    gripper_deadband: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.gripper_speed <= 5000:
            raise ValueError(f"xarm: gripper_speed must be in (0, 5000] r/min, got {self.gripper_speed!r}")
        if not 0 <= self.gripper_deadband < 1:
            raise ValueError(f"xarm: gripper_deadband must be in [0, 1), got {self.gripper_deadband!r}")


def _sdk(fake: bool) -> ModuleType:
    if fake:
        from robot_rl.drivers import fake_xarm

        return fake_xarm
    (wrapper,) = import_sdk(("xarm.wrapper",), "xarm", "xArm")
    return wrapper


@register_robot(XArmConfig)
class XArmRobot(ArmRobot):
    config: XArmConfig

    def __init__(self, config: XArmConfig) -> None:
        super().__init__(config)
        self._arm: Any = None
        self._gripper_sent: float | None = None

    def connect(self) -> None:
        c = self.config
        host = c.require_host()
        sdk = _sdk(c.fake)
        try:
            arm = sdk.XArmAPI(host, is_radian=True)
        except Exception as exc:  # noqa: BLE001 - the SDK raises a bare Exception when the socket fails
            raise ConnectionError(
                f"xarm: cannot connect to the xArm control box at {host!r} ({exc}). Check that `ping {host}` answers, "
                "that the box is powered and its emergency stop released; see docs/robots/xarm.md"
            ) from exc
        if not arm.connected:
            raise ConnectionError(f"xarm: no connection to the control box at {host!r}; see docs/robots/xarm.md")
        self._arm = arm
        self._gripper_sent = None
        _, (err, warn) = arm.get_err_warn_code()
        if err or warn:
            log.warning("xarm at %s: clearing error code %s / warning code %s from before connecting", host, err, warn)
        self._enable()
        if c.gripper:
            arm.set_gripper_mode(0)
            arm.set_gripper_enable(True)
        self._update_fault(self._joints()[0])

    def _enable(self) -> None:
        arm = self._arm
        arm.clean_error()
        arm.clean_warn()
        arm.motion_enable(enable=True)
        arm.set_mode(SERVO_MODE)
        arm.set_state(state=0)

    @property
    def is_connected(self) -> bool:
        return self._arm is not None and bool(self._arm.connected)

    def disconnect(self) -> None:
        if self._arm is not None:
            if self._arm.connected:
                self._arm.set_state(state=4)  # stop: no motion after we leave
                self._arm.disconnect()
            self._arm = None

    def _checked(self, what: str, result: tuple[int, Any]) -> Any:
        code, value = result
        if code not in (0, 1, 2):  # 1 / 2: an error / warning is pending (read on), others: no data
            where = self.config.host or "fake"
            raise ConnectionError(f"xarm at {where}: {what} failed with SDK code {code} (connection lost?)")
        return value

    def _joints(self) -> tuple[np.ndarray, np.ndarray]:
        pos, vel, _ = self._checked("get_joint_states", self._arm.get_joint_states(is_radian=True))
        n = self.config.n_joints
        return np.asarray(pos[:n], np.float64), np.asarray(vel[:n], np.float64)

    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        q, dq = self._joints()
        pose = np.asarray(self._checked("get_position", self._arm.get_position(is_radian=True)), np.float64)
        grip = 0.0
        if self.config.gripper:
            pulses = float(self._checked("get_gripper_position", self._arm.get_gripper_position()))
            grip = float(np.clip(1.0 - pulses / GRIPPER_OPEN_PULSES, 0.0, 1.0))
        return q, dq, pose[:3] / 1000.0, quat_from_rpy(*pose[3:6]), grip

    def _fault_now(self) -> str | None:
        arm = self._arm
        how = (
            "clear it with robot.clear_fault() or by restarting the robot node once the cause is fixed "
            "(xArm Studio explains the code)"
        )
        if arm.error_code:
            return f"controller error code {arm.error_code} (the arm stopped): {how}"
        if arm.warn_code:
            return f"controller warning code {arm.warn_code}: {how}"
        if arm.state not in READY_STATES or arm.mode != SERVO_MODE:
            state = f"state {arm.state}, mode {arm.mode}; e.g. after an emergency stop"
            return f"the arm is not ready for servo commands ({state}): {how}"
        return None

    def clear_fault(self) -> bool:
        self._require_connected()
        self._enable()
        self._update_fault(self._joints()[0])
        return self.fault is None

    def _gripper_command(self, g: float) -> float:
        if self._gripper_sent is not None and abs(g - self._gripper_sent) <= self.config.gripper_deadband:
            return self._gripper_sent
        return g

    def _command(self, q: np.ndarray, gripper: float | None, q_measured: np.ndarray) -> bool:
        code = self._arm.set_servo_angle_j(q.tolist(), is_radian=True)
        if code != 0:
            log.warning("xarm at %s: set_servo_angle_j returned code %s: not moving", self.config.host or "fake", code)
            return False
        if gripper is not None and gripper != self._gripper_sent:
            pulses = (1.0 - gripper) * GRIPPER_OPEN_PULSES
            self._arm.set_gripper_position(pulses, wait=False, speed=self.config.gripper_speed)
            self._gripper_sent = gripper
        return True
