"""LeRobot robots as robot_rl drivers: SO-100 / SO-101 follower arms, the Koch follower arm, LeKiwi.

Each driver wraps lerobot's own robot class (``SO100Follower`` / ``SO101Follower``,
``KochFollower``, ``LeKiwi`` — the on-robot class that owns the motor bus) with its
``FeetechMotorsBus`` / ``DynamixelMotorsBus`` and the real vendor SDK, and its calibration
file (``<calibration_dir>/<id>.json``, made by ``lerobot-calibrate``)::

    robot-rl launch record.launch.yaml robot:=so101 teleop:=leader_arm out:=data/so101.zarr \\
        robot_config:='{"port": "/dev/ttyACM0", "id": "my_follower"}' \\
        device_config:='{"port": "/dev/ttyACM1", "id": "my_leader"}'
    robot-rl launch record.launch.yaml robot:=so101 robot_config:='{"fake": true}' teleop:=leader_arm \\
        device_config:='{"port": "/dev/ttyACM1", "id": "my_leader"}' out:=/tmp/so101_fake.zarr

Units. lerobot's bus reports body joints in degrees about the middle of the calibrated
range (``use_degrees=True``) and the gripper in percent of its calibrated range (0..100);
robot_rl states joints in rad (converted exactly: ``deg = rad * 180 / pi``) and keeps the
gripper in percent. Action, in lerobot's feature order:

- arms (``so100``, ``so101``, ``koch``): ``joint_shoulder_pan, joint_shoulder_lift,
  joint_elbow_flex, joint_wrist_flex, joint_wrist_roll`` (rad) then ``gripper`` (percent),
  i.e. lerobot's ``shoulder_pan.pos ... gripper.pos``;
- ``lekiwi``: the same six for its arm (lerobot's ``arm_*.pos``), then ``base_x_vel``,
  ``base_y_vel`` (m/s, robot frame) and ``base_theta_vel`` (rad/s; lerobot's ``x.vel``,
  ``y.vel``, ``theta.vel`` in deg/s).

Observation: ``joint_pos`` (5,) rad, ``gripper`` (1,) percent, and for LeKiwi
``base_vel`` (3,) m/s, m/s, rad/s from the wheel encoders. Safety: ``joint_position`` mode,
joint velocity limits on the five arm joints, bounds and a maximum change per tick on
every element (the LeKiwi base: speed and acceleration bounds). The hold action is the
current joint positions and gripper (and zero base velocity).

``send_action`` never sends a non-finite value (ValueError) and clips every element to the
config's bounds before lerobot sees it; it returns what lerobot reports it sent (after its
``max_relative_target`` clip), in robot_rl units. LeKiwi's wheels saturate at 3000
ticks/s: lerobot then scales all three wheel speeds down, and the base velocity returned
is the scaled one.

``fake=True`` starts the package's emulated servo chain (``robot_rl.drivers.fake_servos``)
on a pseudo-terminal, writes a calibration consistent with it (into ``calibration_dir``, a
temporary directory by default) and points lerobot's bus at that port: everything above
the serial device is the real code. On hardware the driver never prompts: without a
calibration file it raises, naming the ``lerobot-calibrate`` command to run.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.drivers.fake_servos import ChainProcess, DynamixelChain, FeetechChain, MotorCal, ServoChain
from robot_rl.robots.base import Obs, Robot, RobotConfig
from robot_rl.robots.registry import register_robot
from robot_rl.safety import SafetyLimits

log = logging.getLogger(__name__)

INSTALL = "pip install 'robot-rl[lerobot-robots]'"
ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
N_JOINTS = len(ARM_JOINTS)
BASE_NAMES = ("base_x_vel", "base_y_vel", "base_theta_vel")
LEKIWI_MAX_WHEEL_RAW = 3000  # lerobot LeKiwi._body_to_wheel_raw's default saturation, ticks/s
FAKE_HALF_RANGE = 1400  # ticks either side of mid-turn for the emulated arms' calibrated ranges (~123 deg)
FAKE_GRIPPER_RANGE = (1400, 2800)  # ticks


@dataclass(frozen=True)
class Family:
    """How to build one lerobot robot and its emulated servo chain.

    Attributes:
        lerobot_type: lerobot's robot type (``--robot.type`` of ``lerobot-calibrate``).
        module, robot_class, config_class: where lerobot defines the robot.
        prefix: prefix of the arm motor names (``arm_`` on LeKiwi).
        sdk: the vendor SDK module lerobot's bus imports (``scservo_sdk`` / ``dynamixel_sdk``).
        models: motor id -> servo model, as in the lerobot class.
        full_turn: motors lerobot calibrates over the full turn (0..4095).
        wheels: LeKiwi's wheel motors (velocity mode), in lerobot's order.
    """

    lerobot_type: str
    module: str
    robot_class: str
    config_class: str
    prefix: str
    sdk: str
    models: tuple[tuple[int, str], ...]
    full_turn: tuple[str, ...]
    wheels: tuple[str, ...] = ()

    @property
    def motor_names(self) -> tuple[str, ...]:
        return tuple(self.prefix + j for j in (*ARM_JOINTS, "gripper")) + self.wheels

    @property
    def chain_class(self) -> type[ServoChain]:
        return DynamixelChain if self.sdk == "dynamixel_sdk" else FeetechChain

    def chain(self, **kwargs: Any) -> ServoChain:
        """The emulated chain, served by a thread of this process."""
        return self.chain_class(dict(self.models), **kwargs)

    def chain_process(self, **kwargs: Any) -> ChainProcess:
        """The emulated chain, served by a process of its own (what ``fake=True`` runs)."""
        return ChainProcess(self.chain_class, dict(self.models), **kwargs)


STS = "sts3215"
SO100 = Family("so100_follower", "lerobot.robots.so_follower", "SO100Follower", "SO100FollowerConfig", "", "scservo_sdk",
               tuple((i, STS) for i in range(1, 7)), ("wrist_roll",))
SO101 = Family("so101_follower", "lerobot.robots.so_follower", "SO101Follower", "SO101FollowerConfig", "", "scservo_sdk",
               tuple((i, STS) for i in range(1, 7)), ("wrist_roll",))
KOCH = Family("koch_follower", "lerobot.robots.koch_follower", "KochFollower", "KochFollowerConfig", "", "dynamixel_sdk",
              ((1, "xl430-w250"), (2, "xl430-w250"), (3, "xl330-m288"), (4, "xl330-m288"), (5, "xl330-m288"),
               (6, "xl330-m288")), ("shoulder_pan", "wrist_roll"))
LEKIWI = Family("lekiwi", "lerobot.robots.lekiwi", "LeKiwi", "LeKiwiConfig", "arm_", "scservo_sdk",
                tuple((i, STS) for i in range(1, 10)), ("arm_wrist_roll",),
                ("base_left_wheel", "base_back_wheel", "base_right_wheel"))


def import_lerobot(family: Family) -> tuple[type, type]:
    """lerobot's robot and config classes for ``family``; ImportError naming the extra when missing."""
    try:
        importlib.import_module(family.sdk)
        module = importlib.import_module(family.module)
        return getattr(module, family.robot_class), getattr(module, family.config_class)
    except ImportError as exc:
        raise ImportError(
            f"robot_rl's {family.lerobot_type} driver needs lerobot 0.6 with its servo SDK ({family.sdk}): {INSTALL} ({exc})"
        ) from exc


def fake_calibration(family: Family) -> dict[str, MotorCal]:
    """The calibration written for (and programmed into) the emulated chain: body joints span
    mid-turn +-1400 ticks, full-turn joints and wheels 0..4095, the gripper 1400..2800 ticks."""
    cal: dict[str, MotorCal] = {}
    for name in family.motor_names:
        if name in family.full_turn or name in family.wheels:
            cal[name] = MotorCal(0, 0, 4095)
        elif name.endswith("gripper"):
            cal[name] = MotorCal(0, *FAKE_GRIPPER_RANGE)
        else:
            cal[name] = MotorCal(0, 2048 - FAKE_HALF_RANGE, 2048 + FAKE_HALF_RANGE)
    return cal


def write_calibration(path: Path, family: Family, cal: dict[str, MotorCal]) -> None:
    """Write ``cal`` in lerobot's calibration file format:
    ``{motor: {id, drive_mode, homing_offset, range_min, range_max}}`` (ticks)."""
    ids = dict((name, id_) for name, (id_, _) in zip(family.motor_names, family.models, strict=True))
    data = {
        name: {
            "id": ids[name],
            "drive_mode": c.drive_mode,
            "homing_offset": c.homing_offset,
            "range_min": c.range_min,
            "range_max": c.range_max,
        }
        for name, c in cal.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4))


def read_calibration(path: Path, family: Family) -> dict[str, MotorCal]:
    """Read a lerobot calibration file; ValueError naming the file when it does not fit ``family``."""
    try:
        data = json.loads(path.read_text())
        cal = {name: MotorCal(int(d["homing_offset"]), int(d["range_min"]), int(d["range_max"]), int(d.get("drive_mode", 0)))
               for name, d in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"calibration file {path} is not a lerobot calibration ({exc}); re-run lerobot-calibrate") from exc
    missing = sorted(set(family.motor_names) - set(cal))
    if missing:
        raise ValueError(f"calibration file {path} has no entry for motors {missing}; is it for a {family.lerobot_type}?")
    return cal


@dataclass
class LeRobotArmConfig(RobotConfig):
    """A lerobot follower arm: five joints and a gripper on one servo bus.

    Attributes:
        fps: control rate, Hz (lerobot's default 30).
        port: the bus's serial port, e.g. ``/dev/ttyACM0`` (``lerobot-find-port`` finds it).
        id: lerobot's robot id; selects the calibration file ``<calibration_dir>/<id>.json``.
        calibration_dir: where the calibration lives (default: lerobot's,
            ``~/.cache/huggingface/lerobot/calibration/robots/<lerobot robot name>``).
        fake: run on the in-package emulated servo chain instead of ``port``.
        joint_low, joint_high: joint command bounds, rad, about the middle of the calibrated range.
        joint_velocity: maximum joint speeds, rad/s (the safety filter's per-tick step).
        gripper_low, gripper_high: gripper command bounds, percent of its calibrated range.
        max_delta: maximum change of a joint command per tick, rad.
        gripper_max_delta: maximum change of the gripper command per tick, percent.
        command_timeout: s without a valid command before the robot holds.
        max_relative_target: lerobot's own clip of each goal around the present position
            (deg for joints, percent for the gripper); 0 disables it (robot_rl's filter
            already bounds the step; lerobot's clip costs an extra bus read per command).
        disable_torque_on_disconnect: let the arm go limp on disconnect (lerobot's default).
        connect_attempts: tries of lerobot's connect (a handshake ping per motor and the
            configure writes, none retried by lerobot) before connect fails, 0.5 s apart and
            growing: a servo that misses a packet right after the port opens (powering up, a
            busy USB adapter, a loaded host) does not fail the launch.
        read_attempts: tries of each observation read (lerobot's sync read, not retried by
            the robot classes) before it raises: one lost status packet does not stop the
            robot node; each retry costs one packet timeout and is logged and counted.
    """

    family: ClassVar[Family]
    fps: float = 30.0
    port: str = ""
    id: str = "follower"
    calibration_dir: str = ""
    fake: bool = False
    joint_low: tuple[float, ...] = (-1.9, -1.75, -1.75, -1.75, -2.8)
    joint_high: tuple[float, ...] = (1.9, 1.75, 1.75, 1.75, 2.8)
    joint_velocity: tuple[float, ...] = (2.0, 2.0, 2.0, 2.5, 3.0)
    gripper_low: float = 0.0
    gripper_high: float = 100.0
    max_delta: float = 0.2
    gripper_max_delta: float = 20.0
    command_timeout: float = 0.5
    max_relative_target: float = 0.0
    disable_torque_on_disconnect: bool = True
    connect_attempts: int = 5
    read_attempts: int = 3

    def __post_init__(self) -> None:
        for name in ("joint_low", "joint_high", "joint_velocity"):
            if len(getattr(self, name)) != N_JOINTS:
                joints = ", ".join(ARM_JOINTS)
                raise ValueError(f"{name} needs {N_JOINTS} values ({joints}), got {getattr(self, name)!r}")
        if not 0.0 <= self.gripper_low <= self.gripper_high <= 100.0:
            raise ValueError(
                "gripper bounds must satisfy 0 <= gripper_low <= gripper_high <= 100 (percent), "
                f"got {self.gripper_low} / {self.gripper_high}"
            )
        if not self.max_relative_target >= 0.0:
            raise ValueError(f"max_relative_target must be >= 0 (0 disables it), got {self.max_relative_target}")

    def safety_limits(self) -> SafetyLimits:
        return SafetyLimits(
            mode="joint_position",
            low=(*self.joint_low, self.gripper_low),
            high=(*self.joint_high, self.gripper_high),
            max_delta=(self.max_delta,) * N_JOINTS + (self.gripper_max_delta,),
            dt=1.0 / self.fps,
            command_timeout=self.command_timeout,
            joint_velocity=self.joint_velocity,
        )


@dataclass
class SO100Config(LeRobotArmConfig):
    """SO-100 follower arm (Feetech STS3215 servos, ids 1..6), lerobot's ``so100_follower``."""

    name = "so100"
    family = SO100


@dataclass
class SO101Config(LeRobotArmConfig):
    """SO-101 follower arm (Feetech STS3215 servos, ids 1..6), lerobot's ``so101_follower``."""

    name = "so101"
    family = SO101


@dataclass
class KochConfig(LeRobotArmConfig):
    """Koch v1.1 follower arm (Dynamixel XL430-W250 ids 1-2, XL330-M288 ids 3-6), lerobot's ``koch_follower``."""

    name = "koch"
    family = KOCH


@dataclass
class LeKiwiConfig(LeRobotArmConfig):
    """LeKiwi: an SO-101 arm (ids 1..6) on a three-omniwheel base (ids 7..9), one Feetech bus,
    driven on the robot's own computer (lerobot's ``LeKiwi``, not the ZMQ client).

    Attributes (besides the arm's):
        max_linear: base speed bound for x and y, m/s.
        max_angular: base turn-rate bound, rad/s.
        max_accel: base acceleration bounds (linear m/s^2, angular rad/s^2): the maximum
            change of a base command per tick is ``max_accel / fps``.
    """

    name = "lekiwi"
    family = LEKIWI
    id: str = "lekiwi"
    max_linear: float = 0.2
    max_angular: float = 1.5
    max_accel: tuple[float, float] = (0.5, 3.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.max_accel) != 2:
            raise ValueError(f"max_accel needs 2 values (m/s^2, rad/s^2), got {self.max_accel!r}")

    def safety_limits(self) -> SafetyLimits:
        arm = super().safety_limits()
        assert arm.max_delta is not None
        dt = 1.0 / self.fps
        return SafetyLimits(
            mode="joint_position",
            low=(*arm.low, -self.max_linear, -self.max_linear, -self.max_angular),
            high=(*arm.high, self.max_linear, self.max_linear, self.max_angular),
            max_delta=(*arm.max_delta, self.max_accel[0] * dt, self.max_accel[0] * dt, self.max_accel[1] * dt),
            dt=dt,
            command_timeout=self.command_timeout,
            joint_velocity=self.joint_velocity,
        )


class LeRobotDriver(Robot):
    """A lerobot robot (its own class, bus and calibration) behind the robot_rl Robot interface."""

    config: LeRobotArmConfig

    def __init__(self, config: LeRobotArmConfig) -> None:
        super().__init__(config)
        self.family = type(config).family
        self._lerobot_cls, self._lerobot_config_cls = import_lerobot(self.family)
        self.lerobot: Any = None  # lerobot's robot once connected
        self.chain: ChainProcess | None = None  # the emulated servo chain when fake
        self.read_retries = 0  # observation reads tried again after a lost status packet
        self._tmpdir: str | None = None
        self._limits = config.safety_limits()
        self._has_base = bool(self.family.wheels)

    # ------------------------------------------------------------------ specs
    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        spec = {
            "joint_pos": KeySpec(
                (N_JOINTS,), "float32", "rad", names=tuple(f"joint_{j}" for j in ARM_JOINTS), low=c.joint_low, high=c.joint_high
            ),
            "gripper": KeySpec((1,), "float32", "percent", names=("gripper",), low=(0.0,), high=(100.0,)),
        }
        if self._has_base:
            spec["base_vel"] = KeySpec((3,), "float32", "m/s, m/s, rad/s", names=BASE_NAMES)
        return spec

    @property
    def action_spec(self) -> KeySpec:
        names = (*(f"joint_{j}" for j in ARM_JOINTS), "gripper") + (BASE_NAMES if self._has_base else ())
        units = "rad, percent, m/s, m/s, rad/s" if self._has_base else "rad, percent"
        return KeySpec((len(names),), "float32", units, names=names, low=self._limits.low, high=self._limits.high)

    # ------------------------------------------------------------------ lifecycle
    def _calibration_dir(self) -> Path:
        c = self.config
        if c.calibration_dir:
            return Path(c.calibration_dir).expanduser()
        if c.fake:
            self._tmpdir = tempfile.mkdtemp(prefix=f"robot_rl_{c.name}_calibration_")
            return Path(self._tmpdir)
        from lerobot.utils.constants import HF_LEROBOT_CALIBRATION, ROBOTS

        return Path(HF_LEROBOT_CALIBRATION) / ROBOTS / self._lerobot_cls.name

    def calibrate_command(self) -> str:
        """The lerobot command that calibrates this robot (run once, on the robot's computer)."""
        c = self.config
        cmd = f"lerobot-calibrate --robot.type={self.family.lerobot_type} --robot.port={c.port or '/dev/ttyACM0'} --robot.id={c.id}"
        return cmd + (f" --robot.calibration_dir={c.calibration_dir}" if c.calibration_dir else "")

    def _start_fake(self, fpath: Path) -> str:
        cal = read_calibration(fpath, self.family) if fpath.is_file() else fake_calibration(self.family)
        if not fpath.is_file():
            write_calibration(fpath, self.family, cal)
        ids = dict((name, id_) for name, (id_, _) in zip(self.family.motor_names, self.family.models, strict=True))
        start = {}
        for name, mc in cal.items():
            mid = (mc.range_min + mc.range_max) / 2
            start[ids[name]] = mid + mc.homing_offset if name not in self.family.wheels else 2048.0
        # in a process of its own: a thread of this process misses lerobot's ~30 ms status
        # timeouts whenever this process holds the GIL for longer (fake_servos.ChainProcess)
        self.chain = self.family.chain_process(start_ticks=start).start()
        self.chain.calibrate({ids[name]: mc for name, mc in cal.items()})
        return self.chain.port

    def connect(self) -> None:
        if self.is_connected:
            return
        c = self.config
        cal_dir = self._calibration_dir()
        fpath = cal_dir / f"{c.id}.json"
        robot: Any = None
        try:
            if c.fake:
                port = self._start_fake(fpath)
            else:
                port = c.port
                if not port:
                    raise ValueError(
                        f"robot {c.name!r} needs its serial port: robot_config:='{{\"port\": \"/dev/ttyACM0\"}}' "
                        '(lerobot-find-port finds it), or {"fake": true} to try it without hardware'
                    )
                if not Path(port).exists():
                    raise FileNotFoundError(
                        f"robot {c.name!r}: serial port {port} does not exist: plug the controller board in "
                        "(USB and power), or find its port with lerobot-find-port"
                    )
                if not fpath.is_file():
                    raise FileNotFoundError(
                        f"robot {c.name!r}: no lerobot calibration for id {c.id!r} ({fpath}); "
                        f"calibrate once with: {self.calibrate_command()}"
                    )
            kwargs: dict[str, Any] = dict(
                port=port,
                id=c.id,
                calibration_dir=cal_dir,
                cameras={},
                use_degrees=True,
                max_relative_target=c.max_relative_target or None,
                disable_torque_on_disconnect=c.disable_torque_on_disconnect,
            )
            robot = self._lerobot_cls(self._lerobot_config_cls(**kwargs))
            if set(robot.calibration) != set(self.family.motor_names):
                raise ValueError(
                    f"robot {c.name!r}: calibration {fpath} does not cover motors {list(self.family.motor_names)}; "
                    f"run {self.calibrate_command()}"
                )
            for attempt in range(1, max(1, c.connect_attempts) + 1):
                try:
                    robot.connect(calibrate=False)  # lerobot's calibrate() prompts on stdin: never from a driver
                    break
                except (RuntimeError, ConnectionError) as exc:  # a missed ping or status packet on the bus
                    if attempt >= c.connect_attempts:
                        raise
                    log.warning("%s: bus handshake failed (attempt %d of %d), retrying: %s", c.name, attempt, c.connect_attempts, str(exc).splitlines()[0])
                    if robot.bus.is_connected:
                        robot.bus.disconnect(disable_torque=False)
                    time.sleep(0.5 * attempt)
            self.lerobot = robot
            if not robot.is_calibrated:
                # the motors' calibration registers differ from the file (e.g. the arm was calibrated on
                # another computer): write the file to the motors, as lerobot does when its prompt gets ENTER
                log.warning("%s: writing calibration %s to the motors (they held a different one)", c.name, fpath)
                with robot.bus.torque_disabled():
                    robot.bus.write_calibration(robot.calibration)
            self._warn_limits(robot)
        except BaseException:
            if robot is not None and robot.bus.is_connected:  # a failed handshake or configure: close the port
                try:
                    robot.bus.disconnect(disable_torque=False)
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    log.debug("%s: closing the bus after a failed connect failed too", c.name, exc_info=True)
            self._cleanup()
            raise

    def _warn_limits(self, robot: Any) -> None:
        """Log joints whose command bounds reach past the calibrated range (the servo clamps there)."""
        for k, joint in enumerate(ARM_JOINTS):
            cal = robot.calibration[self.family.prefix + joint]
            half = math.radians((cal.range_max - cal.range_min) / 2 * 360 / 4095)
            if self.config.joint_high[k] > half + 1e-6 or self.config.joint_low[k] < -half - 1e-6:
                log.warning(
                    "%s: joint %s bounds [%.3g, %.3g] rad reach past its calibrated range +-%.3g rad; set joint_low / joint_high",
                    self.config.name, joint, self.config.joint_low[k], self.config.joint_high[k], half,
                )

    @property
    def is_connected(self) -> bool:
        return self.lerobot is not None and bool(self.lerobot.is_connected)

    def disconnect(self) -> None:
        try:
            if self.is_connected:
                self.lerobot.disconnect()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self.lerobot = None
        if self.chain is not None:
            self.chain.stop()
            self.chain = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # ------------------------------------------------------------------ I/O
    def _require(self) -> Any:
        if not self.is_connected:
            raise ConnectionError(f"robot {self.config.name!r} is not connected: call connect() first")
        return self.lerobot

    def get_observation(self) -> Obs:
        robot = self._require()
        for attempt in range(1, max(1, self.config.read_attempts) + 1):
            try:
                reading = robot.get_observation()
                break
            except ConnectionError as exc:  # a status packet lost on the bus: read again
                if attempt >= self.config.read_attempts:
                    raise ConnectionError(f"robot {self.config.name!r}: {attempt} reads of the bus failed: {exc}") from exc
                self.read_retries += 1
                log.warning("%s: bus read failed (attempt %d of %d), reading again: %s", self.config.name, attempt, self.config.read_attempts, str(exc).splitlines()[0])
        p = self.family.prefix
        obs = {
            "joint_pos": np.radians([reading[f"{p}{j}.pos"] for j in ARM_JOINTS]).astype(np.float32),
            "gripper": np.array([reading[f"{p}gripper.pos"]], np.float32),
        }
        if self._has_base:
            obs["base_vel"] = np.array([reading["x.vel"], reading["y.vel"], math.radians(reading["theta.vel"])], np.float32)
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        robot = self._require()
        n = self._limits.size
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (n,):
            names = ", ".join(self.action_spec.names or ())
            raise ValueError(f"robot {self.config.name!r} takes an action of shape ({n},) ({names}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(
                f"robot {self.config.name!r}: refusing non-finite action value {a[bad]} at index {bad}; nothing was sent"
            )
        a = np.clip(a, self._limits.low, self._limits.high)
        p = self.family.prefix
        command: dict[str, float] = {f"{p}{j}.pos": math.degrees(a[k]) for k, j in enumerate(ARM_JOINTS)}
        command[f"{p}gripper.pos"] = float(a[N_JOINTS])
        if self._has_base:
            command.update({"x.vel": float(a[6]), "y.vel": float(a[7]), "theta.vel": math.degrees(a[8])})
        sent = robot.send_action(command)
        out = [math.radians(sent[f"{p}{j}.pos"]) for j in ARM_JOINTS] + [sent[f"{p}gripper.pos"]]
        if self._has_base:
            scale = self._wheel_scale(robot, command)
            out += [sent["x.vel"] * scale, sent["y.vel"] * scale, math.radians(sent["theta.vel"]) * scale]
        return np.asarray(out, dtype=np.float32)

    @staticmethod
    def _wheel_scale(robot: Any, command: dict[str, float]) -> float:
        """The factor lerobot's LeKiwi scaled the base command by (1 unless a wheel saturates)."""
        raw = robot._body_to_wheel_raw(command["x.vel"], command["y.vel"], command["theta.vel"], max_raw=2**31)
        peak = max(abs(v) for v in raw.values())
        return min(1.0, LEKIWI_MAX_WHEEL_RAW / peak) if peak > 0 else 1.0

    def hold_action(self, obs: Obs) -> np.ndarray:
        parts = [np.asarray(obs["joint_pos"], np.float64), np.asarray(obs["gripper"], np.float64)]
        if self._has_base:
            parts.append(np.zeros(3))
        return np.concatenate(parts)


@register_robot(SO100Config)
class SO100(LeRobotDriver):
    """SO-100 follower arm through lerobot's ``SO100Follower``."""


@register_robot(SO101Config)
class SO101(LeRobotDriver):
    """SO-101 follower arm through lerobot's ``SO101Follower``."""


@register_robot(KochConfig)
class Koch(LeRobotDriver):
    """Koch follower arm through lerobot's ``KochFollower``."""


@register_robot(LeKiwiConfig)
class LeKiwi(LeRobotDriver):
    """LeKiwi (arm + omniwheel base) through lerobot's on-robot ``LeKiwi`` class."""
