"""A fake differential-drive motor controller: firmware emulator on a pseudo-terminal.

    fw = FakeSerialBase(ticks_per_rev=1024, wheel_accel=20.0, watchdog_ms=250)
    fw.start()                        # fw.port is a real tty path, e.g. /dev/pts/7
    serial.Serial(fw.port, 115200)    # speak the protocol of docs/robots/diff_drive_serial.md

It stands in for the board at the hardware boundary only: the real ``DiffDriveSerial``
driver opens ``fw.port`` with real pyserial, so line framing, timeouts and parsing run as
on a robot. The emulator implements the line protocol (``?``, ``V``, ``E``, ``S``, ``W``;
``OK`` / ``E ...`` / ``ID ...`` / ``ERR ...`` replies), ramps each wheel toward its target
velocity at ``wheel_accel`` rad/s^2, counts encoder ticks, and runs its own watchdog:
no ``V`` for ``watchdog_ms`` ms sets both targets to zero (the wheels ramp down), as the
firmware of a real board must. Motion is integrated exactly between requests (piecewise
constant acceleration), so readings do not depend on thread scheduling.

Faults for tests: ``inject(garble=n)`` corrupts the next n replies, ``inject(drop=n)``
sends no reply to the next n requests (the driver times out), ``inject(noise=n)``
sends n lines of line noise before the next reply.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import tty
from dataclasses import dataclass

FIRMWARE_ID = "robot_rl_fake_base"
PROTOCOL_VERSION = 1


@dataclass
class _Wheel:
    target: float = 0.0  # rad/s
    vel: float = 0.0  # rad/s
    angle: float = 0.0  # rad, cumulative

    def advance(self, dt: float, accel: float) -> None:
        """Ramp ``vel`` toward ``target`` at ``accel`` for ``dt`` s, integrating the angle exactly."""
        if dt <= 0:
            return
        gap = self.target - self.vel
        t_ramp = min(dt, abs(gap) / accel) if accel > 0 else 0.0
        a = math.copysign(accel, gap) if gap else 0.0
        self.angle += self.vel * t_ramp + 0.5 * a * t_ramp**2
        self.vel += a * t_ramp
        if t_ramp < dt:
            if accel <= 0 or abs(self.target - self.vel) < 1e-12:
                self.vel = self.target
            self.angle += self.vel * (dt - t_ramp)


class FakeSerialBase:
    """Firmware emulator of a two-wheel motor controller on a pty (daemon thread).

    Args:
        ticks_per_rev: encoder ticks per wheel revolution.
        wheel_accel: wheel acceleration limit of the motor loop, rad/s^2.
        max_wheel_speed: the firmware refuses targets above this (``ERR``), rad/s.
        watchdog_ms: stop the wheels after this many ms without a ``V`` (``W <ms>`` changes it).
    """

    def __init__(
        self,
        ticks_per_rev: int = 1024,
        wheel_accel: float = 20.0,
        max_wheel_speed: float = 30.0,
        watchdog_ms: int = 250,
    ) -> None:
        self.ticks_per_rev = ticks_per_rev
        self.wheel_accel = wheel_accel
        self.max_wheel_speed = max_wheel_speed
        self.watchdog_ms = watchdog_ms
        self.wheels = (_Wheel(), _Wheel())
        self.watchdog_trips = 0
        self.requests: list[str] = []  # every line received, for tests
        self._garble = self._drop = self._noise = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._t_last = self._t0
        self._last_v: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes as on a UART
        self.port = os.ttyname(self._slave)

    # ---------------------------------------------------------------- control
    def start(self) -> FakeSerialBase:
        self._thread = threading.Thread(target=self._serve, name="fake-serial-base", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def inject(self, garble: int = 0, drop: int = 0, noise: int = 0) -> None:
        """Faults for the next replies: garbled, missing (timeout), or preceded by line noise."""
        with self._lock:
            self._garble += garble
            self._drop += drop
            self._noise += noise

    def wheel_state(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((left, right) velocity rad/s, (left, right) angle rad) now: the ground truth."""
        with self._lock:
            self._advance(time.monotonic())
            return (self.wheels[0].vel, self.wheels[1].vel), (self.wheels[0].angle, self.wheels[1].angle)

    # ---------------------------------------------------------------- firmware
    def _advance(self, now: float) -> None:
        """Integrate the wheels to ``now``, tripping the watchdog at its deadline if it passes."""
        if self._last_v is not None and any(w.target != 0.0 for w in self.wheels):
            deadline = self._last_v + self.watchdog_ms / 1000.0
            if deadline <= now:
                for w in self.wheels:
                    w.advance(deadline - self._t_last, self.wheel_accel)
                    w.target = 0.0
                self._t_last = max(self._t_last, deadline)
                self.watchdog_trips += 1
        for w in self.wheels:
            w.advance(now - self._t_last, self.wheel_accel)
        self._t_last = now

    def _reply(self, line: str) -> str | None:
        now = time.monotonic()
        self._advance(now)
        parts = line.split()
        if not parts:
            return None
        cmd, args = parts[0], parts[1:]
        try:
            if cmd == "?" and not args:
                return f"ID {FIRMWARE_ID} {PROTOCOL_VERSION}"
            if cmd == "E" and not args:
                ticks = [math.floor(w.angle / (2 * math.pi) * self.ticks_per_rev) for w in self.wheels]
                ms = int((now - self._t0) * 1000) & 0xFFFFFFFF
                return f"E {ticks[0]} {ticks[1]} {ms}"
            if cmd == "V" and len(args) == 2:
                left, right = float(args[0]), float(args[1])
                if not (math.isfinite(left) and math.isfinite(right)):
                    return "ERR non-finite wheel speed"
                if max(abs(left), abs(right)) > self.max_wheel_speed:
                    return f"ERR wheel speed above {self.max_wheel_speed:g} rad/s"
                self.wheels[0].target, self.wheels[1].target = left, right
                self._last_v = now
                return "OK"
            if cmd == "S" and not args:
                for w in self.wheels:
                    w.target = 0.0
                return "OK"
            if cmd == "W" and len(args) == 1:
                ms = int(args[0])
                if not 10 <= ms <= 10_000:
                    return "ERR watchdog must be 10..10000 ms"
                self.watchdog_ms = ms
                return "OK"
        except ValueError:
            return f"ERR bad arguments: {line}"
        return f"ERR unknown command: {line}"

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                ready = select.select([self._master], [], [], 0.05)[0]
                if not ready:
                    continue
                buf += os.read(self._master, 4096)
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)  # no reader on the slave side yet (EIO): wait for the driver
                continue
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("ascii", errors="replace").strip()
                with self._lock:
                    self.requests.append(line)
                    reply = self._reply(line)
                    if reply is None:
                        continue
                    out = ""
                    if self._noise:
                        self._noise -= 1
                        out += "\x00#~garbage 1 2\n"
                    if self._drop:
                        self._drop -= 1
                        continue
                    if self._garble:
                        self._garble -= 1
                        reply = reply[: max(1, len(reply) // 2)] + "?x"
                    out += reply + "\n"
                try:
                    os.write(self._master, out.encode("ascii"))
                except OSError:
                    pass
