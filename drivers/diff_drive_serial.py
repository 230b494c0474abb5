"""A generic differential-drive base over a serial motor controller (pyserial).

    robot-rl launch record.launch.yaml robot:=diff_drive_serial teleop:=keyboard out:=runs/base.zarr \\
        robot_config:='{"port": "/dev/ttyUSB0", "wheel_radius": 0.05, "track_width": 0.3, "ticks_per_rev": 1440}'
    robot-rl launch record.launch.yaml robot:=diff_drive_serial robot_config:='{"fake": true}' \\
        teleop:=keyboard out:=/tmp/b.zarr

The board speaks a small ASCII line protocol (one request, one reply, ``\\n``-terminated;
the full spec for firmware writers is docs/robots/diff_drive_serial.md)::

    ?\\n               -> ID <firmware> <protocol version>\\n
    V <l> <r>\\n       -> OK\\n        wheel velocity targets, rad/s (feeds the firmware watchdog)
    E\\n               -> E <left ticks> <right ticks> <ms>\\n   cumulative encoder ticks, firmware ms clock
    S\\n               -> OK\\n        stop both wheels now
    W <ms>\\n          -> OK\\n        firmware watchdog: stop after <ms> without a V
    anything wrong    -> ERR <message>\\n

Action ``(v [m/s], omega [rad/s])`` -> wheel targets ``(v -+ omega * track/2) / radius``,
scaled down together when one exceeds ``max_wheel_speed`` (the turn radius is kept);
``send_action`` returns the (v, omega) of the wheel speeds actually sent. Observations
come from the encoders only: ``odom`` = (x, y, yaw, v, omega) integrated in this driver
(midpoint rule on the tick deltas and the firmware's ms clock) and ``wheel_vel`` (rad/s).

Faults: a reply that times out, is garbled (does not parse as the expected reply) or
implausible (an encoder jump faster than 3x ``max_wheel_speed``) is counted in
``errors`` by kind and the request is retried ``retries`` times after flushing the
input; ``max_consecutive_errors`` failed exchanges in a row raise ``SerialBaseError``
(the robot node then stops; the firmware watchdog stops the wheels). Between, a failed
encoder read returns the previous odometry (the ticks are cumulative: the next good
read catches up), a failed ``V`` returns the last acknowledged command. Nothing is
invented: no reading is made up from a reply that did not parse.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, Robot, RobotConfig
from robot_rl.robots.registry import register_robot
from robot_rl.safety import SafetyLimits

log = logging.getLogger(__name__)

INSTALL = "pip install 'robot-rl[serial]'"


class SerialBaseError(RuntimeError):
    """The motor controller stopped answering (or keeps answering nonsense)."""


def import_serial() -> Any:
    """pyserial, or an ImportError naming the extra to install."""
    try:
        import serial
    except ImportError as exc:
        raise ImportError(f"the diff_drive_serial robot needs pyserial: {INSTALL}") from exc
    return serial


@dataclass
class DiffDriveSerialConfig(RobotConfig):
    """A two-wheel differential-drive base behind a serial motor controller.

    Attributes:
        port: serial device of the controller (``/dev/ttyUSB0``, ``/dev/ttyACM0``); ignored with ``fake``.
        baudrate: serial speed, baud.
        wheel_radius: wheel radius, m.
        track_width: distance between the two wheels' contact points, m.
        ticks_per_rev: encoder ticks per wheel revolution (after any gearbox).
        max_wheel_speed: wheel speed limit, rad/s; wheel targets above it are scaled down together.
        max_linear: |v| limit of the safety filter, m/s.
        max_angular: |omega| limit of the safety filter, rad/s.
        max_accel: (linear m/s^2, angular rad/s^2); the filter's max change per tick is accel / fps.
        command_timeout: s without a valid command before the robot node stops the base.
        watchdog_ms: firmware watchdog set at connect (``W``): the board stops the wheels
            after this many ms without a ``V``, even if this computer hangs.
        reply_timeout: s to wait for each reply line.
        retries: extra attempts of a request whose reply timed out or did not parse.
        max_consecutive_errors: failed exchanges in a row before ``SerialBaseError``.
        fps: control rate, Hz.
        fake: run against the in-package firmware emulator (``FakeSerialBase``) on a pty.
    """

    name = "diff_drive_serial"
    port: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    wheel_radius: float = 0.05
    track_width: float = 0.30
    ticks_per_rev: int = 1024
    max_wheel_speed: float = 12.0
    max_linear: float = 0.5
    max_angular: float = 2.0
    max_accel: tuple[float, float] = (1.0, 4.0)
    command_timeout: float = 0.3
    watchdog_ms: int = 250
    reply_timeout: float = 0.05
    retries: int = 1
    max_consecutive_errors: int = 5
    fps: float = 20.0
    fake: bool = False

    def __post_init__(self) -> None:
        for attr in ("wheel_radius", "track_width", "max_wheel_speed", "max_linear", "max_angular", "reply_timeout"):
            value = getattr(self, attr)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{attr} must be positive, got {value!r}")
        if self.ticks_per_rev <= 0 or self.baudrate <= 0:
            raise ValueError(f"ticks_per_rev and baudrate must be positive, got {self.ticks_per_rev} / {self.baudrate}")
        if len(self.max_accel) != 2:
            raise ValueError(f"max_accel needs (linear m/s^2, angular rad/s^2), got {self.max_accel!r}")
        if not 10 <= self.watchdog_ms <= 10_000:
            raise ValueError(f"watchdog_ms must be 10..10000, got {self.watchdog_ms}")
        if self.retries < 0 or self.max_consecutive_errors < 1:
            raise ValueError("retries must be >= 0 and max_consecutive_errors >= 1")

    def safety_limits(self) -> SafetyLimits:
        dt = 1.0 / self.fps
        return SafetyLimits.base_velocity(self.max_linear, self.max_angular, self.max_accel, dt, self.command_timeout)


@register_robot(DiffDriveSerialConfig)
class DiffDriveSerial(Robot):
    config: DiffDriveSerialConfig

    def __init__(self, config: DiffDriveSerialConfig) -> None:
        super().__init__(config)
        self.fake: Any = None  # the FakeSerialBase when config.fake
        self.firmware = ""
        self.errors: Counter[str] = Counter()
        self._serial: Any = None
        self._consecutive = 0
        self._pose = np.zeros(3)
        self._body = np.zeros(2)
        self._wheel_vel = np.zeros(2)
        self._ticks: tuple[int, int] | None = None
        self._ms: int | None = None
        self._acked = np.zeros(2)

    # ---------------------------------------------------------------- specs
    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        w = self.config.max_wheel_speed
        return {
            "odom": KeySpec((5,), "float32", "m, m, rad, m/s, rad/s", names=("x", "y", "yaw", "v", "omega")),
            "wheel_vel": KeySpec((2,), "float32", "rad/s", names=("left", "right"), low=(-w, -w), high=(w, w)),
        }

    @property
    def action_spec(self) -> KeySpec:
        c = self.config
        low, high = (-c.max_linear, -c.max_angular), (c.max_linear, c.max_angular)
        return KeySpec((2,), "float32", "m/s, rad/s", names=("v", "omega"), low=low, high=high)

    # ---------------------------------------------------------------- connection
    def connect(self) -> None:
        serial = import_serial()
        c = self.config
        port = c.port
        if c.fake:
            from robot_rl.drivers.fake_serial_base import FakeSerialBase

            # the emulated board allows twice our wheel limit: the driver's saturation is what is tested
            fake = FakeSerialBase(c.ticks_per_rev, max_wheel_speed=c.max_wheel_speed * 2, watchdog_ms=c.watchdog_ms)
            self.fake = fake.start()
            port = self.fake.port
        try:
            self._serial = serial.Serial(port, c.baudrate, timeout=c.reply_timeout, write_timeout=c.reply_timeout)
        except serial.SerialException as exc:
            self._close_fake()
            hint = "is it plugged in, and is this user in the dialout group?"
            raise OSError(f"cannot open the motor controller on {port}: {exc} ({hint})") from exc
        try:
            reply = self._exchange("?", "ID")
            self.firmware = " ".join(reply[1:])
            self._exchange(f"W {c.watchdog_ms}", "OK")
            self._exchange("S", "OK")
            self._ticks, self._ms = self._read_encoders()
        except SerialBaseError as exc:
            self.disconnect()
            raise OSError(
                f"no motor controller speaking the diff_drive_serial protocol on {port} at {c.baudrate} baud: {exc}"
            ) from exc
        log.info("diff_drive_serial: %s on %s", self.firmware, port)

    @property
    def is_connected(self) -> bool:
        return self._serial is not None

    def disconnect(self) -> None:
        if self._serial is not None:
            try:
                self._exchange("S", "OK")
            except (SerialBaseError, OSError):
                log.warning("diff_drive_serial: no reply to stop at disconnect (the firmware watchdog stops it)")
            self._serial.close()
            self._serial = None
        self._close_fake()

    def _close_fake(self) -> None:
        if self.fake is not None:
            self.fake.close()
            self.fake = None

    # ---------------------------------------------------------------- protocol
    def _exchange(self, request: str, expect: str) -> list[str]:
        """Send one request line; return the reply's fields once it starts with ``expect``.

        Retries ``retries`` times on a timeout, an ``ERR`` of the link or a garbled line;
        raises SerialBaseError after ``max_consecutive_errors`` failed exchanges in a row,
        and at once on an ``ERR`` reply to a well-formed request (the firmware refused it).
        """
        if self._serial is None:
            raise SerialBaseError("not connected")
        last = ""
        for _ in range(1 + self.config.retries):
            self._serial.reset_input_buffer()  # a late reply to an earlier request must not answer this one
            self._serial.write((request + "\n").encode("ascii"))
            raw = self._serial.readline()
            if not raw.endswith(b"\n"):
                self.errors["timeout"] += 1
                last = f"no reply to {request!r} within {self.config.reply_timeout:g} s"
                continue
            fields = raw.decode("ascii", errors="replace").split()
            if fields and fields[0] == "ERR":
                raise SerialBaseError(f"the motor controller refused {request!r}: {' '.join(fields[1:])}")
            if not fields or fields[0] != expect or not self._well_formed(expect, fields):
                self.errors["garbled"] += 1
                last = f"garbled reply {raw!r} to {request!r}"
                continue
            self._consecutive = 0
            return fields
        self._consecutive += 1
        if self._consecutive >= self.config.max_consecutive_errors:
            raise SerialBaseError(f"{self._consecutive} failed exchanges in a row with the controller; last: {last}")
        log.warning("diff_drive_serial: %s (counted; holding)", last)
        raise _Failed(last)

    @staticmethod
    def _well_formed(expect: str, fields: list[str]) -> bool:
        if expect == "OK":
            return len(fields) == 1
        if expect == "E":
            return len(fields) == 4 and all(f.lstrip("-").isdigit() for f in fields[1:])
        return len(fields) >= 2  # ID <firmware> [<version>]

    def _read_encoders(self) -> tuple[tuple[int, int], int]:
        fields = self._exchange("E", "E")
        return (int(fields[1]), int(fields[2])), int(fields[3])

    # ---------------------------------------------------------------- Robot
    def get_observation(self) -> Obs:
        try:
            ticks, ms = self._read_encoders()
        except _Failed:
            return self._obs()  # counted in errors; the cumulative ticks catch up at the next read
        c = self.config
        assert self._ticks is not None and self._ms is not None
        dt = ((ms - self._ms) & 0xFFFFFFFF) / 1000.0  # the firmware clock wraps at 2**32 ms
        if dt > 0:
            d_ticks = np.array([ticks[0] - self._ticks[0], ticks[1] - self._ticks[1]], dtype=np.float64)
            d_angle = 2 * math.pi * d_ticks / c.ticks_per_rev
            wheel_vel = d_angle / dt
            if np.max(np.abs(wheel_vel)) > 3 * c.max_wheel_speed:
                self.errors["implausible"] += 1
                log.warning("diff_drive_serial: encoder jump of %s rad in %.3f s ignored (counted)", d_angle, dt)
                return self._obs()
            d_left, d_right = d_angle * c.wheel_radius
            ds, dyaw = (d_left + d_right) / 2, (d_right - d_left) / c.track_width
            x, y, yaw = self._pose
            mid = yaw + dyaw / 2
            yaw = (yaw + dyaw + math.pi) % (2 * math.pi) - math.pi
            self._pose = np.array([x + ds * math.cos(mid), y + ds * math.sin(mid), yaw])
            self._body = np.array([ds / dt, dyaw / dt])
            self._wheel_vel = wheel_vel
            self._ticks, self._ms = ticks, ms
        return self._obs()

    def _obs(self) -> Obs:
        odom = np.concatenate([self._pose, self._body]).astype(np.float32)
        return {"odom": odom, "wheel_vel": self._wheel_vel.astype(np.float32)}

    def wheel_targets(self, v: float, omega: float) -> np.ndarray:
        """(left, right) wheel speed, rad/s, for body velocity (v, omega), saturated together."""
        c = self.config
        wheels = np.array([v - omega * c.track_width / 2, v + omega * c.track_width / 2]) / c.wheel_radius
        peak = float(np.max(np.abs(wheels)))
        return wheels * (c.max_wheel_speed / peak) if peak > c.max_wheel_speed else wheels

    def send_action(self, action: np.ndarray) -> np.ndarray:
        v, omega = (float(a) for a in np.asarray(action, dtype=np.float64))
        if not (math.isfinite(v) and math.isfinite(omega)):
            raise ValueError(f"diff_drive_serial: non-finite command {(v, omega)}; commands must pass the SafetyFilter")
        c = self.config
        wheels = self.wheel_targets(v, omega)
        try:
            self._exchange(f"V {wheels[0]:.6f} {wheels[1]:.6f}", "OK")
            self._acked = np.array([float(f"{wheels[0]:.6f}"), float(f"{wheels[1]:.6f}")])
        except _Failed:
            pass  # the board keeps its last acknowledged target until its watchdog stops it
        left, right = self._acked * c.wheel_radius
        return np.array([(left + right) / 2, (right - left) / c.track_width], dtype=np.float32)

    def hold_action(self, obs: Obs) -> np.ndarray:
        return np.zeros(2)

    def stop(self) -> None:
        try:
            self._exchange("S", "OK")
            self._acked = np.zeros(2)
        except _Failed:
            pass


class _Failed(SerialBaseError):
    """One failed exchange, already counted and logged (not yet fatal)."""
