"""Emulated servo chains on a pseudo-terminal: the fake at the hardware boundary of the lerobot drivers.

A ``FeetechChain`` (STS3215, Feetech SCS protocol 0, as on SO-100 / SO-101 / LeKiwi) or a
``DynamixelChain`` (XL330 / XL430, Dynamixel Protocol 2.0, as on Koch) opens ``os.openpty()``
and answers, from a daemon thread, whatever the vendor SDK writes to the slave tty: ping,
read, write, sync read and sync write, with correct packets and checksums. lerobot's own
``FeetechMotorsBus`` / ``DynamixelMotorsBus`` and the real SDKs (``scservo_sdk``,
``dynamixel_sdk``) run unchanged on ``chain.port``::

    from robot_rl.drivers.fake_servos import FeetechChain
    chain = FeetechChain({1: "sts3215", 2: "sts3215"}).start()
    # FeetechMotorsBus(port=chain.port, motors=...) ... ; chain.register(1, "Goal_Position")
    chain.stop()

Wire formats (all values little-endian):

- Feetech SCS: ``FF FF ID LEN INSTR PARAMS CHK`` with ``LEN = len(PARAMS) + 2`` and
  ``CHK = ~(ID + LEN + INSTR + sum(PARAMS)) & 0xFF``; status ``FF FF ID LEN ERR PARAMS CHK``.
- Dynamixel 2.0: ``FF FF FD 00 ID LEN_L LEN_H INSTR PARAMS CRC_L CRC_H`` (``LEN`` counts
  INSTR..CRC, CRC-16 poly 0x8005 over everything before it, ``FF FF FD`` in the body
  stuffed as ``FF FF FD FD``); status has INSTR ``0x55`` followed by an error byte.

Each motor has a control table (a byte array at the addresses lerobot's tables use) and a
shaft that moves toward its goal at no more than ``speed`` ticks/s while torque is on
(position modes), or turns at ``Goal_Velocity`` (velocity mode, LeKiwi's wheels). Like the
real devices, a bad checksum or an unknown instruction gets no reply (Feetech) or an error
status (Dynamixel), broadcast writes are never answered, and an absent ID stays silent.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass
from typing import ClassVar

log = logging.getLogger(__name__)

BROADCAST_ID = 0xFE
RESOLUTION = 4096


@dataclass(frozen=True)
class Field:
    """One control-table entry: ``address`` (byte), ``size`` (1, 2 or 4 bytes) and how negative
    values are encoded: ``sign_bit`` (Feetech sign-magnitude), ``twos`` (Dynamixel) or neither."""

    address: int
    size: int
    sign_bit: int | None = None
    twos: bool = False


# Feetech STS/SMS series (STS3215), protocol 0: addresses as in the Feetech STS manual (and lerobot's table).
STS_TABLE: dict[str, Field] = {
    "Firmware_Major_Version": Field(0, 1),
    "Firmware_Minor_Version": Field(1, 1),
    "Model_Number": Field(3, 2),
    "ID": Field(5, 1),
    "Baud_Rate": Field(6, 1),
    "Return_Delay_Time": Field(7, 1),
    "Response_Status_Level": Field(8, 1),
    "Min_Position_Limit": Field(9, 2),
    "Max_Position_Limit": Field(11, 2),
    "Max_Temperature_Limit": Field(13, 1),
    "Max_Voltage_Limit": Field(14, 1),
    "Min_Voltage_Limit": Field(15, 1),
    "Max_Torque_Limit": Field(16, 2),
    "Phase": Field(18, 1),
    "P_Coefficient": Field(21, 1),
    "D_Coefficient": Field(22, 1),
    "I_Coefficient": Field(23, 1),
    "Protection_Current": Field(28, 2),
    "Homing_Offset": Field(31, 2, sign_bit=11),
    "Operating_Mode": Field(33, 1),
    "Overload_Torque": Field(36, 1),
    "Torque_Enable": Field(40, 1),
    "Acceleration": Field(41, 1),
    "Goal_Position": Field(42, 2, sign_bit=15),
    "Goal_Time": Field(44, 2),
    "Goal_Velocity": Field(46, 2, sign_bit=15),
    "Torque_Limit": Field(48, 2),
    "Lock": Field(55, 1),
    "Present_Position": Field(56, 2, sign_bit=15),
    "Present_Velocity": Field(58, 2, sign_bit=15),
    "Present_Load": Field(60, 2, sign_bit=10),
    "Present_Voltage": Field(62, 1),
    "Present_Temperature": Field(63, 1),
    "Status": Field(65, 1),
    "Moving": Field(66, 1),
    "Present_Current": Field(69, 2),
    "Maximum_Acceleration": Field(85, 1),
}
STS_RAM_START = 40  # EEPROM below, SRAM from Torque_Enable on
STS_READ_ONLY = range(56, 71)

# Dynamixel X series (XL330-M288, XL430-W250), protocol 2.0: addresses as in the ROBOTIS e-Manual.
X_TABLE: dict[str, Field] = {
    "Model_Number": Field(0, 2),
    "Model_Information": Field(2, 4),
    "Firmware_Version": Field(6, 1),
    "ID": Field(7, 1),
    "Baud_Rate": Field(8, 1),
    "Return_Delay_Time": Field(9, 1),
    "Drive_Mode": Field(10, 1),
    "Operating_Mode": Field(11, 1),
    "Homing_Offset": Field(20, 4, twos=True),
    "Current_Limit": Field(38, 2),
    "Velocity_Limit": Field(44, 4),
    "Max_Position_Limit": Field(48, 4),
    "Min_Position_Limit": Field(52, 4),
    "Torque_Enable": Field(64, 1),
    "LED": Field(65, 1),
    "Status_Return_Level": Field(68, 1),
    "Hardware_Error_Status": Field(70, 1),
    "Position_D_Gain": Field(80, 2),
    "Position_I_Gain": Field(82, 2),
    "Position_P_Gain": Field(84, 2),
    "Goal_Current": Field(102, 2, twos=True),
    "Goal_Velocity": Field(104, 4, twos=True),
    "Profile_Velocity": Field(112, 4),
    "Goal_Position": Field(116, 4, twos=True),
    "Moving": Field(122, 1),
    "Present_Current": Field(126, 2, twos=True),
    "Present_Velocity": Field(128, 4, twos=True),
    "Present_Position": Field(132, 4, twos=True),
    "Present_Input_Voltage": Field(144, 2),
    "Present_Temperature": Field(146, 1),
}
X_RAM_START = 64
X_READ_ONLY = range(120, 148)
X_TABLE_SIZE = 148

# model name -> (model number, firmware version)
FEETECH_MODELS = {"sts3215": (777, (3, 10))}
DYNAMIXEL_MODELS = {"xl330-m288": (1200, 46), "xl430-w250": (1060, 46), "xl330-m077": (1190, 46)}


def encode(field: Field, value: int) -> bytes:
    """``value`` as the little-endian register bytes of ``field`` (sign-magnitude or two's complement)."""
    value = int(value)
    if field.sign_bit is not None and value < 0:
        value = (-value) | (1 << field.sign_bit)
    value &= (1 << (8 * field.size)) - 1
    return value.to_bytes(field.size, "little")


def decode(field: Field, data: bytes) -> int:
    """Register bytes of ``field`` -> signed int."""
    value = int.from_bytes(data, "little")
    if field.sign_bit is not None and value & (1 << field.sign_bit):
        return -(value & ~(1 << field.sign_bit))
    if field.twos and value & (1 << (8 * field.size - 1)):
        return value - (1 << (8 * field.size))
    return value


@dataclass
class MotorCal:
    """Calibration of one emulated motor (ticks): what lerobot's ``MotorCalibration`` holds."""

    homing_offset: int = 0
    range_min: int = 0
    range_max: int = RESOLUTION - 1
    drive_mode: int = 0


class EmulatedMotor:
    """One servo: a control table plus a shaft position (ticks, the encoder's own frame).

    ``present = shaft - Homing_Offset`` (Feetech) or ``shaft + Homing_Offset`` (Dynamixel);
    the shaft moves toward the goal at ``speed`` ticks/s with torque on, and stays put with
    torque off. Velocity mode: the shaft turns at ``Goal_Velocity`` ticks/s.
    """

    def __init__(self, id: int, model: str, table: dict[str, Field], size: int, speed: float, dynamixel: bool) -> None:
        self.id, self.model, self.table, self.speed, self.dynamixel = id, model, table, speed, dynamixel
        self.mem = bytearray(size)
        self.shaft = RESOLUTION / 2.0
        self.velocity = 0.0  # ticks/s, signed
        self.last = time.monotonic()

    # ------------------------------------------------------------------ registers
    def get(self, name: str) -> int:
        f = self.table[name]
        return decode(f, bytes(self.mem[f.address : f.address + f.size]))

    def set(self, name: str, value: int) -> None:
        f = self.table[name]
        self.mem[f.address : f.address + f.size] = encode(f, value)

    def present(self) -> int:
        offset = self.get("Homing_Offset")
        if self.dynamixel:
            return int(round(self.shaft)) + offset
        return (int(round(self.shaft)) - offset) % RESOLUTION  # Phase bit 4 clear: 0..4095

    def _goal_shaft(self) -> float:
        goal, offset = self.get("Goal_Position"), self.get("Homing_Offset")
        if self.dynamixel:
            return float(goal - offset)
        lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
        if hi > lo and not (lo == 0 and hi == RESOLUTION - 1):
            goal = min(max(goal, lo), hi)  # STS position mode clamps the goal to its angle limits
        return float(goal + offset)

    def step(self, now: float) -> None:
        """Advance the shaft to time ``now`` (s, monotonic) and refresh the Present_* registers."""
        dt, self.last = max(0.0, now - self.last), now
        torque = self.get("Torque_Enable") == 1
        mode = self.get("Operating_Mode")
        velocity_mode = mode == 1
        if torque and velocity_mode:
            self.velocity = float(self.get("Goal_Velocity"))
            self.shaft += self.velocity * dt
            if not self.dynamixel:
                self.shaft %= RESOLUTION
        elif torque:
            error = self._goal_shaft() - self.shaft
            move = max(-self.speed * dt, min(self.speed * dt, error))
            self.shaft += move
            self.velocity = move / dt if dt > 0 else 0.0
        else:
            self.velocity = 0.0
        self.set("Present_Position", self.present())
        self.set("Present_Velocity", int(round(self.velocity)))
        self.set("Moving", int(abs(self.velocity) > 0.5))

    def torque_changed(self, enabled: bool) -> None:
        if enabled:  # hold where it is: the goal becomes the present position
            self.set("Goal_Position", self.present())

    def calibrate(self, cal: MotorCal) -> None:
        """Program the calibration registers (as ``write_calibration`` does)."""
        self.set("Homing_Offset", cal.homing_offset)
        self.set("Min_Position_Limit", cal.range_min)
        self.set("Max_Position_Limit", cal.range_max)
        if self.dynamixel:
            self.set("Drive_Mode", cal.drive_mode)


class ServoChain:
    """A chain of emulated motors behind one pseudo-terminal, served by a daemon thread.

    Args:
        models: motor id -> model name (e.g. ``{1: "sts3215"}``).
        speed: maximum joint speed, ticks/s (4096 ticks per turn; 3000 ~ 264 deg/s).
        start_ticks: initial shaft position of each motor, ticks (default mid-turn, 2048).
    """

    protocol: ClassVar[str] = ""
    unanswered_at_start: ClassVar[int] = 0
    """Fault injection: leave the first N instruction packets unanswered (a chain still powering up)."""

    def __init__(self, models: dict[int, str], speed: float = 3000.0, start_ticks: dict[int, float] | None = None) -> None:
        if not models:
            raise ValueError("an emulated servo chain needs at least one motor")
        self.motors: dict[int, EmulatedMotor] = {}
        for id_, model in models.items():
            self.motors[id_] = self._make_motor(id_, model, speed)
            if start_ticks and id_ in start_ticks:
                self.motors[id_].shaft = float(start_ticks[id_])
        self.lock = threading.Lock()
        self.port = ""
        self.packets = 0  # instruction packets received (for tests and debugging)
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._serving = threading.Event()  # set once the thread is in its read loop
        self._unanswered = self.unanswered_at_start

    def _make_motor(self, id_: int, model: str, speed: float) -> EmulatedMotor:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ServoChain:
        """Open the pty and start answering; ``self.port`` is the tty to give the SDK."""
        if self._thread is not None:
            return self
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass through as on a USB serial adapter
        self.port = os.ttyname(self._slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"fake-{self.protocol}-{self.port}", daemon=True)
        self._thread.start()
        # a real chain answers from the moment it is powered: do not hand the port to an SDK
        # (whose first pings time out after ~30 ms) before the thread reads it
        if not self._serving.wait(5.0):
            raise RuntimeError(f"fake servo chain on {self.port} did not start serving within 5 s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def __enter__(self) -> ServoChain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def register(self, id: int, name: str) -> int:
        """Current value of register ``name`` of motor ``id`` (signed, as the device holds it)."""
        with self.lock:
            motor = self.motors[id]
            motor.step(time.monotonic())
            return motor.get(name)

    def calibrate(self, cals: dict[int, MotorCal]) -> None:
        """Program calibration registers, as if the arm had been calibrated earlier."""
        with self.lock:
            for id_, cal in cals.items():
                self.motors[id_].calibrate(cal)

    # ------------------------------------------------------------------ serving
    def _serve(self) -> None:
        buf = bytearray()
        self._serving.set()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(self._master, 4096)
            except OSError:  # pty closed
                return
            buf += chunk
            while True:
                consumed, reply = self._parse(buf)
                if consumed == 0:
                    break
                del buf[:consumed]
                if reply and self._unanswered > 0:
                    self._unanswered -= 1
                    continue
                if reply:
                    try:
                        os.write(self._master, reply)
                    except OSError:
                        return

    def _parse(self, buf: bytearray) -> tuple[int, bytes]:
        """Consume one packet (or garbage) from ``buf``: (bytes consumed, reply bytes). 0: need more."""
        raise NotImplementedError

    def _handle_motor_read(self, motor: EmulatedMotor, address: int, length: int) -> bytes | None:
        motor.step(time.monotonic())
        if address + length > len(motor.mem):
            return None
        return bytes(motor.mem[address : address + length])


class FeetechChain(ServoChain):
    """Feetech STS servos (SCS protocol 0): ping, read, write, reg write / action, sync read, sync write."""

    protocol = "feetech"

    def _make_motor(self, id_: int, model: str, speed: float) -> EmulatedMotor:
        if model not in FEETECH_MODELS:
            raise ValueError(f"no emulation of Feetech model {model!r}; emulated: {sorted(FEETECH_MODELS)}")
        number, (major, minor) = FEETECH_MODELS[model]
        m = EmulatedMotor(id_, model, STS_TABLE, 256, speed, dynamixel=False)
        for name, value in {
            "Firmware_Major_Version": major, "Firmware_Minor_Version": minor, "Model_Number": number, "ID": id_,
            "Return_Delay_Time": 250, "Max_Position_Limit": RESOLUTION - 1, "Max_Temperature_Limit": 70,
            "Max_Voltage_Limit": 140, "Min_Voltage_Limit": 40, "Max_Torque_Limit": 1000, "Phase": 0x0C,
            "P_Coefficient": 32, "D_Coefficient": 32, "Protection_Current": 500, "Overload_Torque": 80,
            "Acceleration": 0, "Torque_Limit": 1000, "Lock": 1, "Present_Voltage": 74, "Present_Temperature": 30,
            "Maximum_Acceleration": 254,
        }.items():
            m.set(name, value)
        m.step(m.last)
        return m

    @staticmethod
    def checksum(body: bytes) -> int:
        return ~sum(body) & 0xFF

    def status(self, id_: int, error: int = 0, params: bytes = b"") -> bytes:
        body = bytes([id_, len(params) + 2, error]) + params
        return b"\xff\xff" + body + bytes([self.checksum(body)])

    def _parse(self, buf: bytearray) -> tuple[int, bytes]:
        start = buf.find(b"\xff\xff")
        if start < 0:
            return (len(buf) - 1, b"") if len(buf) > 1 else (0, b"")
        if start > 0:
            return start, b""
        if len(buf) < 4:
            return 0, b""
        id_, length = buf[2], buf[3]
        if id_ == 0xFF:  # a third 0xFF: resync one byte later
            return 1, b""
        total = 4 + length
        if length < 2:
            return 2, b""
        if len(buf) < total:
            return 0, b""
        packet = bytes(buf[:total])
        if self.checksum(packet[2:-1]) != packet[-1]:
            log.debug("feetech emulator: bad checksum, packet dropped: %s", packet.hex())
            return total, b""
        self.packets += 1
        with self.lock:
            reply = self._execute(id_, packet[4], packet[5:-1])
        return total, reply

    def _execute(self, id_: int, instr: int, params: bytes) -> bytes:
        motor = self.motors.get(id_)
        if instr == 0x01:  # PING
            if id_ == BROADCAST_ID:
                return b"".join(self.status(i) for i in sorted(self.motors))
            return self.status(id_) if motor else b""
        if instr == 0x02 and motor and len(params) == 2:  # READ addr len
            data = self._handle_motor_read(motor, params[0], params[1])
            return self.status(id_, 0, data) if data is not None else b""
        if instr in (0x03, 0x04) and len(params) >= 2:  # WRITE / REG_WRITE addr data...
            if id_ == BROADCAST_ID:
                for m in self.motors.values():
                    self._write(m, params[0], params[1:])
                return b""
            if motor is None:
                return b""
            self._write(motor, params[0], params[1:])
            return self.status(id_)
        if instr == 0x05:  # ACTION: registered writes were applied at once
            return b"" if id_ == BROADCAST_ID else (self.status(id_) if motor else b"")
        if instr == 0x82 and id_ == BROADCAST_ID and len(params) >= 2:  # SYNC READ addr len ids...
            address, length = params[0], params[1]
            out = []
            for i in params[2:]:
                m = self.motors.get(i)
                if m is not None:
                    data = self._handle_motor_read(m, address, length)
                    if data is not None:
                        out.append(self.status(i, 0, data))
            return b"".join(out)
        if instr == 0x83 and id_ == BROADCAST_ID and len(params) >= 2:  # SYNC WRITE addr len (id data)...
            address, length = params[0], params[1]
            body = params[2:]
            for k in range(0, len(body) - length, length + 1):
                m = self.motors.get(body[k])
                if m is not None:
                    self._write(m, address, body[k + 1 : k + 1 + length])
            return b""
        log.debug("feetech emulator: no reply to instruction 0x%02x for id %d (%d params)", instr, id_, len(params))
        return b""

    @staticmethod
    def _write(motor: EmulatedMotor, address: int, data: bytes) -> None:
        if address + len(data) > len(motor.mem):
            return
        motor.step(time.monotonic())
        torque_addr = STS_TABLE["Torque_Enable"].address
        was_on = motor.mem[torque_addr] == 1
        for k, byte in enumerate(data):
            if address + k not in STS_READ_ONLY:
                motor.mem[address + k] = byte
        if address <= torque_addr < address + len(data):
            motor.torque_changed(motor.mem[torque_addr] == 1 and not was_on)
        motor.step(time.monotonic())


def crc16(data: bytes) -> int:
    """Dynamixel 2.0 CRC-16 (polynomial 0x8005, initial 0, not reflected)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert 0xFD after every FF FF FD in a packet body (Dynamixel 2.0 byte stuffing)."""
    out = bytearray()
    for byte in body:
        out.append(byte)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    out = bytearray()
    k = 0
    while k < len(body):
        out.append(body[k])
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd" and k + 1 < len(body) and body[k + 1] == 0xFD:
            k += 1  # drop the stuffing byte
        k += 1
    return bytes(out)


DXL_HEADER = b"\xff\xff\xfd\x00"
ERR_INSTRUCTION, ERR_CRC, ERR_DATA_RANGE, ERR_DATA_LENGTH, ERR_ACCESS = 0x02, 0x03, 0x04, 0x05, 0x07


class DynamixelChain(ServoChain):
    """Dynamixel X-series servos (Protocol 2.0): ping, read, write, sync read, sync write."""

    protocol = "dynamixel"

    def _make_motor(self, id_: int, model: str, speed: float) -> EmulatedMotor:
        if model not in DYNAMIXEL_MODELS:
            raise ValueError(f"no emulation of Dynamixel model {model!r}; emulated: {sorted(DYNAMIXEL_MODELS)}")
        number, firmware = DYNAMIXEL_MODELS[model]
        m = EmulatedMotor(id_, model, X_TABLE, X_TABLE_SIZE, speed, dynamixel=True)
        for name, value in {
            "Model_Number": number, "Firmware_Version": firmware, "ID": id_, "Baud_Rate": 1, "Return_Delay_Time": 250,
            "Operating_Mode": 3, "Current_Limit": 1750, "Velocity_Limit": 445, "Max_Position_Limit": RESOLUTION - 1,
            "Status_Return_Level": 2, "Position_P_Gain": 800, "Present_Input_Voltage": 50, "Present_Temperature": 30,
        }.items():
            m.set(name, value)
        m.step(m.last)
        return m

    def status(self, id_: int, error: int = 0, params: bytes = b"") -> bytes:
        body = stuff(bytes([0x55, error]) + params)
        head = DXL_HEADER + bytes([id_]) + (len(body) + 2).to_bytes(2, "little")
        packet = head + body
        return packet + crc16(packet).to_bytes(2, "little")

    def _parse(self, buf: bytearray) -> tuple[int, bytes]:
        start = buf.find(DXL_HEADER)
        if start < 0:
            keep = 3  # a header may be split across reads
            return (len(buf) - keep, b"") if len(buf) > keep else (0, b"")
        if start > 0:
            return start, b""
        if len(buf) < 7:
            return 0, b""
        id_ = buf[4]
        length = int.from_bytes(buf[5:7], "little")
        total = 7 + length
        if length < 3:
            return 4, b""
        if len(buf) < total:
            return 0, b""
        packet = bytes(buf[:total])
        if crc16(packet[:-2]) != int.from_bytes(packet[-2:], "little"):
            log.debug("dynamixel emulator: CRC error: %s", packet.hex())
            motor_ok = id_ in self.motors
            return total, (self.status(id_, ERR_CRC) if motor_ok else b"")
        self.packets += 1
        body = unstuff(packet[7:-2])
        with self.lock:
            reply = self._execute(id_, body[0], body[1:])
        return total, reply

    def _execute(self, id_: int, instr: int, params: bytes) -> bytes:
        motor = self.motors.get(id_)
        broadcast = id_ == BROADCAST_ID
        if not broadcast and motor is None:
            return b""
        if instr == 0x01:  # PING -> model number, firmware
            targets = sorted(self.motors) if broadcast else [id_]
            return b"".join(
                self.status(i, 0, self.motors[i].mem[0:2] + self.motors[i].mem[6:7]) for i in targets
            )
        if instr == 0x02 and motor is not None:  # READ addr(2) len(2)
            if len(params) != 4:
                return self.status(id_, ERR_DATA_LENGTH)
            address, length = int.from_bytes(params[:2], "little"), int.from_bytes(params[2:], "little")
            data = self._handle_motor_read(motor, address, length)
            return self.status(id_, 0, data) if data is not None else self.status(id_, ERR_DATA_LENGTH)
        if instr == 0x03:  # WRITE addr(2) data
            if len(params) < 3:
                return b"" if broadcast else self.status(id_, ERR_DATA_LENGTH)
            address = int.from_bytes(params[:2], "little")
            if broadcast:
                for m in self.motors.values():
                    self._write(m, address, params[2:])
                return b""
            assert motor is not None
            return self.status(id_, self._write(motor, address, params[2:]))
        if instr == 0x82 and broadcast and len(params) >= 4:  # SYNC READ addr(2) len(2) ids...
            address, length = int.from_bytes(params[:2], "little"), int.from_bytes(params[2:4], "little")
            out = []
            for i in params[4:]:
                m = self.motors.get(i)
                if m is not None:
                    data = self._handle_motor_read(m, address, length)
                    out.append(self.status(i, 0, data) if data is not None else self.status(i, ERR_DATA_LENGTH))
            return b"".join(out)
        if instr == 0x83 and broadcast and len(params) >= 4:  # SYNC WRITE addr(2) len(2) (id data)...
            address, length = int.from_bytes(params[:2], "little"), int.from_bytes(params[2:4], "little")
            body = params[4:]
            for k in range(0, len(body) - length, length + 1):
                m = self.motors.get(body[k])
                if m is not None:
                    self._write(m, address, body[k + 1 : k + 1 + length])
            return b""
        log.debug("dynamixel emulator: unsupported instruction 0x%02x for id %d", instr, id_)
        return b"" if broadcast else self.status(id_, ERR_INSTRUCTION)

    @staticmethod
    def _write(motor: EmulatedMotor, address: int, data: bytes) -> int:
        """Write ``data`` at ``address``; returns the status error (0 when written)."""
        end = address + len(data)
        if end > len(motor.mem):
            return ERR_DATA_LENGTH
        motor.step(time.monotonic())
        torque_addr = X_TABLE["Torque_Enable"].address
        was_on = motor.mem[torque_addr] == 1
        if any(a in X_READ_ONLY for a in range(address, end)) or address < 7:
            return ERR_ACCESS  # read-only area
        if address < X_RAM_START and was_on:
            return ERR_ACCESS  # EEPROM is locked while torque is on
        goal = X_TABLE["Goal_Position"]
        if address == goal.address and len(data) == goal.size and motor.get("Operating_Mode") == 3:
            value = decode(goal, data)
            if not motor.get("Min_Position_Limit") <= value <= motor.get("Max_Position_Limit"):
                return ERR_DATA_RANGE  # position mode: goal outside the position limits
        motor.mem[address:end] = data
        if address <= torque_addr < end:
            motor.torque_changed(motor.mem[torque_addr] == 1 and not was_on)
        motor.step(time.monotonic())
        return 0


# ---------------------------------------------------------------------- in a process of its own
class ChainProcess:
    """The same emulated chain, served from a child process of its own.

    A chain served by a thread answers only when that thread gets the GIL. In a busy
    process (the robot node publishing, a launch starting three Python processes on 2
    cores) it missed lerobot's ~30 ms status timeouts: "There is no status packet!" in
    full-suite runs. A real servo answers in microseconds whatever the host does, and so
    does a chain in its own process. Same interface as :class:`ServoChain` for the driver
    and the tests (``start``, ``port``, ``register``, ``calibrate``, ``stop``); the child
    runs this file as a script (stdlib only) and answers JSON lines on stdin/stdout. It
    exits when its stdin closes, so it does not outlive a killed parent, and is in a
    session of its own, so signals to the parent's process group do not reach it.
    """

    def __init__(self, chain_cls: type[ServoChain], models: dict[int, str], speed: float = 3000.0, start_ticks: dict[int, float] | None = None) -> None:
        if not models:
            raise ValueError("an emulated servo chain needs at least one motor")
        self.chain_cls = chain_cls
        self._spec = {"models": models, "speed": speed, "start_ticks": start_ticks or {}}
        self.port = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> ChainProcess:
        if self._proc is not None:
            return self
        spec = dict(self._spec, protocol=self.chain_cls.protocol, unanswered_at_start=self.chain_cls.unanswered_at_start)
        self._proc = subprocess.Popen(
            [sys.executable, __file__, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            # not in the parent's process group: a launch's Ctrl-C / SIGINT to the group must
            # not stop the "servos" before the robot node has stopped reading them (the node
            # then failed on "no status packet" while shutting down); it exits on stdin EOF
            start_new_session=True,
        )
        try:
            self.port = self._reply(10.0)["port"]
        except RuntimeError:
            self.stop()
            raise
        return self

    def _reply(self, timeout: float) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            what = f"did not answer within {timeout:g} s" if ready == [] else f"exited ({self._proc.poll()})"
            raise RuntimeError(f"emulated {self.chain_cls.protocol} chain process {what}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"emulated {self.chain_cls.protocol} chain: {reply['error']}")
        return reply

    def _call(self, **request: object) -> dict:
        with self._lock:
            if self._proc is None or self._proc.stdin is None:
                raise RuntimeError("the emulated chain is not running: call start()")
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            return self._reply(10.0)

    def register(self, id: int, name: str) -> int:
        """Current value of register ``name`` of motor ``id`` (signed, as the device holds it)."""
        return int(self._call(op="register", id=id, name=name)["value"])

    def calibrate(self, cals: dict[int, MotorCal]) -> None:
        """Program calibration registers, as if the arm had been calibrated earlier."""
        self._call(op="calibrate", cals={str(k): vars(c) for k, c in cals.items()})

    def drop(self, count: int) -> None:
        """Fault injection: leave the next ``count`` instruction packets unanswered (lost status packets)."""
        self._call(op="drop", count=count)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the child stops its chain and exits
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> ChainProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_chain(spec_json: str) -> int:
    """The child of :class:`ChainProcess`: serve a chain, answer requests until stdin closes."""
    spec = json.loads(spec_json)
    cls = {c.protocol: c for c in (FeetechChain, DynamixelChain)}[spec["protocol"]]
    cls.unanswered_at_start = int(spec["unanswered_at_start"])
    models = {int(k): v for k, v in spec["models"].items()}
    start = {int(k): float(v) for k, v in spec["start_ticks"].items()} or None
    chain = cls(models, speed=float(spec["speed"]), start_ticks=start).start()
    print(json.dumps({"port": chain.port}), flush=True)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                if request["op"] == "register":
                    reply: dict = {"value": chain.register(int(request["id"]), request["name"])}
                elif request["op"] == "drop":  # fault injection: leave the next N packets unanswered
                    chain._unanswered = int(request["count"])
                    reply = {}
                elif request["op"] == "calibrate":
                    chain.calibrate({int(k): MotorCal(**v) for k, v in request["cals"].items()})
                    reply = {}
                else:
                    reply = {"error": f"unknown request {request['op']!r}"}
            except (KeyError, ValueError, TypeError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        chain.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve_chain(sys.argv[1]))
