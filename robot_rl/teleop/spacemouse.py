"""3Dconnexion SpaceMouse teleop (pyspacemouse, raw HID): 6-DoF end-effector deltas.

    robot-rl launch record.launch.yaml robot:=sim_lift teleop:=spacemouse out:=runs/lift.zarr

The mapping from the mouse's state to an action and events is the pure function
``map_spacemouse``; the backend only reads the state. ``FakeSpaceMouse`` replays
scripted states through the same code path (tests, demos).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.teleop import Teleop, register_teleop
from robot_rl.teleop.keyboard import EVENT_HELP, TerminalKeys, key_events
from robot_rl.teleop.mapping import EE_DELTA, action_layout, deadzone, rising_edges, to_action

AXES = ("x", "y", "z", "roll", "pitch", "yaw")


class SpaceMouseState(NamedTuple):
    """One reading: translations and rotations in [-1, 1], buttons down."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: tuple[bool, ...] = (False, False)


@dataclass
class SpaceMouseMapping:
    """SpaceMouse axes -> ee_delta elements; its two buttons -> gripper and recording.

    The default signs are for pyspacemouse's default (legacy) axis convention: x right,
    y away from you, z up; they give the robot frame x forward, y left, z up, with the
    rotations about those axes. Models differ: check each direction once with the
    robot's twin and flip a sign here if needed.

    Attributes:
        axes: action element -> (SpaceMouse axis from AXES, sign).
        deadzone: |value| at or below this reads 0; above it is rescaled from 0.
        scale: fraction of the action range at full deflection, in (0, 1].
        gripper_button: toggles the gripper (starts open).
        record_button: starts an episode, and on the next press ends it as a success.
    """

    axes: dict[str, tuple[str, float]] = field(
        default_factory=lambda: {"dx": ("y", 1.0), "dy": ("x", -1.0), "dz": ("z", 1.0), "dax": ("roll", 1.0), "day": ("pitch", 1.0), "daz": ("yaw", -1.0)}
    )
    deadzone: float = 0.1
    scale: float = 1.0
    gripper_button: int = 0
    record_button: int = 1

    def __post_init__(self) -> None:
        self.axes = {str(k): (str(v[0]), float(v[1])) for k, v in self.axes.items()}  # JSON gives lists
        if bad := sorted(k for k in self.axes if k not in EE_DELTA or k == "gripper"):
            raise ValueError(f"spacemouse mapping: unknown action element(s) {bad}; known: {list(EE_DELTA[:6])}")
        if bad := sorted(a for a, _ in self.axes.values() if a not in AXES):
            raise ValueError(f"spacemouse mapping: unknown axis/axes {bad}; axes: {list(AXES)}")
        if self.gripper_button == self.record_button:
            raise ValueError(f"spacemouse mapping: gripper and record are both button {self.record_button}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"spacemouse mapping: scale {self.scale} must be in (0, 1]")
        deadzone(0.0, self.deadzone)  # validates the width


class MouseCommand(NamedTuple):
    u: np.ndarray  # (7,) normalised ee_delta command; the gripper element is left at 0
    toggle_gripper: bool
    record_pressed: bool


def map_spacemouse(state: SpaceMouseState, previous: Sequence[bool], mapping: SpaceMouseMapping) -> MouseCommand:
    """One reading -> normalised ee_delta command and the buttons pressed since the previous one."""
    u = np.zeros(len(EE_DELTA))
    for element, (axis, sign) in mapping.axes.items():
        u[EE_DELTA.index(element)] = sign * mapping.scale * float(deadzone(getattr(state, axis), mapping.deadzone))
    pressed = rising_edges(previous, state.buttons)
    return MouseCommand(u, mapping.gripper_button in pressed, mapping.record_button in pressed)


class SpaceMouseBackend(Protocol):
    def read(self) -> SpaceMouseState: ...

    def close(self) -> None: ...


class FakeSpaceMouse:
    """A scripted SpaceMouse: each ``read()`` returns the next queued state, then repeats the last."""

    def __init__(self, states: Iterable[SpaceMouseState] = ()) -> None:
        self._queue = list(states)
        self._last = SpaceMouseState()
        self.closed = False

    def push(self, state: SpaceMouseState) -> None:
        self._queue.append(state)

    def read(self) -> SpaceMouseState:
        if self._queue:
            self._last = self._queue.pop(0)
        return self._last

    def close(self) -> None:
        self.closed = True


class PySpaceMouse:
    """The first connected SpaceMouse (or the named model) through pyspacemouse >= 2."""

    def __init__(self, device: str = "") -> None:
        try:
            import pyspacemouse
        except ImportError as exc:
            raise ImportError("the spacemouse device needs pyspacemouse (and the hidapi library): pip install 'robot-rl[teleop]'") from exc
        try:
            self._dev = pyspacemouse.open(device=device or None)
        except (RuntimeError, ValueError, OSError) as exc:
            raise OSError(f"cannot open a SpaceMouse: {exc} (plugged in? on Linux the hidraw device needs a udev rule for read access)") from exc

    def read(self) -> SpaceMouseState:
        s = self._dev.read()
        return SpaceMouseState(s.x, s.y, s.z, s.roll, s.pitch, s.yaw, tuple(bool(b) for b in s.buttons))

    def close(self) -> None:
        self._dev.close()


@register_teleop("spacemouse")
class SpaceMouseTeleop(Teleop):
    """SpaceMouse: push/tilt the cap to move an ee_delta arm (dx..daz); left button
    toggles the gripper; right button starts an episode and, pressed again, ends it as
    a success. With ``event_keys`` the terminal's episode keys work too (failure,
    discard, reset, quit: see ``robot_rl.teleop.keyboard.EVENT_KEYS``).

    Args:
        action_spec: the robot's action spec (an ee_delta arm).
        device: pyspacemouse model name (default: the first one connected).
        mapping: a ``SpaceMouseMapping`` or its fields as a dict (JSON ``device_config``).
        event_keys: also read episode keys from the terminal (``fd``, default stdin).
        fd: file descriptor for ``event_keys``.
        mouse: a ready backend instead of opening one (e.g. ``FakeSpaceMouse``).
    """

    def __init__(
        self,
        action_spec: KeySpec,
        device: str = "",
        mapping: SpaceMouseMapping | dict[str, Any] | None = None,
        event_keys: bool = False,
        fd: int | None = None,
        mouse: SpaceMouseBackend | None = None,
    ) -> None:
        action_layout(action_spec, "spacemouse", ("ee_delta",))
        self.spec = action_spec
        self.mapping = mapping if isinstance(mapping, SpaceMouseMapping) else SpaceMouseMapping(**(mapping or {}))
        self.keys = TerminalKeys(fd, help=EVENT_HELP) if event_keys else None
        self.mouse = mouse if mouse is not None else PySpaceMouse(device)
        self.usage = f"cap moves; button {self.mapping.gripper_button} gripper, button {self.mapping.record_button} start / success"
        if self.keys is not None:
            self.usage += f"; {EVENT_HELP}"
        self.gripper_closed = False
        self.recording = False
        self._previous: tuple[bool, ...] = ()
        self._u = np.zeros(len(EE_DELTA))
        self._events: list[str] = []

    def _poll(self) -> None:
        state = self.mouse.read()
        cmd = map_spacemouse(state, self._previous, self.mapping)
        self._previous = state.buttons
        self._u = cmd.u
        if cmd.toggle_gripper:
            self.gripper_closed = not self.gripper_closed
        events = (["success" if self.recording else "start"] if cmd.record_pressed else []) + (key_events(self.keys) if self.keys else [])
        for event in events:
            if event in ("start", "success", "failure", "discard"):
                self.recording = event == "start"
        self._events += events

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self._poll()
        u = self._u.copy()
        u[EE_DELTA.index("gripper")] = 1.0 if self.gripper_closed else -1.0
        return to_action(u, self.spec)

    def events(self) -> list[str]:
        self._poll()
        out, self._events = self._events, []
        return out

    def close(self) -> None:
        self.mouse.close()
        if self.keys is not None:
            self.keys.close()
