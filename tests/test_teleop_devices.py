"""Human teleop devices without hardware: the pure mappings, and each device driven
through its real code path by the in-package fakes (a pipe or pty for the keyboard)."""

from __future__ import annotations

import logging
import os
import pty
import sys
import termios

import numpy as np
import pytest

from robot_rl.data.schema import KeySpec
from robot_rl.robots import make_robot
from robot_rl.teleop import make_teleop
from robot_rl.teleop.gamepad import FakeJoystick, GamepadMapping, map_gamepad
from robot_rl.teleop.keyboard import split_keys
from robot_rl.teleop.leader_arm import FakeLeader, map_leader
from robot_rl.teleop.mapping import deadzone, rising_edges
from robot_rl.teleop.spacemouse import FakeSpaceMouse, SpaceMouseMapping, SpaceMouseState, map_spacemouse

OPEN, CLOSED = -1.0, 1.0


@pytest.fixture(scope="module")
def arm_spec() -> KeySpec:
    return make_robot("sim_lift").action_spec  # ee_delta: dx dy dz dax day daz gripper in [-1, 1]


@pytest.fixture(scope="module")
def base_spec() -> KeySpec:
    return make_robot("mock_base").action_spec  # v in [-0.5, 0.5] m/s, omega in [-1.5, 1.5] rad/s


# SO-101 follower: five joints (rad) and a gripper in [0, 1]
FOLLOWER = KeySpec((6,), "float32", "rad, 1", names=(*(f"joint_{i}" for i in range(1, 6)), "gripper"), low=(-3.0,) * 5 + (0.0,), high=(3.0,) * 5 + (1.0,))


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------- shared mapping
def test_deadzone_and_edges():
    np.testing.assert_allclose(deadzone([0.05, -0.1, 0.55, -1.0, 2.0], 0.1), [0.0, 0.0, 0.5, -1.0, 1.0])
    with pytest.raises(ValueError, match="deadzone"):
        deadzone(0.0, 1.0)
    assert rising_edges([], [True, False]) == [0]
    assert rising_edges([True, False], [True, True]) == [1]  # held button 0 does not fire again


def test_unknown_device_lists_the_devices():
    with pytest.raises(KeyError, match="keyboard.*leader_arm|leader_arm.*keyboard"):
        make_teleop("joystick")


# ---------------------------------------------------------------------- keyboard
def test_split_keys():
    assert split_keys("w\r\nx\r\x1b[A\x1bOPa\x1b") == ["w", "\n", "x", "\n", "\x1b[A", "\x1bOP", "a", "\x1b"]


def test_keyboard_arm_steps_and_gripper(arm_spec, pipe):
    r, w = pipe
    kb = make_teleop("keyboard", action_spec=arm_spec, step=0.4, hold_s=0.0, fd=r)
    np.testing.assert_allclose(kb.get_action({}), [0, 0, 0, 0, 0, 0, OPEN])  # no keys: hold still, gripper open
    os.write(w, b"wwr")
    np.testing.assert_allclose(kb.get_action({}), [0.4, 0, 0.4, 0, 0, 0, OPEN])  # a key once per call, not summed
    os.write(w, b"dfuje ")
    np.testing.assert_allclose(kb.get_action({}), [0, -0.4, -0.4, 0.4, 0.4, -0.4, CLOSED])
    os.write(w, b"ws")
    np.testing.assert_allclose(kb.get_action({}), [0, 0, 0, 0, 0, 0, CLOSED])  # opposite keys cancel
    os.write(w, b" ")
    assert kb.get_action({})[-1] == OPEN
    assert kb.events() == []


def test_keyboard_base_scales_to_limits(base_spec, pipe):
    r, w = pipe
    kb = make_teleop("keyboard", action_spec=base_spec, hold_s=0.0, fd=r)
    os.write(w, b"w")
    np.testing.assert_allclose(kb.get_action({}), [0.3 * 0.5, 0.0])
    os.write(w, b"sd")
    np.testing.assert_allclose(kb.get_action({}), [-0.3 * 0.5, -0.3 * 1.5])
    np.testing.assert_allclose(kb.get_action({}), [0.0, 0.0])


def test_keyboard_hold_bridges_auto_repeat(base_spec, pipe):
    r, w = pipe
    clock = Clock()
    kb = make_teleop("keyboard", action_spec=base_spec, step=1.0, hold_s=0.1, fd=r, clock=clock)
    os.write(w, b"a")
    assert kb.get_action({})[1] == 1.5
    clock.t += 0.05
    assert kb.get_action({})[1] == 1.5  # no new key, still within hold_s
    clock.t += 0.06
    assert kb.get_action({})[1] == 0.0


def test_keyboard_events_unknown_keys_and_end_of_input(base_spec, pipe, caplog):
    r, w = pipe
    kb = make_teleop("keyboard", action_spec=base_spec, fd=r)
    os.write(w, b"0\r\nyxni")
    assert kb.events() == ["reset", "start", "success", "discard", "failure", "intervene"]
    with caplog.at_level(logging.WARNING, logger="robot_rl.teleop.keyboard"):
        os.write(w, b"\x1b[Az r")  # an arrow key and keys this layout does not use: warned, not quit
        assert kb.events() == []
    assert "unknown key '\\x1b[A'" in caplog.text and "w +v" in caplog.text
    assert caplog.text.count("unknown key 'z'") == 1
    os.write(w, b"\x1b")
    assert kb.events() == ["quit"]
    os.close(w)
    assert kb.events() == ["quit"]  # end of input quits, once
    assert kb.events() == []


def test_keyboard_puts_a_terminal_in_cbreak_and_restores_it(base_spec):
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        kb = make_teleop("keyboard", action_spec=base_spec, hold_s=0.0, fd=slave)
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON and not lflag & termios.ECHO and lflag & termios.ISIG
        os.write(master, b"w")  # arrives without Enter
        assert kb.get_action({})[0] > 0
        kb.close()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_keyboard_jogs_a_joint_position_arm(pipe):
    """mock_arm (joint_0..5 + gripper, absolute targets): the jog starts at the measured joints,
    digits select a joint, w / s move it by joint_step per tick, targets stay where jogged."""
    r, w = pipe
    spec = make_robot("mock_arm").action_spec
    kb = make_teleop("keyboard", action_spec=spec, hold_s=0.0, joint_step=0.05, fd=r)
    q = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.6], np.float32)
    np.testing.assert_allclose(kb.get_action({"joint_pos": q}), [*q, 0.0], atol=1e-6)  # hold: the measured pose, gripper open
    os.write(w, b"w")
    np.testing.assert_allclose(kb.get_action({"joint_pos": q}), [q[0] + 0.05, *q[1:], 0.0], atol=1e-6)
    os.write(w, b"3s ")
    a = kb.get_action({"joint_pos": q * 0})  # later observations do not reset the target
    np.testing.assert_allclose(a, [q[0] + 0.05, q[1], q[2] - 0.05, *q[3:], 1.0], atol=1e-6)
    np.testing.assert_allclose(kb.get_action({"joint_pos": q}), a)  # no key: stays where jogged
    os.write(w, b"9")  # no joint 9: ignored, joint 3 stays selected
    os.write(w, b"w")
    assert kb.get_action({"joint_pos": q})[2] == pytest.approx(q[2], abs=1e-6)
    with pytest.raises(ValueError, match="joint_pos"):
        make_teleop("keyboard", action_spec=spec, fd=r).get_action({"joint_pos": np.zeros(3)})


def test_keyboard_rejects_what_it_cannot_drive(arm_spec, pipe):
    from robot_rl.data.schema import KeySpec

    with pytest.raises(ValueError, match=r"drives ee_delta .*torque_a"):
        make_teleop("keyboard", action_spec=KeySpec((2,), "float32", "N*m", names=("torque_a", "torque_b")), fd=pipe[0])
    with pytest.raises(ValueError, match="step"):
        make_teleop("keyboard", action_spec=arm_spec, step=2.0, fd=pipe[0])


# ---------------------------------------------------------------------- gamepad
AXES0 = [0.0, 0.0, -1.0, 0.0, 0.0, -1.0]  # centred sticks, triggers released
NO_BUTTONS = [False] * 11


def buttons(*down: int) -> list[bool]:
    return [i in down for i in range(11)]


def test_map_gamepad_sticks_deadzone_and_edges():
    m = GamepadMapping(deadzone=0.2, scale=0.5)
    names = ("dx", "dy", "dz", "dax", "day", "daz", "gripper")
    cmd = map_gamepad([0.1, -1.0, -1.0, 0.6, 0.0, -1.0], NO_BUTTONS, NO_BUTTONS, names, m)
    # left stick up -> +x (forward); left x inside the deadzone; right stick x 0.6 -> (0.6-0.2)/0.8 = 0.5 -> -yaw
    np.testing.assert_allclose(cmd.u, [0.5, 0.0, 0.0, 0.0, 0.0, -0.25, 0.0])
    assert cmd.events == [] and not cmd.toggle_gripper
    cmd = map_gamepad(AXES0, buttons(7, 5), NO_BUTTONS, names, m)
    assert cmd.events == ["start"] and cmd.toggle_gripper
    cmd = map_gamepad(AXES0, buttons(7, 5, 0), buttons(7, 5), names, m)  # 7 and 5 held: only A fires
    assert cmd.events == ["success"] and not cmd.toggle_gripper


def test_gamepad_mapping_is_validated():
    assert GamepadMapping(buttons={"3": "discard"}, axes={"v": [1, 1]}).buttons == {3: "discard"}  # JSON keys
    with pytest.raises(ValueError, match="unknown event"):
        GamepadMapping(buttons={0: "launch"})
    with pytest.raises(ValueError, match="unknown action element"):
        GamepadMapping(axes={"dq": (0, 1.0)})
    with pytest.raises(ValueError, match="both the gripper toggle and 'success'"):
        GamepadMapping(gripper_button=0)


def test_gamepad_device_through_the_fake_joystick(arm_spec, base_spec):
    pad = FakeJoystick([(AXES0, NO_BUTTONS), ([0, -1.0, -1, 0, 0, -1], buttons(5)), ([0, -1.0, -1, 0, 0, -1], buttons(5, 7))])
    gp = make_teleop("gamepad", action_spec=arm_spec, joystick=pad)
    assert "RB gripper" in gp.usage and "Start start" in gp.usage
    np.testing.assert_allclose(gp.get_action({}), [0, 0, 0, 0, 0, 0, OPEN])
    np.testing.assert_allclose(gp.get_action({}), [0.5, 0, 0, 0, 0, 0, CLOSED])  # full stick: scale 0.5
    assert gp.events() == ["start"]
    assert gp.get_action({})[-1] == CLOSED and gp.events() == []  # RB and Start held: nothing new
    gp.close()
    assert pad.closed
    base = make_teleop("gamepad", action_spec=base_spec, joystick=FakeJoystick([([-1.0, 0, -1, 0, 0, -1], NO_BUTTONS)]))
    np.testing.assert_allclose(base.get_action({}), [0.0, 0.5 * 1.5])  # left stick left -> turn left
    with pytest.raises(ValueError, match="unknown gamepad backend"):
        make_teleop("gamepad", action_spec=arm_spec, backend="sdl3")
    few = make_teleop("gamepad", action_spec=arm_spec, joystick=FakeJoystick(n_axes=2, n_buttons=4))
    with pytest.raises(ValueError, match="2 axes and 4 buttons"):
        few.events()


# ---------------------------------------------------------------------- spacemouse
def test_map_spacemouse():
    m = SpaceMouseMapping(deadzone=0.1, scale=0.5)
    cmd = map_spacemouse(SpaceMouseState(x=0.55, y=1.0, z=0.05, roll=-1.0, pitch=0.0, yaw=1.0), (), m)
    # push away (+y) -> +x; push right (+x) -> -y; yaw sign flipped; z inside the deadzone
    np.testing.assert_allclose(cmd.u, [0.5, -0.25, 0.0, -0.5, 0.0, -0.5, 0.0])
    cmd = map_spacemouse(SpaceMouseState(buttons=(True, True)), (True, False), m)
    assert cmd.record_pressed and not cmd.toggle_gripper
    with pytest.raises(ValueError, match="unknown axis"):
        SpaceMouseMapping(axes={"dx": ("tilt", 1.0)})


def test_spacemouse_device_buttons_and_event_keys(arm_spec, base_spec, pipe):
    r, w = pipe
    press = [SpaceMouseState(buttons=b) for b in ((True, False), (False, False), (False, True), (False, False), (False, True), (False, False))]
    mouse = FakeSpaceMouse([SpaceMouseState(y=1.0), *press])
    sm = make_teleop("spacemouse", action_spec=arm_spec, mouse=mouse, event_keys=True, fd=r)
    np.testing.assert_allclose(sm.get_action({}), [1.0, 0, 0, 0, 0, 0, OPEN])
    assert sm.get_action({})[-1] == CLOSED  # left button toggles the gripper
    events = [e for _ in range(4) for e in sm.events()]
    assert events == ["start", "success"]  # the right button alternates
    sm.events()
    os.write(w, b"n")  # a failure from the terminal ends the episode the button started ...
    mouse.push(SpaceMouseState(buttons=(False, True)))
    assert sm.events() == ["start", "failure"]
    mouse.push(SpaceMouseState())
    mouse.push(SpaceMouseState(buttons=(False, True)))
    sm.events()
    assert sm.events() == ["start"]  # ... so the right button starts the next one
    with pytest.raises(ValueError, match="drives ee_delta"):
        make_teleop("spacemouse", action_spec=base_spec, mouse=FakeSpaceMouse())


# ---------------------------------------------------------------------- leader arm
def reading(deg: float, gripper: float) -> dict[str, float]:
    joints = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
    return {**{f"{j}.pos": deg * (i + 1) for i, j in enumerate(joints)}, "gripper.pos": gripper}


def test_map_leader():
    joints = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
    a = map_leader(reading(10.0, 25.0), FOLLOWER, joints, (1, -1, 1, 1, 1), (0, 0, 0.5, 0, 0), gripper_invert=False)
    np.testing.assert_allclose(a[:5], np.radians([10, -20, 30, 40, 50]) + [0, 0, 0.5, 0, 0])
    assert a[5] == pytest.approx(0.25)  # 0..100 -> [-1, 1] -> the follower's [0, 1]
    assert map_leader(reading(0, 25.0), FOLLOWER, joints, (1,) * 5, (0,) * 5, gripper_invert=True)[5] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no \\['wrist_roll.pos'\\]"):
        map_leader({k: v for k, v in reading(0, 0).items() if k != "wrist_roll.pos"}, FOLLOWER, joints, (1,) * 5, (0,) * 5, False)


def test_leader_arm_device_with_a_fake_leader(pipe):
    r, w = pipe
    leader = FakeLeader([reading(5.0, 100.0)])
    arm = make_teleop("leader_arm", action_spec=FOLLOWER, leader=leader, fd=r)
    assert not leader.is_connected  # connects on first use
    os.write(w, b"\n")
    assert arm.events() == ["start"]
    a = arm.get_action({})
    assert leader.is_connected
    np.testing.assert_allclose(a, [*np.radians([5, 10, 15, 20, 25]), 1.0])
    os.write(w, b"wy")  # motion keys mean nothing here
    assert arm.events() == ["success"]
    arm.close()
    assert not leader.is_connected


def test_leader_arm_errors(tmp_path, monkeypatch, pipe):
    with pytest.raises(RuntimeError, match="lerobot-calibrate --teleop.type=so101_leader"):
        make_teleop("leader_arm", action_spec=FOLLOWER, leader=FakeLeader(calibrated=False), fd=pipe[0]).get_action({})
    with pytest.raises(ValueError, match="serial port"):
        make_teleop("leader_arm", action_spec=FOLLOWER, fd=pipe[0])
    with pytest.raises(FileNotFoundError, match="lerobot-find-port"):
        make_teleop("leader_arm", action_spec=FOLLOWER, port=str(tmp_path / "ttyACM7"), fd=pipe[0])
    with pytest.raises(ValueError, match="follower has 6 joints"):
        make_teleop("leader_arm", action_spec=make_robot("mock_arm").action_spec, leader=FakeLeader(), fd=pipe[0])
    port = tmp_path / "ttyACM0"
    port.touch()
    monkeypatch.setitem(sys.modules, "lerobot.teleoperators.so_leader", None)  # as if lerobot were missing
    with pytest.raises(ImportError, match=r"lerobot\[feetech\]"):
        make_teleop("leader_arm", action_spec=FOLLOWER, port=str(port), fd=pipe[0])


# ---------------------------------------------------------------------- missing hardware libraries
@pytest.mark.parametrize(
    "device, kwargs, module",
    [("gamepad", {"backend": "pygame"}, "pygame"), ("gamepad", {"backend": "evdev"}, "evdev"), ("spacemouse", {}, "pyspacemouse")],
)
def test_missing_library_names_the_install_line(arm_spec, monkeypatch, device, kwargs, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install 'robot-rl\[teleop\]'"):
        make_teleop(device, action_spec=arm_spec, **kwargs)
