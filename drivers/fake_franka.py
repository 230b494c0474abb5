"""A fake of franky (franky-control) for tests and dry runs: the module-level names the
Franka driver uses (``Robot``, ``Gripper``, ``JointMotion``, ``JointState``,
``RelativeDynamicsFactor``, ``RealtimeConfig``, the exceptions...) with franky's method
names and argument order (``tests/test_drivers_arms.py`` checks each exists in franky).

Behind them is one simulated Panda per host (``controller(host)``): an asynchronous
``JointMotion`` is tracked at the arm's joint speeds times the relative dynamics factor;
the end-effector pose comes from the Panda's DH parameters; the gripper width moves at
the commanded speed. It reproduces what the driver must handle:

- a reflex (``controller(host).reflex("cartesian_reflex")``, or a target outside the
  joint range): the arm stops, the next ``poll_motion``/``move`` raises
  ``ControlException``, ``has_errors`` stays True and every motion is refused until
  ``recover_from_errors()``;
- a refused connection (``reachable = False``: ``NetworkException``, as libfranka raises
  when FCI is off) and a kernel without real-time support (``realtime_kernel = False``
  with ``RealtimeConfig.Enforce``: ``RealtimeException``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from robot_rl.drivers.arm import quat_from_matrix
from robot_rl.drivers.fake_arms import PANDA_FLANGE, PANDA_MDH, SimulatedArm, fk_modified

# the franky names this module stands in for (checked against franky in the tests)
SDK_NAMES = (
    "Robot", "Gripper", "JointMotion", "JointState", "RelativeDynamicsFactor", "RealtimeConfig", "ReferenceType",
    "Affine", "RobotPose", "CartesianState", "BoolFuture",
    "ControlException", "CommandException", "NetworkException", "RealtimeException", "IncompatibleVersionException",
)  # fmt: skip
HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
HW_LOW = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
HW_HIGH = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
MAX_SPEED = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)  # rad/s, Panda joint velocity limits
MAX_WIDTH = 0.08  # m, Franka Hand


class FrankyException(Exception):
    """Base of the fake's exceptions (franky's is ``franky.Exception``)."""


class ControlException(FrankyException):
    pass


class CommandException(FrankyException):
    pass


class NetworkException(FrankyException):
    pass


class RealtimeException(FrankyException):
    pass


class IncompatibleVersionException(FrankyException):
    pass


class RealtimeConfig(enum.Enum):
    Enforce = 0
    Ignore = 1


class ReferenceType(enum.Enum):
    Absolute = 0
    Relative = 1


class RelativeDynamicsFactor:
    def __init__(self, velocity: float = 1.0, acceleration: float | None = None, jerk: float | None = None) -> None:
        for v in (velocity, acceleration, jerk):
            if v is not None and not 0 < v <= 1:
                raise ValueError("relative dynamics factors must be in (0, 1]")
        self.velocity = float(velocity)
        self.acceleration = float(velocity if acceleration is None else acceleration)
        self.jerk = float(velocity if jerk is None else jerk)


class JointState:
    def __init__(self, position: np.ndarray, velocity: np.ndarray | None = None) -> None:
        self.position = np.asarray(position, np.float64).copy()
        self.velocity = np.zeros(7) if velocity is None else np.asarray(velocity, np.float64).copy()
        if self.position.shape != (7,) or self.velocity.shape != (7,):
            raise TypeError("JointState needs 7 joint positions (and velocities)")


class JointMotion:
    def __init__(
        self,
        target: JointState,
        reference_type: ReferenceType = ReferenceType.Absolute,
        relative_dynamics_factor: RelativeDynamicsFactor | float = 1.0,
        return_when_finished: bool = True,
    ) -> None:
        self.target = target
        self.reference_type = reference_type
        rdf = relative_dynamics_factor
        self.relative_dynamics_factor = rdf if isinstance(rdf, RelativeDynamicsFactor) else RelativeDynamicsFactor(rdf)
        self.return_when_finished = return_when_finished


class Affine:
    def __init__(self, transformation_matrix: np.ndarray) -> None:
        self._m = np.asarray(transformation_matrix, np.float64).copy()

    @property
    def matrix(self) -> np.ndarray:
        return self._m.copy()

    @property
    def translation(self) -> np.ndarray:
        return self._m[:3, 3].copy()

    @property
    def quaternion(self) -> np.ndarray:
        """(x, y, z, w), as franky's Affine."""
        return quat_from_matrix(self._m[:3, :3])


class RobotPose:
    def __init__(self, end_effector_pose: Affine) -> None:
        self.end_effector_pose = end_effector_pose


class CartesianState:
    def __init__(self, pose: RobotPose) -> None:
        self.pose = pose


def _panda() -> SimulatedArm:
    fk = lambda q: fk_modified(q, PANDA_MDH, PANDA_FLANGE)  # noqa: E731
    return SimulatedArm(HOME, np.array(MAX_SPEED), np.array(HW_LOW), np.array(HW_HIGH), fk)


@dataclass
class FakeFrankaController:
    """The simulated Panda, its Franka Hand and the FCI state behind one host."""

    host: str
    arm: SimulatedArm = field(default_factory=lambda: _panda())
    reachable: bool = True
    realtime_kernel: bool = True
    has_errors: bool = False
    pending: str | None = None  # the exception message the next poll_motion / move raises
    motions: int = 0

    def __post_init__(self) -> None:
        width = np.array([MAX_WIDTH])
        self.hand = SimulatedArm(width, np.array([0.1]), np.zeros(1), width, lambda q: np.eye(4), clock=self.arm.clock)

    def reflex(self, kind: str = "cartesian_reflex") -> None:
        """A collision (or a limit) trips a reflex: the arm stops and reports an error."""
        self.arm.halt()
        self.has_errors = True
        self.pending = f'libfranka: Move command aborted: motion aborted by reflex! ["{kind}"]'

    def set_clock(self, clock) -> None:  # noqa: ANN001 - a () -> float
        self.arm.clock = self.hand.clock = clock
        self.arm.t = self.hand.t = clock()


_CONTROLLERS: dict[str, FakeFrankaController] = {}


def controller(host: str) -> FakeFrankaController:
    """The simulated Panda at ``host`` (created at its home pose on first use)."""
    if host not in _CONTROLLERS:
        _CONTROLLERS[host] = FakeFrankaController(host)
    return _CONTROLLERS[host]


def power_off(host: str) -> None:
    _CONTROLLERS.pop(host, None)


def _connect(host: str) -> FakeFrankaController:
    ctrl = controller(host)
    if not ctrl.reachable:
        raise NetworkException(
            "libfranka: Connection to FCI refused. Please install FCI feature or enable FCI mode in Desk."
        )
    return ctrl


class BoolFuture:
    def __init__(self, value: bool) -> None:
        self._value = value

    def get(self) -> bool:
        return self._value

    def wait(self, timeout: float | None = None) -> bool:
        return True


class Robot:
    """franky.Robot: connect to FCI; ``move`` motions (asynchronous ones replace each other)."""

    def __init__(
        self,
        fci_hostname: str,
        relative_dynamics_factor: RelativeDynamicsFactor | float = 1.0,
        default_torque_threshold: float = 20.0,
        default_force_threshold: float = 30.0,
        controller_mode: object = None,
        realtime_config: RealtimeConfig = RealtimeConfig.Enforce,
    ) -> None:
        self._ctrl = _connect(fci_hostname)
        if realtime_config == RealtimeConfig.Enforce and not self._ctrl.realtime_kernel:
            raise RealtimeException("libfranka: Running kernel does not have realtime capabilities.")
        rdf = relative_dynamics_factor
        self._rdf = rdf if isinstance(rdf, RelativeDynamicsFactor) else RelativeDynamicsFactor(rdf)
        self.fci_hostname = fci_hostname

    def _raise_pending(self) -> None:
        msg, self._ctrl.pending = self._ctrl.pending, None
        if msg:
            raise ControlException(msg)

    def move(self, motion: JointMotion, asynchronous: bool = False) -> None:
        ctrl = self._ctrl
        ctrl.arm.advance()
        self._raise_pending()
        if ctrl.has_errors:
            raise ControlException(
                'libfranka: Move command rejected: command not possible in the current mode ("Reflex")!'
            )
        target = motion.target.position
        if motion.reference_type == ReferenceType.Relative:
            target = ctrl.arm.q + target
        if np.any(target < ctrl.arm.hw_low) or np.any(target > ctrl.arm.hw_high):
            ctrl.reflex("joint_motion_generator_position_limits_violation")
            self._raise_pending()
        ctrl.arm.max_speed = np.array(MAX_SPEED) * self._rdf.velocity * motion.relative_dynamics_factor.velocity
        ctrl.arm.move_to(target)
        ctrl.motions += 1

    def poll_motion(self) -> bool:
        self._ctrl.arm.advance()
        self._raise_pending()
        return self._ctrl.arm.target is not None and not np.allclose(self._ctrl.arm.q, self._ctrl.arm.target)

    def join_motion(self, timeout: float | None = None) -> bool:
        self._raise_pending()
        return True

    def stop(self) -> None:
        self._ctrl.arm.halt()

    def recover_from_errors(self) -> bool:
        self._ctrl.has_errors, self._ctrl.pending = False, None
        return True

    @property
    def has_errors(self) -> bool:
        return self._ctrl.has_errors

    @property
    def is_in_control(self) -> bool:
        return self._ctrl.arm.target is not None

    @property
    def relative_dynamics_factor(self) -> RelativeDynamicsFactor:
        return self._rdf

    @property
    def current_joint_state(self) -> JointState:
        arm = self._ctrl.arm
        arm.advance()
        return JointState(arm.q, arm.dq)

    @property
    def current_cartesian_state(self) -> CartesianState:
        return CartesianState(RobotPose(Affine(self._ctrl.arm.pose())))


class Gripper:
    """franky.Gripper: the Franka Hand (width in m)."""

    def __init__(self, fci_hostname: str) -> None:
        self._ctrl = _connect(fci_hostname)

    @property
    def width(self) -> float:
        self._ctrl.hand.advance()
        return float(self._ctrl.hand.q[0])

    @property
    def max_width(self) -> float:
        return MAX_WIDTH

    @property
    def is_grasped(self) -> bool:
        return False

    def move_async(self, width: float, speed: float) -> BoolFuture:
        if not 0 <= width <= MAX_WIDTH or speed <= 0:
            raise CommandException(f"libfranka gripper: command rejected (width {width}, speed {speed})")
        hand = self._ctrl.hand
        hand.advance()
        hand.max_speed = np.array([speed])
        hand.move_to([width])
        return BoolFuture(True)

    def open(self, speed: float) -> bool:
        self.move_async(MAX_WIDTH, speed)
        return True

    def stop(self) -> bool:
        self._ctrl.hand.halt()
        return True
