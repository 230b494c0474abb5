"""Leader-arm teleop: an SO-100 / SO-101 leader (lerobot) drives a joint-position follower.

    robot-rl launch record.launch.yaml robot:=<follower> teleop:=leader_arm out:=runs/so101.zarr \\
        device_config:='{"port": "/dev/ttyACM0", "id": "my_leader"}'

Calibrate the leader once with lerobot first (the node never prompts)::

    lerobot-calibrate --teleop.type=so101_leader --teleop.port=/dev/ttyACM0 --teleop.id=my_leader

The leader has no buttons: episode events come from the terminal's keys
(``robot_rl.teleop.keyboard.EVENT_KEYS``). ``map_leader`` is the pure mapping;
``FakeLeader`` stands in for the arm in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.teleop import Teleop, register_teleop
from robot_rl.teleop.keyboard import EVENT_HELP, TerminalKeys, key_events

SO_LEADER_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
INSTALL = "pip install 'robot-rl[lerobot]' 'lerobot[feetech]==0.6.1'"


class Leader(Protocol):
    """What the device uses of a lerobot ``Teleoperator``."""

    @property
    def is_calibrated(self) -> bool: ...

    def connect(self, calibrate: bool = True) -> None: ...

    def get_action(self) -> dict[str, float]: ...

    def disconnect(self) -> None: ...


def follower_joints(spec: KeySpec) -> int:
    """Number of joints of a joint-position follower (action ``joint_* ..., gripper``)."""
    names = tuple(spec.names or ())
    if not names or names[-1] != "gripper" or not all(n.startswith("joint_") for n in names[:-1]):
        raise ValueError(f"the leader_arm device drives joint-position arms (action joint_*..., gripper); this robot's action elements are {names}")
    return len(names) - 1


def map_leader(reading: dict[str, float], spec: KeySpec, joints: Sequence[str], signs: Sequence[float], offsets: Sequence[float], gripper_invert: bool) -> np.ndarray:
    """Leader reading -> absolute follower action (D,) float64.

    ``reading`` is lerobot's ``get_action()``: ``{"<joint>.pos": degrees, ...,
    "gripper.pos": 0..100}``. Joint k of the follower = ``signs[k] * radians(reading[joints[k]])
    + offsets[k]`` (rad). The gripper maps 0..100 to [-1, 1] (reversed with
    ``gripper_invert``), then linearly onto the follower's gripper range when the spec
    has limits. Limits and step sizes are left to the robot node's safety filter.
    """
    missing = [k for k in (*(f"{j}.pos" for j in joints), "gripper.pos") if k not in reading]
    if missing:
        raise ValueError(f"leader reading has no {missing}; it has {sorted(reading)}")
    q = np.radians([reading[f"{j}.pos"] for j in joints]) * np.asarray(signs, dtype=np.float64) + np.asarray(offsets, dtype=np.float64)
    g = float(np.clip(reading["gripper.pos"], 0.0, 100.0)) / 50.0 - 1.0
    g = -g if gripper_invert else g
    if spec.low is not None and spec.high is not None:
        lo, hi = spec.low[-1], spec.high[-1]
        g = lo + (g + 1.0) / 2.0 * (hi - lo)
    return np.append(q, g)


class FakeLeader:
    """A scripted leader arm: each ``get_action()`` returns the next reading, then repeats the last."""

    def __init__(self, readings: Iterable[dict[str, float]] = (), calibrated: bool = True) -> None:
        self._queue = [dict(r) for r in readings]
        self._last = {f"{j}.pos": 0.0 for j in (*SO_LEADER_JOINTS, "gripper")}
        self.is_calibrated = calibrated
        self.is_connected = False

    def connect(self, calibrate: bool = True) -> None:
        self.is_connected = True

    def get_action(self) -> dict[str, float]:
        if not self.is_connected:
            raise ConnectionError("FakeLeader is not connected")
        if self._queue:
            self._last = self._queue.pop(0)
        return dict(self._last)

    def disconnect(self) -> None:
        self.is_connected = False


def so_leader(port: str, model: str, id: str, calibration_dir: str) -> Leader:
    """lerobot's SO-100 / SO-101 leader on ``port``, joint positions in degrees."""
    if model not in ("so100", "so101"):
        raise ValueError(f"unknown leader model {model!r}; choose so100 or so101")
    try:
        from lerobot.teleoperators.so_leader import SOLeader, SOLeaderTeleopConfig

        config = SOLeaderTeleopConfig(port=port, id=id, calibration_dir=Path(calibration_dir) if calibration_dir else None, use_degrees=True)
        return SOLeader(config)
    except ImportError as exc:  # lerobot itself, or its Feetech servo SDK
        raise ImportError(f"the leader_arm device needs lerobot with Feetech support: {INSTALL} ({exc})") from exc


@register_teleop("leader_arm")
class LeaderArmTeleop(Teleop):
    """SO-100 / SO-101 leader arm -> absolute joint positions for the follower.

    Move the leader; the follower's ``joint_*`` targets follow (rad), its gripper
    follows the leader's gripper. Episode keys on the terminal: Enter start,
    y success, n failure, x discard, i intervene, 0 reset (sim), Esc quit.

    The leader is connected on first use (``connect(calibrate=False)``) and must
    already be calibrated (see the module docstring). The follower's first command is
    the leader's pose: the robot node's safety filter limits how far it moves per tick.

    Args:
        action_spec: the follower's action spec (``joint_*..., gripper``).
        port: the leader's serial port (``lerobot-find-port`` finds it).
        model: ``so101`` or ``so100``.
        id: lerobot's id of the leader (names its calibration file).
        calibration_dir: where lerobot keeps the calibration (default: lerobot's).
        joints: leader joints in follower joint order (as many as the follower has).
        signs: per joint +1 / -1 (default all +1).
        offsets: per joint offset added after the sign, rad (default 0).
        gripper_invert: reverse the gripper (closing the leader opens the follower).
        fd: file descriptor for the episode keys (default stdin).
        leader: a ready leader object instead of lerobot's (e.g. ``FakeLeader``).
    """

    def __init__(
        self,
        action_spec: KeySpec,
        port: str = "",
        model: str = "so101",
        id: str = "leader",
        calibration_dir: str = "",
        joints: Sequence[str] = SO_LEADER_JOINTS,
        signs: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
        gripper_invert: bool = False,
        fd: int | None = None,
        leader: Leader | None = None,
    ) -> None:
        n = follower_joints(action_spec)
        self.joints = tuple(joints)
        self.signs = tuple(signs) if signs is not None else (1.0,) * n
        self.offsets = tuple(offsets) if offsets is not None else (0.0,) * n
        if not len(self.joints) == len(self.signs) == len(self.offsets) == n:
            raise ValueError(f"the follower has {n} joints; joints {self.joints}, signs {self.signs} and offsets {self.offsets} must have {n} entries each")
        if leader is None:
            if not port:
                raise ValueError('leader_arm needs the leader\'s serial port: device_config:=\'{"port": "/dev/ttyACM0"}\' (lerobot-find-port finds it)')
            if not Path(port).exists():
                raise FileNotFoundError(f"leader arm port {port} does not exist: plug the leader in, or find its port with lerobot-find-port")
            leader = so_leader(port, model, id, calibration_dir)
        self.leader = leader
        self.spec, self.gripper_invert = action_spec, gripper_invert
        self.calibrate_hint = f"lerobot-calibrate --teleop.type={model}_leader --teleop.port={port or 'PORT'} --teleop.id={id}"
        self._connected = False
        self.keys = TerminalKeys(fd, help=EVENT_HELP)
        self.usage = f"move the leader; {EVENT_HELP}"

    def _connect(self) -> None:
        self.leader.connect(calibrate=False)
        self._connected = True
        if not self.leader.is_calibrated:
            raise RuntimeError(f"the leader arm is not calibrated: run {self.calibrate_hint}")

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if not self._connected:
            self._connect()
        return map_leader(self.leader.get_action(), self.spec, self.joints, self.signs, self.offsets, self.gripper_invert)

    def events(self) -> list[str]:
        return key_events(self.keys)

    def close(self) -> None:
        self.keys.close()
        if self._connected:
            self.leader.disconnect()
            self._connected = False
