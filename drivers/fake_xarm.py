"""A fake of the xArm Python SDK for tests and dry runs: ``XArmAPI`` with the real class's
method names, argument order and ``(code, value)`` returns (only what the xArm driver
uses; ``tests/test_drivers_arms.py`` checks each exists on ``xarm.wrapper.XArmAPI``).

Behind it is one simulated xArm6 with its gripper per host (``controller(host)``): in
servo mode (mode 1, state ready) ``set_servo_angle_j`` targets are tracked at the arm's
joint speed; the TCP pose (mm, roll/pitch/yaw) comes from the xArm6's DH parameters; the
gripper moves in pulses (850 open, 0 closed). It reproduces what the driver must handle:

- controller errors and warnings (``controller(host).set_error(22)`` /
  ``set_warn(11)``): an error stops the arm (state 4) and motion commands return code 1
  until ``clean_error()``, ``motion_enable(True)``, ``set_mode(1)``, ``set_state(0)``;
- an unreachable controller (``reachable = False``): the constructor raises as the SDK
  does ("connect socket failed").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.drivers.fake_arms import XARM6_MDH, SimulatedArm, fk_modified, rpy_from_matrix

HW_LOW = (-2 * np.pi, -2.059, -3.927, -2 * np.pi, -1.69297, -2 * np.pi)
HW_HIGH = (2 * np.pi, 2.0944, 0.19198, 2 * np.pi, np.pi, 2 * np.pi)
MAX_SPEED = np.pi  # rad/s, xArm joint speed limit (180 deg/s)
GRIPPER_OPEN = 850  # pulses
STATE_MOVING, STATE_SLEEPING, STATE_PAUSED, STATE_STOPPED = 1, 2, 3, 4
CODE_ERROR, CODE_WARN, CODE_NOT_READY = 1, 2, 9


def _xarm6() -> SimulatedArm:
    fk = lambda q: fk_modified(q, XARM6_MDH)  # noqa: E731
    return SimulatedArm(np.zeros(6), np.full(6, MAX_SPEED), np.array(HW_LOW), np.array(HW_HIGH), fk)


@dataclass
class FakeXArmController:
    """The simulated xArm6, its gripper and the control box state behind one host."""

    host: str
    arm: SimulatedArm = field(default_factory=lambda: _xarm6())
    reachable: bool = True
    error_code: int = 0
    warn_code: int = 0
    state: int = STATE_STOPPED
    mode: int = 0
    motion_enabled: bool = False
    gripper_enabled: bool = False

    def __post_init__(self) -> None:
        pulses = np.array([float(GRIPPER_OPEN)])
        no_fk = lambda q: np.eye(4)  # noqa: E731
        self.gripper = SimulatedArm(pulses, np.array([1500.0]), np.array([-10.0]), pulses, no_fk, clock=self.arm.clock)

    def set_error(self, code: int) -> None:
        """The controller reports error ``code`` (e.g. 22 self-collision, 31 collision): the arm stops."""
        self.arm.halt()
        self.error_code, self.state = code, STATE_STOPPED

    def set_warn(self, code: int) -> None:
        """The controller reports warning ``code`` (e.g. 11 command buffer full)."""
        self.warn_code = code

    def set_clock(self, clock) -> None:  # noqa: ANN001 - a () -> float
        self.arm.clock = self.gripper.clock = clock
        self.arm.t = self.gripper.t = clock()

    def ready(self) -> bool:
        return self.state in (STATE_MOVING, STATE_SLEEPING) and self.motion_enabled and not self.error_code


_CONTROLLERS: dict[str, FakeXArmController] = {}


def controller(host: str) -> FakeXArmController:
    """The simulated xArm at ``host`` (created powered, motors disabled, on first use)."""
    if host not in _CONTROLLERS:
        _CONTROLLERS[host] = FakeXArmController(host)
    return _CONTROLLERS[host]


def power_off(host: str) -> None:
    _CONTROLLERS.pop(host, None)


class XArmAPI:
    """xarm.wrapper.XArmAPI look-alike."""

    def __init__(
        self, port: str | None = None, is_radian: bool = False, do_not_open: bool = False, **kwargs: object
    ) -> None:
        self._host = str(port)
        self._default_is_radian = is_radian
        self._ctrl: FakeXArmController | None = None
        if not do_not_open:
            self.connect()

    def connect(
        self,
        port: str | None = None,
        baudrate: int | None = None,
        timeout: float | None = None,
        axis: int | None = None,
        **kwargs: object,
    ) -> None:
        ctrl = controller(self._host if port is None else str(port))
        if not ctrl.reachable:
            raise Exception("connect socket failed")  # noqa: TRY002 - what the SDK raises
        self._ctrl = ctrl

    def disconnect(self) -> None:
        self._ctrl = None

    @property
    def connected(self) -> bool:
        return self._ctrl is not None

    def _live(self) -> FakeXArmController:
        if self._ctrl is None:
            raise RuntimeError("xArm is not connected")
        self._ctrl.arm.advance()
        arm = self._ctrl.arm
        if self._ctrl.state == STATE_MOVING and arm.target is not None and np.allclose(arm.q, arm.target):
            self._ctrl.state = STATE_SLEEPING
        return self._ctrl

    def _rad(self, is_radian: bool | None) -> bool:
        return self._default_is_radian if is_radian is None else is_radian

    # ---------------------------------------------------------------- state
    @property
    def error_code(self) -> int:
        return self._live().error_code

    @property
    def warn_code(self) -> int:
        return self._live().warn_code

    @property
    def has_err_warn(self) -> bool:
        ctrl = self._live()
        return bool(ctrl.error_code or ctrl.warn_code)

    @property
    def state(self) -> int:
        return self._live().state

    @property
    def mode(self) -> int:
        return self._live().mode

    def get_err_warn_code(self, show: bool = False, lang: str = "en") -> tuple[int, list[int]]:
        ctrl = self._live()
        return 0, [ctrl.error_code, ctrl.warn_code]

    def get_joint_states(self, is_radian: bool | None = None, num: int = 3) -> tuple[int, list[list[float]]]:
        arm = self._live().arm
        scale = 1.0 if self._rad(is_radian) else 180.0 / np.pi
        pad = [0.0]  # the SDK reports 7 values; a 6-axis arm's 7th is 0
        return 0, [[*(arm.q * scale).tolist(), *pad], [*(arm.dq * scale).tolist(), *pad], [0.0] * 7]

    def get_servo_angle(
        self, servo_id: int | None = None, is_radian: bool | None = None, is_real: bool = False
    ) -> tuple[int, list[float]]:
        return 0, self.get_joint_states(is_radian)[1][0]

    def get_position(self, is_radian: bool | None = None) -> tuple[int, list[float]]:
        t = self._live().arm.pose()
        rpy = rpy_from_matrix(t[:3, :3])
        if not self._rad(is_radian):
            rpy = rpy * 180.0 / np.pi
        return 0, [*(t[:3, 3] * 1000.0).tolist(), *rpy.tolist()]

    # ---------------------------------------------------------------- control
    def motion_enable(self, enable: bool = True, servo_id: int | None = None) -> int:
        ctrl = self._live()
        ctrl.motion_enabled = bool(enable)
        if not enable:
            ctrl.state = STATE_STOPPED
        return 0

    def set_mode(self, mode: int = 0, detection_param: int = 0) -> int:
        self._live().mode = int(mode)
        return 0

    def set_state(self, state: int = 0) -> int:
        ctrl = self._live()
        if state == 0:
            if ctrl.error_code:
                return CODE_ERROR
            if ctrl.motion_enabled:
                ctrl.state = STATE_SLEEPING
        elif state == STATE_STOPPED:
            ctrl.arm.halt()
            ctrl.state = STATE_STOPPED
        return 0

    def clean_error(self) -> int:
        self._live().error_code = 0
        return 0

    def clean_warn(self) -> int:
        self._live().warn_code = 0
        return 0

    def emergency_stop(self) -> None:
        ctrl = self._live()
        ctrl.arm.halt()
        ctrl.state = STATE_STOPPED

    def set_servo_angle_j(
        self,
        angles: list[float],
        speed: float | None = None,
        mvacc: float | None = None,
        mvtime: float | None = None,
        is_radian: bool | None = None,
        **kwargs: object,
    ) -> int:
        ctrl = self._live()
        if ctrl.error_code:
            return CODE_ERROR
        if ctrl.mode != 1 or not ctrl.ready():
            return CODE_NOT_READY
        q = np.asarray(angles[:6], np.float64) * (1.0 if self._rad(is_radian) else np.pi / 180.0)
        ctrl.arm.move_to(q)
        ctrl.state = STATE_MOVING
        return 0

    # ---------------------------------------------------------------- gripper
    def set_gripper_mode(self, mode: int, **kwargs: object) -> int:
        self._live()
        return 0

    def set_gripper_enable(self, enable: bool, **kwargs: object) -> int:
        self._live().gripper_enabled = bool(enable)
        return 0

    def set_gripper_position(
        self,
        pos: float,
        wait: bool = False,
        speed: float | None = None,
        auto_enable: bool = False,
        timeout: float | None = None,
        **kwargs: object,
    ) -> int:
        ctrl = self._live()
        if auto_enable:
            ctrl.gripper_enabled = True
        if not ctrl.gripper_enabled:
            return CODE_NOT_READY
        # r/min -> pulses/s: a full stroke in ~0.5 s at 5000 r/min
        ctrl.gripper.max_speed = np.array([(speed or 5000.0) * 0.34])
        ctrl.gripper.move_to([float(pos)])
        return 0

    def get_gripper_position(self, **kwargs: object) -> tuple[int, float]:
        ctrl = self._live()
        ctrl.gripper.advance()
        return 0, float(ctrl.gripper.q[0])
