"""The UR, Franka and xArm drivers against their in-package SDK fakes (the real driver code,
the fake at the SDK object): limits, NaN, what was sent, motion, faults, the UR
watchdog, missing SDKs, unreachable hosts, and that each fake's API exists in the real
SDK. Hardware tests (``-m hardware``) run only with ``ROBOT_RL_HW_<ROBOT>=<ip>`` set:

    ROBOT_RL_HW_UR=192.168.1.10 .venv/bin/python -m pytest -m hardware tests/test_drivers_arms.py
"""

from __future__ import annotations

import enum
import inspect
import itertools
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from robot_rl.drivers import fake_franka, fake_ur, fake_xarm
from robot_rl.robots import GuardedRobot, make_robot

_HOSTS = itertools.count(1)


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Harness:
    """One driver with its fake: how to reach the simulated controller and hurt it."""

    name: str
    fake: ModuleType
    set_clock: Callable[[Any, ManualClock], None]
    inject_fault: Callable[[Any], None]
    fault_words: str
    clear: Callable[[Any, Any], None]  # (robot, controller): what the operator does


def _ur_clear(robot: Any, ctrl: Any) -> None:
    ctrl.unlock_protective_stop()  # on the pendant; the driver restarts its control script itself


def _set_ur_clock(ctrl: Any, clock: ManualClock) -> None:
    ctrl.arm.clock, ctrl.arm.t = clock, clock()
    ctrl.last_kick = clock()


def _set_clock(ctrl: Any, clock: ManualClock) -> None:
    ctrl.set_clock(clock)


def _clear_fault(robot: Any, ctrl: Any) -> None:
    assert robot.clear_fault()


HARNESSES = {
    "ur": Harness("ur", fake_ur, _set_ur_clock, lambda c: c.protective_stop(), "protective stop", _ur_clear),
    "franka": Harness("franka", fake_franka, _set_clock, lambda c: c.reflex(), "reflex", _clear_fault),
    "xarm": Harness("xarm", fake_xarm, _set_clock, lambda c: c.set_error(22), "error code 22", _clear_fault),
}


@pytest.fixture(params=sorted(HARNESSES))
def arm(request):
    """(robot connected to a fresh simulated controller on a manual clock, its controller, harness, clock)."""
    h = HARNESSES[request.param]
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl = h.fake.controller(host)
    clock = ManualClock()
    h.set_clock(ctrl, clock)
    robot = make_robot(h.name, fake=True, host=host)
    robot.connect()
    yield robot, ctrl, h, clock
    robot.disconnect()
    h.fake.power_off(host)


def step(guard: GuardedRobot, clock: ManualClock, requested: np.ndarray) -> np.ndarray:
    """One control period: observe, command, let the simulated robot move for 1 / fps."""
    guard.observe()
    sent, _ = guard.command(requested)
    clock.t += 1.0 / guard.robot.config.fps
    return sent


def joints_target(ctrl: Any) -> np.ndarray | None:
    return None if ctrl.arm.target is None else ctrl.arm.target.copy()


# ---------------------------------------------------------------------- limits and sending
def test_direct_commands_are_clipped_to_the_config_and_returned_as_sent(arm):
    robot, ctrl, h, clock = arm
    c = robot.config
    q0 = robot.get_observation()["joint_pos"].astype(np.float64)
    n = c.n_joints
    for value in (1e6, -1e6):
        sent = robot.send_action(np.full(robot.action_spec.shape, value))
        assert sent.dtype == np.float32 and sent.shape == robot.action_spec.shape
        assert np.all(sent[:n] >= np.array(c.joint_low) - 1e-6) and np.all(sent[:n] <= np.array(c.joint_high) + 1e-6)
        # one tick's worth of motion at most, around the measured joints (no time passed)
        assert np.all(np.abs(sent[:n] - q0) <= np.array(c.joint_velocity) / c.fps + 1e-6)
        # what the controller got is exactly what was returned
        np.testing.assert_array_equal(joints_target(ctrl), sent[:n].astype(np.float64))
        if c.gripper:
            assert sent[n] == (1.0 if value > 0 else 0.0)


def test_bad_commands_are_refused_directly_and_rejected_by_the_guard(arm):
    robot, ctrl, h, clock = arm
    n = robot.action_spec.shape[0]
    bad = np.zeros(n)
    bad[1] = np.nan
    with pytest.raises(ValueError, match="non-finite .* index 1"):
        robot.send_action(bad)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected"):
        robot.send_action(np.zeros(3))
    assert ctrl.arm.commands == 0, "a refused command reached the controller"
    guard = GuardedRobot(robot, clock=clock)
    obs = guard.observe()
    sent, decision = guard.command(bad)
    assert not decision.accepted and any("non-finite" in r for r in decision.reasons)
    np.testing.assert_allclose(sent, robot.hold_action(obs), atol=1e-6)


def test_motion_reaches_a_target_within_the_velocity_limit(arm):
    robot, ctrl, h, clock = arm
    c = robot.config
    guard = GuardedRobot(robot, clock=clock)
    q0 = guard.observe()["joint_pos"].astype(np.float64)
    eef0 = guard.observe()["eef_pos"].copy()
    target = np.clip(q0 + 0.3, c.joint_low, c.joint_high)
    requested = np.append(target, 1.0) if c.gripper else target
    speeds = []
    for _ in range(int(2.0 * c.fps)):
        step(guard, clock, requested)
        speeds.append(np.abs(robot.get_observation()["joint_vel"]).max())
    obs = robot.get_observation()
    np.testing.assert_allclose(obs["joint_pos"], target, atol=2e-3)
    assert max(speeds) > 0.2 * min(c.joint_velocity) and max(speeds) <= max(c.joint_velocity) * 1.01
    assert np.linalg.norm(obs["eef_pos"] - eef0) > 0.01, "the tool pose did not follow the joints"
    assert abs(np.linalg.norm(obs["eef_quat"]) - 1.0) < 1e-5
    if c.gripper:
        clock.t += 2.0  # the gripper is slower than the arm
        assert robot.get_observation()["gripper_pos"][0] > 0.95
    assert obs["fault"][0] == 0.0


# ---------------------------------------------------------------------- faults
def test_fault_is_surfaced_nothing_moves_and_motion_resumes_once_cleared(arm, caplog):
    robot, ctrl, h, clock = arm
    guard = GuardedRobot(robot, clock=clock)
    q0 = guard.observe()["joint_pos"].astype(np.float64)
    away = np.append(q0 + 0.2, 0.0) if robot.config.gripper else q0 + 0.2
    for _ in range(3):
        step(guard, clock, away)
    h.inject_fault(ctrl)
    commands = ctrl.arm.commands
    with caplog.at_level(logging.WARNING):
        obs = guard.observe()
    assert obs["fault"][0] == 1.0
    assert robot.fault is not None and h.fault_words in robot.fault
    assert h.fault_words in caplog.text
    q_stopped = obs["joint_pos"].copy()
    for _ in range(5):
        sent = step(guard, clock, away)
        np.testing.assert_allclose(sent[: robot.config.n_joints], q_stopped, atol=1e-6)  # returns the hold: not moving
    assert ctrl.arm.commands == commands, "a command reached a faulted robot"
    np.testing.assert_allclose(robot.get_observation()["joint_pos"], q_stopped, atol=1e-9)
    h.clear(robot, ctrl)
    for _ in range(5):
        step(guard, clock, away)
    obs = robot.get_observation()
    assert obs["fault"][0] == 0.0 and robot.fault is None
    assert np.all(obs["joint_pos"] - q_stopped > 1e-3), "motion did not resume after the fault was cleared"


def test_ur_rtde_watchdog_stops_the_arm_when_commands_stop_and_is_rearmed(caplog):
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl, clock = fake_ur.controller(host), ManualClock()
    _set_ur_clock(ctrl, clock)
    robot = make_robot("ur", fake=True, host=host, watchdog_hz=10.0)
    robot.connect()
    try:
        assert ctrl.watchdog_period == pytest.approx(0.1), "the driver did not set the RTDE watchdog"
        q0 = robot.get_observation()["joint_pos"].astype(np.float64)
        for i in range(5):
            robot.send_action(q0 + 0.004 * (i + 1))
            clock.t += 0.05  # 20 Hz: kicked in time
        assert ctrl.program_running and ctrl.watchdog_trips == 0
        clock.t += 0.15  # the host stalls past 1 / 10 Hz
        q_stall = robot.get_observation()["joint_pos"].copy()
        assert ctrl.watchdog_trips == 1 and not ctrl.program_running and ctrl.arm.target is None
        clock.t += 1.0
        np.testing.assert_array_equal(robot.get_observation()["joint_pos"], q_stall)  # stopped, not drifting on
        with caplog.at_level(logging.WARNING):
            robot.send_action(q_stall + 0.004)
        assert "watchdog" in caplog.text
        assert ctrl.program_running, "control script not restarted"
        assert ctrl.watchdog_period == pytest.approx(0.1), "watchdog not re-armed"
        clock.t += 0.05
        assert np.all(robot.get_observation()["joint_pos"] > q_stall)
    finally:
        robot.disconnect()
        fake_ur.power_off(host)


def test_ur_emergency_stop_and_speedj_mode():
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl, clock = fake_ur.controller(host), ManualClock()
    _set_ur_clock(ctrl, clock)
    robot = make_robot("ur", fake=True, host=host, control="speedj", gripper=True)
    robot.connect()
    try:
        q0 = robot.get_observation()["joint_pos"].astype(np.float64)
        sent = robot.send_action(np.append(q0 + 0.005, 0.7))
        np.testing.assert_allclose(ctrl.arm.velocity, (sent[:6] - q0) * robot.config.fps, atol=1e-4)
        assert sent[6] == 1.0 and ctrl.tool_outputs[0]  # on/off gripper: what was sent is "closed"
        ctrl.emergency_stop(True)
        assert robot.get_observation()["fault"][0] == 1.0 and "emergency stop" in robot.fault
        ctrl.emergency_stop(False)
        assert robot.get_observation()["fault"][0] == 0.0
    finally:
        robot.disconnect()
        fake_ur.power_off(host)


def test_franka_auto_recover_and_joint_limit_reflex():
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl, clock = fake_franka.controller(host), ManualClock()
    ctrl.set_clock(clock)
    robot = make_robot("franka", fake=True, host=host, auto_recover=True)
    robot.connect()
    try:
        ctrl.reflex("joint_position_limits_violation")
        assert robot.get_observation()["fault"][0] == 0.0 and not ctrl.has_errors  # recovered at once
        assert "joint_position_limits_violation" in robot.last_error
        # the fake's own reflex on targets outside the hardware range (the driver never sends one)
        with pytest.raises(fake_franka.ControlException, match="limits_violation"):
            motion = fake_franka.JointMotion(fake_franka.JointState(np.full(7, 3.5)))
            fake_franka.Robot(host).move(motion, asynchronous=True)
    finally:
        robot.disconnect()
        fake_franka.power_off(host)


def test_xarm_warning_blocks_motion_until_cleared():
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl, clock = fake_xarm.controller(host), ManualClock()
    ctrl.set_clock(clock)
    robot = make_robot("xarm", fake=True, host=host, gripper=False)
    robot.connect()
    try:
        q0 = robot.get_observation()["joint_pos"].astype(np.float64)
        ctrl.set_warn(11)
        sent = robot.send_action(q0 + 0.005)
        np.testing.assert_array_equal(sent, q0.astype(np.float32))
        assert "warning code 11" in robot.fault and ctrl.arm.commands == 0
        assert robot.clear_fault() and robot.fault is None
        robot.send_action(q0 + 0.005)
        assert ctrl.arm.commands == 1
    finally:
        robot.disconnect()
        fake_xarm.power_off(host)


# ---------------------------------------------------------------------- connection
@pytest.mark.parametrize(
    "name,module,extra",
    [("ur", "rtde_control", "ur"), ("franka", "franky", "franka"), ("xarm", "xarm.wrapper", "xarm")],
)
def test_missing_sdk_names_the_extra(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    robot = make_robot(name, host="192.168.1.10")
    with pytest.raises(ImportError, match=re.escape(f"pip install 'robot-rl[{extra}]'")):
        robot.connect()


@pytest.mark.parametrize("name,overrides", [("ur", {}), ("franka", {"realtime": False}), ("xarm", {})])
def test_unreachable_host_is_a_clear_error_with_the_real_sdk(name, overrides):
    """The real vendor SDK against a closed port on this machine: refused at once."""
    robot = make_robot(name, host="127.0.0.1", **overrides)
    with pytest.raises(ConnectionError, match=r"'127\.0\.0\.1'.*ping 127\.0\.0\.1"):
        robot.connect()
    assert not robot.is_connected


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_unreachable_fake_host_and_missing_host(name):
    h = HARNESSES[name]
    host = f"10.0.0.{next(_HOSTS)}"
    h.fake.controller(host).reachable = False
    with pytest.raises(ConnectionError, match=re.escape(host)):
        make_robot(name, fake=True, host=host).connect()
    h.fake.power_off(host)
    with pytest.raises(ValueError, match="set the config field host"):
        make_robot(name).connect()


def test_franka_without_realtime_kernel_says_what_to_do():
    host = f"10.0.0.{next(_HOSTS)}"
    fake_franka.controller(host).realtime_kernel = False
    with pytest.raises(ConnectionError, match=r"PREEMPT_RT.*\"realtime\": false"):
        make_robot("franka", fake=True, host=host).connect()
    robot = make_robot("franka", fake=True, host=host, realtime=False)
    robot.connect()
    assert robot.is_connected
    fake_franka.power_off(host)


@pytest.mark.parametrize(
    "name,field,value",
    [
        ("ur", "servo_gain", 50.0),
        ("ur", "watchdog_hz", 1000.0),
        ("ur", "joint_low", (0.0,) * 5),
        ("franka", "relative_dynamics_factor", 1.5),
        ("xarm", "gripper_speed", 9000.0),
    ],
)
def test_bad_config_names_the_field(name, field, value):
    with pytest.raises(ValueError, match=field):
        make_robot(name, fake=True, **{field: value})


# ---------------------------------------------------------------------- fake vs real SDK
def _real_param_lists(real: Any) -> list[list[str]]:
    """Parameter names (without self) of every overload of a real SDK callable."""
    try:
        return [[p for p in inspect.signature(real).parameters if p != "self"]]
    except (TypeError, ValueError):  # pybind11: read the signatures from the docstring
        pass
    lists = []
    for line in (real.__doc__ or "").splitlines():
        m = re.match(r"^\s*(?:\d+\.\s*)?\w+\((.*)\)\s*->", line)
        if m:
            args = re.sub(r"<[^>]*>", "", m.group(1))  # default reprs such as <Flags.FLAG_UPLOAD_SCRIPT: 1>
            lists.append([p for p in re.findall(r"(\w+): ", args) if p != "self"])
    return lists


def _same_params(fake: list[str], real: list[str]) -> bool:
    """The fake's parameters are the real ones' leading parameters, in order (pybind's
    unnamed ``argN`` match any name)."""
    unnamed = re.compile(r"arg\d+")
    return len(fake) <= len(real) and all(r == f or unnamed.fullmatch(r) for f, r in zip(fake, real, strict=False))


def _check_class(fake_cls: type, real_cls: type, check_init: bool = True) -> list[str]:
    problems = []
    if issubclass(fake_cls, enum.Enum):
        return [f"{real_cls.__name__}.{m}" for m in fake_cls.__members__ if not hasattr(real_cls, m)]
    names = {n for klass in fake_cls.__mro__[:-1] for n in vars(klass) if not n.startswith("_")}
    if check_init:
        names.add("__init__")
    for name in sorted(names):
        if not hasattr(real_cls, name):
            problems.append(f"{real_cls.__name__}.{name} does not exist")
            continue
        fake_attr = inspect.getattr_static(fake_cls, name)
        if isinstance(fake_attr, property):
            continue
        params = inspect.signature(fake_attr).parameters.values()
        fake_params = [p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD]
        real_lists = _real_param_lists(getattr(real_cls, name))
        if real_lists and not any(_same_params(fake_params, r) for r in real_lists):
            problems.append(f"{real_cls.__name__}.{name}{tuple(fake_params)} does not match the real {real_lists}")
    return problems


def test_fake_ur_matches_ur_rtde():
    import importlib

    problems = []
    for module, classes in fake_ur.SDK_NAMES.items():
        real = importlib.import_module(module)
        for cls in classes:
            problems += _check_class(getattr(fake_ur, cls), getattr(real, cls))
    assert not problems, problems


def test_fake_franka_matches_franky():
    import franky

    problems = []
    for name in fake_franka.SDK_NAMES:
        fake_obj, real_obj = getattr(fake_franka, name), getattr(franky, name, None)
        assert real_obj is not None, f"franky has no {name}"
        if issubclass(fake_obj, Exception):
            assert issubclass(real_obj, Exception), name
            continue
        problems += _check_class(fake_obj, real_obj, check_init=name != "BoolFuture")
    assert not problems, problems


def test_fake_xarm_matches_xarm_sdk():
    from xarm.wrapper import XArmAPI

    assert not _check_class(fake_xarm.XArmAPI, XArmAPI)


def test_api_check_catches_a_wrong_fake():
    """The check above is not vacuous: a misnamed method and swapped arguments are caught."""

    class Wrong:
        def servoJay(self) -> None: ...  # noqa: N802

        def speedJ(self, time: float, qd: list[float]) -> None: ...  # noqa: N802

    import rtde_control

    problems = _check_class(Wrong, rtde_control.RTDEControlInterface, check_init=False)
    assert any("servoJay" in p for p in problems) and any("speedJ" in p for p in problems)


# ---------------------------------------------------------------------- through ROS 2
@pytest.mark.slow
def test_ur_fake_through_the_robot_node_over_dds():
    """`robot-rl launch sim.launch.yaml robot:=ur robot_config:='{"fake": true}'` comes up,
    publishes the UR's joint_states and moves on a command."""
    import rclpy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from robot_rl.ros.common import RELIABLE_QOS, SENSOR_QOS, command_qos

    binary = Path(sys.executable).parent / "robot-rl"
    proc = subprocess.Popen(
        [str(binary), "launch", "sim.launch.yaml", "robot:=ur", 'robot_config:={"fake": true, "fps": 50}'],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    rclpy.init()
    node = rclpy.create_node("ur_probe")
    states: list[JointState] = []
    sent: list[np.ndarray] = []
    node.create_subscription(JointState, "joint_states", states.append, SENSOR_QOS)
    node.create_subscription(JointState, "action_sent", lambda m: sent.append(np.array(m.position)), RELIABLE_QOS)
    commands = node.create_publisher(Float64MultiArray, "commands", command_qos(0.2))
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not states:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert states, "no joint_states from the UR robot node"
        assert list(states[-1].name) == list(make_robot("ur", fake=True).config.joint_names)
        assert states[-1].name[0] == "joint_shoulder_pan" and len(states[-1].name) == 6
        q0 = np.array(states[-1].position)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            commands.publish(Float64MultiArray(data=(q0 + np.array([0.1, 0, 0, 0, 0, 0])).tolist()))
            rclpy.spin_once(node, timeout_sec=0.02)
            if states and states[-1].position[0] > q0[0] + 0.05:
                break
        assert states[-1].position[0] > q0[0] + 0.05, "the UR did not move on commands"
        assert sent and all(abs(a[0] - q0[0]) <= 0.1 + 1e-6 for a in sent)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if proc.poll() is None:
            os.killpg(proc.pid, 2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


# ---------------------------------------------------------------------- real hardware
HW_COMMAND = "ROBOT_RL_HW_{env}=<robot ip> .venv/bin/python -m pytest -m hardware tests/test_drivers_arms.py"


@pytest.mark.hardware
@pytest.mark.parametrize("name,env", [("ur", "UR"), ("franka", "FRANKA"), ("xarm", "XARM")])
def test_hardware_connect_read_and_hold(name, env):
    """On a real robot: connect, read the state, hold the current pose for 1 s (nothing moves)."""
    host = os.environ.get(f"ROBOT_RL_HW_{env}")
    if not host:
        pytest.skip(f"needs a {name} robot: {HW_COMMAND.format(env=env)}")
    robot = make_robot(name, host=host)
    robot.connect()
    try:
        guard = GuardedRobot(robot)
        obs = guard.observe()
        assert obs["fault"][0] == 0.0, robot.fault
        q0 = obs["joint_pos"].copy()
        period = 1.0 / robot.config.fps
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            guard.observe()
            guard.command(robot.hold_action(guard.last_obs))
            time.sleep(period)
        np.testing.assert_allclose(robot.get_observation()["joint_pos"], q0, atol=0.01)
    finally:
        robot.disconnect()


def test_a_joint_calibration_is_applied_to_readings_and_commands(tmp_path, monkeypatch):
    """``joint_calibration``: the driver reports sign * (raw - offset) and sends raw targets."""
    from robot_rl.calibration.registry import save_calibration

    monkeypatch.setenv("ROBOT_RL_CALIBRATION_DIR", str(tmp_path))
    names = make_robot("xarm", fake=True).config.joint_names
    offsets, signs = np.array([0.1, -0.2, 0.05, 0.0, 0.3, -0.1]), np.array([1, -1, 1, 1, -1, 1])
    save_calibration("joints", "my_xarm", {"names": list(names), "offsets": offsets.tolist(), "signs": signs.tolist()})
    host = f"10.0.0.{next(_HOSTS)}"
    ctrl = fake_xarm.controller(host)
    robot = make_robot("xarm", fake=True, host=host, joint_calibration="my_xarm")
    robot.connect()
    try:
        raw = ctrl.arm.q.copy()
        np.testing.assert_allclose(robot.get_observation()["joint_pos"], signs * (raw - offsets), atol=1e-5)
        target = signs * (raw - offsets) + 0.01  # a small step in calibrated joint space
        sent = robot.send_action(np.append(target, 0.0))
        np.testing.assert_allclose(sent[:6], target, atol=1e-5)
        np.testing.assert_allclose(joints_target(ctrl), signs * target + offsets, atol=1e-5)  # raw on the wire
    finally:
        robot.disconnect()
        fake_xarm.power_off(host)
    with pytest.raises(ValueError, match="no joints calibration for .my_ur.*robot-rl calibrate joints"):
        make_robot("ur", fake=True, joint_calibration="my_ur")
