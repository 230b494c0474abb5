"""Terminal keyboard teleop: no GUI and no arrow keys, so it works over ssh.

    robot-rl launch record.launch.yaml robot:=sim_lift teleop:=keyboard out:=runs/lift.zarr

``TerminalKeys`` reads keys without blocking from a file descriptor (stdin by default,
switched to cbreak mode and restored on close); ``EVENT_KEYS`` are the episode keys,
shared with the devices that have no buttons of their own (``leader_arm``).
"""

from __future__ import annotations

import codecs
import logging
import os
import select
import stat
import sys
import termios
import time
import tty
from collections.abc import Callable

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.teleop import Teleop, register_teleop
from robot_rl.teleop.mapping import LAYOUTS, action_layout, joint_indices, to_action

log = logging.getLogger(__name__)

ESC, CTRL_C, CTRL_D = "\x1b", "\x03", "\x04"

EVENT_KEYS = {
    "\n": "start",  # Enter
    "y": "success",
    "n": "failure",
    "x": "discard",
    "i": "intervene",
    "0": "reset",
    ESC: "quit",
    CTRL_C: "quit",  # as a byte (a pipe); on a terminal Ctrl-C stays SIGINT, which stops the launch
    CTRL_D: "quit",  # also sent by TerminalKeys at end of input
}
EVENT_HELP = "Enter start, y success, n failure, x discard, i intervene, 0 reset (sim), Esc quit"

# key -> (action element, direction)
ARM_KEYS = {
    "w": ("dx", 1), "s": ("dx", -1),
    "a": ("dy", 1), "d": ("dy", -1),
    "r": ("dz", 1), "f": ("dz", -1),
    "u": ("dax", 1), "o": ("dax", -1),
    "j": ("day", 1), "l": ("day", -1),
    "q": ("daz", 1), "e": ("daz", -1),
}  # fmt: skip
BASE_KEYS = {"w": ("v", 1), "s": ("v", -1), "a": ("omega", 1), "d": ("omega", -1)}
JOINT_KEYS = {"w": ("selected joint", 1), "s": ("selected joint", -1)}  # element index unused: the selected joint moves
GRIPPER_KEY = " "


def split_keys(text: str) -> list[str]:
    """Terminal input -> keys. ``\\r`` and ``\\r\\n`` read as ``\\n`` (Enter); an escape
    sequence (arrow and function keys, ``\\x1b[A``) is one key; a lone ESC is ESC."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\r":
            c = "\n"
            if text[i + 1 : i + 2] == "\n":
                i += 1
        elif c == ESC and text[i + 1 : i + 2] == "[":  # CSI: parameters, then a final byte @..~
            j = i + 2
            while j < len(text) and not "@" <= text[j] <= "~":
                j += 1
            c, i = text[i : j + 1], j
        elif c == ESC and text[i + 1 : i + 2] == "O":  # SS3: F1-F4, keypad arrows
            c, i = text[i : i + 3], i + 2
        keys.append(c)
        i += 1
    return keys


class TerminalKeys:
    """Keys typed on a terminal (or written to any file descriptor), read without blocking.

    On a TTY the terminal is put in cbreak mode (keys arrive as typed, no echo; Ctrl-C
    still sends SIGINT) until ``close()``. End of input reads as Ctrl-D, once.

    Args:
        fd: file descriptor to read; default stdin. Under ``robot-rl launch`` the nodes
            inherit the launcher's terminal.
        help: the device's key map, shown when an unknown key is pressed.
    """

    def __init__(self, fd: int | None = None, help: str = "") -> None:
        self.fd = sys.stdin.fileno() if fd is None else int(fd)
        self.help = help
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ended = False
        self._warned: set[str] = set()
        self._saved: list | None = None
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def read(self) -> list[str]:
        """Keys that arrived since the last call (never blocks)."""
        if self._ended:
            return []
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self._ended = True
                break
            data += chunk
        keys = split_keys(self._decoder.decode(data, final=self._ended))
        return keys + [CTRL_D] if self._ended else keys

    def unknown(self, key: str) -> None:
        """Warn once per key that it does nothing, with the key map."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning("unknown key %r; keys: %s", key, self.help)

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


def key_events(keys: TerminalKeys) -> list[str]:
    """Episode events from the keys typed since the last call (EVENT_KEYS; others warn)."""
    out = []
    for key in keys.read():
        if key in EVENT_KEYS:
            out.append(EVENT_KEYS[key])
        else:
            keys.unknown(key)
    return out


@register_teleop("keyboard")
class KeyboardTeleop(Teleop):
    """Terminal keyboard: motion keys step the robot, episode keys send events.

    End-effector delta arms (action ``dx dy dz dax day daz gripper``, e.g. ``sim_lift``)::

        w / s   +x / -x (forward / back)      u / o   +roll / -roll  (about x)
        a / d   +y / -y (left / right)        j / l   +pitch / -pitch (about y)
        r / f   +z / -z (up / down)           q / e   +yaw / -yaw    (about z)
        space   toggle the gripper (starts open)

    Mobile bases (action ``v omega``, e.g. ``sim_base``)::

        w / s   forward / backward            a / d   turn left / right

    Joint-position arms (action ``joint_* [gripper] [other]``: ``mock_arm``, ``ur``, ``franka``,
    ``xarm``, ``so101``, ``koch``, ``lekiwi``'s arm), jogged one joint at a time as on a teach pendant::

        1 .. 9  select joint 1 .. 9           w / s   jog the selected joint + / - (``joint_step`` rad per tick)
        space   toggle the gripper (starts open: its ``low``)

    The jog starts from the measured ``joint_pos`` of the first observation and sends absolute
    targets every tick, so the arm stays where it was jogged; other elements (e.g. a base's
    velocities) are 0.

    Episode keys (every layout)::

        Enter start   y success   n failure   x discard   i intervene
        0 reset (sim twins)   Esc quit (also Ctrl-D and end of input)

    Each ``get_action`` moves every element whose key arrived since the previous call,
    or within ``hold_s`` before it, by ``step`` of its range (+step * high, -step * |low|);
    other elements are 0 (hold still). Holding a key works through the terminal's
    auto-repeat; ``hold_s`` bridges the gaps between repeats. Opposite keys cancel.

    Args:
        action_spec: the robot's action spec; its names pick the layout above.
        step: fraction of the action range per key, in (0, 1].
        hold_s: how long (s) a key keeps acting after it arrives; 0 = only the next call.
        fd: file descriptor to read keys from (default stdin; see ``TerminalKeys``).
        clock: monotonic clock in seconds (tests pass a fake one).
        keys_from: path of a file or FIFO to read keys from instead of ``fd`` (scripted
            sessions: ``mkfifo /tmp/keys``, then write keys to it; a FIFO is opened
            read-write, so it does not read as end of input while no writer is connected:
            write Esc to quit). A regular file is read to its end, which quits.
        events_only: episode keys only (no command is sent, so the robot node holds the robot).
        joint_step: joint-position arms: rad per tick that a jog key moves the selected joint.
    """

    def __init__(
        self,
        action_spec: KeySpec,
        step: float = 0.3,
        hold_s: float = 0.1,
        fd: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        keys_from: str = "",
        events_only: bool = False,
        joint_step: float = 0.02,
    ) -> None:
        if not 0.0 < step <= 1.0:
            raise ValueError(f"keyboard step {step} must be in (0, 1] (a fraction of the action range)")
        if hold_s < 0.0:
            raise ValueError(f"keyboard hold_s {hold_s} must be >= 0")
        if not 0.0 < joint_step <= 0.5:
            raise ValueError(f"keyboard joint_step {joint_step} must be in (0, 0.5] rad")
        self.spec = action_spec
        self.events_only = events_only
        self.joints = joint_indices(action_spec) if not events_only else []
        if events_only:
            layout = "events"
        elif self.joints and tuple(action_spec.names or ()) not in LAYOUTS.values():
            layout = "joint"
        else:
            layout = action_layout(action_spec, "keyboard", ("ee_delta", "base"))
        self.layout = layout
        self.joint_step = joint_step
        self.selected = 0
        self._target: np.ndarray | None = None
        names = tuple(action_spec.names or ()) if layout == "joint" else LAYOUTS.get(layout, ())
        motion = ARM_KEYS if layout == "ee_delta" else BASE_KEYS if layout == "base" else JOINT_KEYS if layout == "joint" else {}
        self._motion = {key: (0 if layout == "joint" else names.index(name), sign) for key, (name, sign) in motion.items()}
        self._gripper = names.index("gripper") if "gripper" in names else None
        self._size = len(names)
        self.step, self.hold_s, self._clock = step, hold_s, clock
        self.gripper_closed = False
        self._last_seen: dict[str, float] = {}
        self._fresh: set[str] = set()
        self._events: list[str] = []
        moves = ", ".join(f"{k} {'+' if s > 0 else '-'}{names[i]}" for k, (i, s) in self._motion.items())
        if layout == "joint":
            moves = f"1-{min(len(self.joints), 9)} select a joint, w / s jog it"
        gripper = ", space gripper" if self._gripper is not None else ""
        self.usage = f"{moves}{gripper}; {EVENT_HELP}" if motion else f"episode keys only: {EVENT_HELP}"
        self._keys_fd: int | None = None
        if keys_from:
            if not os.path.exists(keys_from):
                raise FileNotFoundError(f"keyboard keys_from {keys_from!r} does not exist (create it with mkfifo, or give a file of keys)")
            fifo = stat.S_ISFIFO(os.stat(keys_from).st_mode)
            self._keys_fd = fd = os.open(keys_from, (os.O_RDWR if fifo else os.O_RDONLY) | os.O_NONBLOCK)
        self.keys = TerminalKeys(fd, help=self.usage)

    def _poll(self) -> None:
        now = self._clock()
        for key in self.keys.read():
            if key in self._motion:
                self._last_seen[key] = now
                self._fresh.add(key)
            elif self.layout == "joint" and key in "123456789" and int(key) <= len(self.joints):
                self.selected = int(key) - 1
            elif key == GRIPPER_KEY and self._gripper is not None:
                self.gripper_closed = not self.gripper_closed
            elif key in EVENT_KEYS:
                self._events.append(EVENT_KEYS[key])
            else:
                self.keys.unknown(key)

    def get_action(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        self._poll()
        if self.events_only:
            return None
        if self.layout == "joint":
            return self._joint_action(obs)
        now = self._clock()
        u = np.zeros(self._size)
        for key, (i, sign) in self._motion.items():
            if key in self._fresh or now - self._last_seen.get(key, -np.inf) < self.hold_s:
                u[i] += sign * self.step
        self._fresh.clear()
        if self._gripper is not None:
            u[self._gripper] = 1.0 if self.gripper_closed else -1.0
        return to_action(u, self.spec)

    def _joint_action(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """Absolute targets: the jogged joint moves by ``joint_step`` per tick while its key is active."""
        if self._target is None:
            q = obs.get("joint_pos")
            if q is None or np.asarray(q).size != len(self.joints):
                raise ValueError(f"keyboard joint jog needs obs['joint_pos'] with {len(self.joints)} values (the action's joint_* elements)")
            self._target = np.zeros(self._size)
            self._target[self.joints] = np.asarray(q, dtype=np.float64).ravel()
        now = self._clock()
        for key, (_, sign) in self._motion.items():
            if key in self._fresh or now - self._last_seen.get(key, -np.inf) < self.hold_s:
                self._target[self.joints[self.selected]] += sign * self.joint_step
        self._fresh.clear()
        if self.spec.low is not None and self.spec.high is not None:
            np.clip(self._target, self.spec.low, self.spec.high, out=self._target)
        if self._gripper is not None and self.spec.low is not None and self.spec.high is not None:
            self._target[self._gripper] = self.spec.high[self._gripper] if self.gripper_closed else self.spec.low[self._gripper]
        return self._target.copy()

    def events(self) -> list[str]:
        self._poll()
        out, self._events = self._events, []
        return out

    def close(self) -> None:
        self.keys.close()
        if self._keys_fd is not None:
            os.close(self._keys_fd)
            self._keys_fd = None
