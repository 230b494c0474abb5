"""A fake of ur_rtde for tests and dry runs: ``RTDEControlInterface``, ``RTDEReceiveInterface``
and ``RTDEIOInterface`` with the real classes' method names and argument order (only the
methods the UR driver uses; ``tests/test_drivers_arms.py`` checks each exists on ur_rtde).

Behind them is one simulated UR5e per host (``controller(host)``): servoJ targets are
tracked and speedJ velocities held at no more than the arm's speed; the TCP pose comes
from the UR5e's DH parameters (a rotation vector, as the controller reports it). It
reproduces what the driver must handle:

- a protective stop (``controller(host).protective_stop()``, or the SDK's
  ``triggerProtectiveStop``): the arm halts, the control script stops, commands return
  False until ``unlock_protective_stop()`` (the pendant) and a ``reuploadScript()``;
- the RTDE watchdog: after ``setWatchdog(f)``, no ``kickWatchdog()`` for 1/f s stops the
  control script and the arm;
- an emergency stop (``emergency_stop(True/False)``);
- an unreachable controller (``reachable = False``): the constructors raise the
  RuntimeError ur_rtde raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.drivers.fake_arms import UR5E_DH, SimulatedArm, fk_standard, rotvec_from_matrix

# ur_rtde module -> the classes of this module that stand in for it (checked in the tests)
SDK_NAMES = {
    "rtde_control": ("RTDEControlInterface",),
    "rtde_receive": ("RTDEReceiveInterface",),
    "rtde_io": ("RTDEIOInterface",),
}
HOME = (0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0)
MAX_SPEED = 3.14  # rad/s, UR e-series joint speed limit (UR3e/UR5e)
SAFETY_NORMAL, SAFETY_PROTECTIVE_STOP, SAFETY_ROBOT_EMERGENCY_STOP = 1, 3, 7
ROBOT_MODE_RUNNING = 7


def _ur5e() -> SimulatedArm:
    hw = np.full(6, 2 * np.pi)
    return SimulatedArm(HOME, np.full(6, MAX_SPEED), -hw, hw, lambda q: fk_standard(q, UR5E_DH))


@dataclass
class FakeURController:
    """The simulated robot and control box behind every fake ur_rtde interface to one host."""

    host: str
    arm: SimulatedArm = field(default_factory=lambda: _ur5e())
    reachable: bool = True
    program_running: bool = False
    protective_stopped: bool = False
    emergency_stopped: bool = False
    watchdog_period: float | None = None
    last_kick: float = 0.0
    watchdog_tripped: bool = False  # since the last script upload
    watchdog_trips: int = 0  # ever
    tool_outputs: list[bool] = field(default_factory=lambda: [False, False])

    def tick(self) -> None:
        """Advance the arm; enforce the watchdog. Runs on every SDK call."""
        self.arm.advance()
        period = self.watchdog_period
        if self.program_running and period is not None and self.arm.t - self.last_kick > period:
            self.watchdog_tripped = True
            self.watchdog_trips += 1
            self._stop_program()

    def _stop_program(self) -> None:
        self.program_running = False
        self.watchdog_period = None
        self.arm.halt()

    # ---------------------------------------------------------------- test hooks
    def protective_stop(self) -> None:
        """The robot hit something (or a safety limit): protective stop."""
        self.tick()
        self.protective_stopped = True
        self._stop_program()

    def unlock_protective_stop(self) -> None:
        """The operator unlocks the protective stop on the pendant."""
        self.protective_stopped = False

    def emergency_stop(self, pressed: bool) -> None:
        self.tick()
        self.emergency_stopped = pressed
        if pressed:
            self._stop_program()


_CONTROLLERS: dict[str, FakeURController] = {}


def controller(host: str) -> FakeURController:
    """The simulated UR at ``host`` (created, powered on and idle, on first use)."""
    if host not in _CONTROLLERS:
        _CONTROLLERS[host] = FakeURController(host)
    return _CONTROLLERS[host]


def power_off(host: str) -> None:
    """Forget the simulated UR at ``host``: the next connection finds a fresh one."""
    _CONTROLLERS.pop(host, None)


def _connect(host: str) -> FakeURController:
    ctrl = controller(host)
    if not ctrl.reachable:
        raise RuntimeError(f"Error: Could not connect to: {host} at 30004, verify the IP")
    return ctrl


class _Interface:
    def __init__(self, hostname: str) -> None:
        self._ctrl = _connect(hostname)
        self._connected = True

    def isConnected(self) -> bool:  # noqa: N802 - ur_rtde's names
        return self._connected

    def disconnect(self) -> None:
        self._connected = False

    def reconnect(self) -> bool:
        self._ctrl = _connect(self._ctrl.host)
        self._connected = True
        return True

    def _live(self) -> FakeURController:
        if not self._connected:
            raise RuntimeError("RTDE interface is not connected")
        self._ctrl.tick()
        return self._ctrl


class RTDEControlInterface(_Interface):
    """ur_rtde's control interface: uploads the control script on connect, then servoJ/speedJ."""

    def __init__(
        self, hostname: str, frequency: float = -1.0, flags: int = 1, ur_cap_port: int = 50002, rt_priority: int = 0
    ) -> None:
        super().__init__(hostname)
        ctrl = self._live()
        ctrl.program_running = not (ctrl.protective_stopped or ctrl.emergency_stopped)

    def _run(self) -> FakeURController | None:
        ctrl = self._live()
        return ctrl if ctrl.program_running else None

    def servoJ(  # noqa: N802
        self, q: list[float], speed: float, acceleration: float, time: float, lookahead_time: float, gain: float
    ) -> bool:
        if len(q) != 6:
            raise ValueError(f"servoJ needs 6 joint positions, got {len(q)}")
        if not 0.03 <= lookahead_time <= 0.2 or not 100 <= gain <= 2000:
            raise ValueError("servoJ: lookahead_time must be in [0.03, 0.2] and gain in [100, 2000]")
        ctrl = self._run()
        if ctrl is None:
            return False
        ctrl.arm.move_to(q)
        return True

    def speedJ(self, qd: list[float], acceleration: float = 0.5, time: float = 0.0) -> bool:  # noqa: N802
        if len(qd) != 6:
            raise ValueError(f"speedJ needs 6 joint speeds, got {len(qd)}")
        ctrl = self._run()
        if ctrl is None:
            return False
        ctrl.arm.move_at(qd)
        return True

    def servoStop(self, a: float = 10.0) -> bool:  # noqa: N802
        ctrl = self._run()
        if ctrl is not None:
            ctrl.arm.halt()
        return ctrl is not None

    def speedStop(self, a: float = 10.0) -> bool:  # noqa: N802
        return self.servoStop(a)

    def setWatchdog(self, min_frequency: float = 10.0) -> bool:  # noqa: N802
        ctrl = self._live()
        ctrl.watchdog_period = 1.0 / min_frequency
        ctrl.last_kick = ctrl.arm.t
        return True

    def kickWatchdog(self) -> bool:  # noqa: N802
        ctrl = self._live()
        ctrl.last_kick = ctrl.arm.t
        return ctrl.program_running

    def isProgramRunning(self) -> bool:  # noqa: N802
        return self._live().program_running

    def reuploadScript(self) -> bool:  # noqa: N802
        ctrl = self._live()
        if ctrl.protective_stopped or ctrl.emergency_stopped:
            return False
        ctrl.program_running, ctrl.watchdog_tripped = True, False
        ctrl.arm.halt()
        return True

    def stopScript(self) -> None:  # noqa: N802
        self._live()._stop_program()

    def triggerProtectiveStop(self) -> bool:  # noqa: N802
        self._live().protective_stop()
        return True


class RTDEReceiveInterface(_Interface):
    """ur_rtde's receive interface: the robot state at the RTDE rate."""

    def __init__(
        self,
        hostname: str,
        frequency: float = -1.0,
        variables: list[str] | None = None,
        verbose: bool = False,
        use_upper_range_registers: bool = False,
        rt_priority: int = 0,
    ) -> None:
        super().__init__(hostname)

    def getActualQ(self) -> list[float]:  # noqa: N802
        return self._live().arm.q.tolist()

    def getActualQd(self) -> list[float]:  # noqa: N802
        return self._live().arm.dq.tolist()

    def getActualTCPPose(self) -> list[float]:  # noqa: N802
        t = self._live().arm.pose()
        return [*t[:3, 3].tolist(), *rotvec_from_matrix(t[:3, :3]).tolist()]

    def isProtectiveStopped(self) -> bool:  # noqa: N802
        return self._live().protective_stopped

    def isEmergencyStopped(self) -> bool:  # noqa: N802
        return self._live().emergency_stopped

    def getSafetyMode(self) -> int:  # noqa: N802
        ctrl = self._live()
        if ctrl.emergency_stopped:
            return SAFETY_ROBOT_EMERGENCY_STOP
        return SAFETY_PROTECTIVE_STOP if ctrl.protective_stopped else SAFETY_NORMAL

    def getRobotMode(self) -> int:  # noqa: N802
        self._live()
        return ROBOT_MODE_RUNNING

    def getDigitalOutState(self, output_id: int) -> bool:  # noqa: N802
        ctrl = self._live()
        return ctrl.tool_outputs[output_id - 16] if output_id >= 16 else False


class RTDEIOInterface(_Interface):
    """ur_rtde's IO interface (the driver sets a tool digital output for a gripper)."""

    def __init__(self, hostname: str, verbose: bool = False, use_upper_range_registers: bool = False) -> None:
        super().__init__(hostname)

    def setToolDigitalOut(self, output_id: int, signal_level: bool) -> bool:  # noqa: N802
        ctrl = self._live()
        if output_id not in (0, 1):
            raise ValueError(f"tool digital output {output_id} does not exist (0 or 1)")
        ctrl.tool_outputs[output_id] = bool(signal_level)
        return True
