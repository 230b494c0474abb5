"""Gamepad teleop: pygame (SDL joystick API) or evdev (Linux input devices) backends.

    robot-rl launch record.launch.yaml robot:=sim_lift teleop:=gamepad out:=runs/lift.zarr \\
        device_config:='{"backend": "evdev"}'

The mapping from sticks and buttons to an action and events is the pure function
``map_gamepad``; a backend only reads the pad's state (``read() -> (axes, buttons)``).
``FakeJoystick`` replays scripted states through the same code path (tests, demos).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.teleop import EVENTS, Teleop, register_teleop
from robot_rl.teleop.mapping import LAYOUTS, action_layout, deadzone, rising_edges, to_action

INSTALL = "pip install 'robot-rl[teleop]'"

# SDL's joystick numbering for an Xbox-style pad (Linux xpad); the evdev backend reads
# these codes in this order so both backends give the same indices.
EVDEV_AXES = ("ABS_X", "ABS_Y", "ABS_Z", "ABS_RX", "ABS_RY", "ABS_RZ")
BUTTON_NAMES = ("A", "B", "X", "Y", "LB", "RB", "Back", "Start", "Guide", "LS", "RS")
EVDEV_BUTTONS = ("BTN_SOUTH", "BTN_EAST", "BTN_NORTH", "BTN_WEST", "BTN_TL", "BTN_TR", "BTN_SELECT", "BTN_START", "BTN_MODE", "BTN_THUMBL", "BTN_THUMBR")


@dataclass
class GamepadMapping:
    """Sticks -> action elements, buttons -> events (indices as SDL numbers an Xbox-style pad).

    Axes: 0 left stick x (+ right), 1 left stick y (+ down), 2 LT, 3 right stick x,
    4 right stick y, 5 RT. Buttons: 0 A, 1 B, 2 X, 3 Y, 4 LB, 5 RB, 6 Back, 7 Start,
    8 Guide, 9 left stick press, 10 right stick press.

    Default: arm (ee_delta) left stick = x / y, right stick = z / yaw (roll and pitch
    are not on the pad: use the spacemouse for 6-DoF); base left stick = v / omega;
    RB toggles the gripper; Start start, A success, B failure, X discard, Y intervene,
    Back reset, Guide quit.

    Attributes:
        axes: action element -> (axis index, sign); a stick pushed up reads -1, so
            "forward" has sign -1. Elements the robot does not have are ignored.
        deadzone: |axis| at or below this reads 0 (stick drift); above it the value is
            rescaled so the command starts from 0.
        scale: fraction of the action range at full deflection, in (0, 1].
        gripper_button: button that toggles the gripper (arms).
        buttons: button index -> event (from EVENTS); fires once per press.
    """

    axes: dict[str, tuple[int, float]] = field(
        default_factory=lambda: {"dx": (1, -1.0), "dy": (0, -1.0), "dz": (4, -1.0), "daz": (3, -1.0), "v": (1, -1.0), "omega": (0, -1.0)}
    )
    deadzone: float = 0.15
    scale: float = 0.5
    gripper_button: int = 5
    buttons: dict[int, str] = field(default_factory=lambda: {7: "start", 0: "success", 1: "failure", 2: "discard", 3: "intervene", 6: "reset", 8: "quit"})

    def __post_init__(self) -> None:
        # JSON (device_config) gives string keys and lists
        self.axes = {str(k): (int(v[0]), float(v[1])) for k, v in self.axes.items()}
        self.buttons = {int(k): str(v) for k, v in self.buttons.items()}
        known = {n for names in LAYOUTS.values() for n in names} - {"gripper"}
        if unknown := sorted(set(self.axes) - known):
            raise ValueError(f"gamepad mapping: unknown action element(s) {unknown}; known: {sorted(known)}")
        if bad := sorted(e for e in self.buttons.values() if e not in EVENTS):
            raise ValueError(f"gamepad mapping: unknown event(s) {bad}; events: {list(EVENTS)}")
        if self.gripper_button in self.buttons:
            raise ValueError(f"gamepad mapping: button {self.gripper_button} is both the gripper toggle and {self.buttons[self.gripper_button]!r}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"gamepad mapping: scale {self.scale} must be in (0, 1]")
        deadzone(0.0, self.deadzone)  # validates the width

    def check_pad(self, n_axes: int, n_buttons: int) -> None:
        """Fail clearly when the mapping names axes or buttons the pad does not have."""
        axes = [i for i, _ in self.axes.values() if i >= n_axes]
        buttons = [b for b in (self.gripper_button, *self.buttons) if b >= n_buttons]
        if axes or buttons:
            raise ValueError(f"gamepad has {n_axes} axes and {n_buttons} buttons; the mapping uses axes {axes} / buttons {buttons}")


class PadCommand(NamedTuple):
    u: np.ndarray  # (D,) normalised command in [-1, 1]; the gripper element is left at 0
    events: list[str]  # events fired by buttons pressed since the previous read
    toggle_gripper: bool


def map_gamepad(axes: Sequence[float], buttons: Sequence[bool], previous: Sequence[bool], names: Sequence[str], mapping: GamepadMapping) -> PadCommand:
    """One read of the pad -> normalised command, events and gripper toggle (edge-triggered)."""
    u = np.zeros(len(names))
    for element, (axis, sign) in mapping.axes.items():
        if element in names:
            u[list(names).index(element)] = sign * mapping.scale * float(deadzone(axes[axis], mapping.deadzone))
    pressed = rising_edges(previous, buttons)
    events = [mapping.buttons[b] for b in pressed if b in mapping.buttons]
    return PadCommand(u, events, mapping.gripper_button in pressed)


class JoystickBackend(Protocol):
    def read(self) -> tuple[list[float], list[bool]]:
        """The pad's state now: axes in [-1, 1], buttons down."""

    def close(self) -> None: ...


class FakeJoystick:
    """A scripted pad: each ``read()`` returns the next queued state, then repeats the last.

    States are ``(axes, buttons)``; the pad starts centred with nothing pressed.
    """

    def __init__(self, states: Iterable[tuple[Sequence[float], Sequence[bool]]] = (), n_axes: int = 6, n_buttons: int = 11) -> None:
        self._queue = [(list(map(float, a)), list(map(bool, b))) for a, b in states]
        self._last = ([0.0] * n_axes, [False] * n_buttons)
        self.closed = False

    def push(self, axes: Sequence[float], buttons: Sequence[bool]) -> None:
        self._queue.append((list(map(float, axes)), list(map(bool, buttons))))

    def read(self) -> tuple[list[float], list[bool]]:
        if self._queue:
            self._last = self._queue.pop(0)
        return list(self._last[0]), list(self._last[1])

    def close(self) -> None:
        self.closed = True


class PygameJoystick:
    """Pad ``index`` through SDL (pygame), headless: no window is opened."""

    def __init__(self, index: int = 0) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")  # no window has focus
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as exc:
            raise ImportError(f"the gamepad's pygame backend needs pygame: {INSTALL}") from exc
        pygame.display.init()  # the event pump needs the (dummy) video system
        pygame.joystick.init()
        count = pygame.joystick.get_count()
        if index >= count:
            raise OSError(f"no gamepad {index}: SDL sees {count} joystick(s); plug one in or try backend evdev")
        self._pygame = pygame
        self._pad = pygame.joystick.Joystick(index)

    def read(self) -> tuple[list[float], list[bool]]:
        self._pygame.event.pump()
        pad = self._pad
        return [pad.get_axis(i) for i in range(pad.get_numaxes())], [bool(pad.get_button(i)) for i in range(pad.get_numbuttons())]

    def close(self) -> None:
        self._pygame.joystick.quit()
        self._pygame.display.quit()


class EvdevJoystick:
    """A Linux input device (``/dev/input/eventN``; default: the first with a gamepad's
    south button), read without blocking; axes normalised from their absinfo range."""

    def __init__(self, path: str = "") -> None:
        try:
            import evdev
        except ImportError as exc:
            raise ImportError(f"the gamepad's evdev backend needs evdev: {INSTALL}") from exc
        ecodes = evdev.ecodes
        if not path:
            pads = [p for p in evdev.list_devices() if ecodes.BTN_SOUTH in evdev.InputDevice(p).capabilities().get(ecodes.EV_KEY, [])]
            if not pads:
                raise OSError("no gamepad among /dev/input/event*: plug one in (and check read permission: the input group)")
            path = pads[0]
        self._dev = evdev.InputDevice(path)
        self._ecodes = ecodes
        abs_codes = {code for code, _ in self._dev.capabilities().get(ecodes.EV_ABS, [])}
        self._axes = [ecodes.ecodes[n] for n in EVDEV_AXES]  # an axis the pad lacks reads 0
        self._buttons = [ecodes.ecodes[n] for n in EVDEV_BUTTONS]
        info = {c: self._dev.absinfo(c) for c in self._axes if c in abs_codes}
        self._range = {c: (i.min, i.max) for c, i in info.items()}
        self._value = {c: i.value for c, i in info.items()}
        self._down = set(self._dev.active_keys())

    def read(self) -> tuple[list[float], list[bool]]:
        while (event := self._dev.read_one()) is not None:
            if event.type == self._ecodes.EV_ABS and event.code in self._value:
                self._value[event.code] = event.value
            elif event.type == self._ecodes.EV_KEY:
                (self._down.add if event.value else self._down.discard)(event.code)
        axes = [self._normalised(c) if c in self._range else 0.0 for c in self._axes]
        return axes, [c in self._down for c in self._buttons]

    def _normalised(self, code: int) -> float:
        lo, hi = self._range[code]
        return 2.0 * (self._value[code] - lo) / max(hi - lo, 1) - 1.0

    def close(self) -> None:
        self._dev.close()


@register_teleop("gamepad")
class GamepadTeleop(Teleop):
    """Gamepad: sticks drive an ee_delta arm or a base, buttons send episode events.

    See ``GamepadMapping`` for the default layout (Xbox-style; other pads: pass a mapping).

    Args:
        action_spec: the robot's action spec (ee_delta arm or v/omega base).
        backend: ``pygame`` (SDL; any OS) or ``evdev`` (Linux input devices).
        index: pygame joystick index.
        path: evdev device path (default: the first gamepad found).
        mapping: a ``GamepadMapping`` or its fields as a dict (JSON ``device_config``).
        joystick: a ready backend instead of ``backend`` (e.g. ``FakeJoystick``).
    """

    def __init__(
        self,
        action_spec: KeySpec,
        backend: str = "pygame",
        index: int = 0,
        path: str = "",
        mapping: GamepadMapping | dict[str, Any] | None = None,
        joystick: JoystickBackend | None = None,
    ) -> None:
        self.spec = action_spec
        self.names = LAYOUTS[action_layout(action_spec, "gamepad", ("ee_delta", "base"))]
        self.mapping = mapping if isinstance(mapping, GamepadMapping) else GamepadMapping(**(mapping or {}))
        if joystick is None:
            backends = {"pygame": lambda: PygameJoystick(index), "evdev": lambda: EvdevJoystick(path)}
            if backend not in backends:
                raise ValueError(f"unknown gamepad backend {backend!r}; choose from {sorted(backends)}")
            joystick = backends[backend]()
        self.joystick = joystick
        button = dict(enumerate(BUTTON_NAMES))
        events = ", ".join(f"{button.get(b, b)} {e}" for b, e in self.mapping.buttons.items())
        gripper = f"{button.get(self.mapping.gripper_button, self.mapping.gripper_button)} gripper, " if "gripper" in self.names else ""
        self.usage = f"sticks move; {gripper}{events}"
        self._previous: list[bool] = []
        self._checked = False
        self.gripper_closed = False
        self._u = np.zeros(len(self.names))
        self._events: list[str] = []

    def _poll(self) -> None:
        axes, buttons = self.joystick.read()
        if not self._checked:
            self.mapping.check_pad(len(axes), len(buttons))
            self._checked = True
        cmd = map_gamepad(axes, buttons, self._previous, self.names, self.mapping)
        self._previous = buttons
        if cmd.toggle_gripper and "gripper" in self.names:
            self.gripper_closed = not self.gripper_closed
        self._u = cmd.u
        self._events += cmd.events

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self._poll()
        u = self._u.copy()
        if "gripper" in self.names:
            u[self.names.index("gripper")] = 1.0 if self.gripper_closed else -1.0
        return to_action(u, self.spec)

    def events(self) -> list[str]:
        self._poll()
        out, self._events = self._events, []
        return out

    def close(self) -> None:
        self.joystick.close()
