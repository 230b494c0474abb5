"""Universal Robots e-series and CB3 arms over RTDE (ur_rtde), joint-position control.

    robot = make_robot("ur", host="192.168.1.10")            # pip install 'robot-rl[ur]'
    robot = make_robot("ur", fake=True)                      # the in-package fake of ur_rtde
    robot-rl launch sim.launch.yaml robot:=ur robot_config:='{"host": "192.168.1.10"}'

Each ``send_action`` streams one joint target with ``servoJ`` (default) or, with
``control="speedj"``, the joint speed that reaches it in one period with ``speedJ``, and
kicks the RTDE watchdog: if the host stops commanding for ``1 / watchdog_hz`` s the
controller stops the control script and the arm. A protective or emergency stop, or a
stopped control script, is surfaced as the ``fault`` observation and in ``robot.fault``;
nothing is commanded meanwhile. After the operator unlocks a protective stop on the
pendant (or after a watchdog stop), the driver re-uploads the control script and
commands resume from the measured pose. The optional gripper is a tool digital output
(on = closed), e.g. a pneumatic or IO-controlled gripper. Set-up: docs/robots/ur.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from robot_rl.drivers.arm import ArmConfig, ArmRobot, import_sdk, quat_from_rotvec
from robot_rl.robots.registry import register_robot

log = logging.getLogger(__name__)

TWO_PI = round(2 * math.pi, 4)


@dataclass
class URConfig(ArmConfig):
    """A UR e-series / CB3 arm (6 joints) over RTDE.

    Attributes:
        host: the controller's IP address (robot-side: Remote Control mode on e-series).
        fps: control rate in Hz (servoJ period); e-series runs RTDE at up to 500 Hz, CB3 at 125 Hz.
        joint_low, joint_high: joint bounds (rad); the defaults are the hardware range
            (+-2 pi, elbow +-pi): narrow them to your cell.
        joint_velocity: max joint speed (rad/s) per joint; UR's own limit is 3.14 (2.09 for
            the base and shoulder of UR10e/16e).
        control: ``servoj`` (position streaming, default) or ``speedj`` (joint speeds).
        servo_lookahead: servoJ lookahead time (s, 0.03..0.2): larger is smoother, lags more.
        servo_gain: servoJ proportional gain (100..2000): larger tracks tighter.
        speed_acceleration: speedJ joint acceleration (rad/s^2).
        watchdog_hz: RTDE watchdog minimum command rate (Hz); the controller stops the arm
            when commands stop for 1 / watchdog_hz s. Must not exceed fps.
        rtde_frequency: RTDE rate in Hz, -1 for the controller's own (500 e-series, 125 CB3).
        gripper: drive a gripper on a tool digital output (on = closed).
        gripper_tool_output: which tool digital output (0 or 1).
    """

    name = "ur"
    joint_names: ClassVar[tuple[str, ...]] = tuple(
        f"joint_{j}" for j in ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
    )
    fps: float = 125.0
    joint_low: tuple[float, ...] = (-TWO_PI, -TWO_PI, -3.1416, -TWO_PI, -TWO_PI, -TWO_PI)
    joint_high: tuple[float, ...] = (TWO_PI, TWO_PI, 3.1416, TWO_PI, TWO_PI, TWO_PI)
    joint_velocity: tuple[float, ...] = (1.0,) * 6
    max_delta: float = 0.05
    command_timeout: float = 0.2
    gripper: bool = False
    control: str = "servoj"
    servo_lookahead: float = 0.1
    servo_gain: float = 300.0
    speed_acceleration: float = 1.4
    watchdog_hz: float = 10.0
    rtde_frequency: float = -1.0
    gripper_tool_output: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.control not in ("servoj", "speedj"):
            raise ValueError(f"ur: control must be 'servoj' or 'speedj', got {self.control!r}")
        if not 0.03 <= self.servo_lookahead <= 0.2:
            raise ValueError(f"ur: servo_lookahead must be in [0.03, 0.2] s, got {self.servo_lookahead!r}")
        if not 100 <= self.servo_gain <= 2000:
            raise ValueError(f"ur: servo_gain must be in [100, 2000], got {self.servo_gain!r}")
        if not 0 < self.watchdog_hz <= self.fps:
            raise ValueError(f"ur: watchdog_hz must be in (0, fps={self.fps}] Hz, got {self.watchdog_hz!r}")
        if self.gripper_tool_output not in (0, 1):
            raise ValueError(f"ur: gripper_tool_output must be 0 or 1, got {self.gripper_tool_output!r}")
        if not self.speed_acceleration > 0:
            raise ValueError(f"ur: speed_acceleration must be positive (rad/s^2), got {self.speed_acceleration!r}")


def _sdk(fake: bool) -> tuple[ModuleType, ModuleType, ModuleType]:
    if fake:
        from robot_rl.drivers import fake_ur

        return fake_ur, fake_ur, fake_ur
    control, receive, io = import_sdk(("rtde_control", "rtde_receive", "rtde_io"), "ur", "UR")
    return control, receive, io


@register_robot(URConfig)
class URRobot(ArmRobot):
    config: URConfig

    def __init__(self, config: URConfig) -> None:
        super().__init__(config)
        self._control: Any = None
        self._receive: Any = None
        self._io: Any = None
        self._gripper_closed: bool | None = None

    def connect(self) -> None:
        c = self.config
        host = c.require_host()
        control, receive, io = _sdk(c.fake)
        try:
            self._receive = receive.RTDEReceiveInterface(host, c.rtde_frequency)
            self._control = control.RTDEControlInterface(host, c.rtde_frequency)
            if c.gripper:
                self._io = io.RTDEIOInterface(host)
        except RuntimeError as exc:
            self.disconnect()
            raise ConnectionError(
                f"ur: cannot connect to the UR controller at {host!r} over RTDE ({exc}). "
                f"Check that `ping {host}` answers, "
                "that the robot is on, brakes released and (e-series) in Remote Control mode, and that no other "
                "program (e.g. the UR ROS driver) holds RTDE; see docs/robots/ur.md"
            ) from exc
        self._control.setWatchdog(c.watchdog_hz)
        self._update_fault(np.asarray(self._receive.getActualQ(), np.float64))

    @property
    def is_connected(self) -> bool:
        return self._control is not None and self._receive is not None and bool(self._receive.isConnected())

    def disconnect(self) -> None:
        for iface in (self._control, self._receive, self._io):
            if iface is None:
                continue
            try:
                if iface is self._control and iface.isConnected() and iface.isProgramRunning():
                    (iface.servoStop if self.config.control == "servoj" else iface.speedStop)()
                    iface.stopScript()
                iface.disconnect()
            except RuntimeError as exc:  # the connection may already be gone
                log.warning("ur: while disconnecting: %s", exc)
        self._control = self._receive = self._io = None

    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        r = self._receive
        q = np.asarray(r.getActualQ(), np.float64)
        dq = np.asarray(r.getActualQd(), np.float64)
        tcp = np.asarray(r.getActualTCPPose(), np.float64)
        grip = 0.0
        if self.config.gripper:
            grip = 1.0 if r.getDigitalOutState(16 + self.config.gripper_tool_output) else 0.0
        return q, dq, tcp[:3], quat_from_rotvec(tcp[3:]), grip

    def _fault_now(self) -> str | None:
        if self._receive.isEmergencyStopped():
            return "emergency stop: release the e-stop button, then re-enable the robot on the pendant"
        if self._receive.isProtectiveStopped():
            return (
                "protective stop (a collision or a safety limit): unlock it on the teach pendant; "
                "commands resume after that"
            )
        # a control script stopped by the RTDE watchdog is no fault: the next command restarts it
        return None

    def clear_fault(self) -> bool:
        self._require_connected()
        q = np.asarray(self._receive.getActualQ(), np.float64)
        self._update_fault(q)
        return self.fault is None

    def _gripper_command(self, g: float) -> float:
        return 1.0 if g >= 0.5 else 0.0  # a digital output: on (closed) or off (open)

    def _command(self, q: np.ndarray, gripper: float | None, q_measured: np.ndarray) -> bool:
        c, ctl = self.config, self._control
        if not ctl.isProgramRunning():  # stopped by the RTDE watchdog or a cleared stop: restart, then command
            log.warning(
                "ur at %s: the control script had stopped (the RTDE watchdog: no command for %.3g s, "
                "or a cleared stop); re-uploading it",
                c.host or "fake",
                1.0 / c.watchdog_hz,
            )
            if not ctl.reuploadScript():
                log.warning("ur at %s: cannot restart the control script: see the pendant", c.host or "fake")
                return False
            ctl.setWatchdog(c.watchdog_hz)
        if c.control == "servoj":
            ok = ctl.servoJ(q.tolist(), 0.0, 0.0, 1.0 / c.fps, c.servo_lookahead, c.servo_gain)
        else:
            qd = np.clip((q - q_measured) * c.fps, -np.asarray(c.joint_velocity), np.asarray(c.joint_velocity))
            ok = ctl.speedJ(qd.tolist(), c.speed_acceleration, 0.0)
        ctl.kickWatchdog()
        if not ok:
            log.warning("ur at %s: the controller refused the command (%s)", c.host or "fake", c.control)
            return False
        if gripper is not None:
            closed = gripper == 1.0
            if closed != self._gripper_closed:
                self._io.setToolDigitalOut(c.gripper_tool_output, closed)
                self._gripper_closed = closed
        return True
