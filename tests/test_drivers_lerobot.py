"""LeRobot drivers (so100, so101, koch, lekiwi) against the package's emulated servo chains.

lerobot's own robot classes, motor buses and the real vendor SDKs run unchanged; the only
fake is the serial device (``robot_rl.drivers.fake_servos`` on a pty). The same robots
also pass ``tests/test_robot_contract.py``. Hardware tests run on a real robot::

    ROBOT_RL_HW_SO101=/dev/ttyACM0 ROBOT_RL_HW_ID=my_follower pytest -m hardware tests/test_drivers_lerobot.py
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from robot_rl.drivers.fake_servos import ChainProcess, DynamixelChain, FeetechChain, MotorCal, crc16
from robot_rl.drivers.lerobot_robots import ARM_JOINTS, LEKIWI_MAX_WHEEL_RAW, fake_calibration, write_calibration
from robot_rl.robots import GuardedRobot, make_robot

NAMES = ["so100", "so101", "koch", "lekiwi"]
TICK = 2 * math.pi / 4095  # one encoder tick, rad (lerobot's degrees: 360 / 4095 per tick)


@pytest.fixture(scope="module", params=NAMES)
def robot(request):
    r = make_robot(request.param, fake=True)
    r.connect()
    yield r
    r.disconnect()


def goal_ticks(robot, joint: int, rad: float) -> int:
    """The Goal_Position register lerobot writes for ``rad`` on arm joint ``joint`` (its DEGREES mapping)."""
    cal = robot.lerobot.calibration[robot.family.prefix + ARM_JOINTS[joint]]
    return int(math.degrees(rad) * 4095 / 360 + (cal.range_min + cal.range_max) / 2)


def lands(robot, motor_id: int, register: str, value: int) -> bool:
    """Whether register ``register`` of motor ``motor_id`` reaches ``value``: a sync write gets no
    reply, so the emulated motor may apply it a moment after ``send_action`` returns, as on hardware."""
    return wait_until(lambda: robot.chain.register(motor_id, register) == value)


def wait_until(cond, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_connect_and_observation_matches_spec(robot):
    assert robot.is_connected and robot.chain is not None
    obs = robot.get_observation()
    spec = robot.observation_spec
    assert set(obs) == set(spec)
    for key, s in spec.items():
        assert obs[key].shape == s.shape and obs[key].dtype == s.np_dtype and np.all(np.isfinite(obs[key])), key
    # the emulated arm rests at the middle of its calibrated ranges: 0 rad, gripper half open
    np.testing.assert_allclose(obs["joint_pos"], 0.0, atol=2 * TICK)
    np.testing.assert_allclose(obs["gripper"], 50.0, atol=0.2)
    assert robot.action_spec.names[: len(ARM_JOINTS) + 1] == (*(f"joint_{j}" for j in ARM_JOINTS), "gripper")
    # lerobot loaded the calibration file the fake wrote, and its motors agree with it
    assert robot.lerobot.is_calibrated
    assert robot.lerobot.calibration_fpath.is_file()


def test_send_action_moves_the_emulated_motors(robot):
    obs = robot.get_observation()
    target = robot.hold_action(obs)
    target[0], target[2], target[5] = 0.3, -0.2, 80.0
    sent = robot.send_action(target)
    assert sent.dtype == np.float32 and sent.shape == target.shape
    np.testing.assert_allclose(sent, target, atol=1e-5)
    # the goal registers hold what lerobot's bus wrote, over the wire, in ticks
    assert lands(robot, 1, "Goal_Position", goal_ticks(robot, 0, 0.3))
    assert lands(robot, 3, "Goal_Position", goal_ticks(robot, 2, -0.2))
    assert robot.chain.register(1, "Torque_Enable") == 1
    def arrived() -> bool:
        o = robot.get_observation()
        return abs(o["joint_pos"][0] - 0.3) < 2 * TICK and abs(o["gripper"][0] - 80.0) < 0.2

    assert wait_until(arrived)
    obs = robot.get_observation()
    np.testing.assert_allclose(obs["joint_pos"][[0, 2]], [0.3, -0.2], atol=2 * TICK)
    np.testing.assert_allclose(obs["gripper"], [80.0], atol=0.2)


def test_send_action_clips_to_config_bounds_and_refuses_nan(robot):
    lim = robot.config.safety_limits()
    request = np.full(lim.size, 1e3)
    sent = robot.send_action(request)
    np.testing.assert_allclose(sent[:6], lim.high[:6], atol=1e-5)
    if lim.size > 6:  # LeKiwi's base: bounded, then scaled down by lerobot's wheel saturation (see below)
        assert np.all(sent[6:] > 0) and np.all(sent[6:] <= np.array(lim.high[6:]) + 1e-6)
    assert lands(robot, 1, "Goal_Position", goal_ticks(robot, 0, lim.high[0]))
    before = [robot.chain.register(i, "Goal_Position") for i in range(1, 7)]
    bad = robot.hold_action(robot.get_observation())
    bad[1] = np.nan
    with pytest.raises(ValueError, match="non-finite action value nan at index 1"):
        robot.send_action(bad)
    with pytest.raises(ValueError, match=r"shape \(%d,\)" % lim.size):
        robot.send_action(np.zeros(lim.size + 1))
    time.sleep(0.05)
    assert [robot.chain.register(i, "Goal_Position") for i in range(1, 7)] == before
    robot.send_action(robot.hold_action(robot.get_observation()))


def test_guard_limits_joint_speed_and_holds_on_nan(robot):
    guard = GuardedRobot(robot)
    lim = robot.config.safety_limits()
    obs = guard.observe()
    sent, decision = guard.command(np.full(lim.size, 1e3))
    assert decision.accepted
    step = np.array(lim.joint_velocity) * lim.dt
    np.testing.assert_allclose(sent[: len(step)], np.minimum(obs["joint_pos"] + step, lim.high[: len(step)]), atol=1e-5)
    assert lands(robot, 1, "Goal_Position", goal_ticks(robot, 0, float(sent[0])))
    goal = robot.chain.register(1, "Goal_Position")
    nan = np.array(sent, dtype=np.float64)
    nan[0] = np.nan
    held, decision = guard.command(nan)
    assert not decision.accepted and "non-finite" in decision.reasons[0]
    np.testing.assert_allclose(held, sent, atol=1e-5)  # the last safe command again, never the NaN
    time.sleep(0.05)
    assert robot.chain.register(1, "Goal_Position") == goal


def test_holds_on_command_timeout(robot):
    now = [0.0]
    guard = GuardedRobot(robot, clock=lambda: now[0])
    lim = robot.config.safety_limits()
    obs = guard.observe()
    cmd = robot.hold_action(obs)
    cmd[0] += 0.05
    if robot.is_mobile_base or lim.size > 6:
        cmd[6] = 0.05  # LeKiwi: drive the base forward
    guard.command(cmd)
    assert guard.tick() is None
    now[0] += lim.command_timeout + 1e-3
    obs = guard.observe()
    held, decision = guard.tick()
    assert decision.holding and "command timeout" in decision.reasons[0]
    np.testing.assert_allclose(held, robot.hold_action(obs), atol=1e-5)
    if lim.size > 6:
        assert np.all(held[6:] == 0.0)
        assert all(lands(robot, i, "Goal_Velocity", 0) for i in (7, 8, 9))  # wheels stopped


def test_lekiwi_base_velocity_and_wheel_saturation():
    r = make_robot("lekiwi", fake=True)
    with r:
        c = r.config
        slow = r.hold_action(r.get_observation())
        slow[6:] = [0.05, 0.0, 0.3]
        np.testing.assert_allclose(r.send_action(slow)[6:], slow[6:], atol=1e-6)
        assert r.chain.register(8, "Operating_Mode") == 1  # wheels in velocity mode
        assert wait_until(lambda: any(r.chain.register(i, "Goal_Velocity") != 0 for i in (7, 8, 9)))
        assert wait_until(lambda: np.allclose(r.get_observation()["base_vel"], slow[6:], atol=0.01))
        # at the config's bounds a wheel would pass 3000 ticks/s: lerobot scales all wheels down,
        # and the driver reports the velocity actually commanded
        fast = slow.copy()
        fast[6:] = [c.max_linear, c.max_linear, c.max_angular]
        sent = r.send_action(fast)
        assert np.all(np.abs(sent[6:]) < np.abs(fast[6:]))
        np.testing.assert_allclose(sent[6:] / fast[6:], sent[6] / fast[6], rtol=1e-6)  # same factor for x, y, theta
        assert max(abs(r.chain.register(i, "Goal_Velocity")) for i in (7, 8, 9)) <= LEKIWI_MAX_WHEEL_RAW
        assert wait_until(lambda: np.allclose(r.get_observation()["base_vel"], sent[6:], atol=0.01))
    assert not r.is_connected and r.chain is None


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lerobot.robots.so_follower", None)
    with pytest.raises(ImportError, match=r"pip install 'robot-rl\[lerobot-robots\]'"):
        make_robot("so101", fake=True)
    monkeypatch.setitem(sys.modules, "dynamixel_sdk", None)
    with pytest.raises(ImportError, match=r"dynamixel_sdk.*robot-rl\[lerobot-robots\]"):
        make_robot("koch")


def test_hardware_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="lerobot-find-port"):
        make_robot("so101").connect()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_robot("so101", port=str(tmp_path / "ttyACM9")).connect()
    with FeetechChain({i: "sts3215" for i in range(1, 7)}) as chain:  # a port that exists, no calibration file
        r = make_robot("so101", port=chain.port, id="arm7", calibration_dir=str(tmp_path))
        with pytest.raises(FileNotFoundError, match=f"lerobot-calibrate --robot.type=so101_follower --robot.port={chain.port} --robot.id=arm7"):
            r.connect()
        assert not r.is_connected and chain.packets == 0  # refused before touching the bus
    with pytest.raises(ValueError, match="joint_low needs 5 values"):
        make_robot("koch", joint_low=[0.0, 0.0])


def test_real_path_writes_the_calibration_file_to_mismatched_motors(tmp_path):
    """fake=False on a port that happens to be an emulated chain whose motors hold another
    calibration: the driver writes the file's (as lerobot does on ENTER), never prompts."""
    r = make_robot("koch", id="k1", calibration_dir=str(tmp_path), fake=False)
    cal = fake_calibration(r.family)
    cal["elbow_flex"] = MotorCal(homing_offset=-100, range_min=900, range_max=3100)
    write_calibration(tmp_path / "k1.json", r.family, cal)
    with DynamixelChain(dict(r.family.models)) as chain:
        r.config.port = chain.port
        r.connect()
        try:
            assert r.lerobot.is_calibrated
            assert chain.register(3, "Homing_Offset") == -100 and chain.register(3, "Min_Position_Limit") == 900
            assert chain.register(6, "Operating_Mode") == 5 and chain.register(1, "Operating_Mode") == 4  # as lerobot configures Koch
            assert np.all(np.isfinite(r.get_observation()["joint_pos"]))
        finally:
            r.disconnect()
        assert chain.register(1, "Torque_Enable") == 0  # lerobot let the arm go limp


def test_missing_motor_fails_connect_cleanly(tmp_path):
    r = make_robot("so101", id="a", calibration_dir=str(tmp_path))
    write_calibration(tmp_path / "a.json", r.family, fake_calibration(r.family))
    with FeetechChain({i: "sts3215" for i in range(1, 6)}) as chain:  # the gripper (id 6) does not answer
        r.config.port = chain.port
        with pytest.raises(RuntimeError, match="Missing motor IDs"):  # lerobot's own handshake error
            r.connect()
        assert not r.is_connected
        with pytest.raises(ConnectionError, match="call connect"):
            r.get_observation()


@pytest.mark.parametrize("chain_cls, name", [(FeetechChain, "so101"), (DynamixelChain, "koch")])
def test_a_missed_handshake_ping_is_retried(monkeypatch, caplog, chain_cls, name):
    """A servo that misses its first ping (a chain powering up, a loaded host): connect retries
    lerobot's handshake; with connect_attempts=1 the handshake error comes through."""
    monkeypatch.setattr(chain_cls, "unanswered_at_start", 1)
    r = make_robot(name, fake=True)
    with caplog.at_level("WARNING", logger="robot_rl.drivers.lerobot_robots"):
        r.connect()
    try:
        assert r.is_connected and "handshake failed (attempt 1 of 5)" in caplog.text
        assert r.get_observation()["joint_pos"].shape == (5,)
    finally:
        r.disconnect()
    r = make_robot(name, fake=True, connect_attempts=1)
    with pytest.raises(RuntimeError, match="Missing motor IDs"):
        r.connect()
    assert not r.is_connected


def test_a_lost_status_packet_is_read_again(caplog):
    """A status packet lost on the bus (noise; an emulated chain the host did not schedule
    in time) does not stop the robot: the read is tried again, logged and counted; after
    ``read_attempts`` failures the error says so. (Koch: lerobot's Dynamixel sync read
    tries once; its Feetech one already retries lost packets itself.)"""
    r = make_robot("koch", fake=True)
    with r:
        r.chain.drop(1)
        with caplog.at_level("WARNING", logger="robot_rl.drivers.lerobot_robots"):
            obs = r.get_observation()
        assert obs["joint_pos"].shape == (5,) and np.all(np.isfinite(obs["joint_pos"]))
        assert r.read_retries == 1 and "bus read failed (attempt 1 of 3)" in caplog.text
        r.chain.drop(3)
        with pytest.raises(ConnectionError, match="3 reads of the bus failed"):
            r.get_observation()
        assert r.get_observation()["joint_pos"].shape == (5,)  # the bus answers again


def test_fake_uses_a_given_calibration_file(tmp_path):
    r = make_robot("so101", fake=True, id="mine", calibration_dir=str(tmp_path))
    cal = fake_calibration(r.family)
    cal["gripper"] = MotorCal(homing_offset=0, range_min=2000, range_max=3000)
    write_calibration(tmp_path / "mine.json", r.family, cal)
    with r:
        assert r.chain.register(6, "Min_Position_Limit") == 2000
        r.send_action(np.append(r.get_observation()["joint_pos"], 100.0))
        assert lands(r, 6, "Goal_Position", 3000)
    assert (tmp_path / "mine.json").is_file()  # a given directory is kept


def read_reply(port: serial.Serial, n: int, timeout: float = 0.5) -> bytes:
    out, end = b"", time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        out += port.read(n - len(out))
    return out


def test_feetech_wire_protocol():
    with FeetechChain({1: "sts3215"}) as chain, serial.Serial(chain.port, 1_000_000, timeout=0.05) as port:
        body = bytes([1, 4, 0x02, 3, 2])  # READ id 1, Model_Number (addr 3, 2 bytes)
        port.write(b"\xff\xff" + body + bytes([~sum(body) & 0xFF]))
        reply = read_reply(port, 8)
        assert reply[:5] == bytes([0xFF, 0xFF, 1, 4, 0]) and int.from_bytes(reply[5:7], "little") == 777
        assert reply[7] == ~sum(reply[2:7]) & 0xFF
        port.write(b"\xff\xff" + body + bytes([(~sum(body) + 1) & 0xFF]))  # bad checksum: dropped
        port.write(b"\xff\xff" + bytes([1, 2, 0x7A, ~(1 + 2 + 0x7A) & 0xFF]))  # unknown instruction: silent
        port.write(b"\xff\xff" + bytes([9, 2, 0x01, ~(9 + 2 + 1) & 0xFF]))  # ping an absent id: silent
        assert read_reply(port, 1, 0.2) == b""


def test_the_chain_process_answers_while_this_process_holds_the_gil():
    """``fake=True`` serves the chain from a process of its own: it answers while the
    process using it holds the GIL (a thread of that process could not), as a real servo
    would, and it does not outlive its parent."""
    read_model = bytes([1, 4, 0x02, 3, 2])  # READ id 1, Model_Number (addr 3, 2 bytes)
    with ChainProcess(FeetechChain, {1: "sts3215"}, start_ticks={1: 1000.0}) as chain, serial.Serial(chain.port, 1_000_000, timeout=0.05) as port:
        assert chain.register(1, "Present_Position") == 1000
        for _ in range(5):  # a thread-served chain missed about half of these (measured)
            port.write(b"\xff\xff" + read_model + bytes([~sum(read_model) & 0xFF]))
            start = time.monotonic()
            sum(range(20_000_000))  # one C call: no other thread of this process runs meanwhile
            held = time.monotonic() - start
            assert port.in_waiting == 8, f"no reply while the GIL was held for {held:.2f} s"
            reply = port.read(8)
            assert reply[:5] == bytes([0xFF, 0xFF, 1, 4, 0]) and int.from_bytes(reply[5:7], "little") == 777
        chain.calibrate({1: MotorCal(homing_offset=0, range_min=100, range_max=4000)})
        assert chain.register(1, "Min_Position_Limit") == 100
        with pytest.raises(RuntimeError, match="KeyError"):
            chain.register(9, "Present_Position")  # an absent motor: a clear error, the child lives on
        assert chain.register(1, "Min_Position_Limit") == 100
    with pytest.raises(RuntimeError, match="not running"):
        chain.register(1, "Present_Position")
    # a parent killed outright: the child sees its stdin close and exits
    code = (
        "import os, sys; from robot_rl.drivers.fake_servos import ChainProcess, FeetechChain; "
        "c = ChainProcess(FeetechChain, {1: 'sts3215'}).start(); print(c._proc.pid, flush=True); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    child = int(out.split()[0])
    end = time.monotonic() + 10
    while time.monotonic() < end and Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], "the chain process outlived its parent"


def test_dynamixel_wire_protocol():
    def packet(id_: int, instr: int, params: bytes) -> bytes:
        head = b"\xff\xff\xfd\x00" + bytes([id_]) + (len(params) + 3).to_bytes(2, "little") + bytes([instr]) + params
        return head + crc16(head).to_bytes(2, "little")

    with DynamixelChain({1: "xl330-m288"}) as chain, serial.Serial(chain.port, 1_000_000, timeout=0.05) as port:
        port.write(packet(1, 0x01, b""))  # PING -> model number 1200, firmware
        reply = read_reply(port, 14)
        assert reply[:9] == bytes([0xFF, 0xFF, 0xFD, 0, 1, 7, 0, 0x55, 0]) and int.from_bytes(reply[9:11], "little") == 1200
        assert int.from_bytes(reply[12:14], "little") == crc16(reply[:12])
        bad = bytearray(packet(1, 0x01, b""))
        bad[-1] ^= 0xFF
        port.write(bytes(bad))
        assert read_reply(port, 11)[8] == 0x03  # CRC error status
        port.write(packet(1, 0x7A, b""))
        assert read_reply(port, 11)[8] == 0x02  # instruction error status
        port.write(packet(1, 0x03, (64).to_bytes(2, "little") + b"\x01"))  # torque on
        assert read_reply(port, 11)[8] == 0
        port.write(packet(1, 0x03, (20).to_bytes(2, "little") + (5).to_bytes(4, "little")))  # EEPROM while torque on
        assert read_reply(port, 11)[8] == 0x07  # access error
        assert chain.register(1, "Homing_Offset") == 0


HW = {"so100": "ROBOT_RL_HW_SO100", "so101": "ROBOT_RL_HW_SO101", "koch": "ROBOT_RL_HW_KOCH", "lekiwi": "ROBOT_RL_HW_LEKIWI"}


@pytest.mark.hardware
@pytest.mark.parametrize("name", NAMES)
def test_hardware_robot_holds_still(name):
    """On the real robot: connect with its lerobot calibration, read, hold where it is (no motion), disconnect."""
    port = os.environ.get(HW[name])
    if not port:
        pytest.skip(f"needs a {name} on a serial port: {HW[name]}=/dev/ttyACM0 ROBOT_RL_HW_ID=<lerobot id> pytest -m hardware tests/test_drivers_lerobot.py -k {name}")
    r = make_robot(name, port=port, id=os.environ.get("ROBOT_RL_HW_ID", "follower"))
    with r:
        guard = GuardedRobot(r)
        obs = guard.observe()
        assert all(np.all(np.isfinite(v)) for v in obs.values())
        sent, decision = guard.command(r.hold_action(obs))
        assert decision.accepted
        time.sleep(0.5)
        np.testing.assert_allclose(r.get_observation()["joint_pos"], obs["joint_pos"], atol=math.radians(3))
