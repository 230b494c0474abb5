"""Hardware drivers against their in-package fakes, through the real code paths:

- ``diff_drive_serial``: real pyserial on a real pseudo-terminal, the firmware emulator
  (``FakeSerialBase``) on the other end;
- ``ros2_control``: real rclpy and DDS, against the in-process fake endpoint and against
  our own robot node (hosting ``mock_arm``) in another process;
- RealSense: the real ``RealSenseCamera`` on ``FakeRealSense`` (its names checked against
  the installed pyrealsense2), and the camera node publishing depth over DDS.

Hardware tests (``-m hardware``) run only when ``ROBOT_RL_HW_*`` names a device.
The Robot contract (limits, NaN rejection, returns what was sent) runs over these
drivers in tests/test_robot_contract.py.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np
import pytest

from robot_rl.robots import GuardedRobot, make_robot

# ------------------------------------------------------------------------------------ serial base


@pytest.fixture
def base():
    robot = make_robot("diff_drive_serial", fake=True, fps=20.0)
    robot.connect()
    yield robot
    robot.disconnect()


class TruthOdometry:
    """Integrates the emulator's exact wheel angles every ~2 ms: ground truth to compare with."""

    def __init__(self, robot) -> None:
        self.robot, self.pose = robot, np.zeros(3)
        c = robot.config
        self.r, self.track = c.wheel_radius, c.track_width
        self._stop = threading.Event()
        self._angles = robot.fake.wheel_state()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self._step()

    def _step(self) -> None:
        angles = self.robot.fake.wheel_state()[1]
        dl, dr = ((a - b) * self.r for a, b in zip(angles, self._angles, strict=True))
        self._angles = angles
        ds, dyaw = (dl + dr) / 2, (dr - dl) / self.track
        x, y, yaw = self.pose
        self.pose = np.array([x + ds * math.cos(yaw + dyaw / 2), y + ds * math.sin(yaw + dyaw / 2), yaw + dyaw])

    def close(self) -> np.ndarray:
        self._stop.set()
        self._thread.join()
        self._step()
        return self.pose


def drive(guard: GuardedRobot, action, seconds: float, fps: float = 20.0) -> list[np.ndarray]:
    """Command ``action`` through the safety filter at fps; returns the observations."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        guard.command(np.asarray(action, dtype=np.float64))
        out.append(guard.observe())
        time.sleep(max(0.0, 1.0 / fps - (time.monotonic() - t)))
    return out


def test_serial_odometry_matches_the_commanded_motion(base):
    truth = TruthOdometry(base)
    guard = GuardedRobot(base)
    guard.observe()
    obs = drive(guard, [0.3, 0.5], 2.0)
    # steady state (after the 1 m/s^2 ramp of the filter and the firmware's wheel ramp), averaged over the
    # last 0.5 s: one 50 ms interval holds ~60 ticks and ~50 ms of the board's clock, each +-1 (a few %)
    v, omega = np.mean([o["odom"][3:5] for o in obs[-10:]], axis=0)
    assert v == pytest.approx(0.3, rel=0.02) and omega == pytest.approx(0.5, rel=0.02)
    wheels = base.wheel_targets(0.3, 0.5)
    np.testing.assert_allclose(np.mean([o["wheel_vel"] for o in obs[-10:]], axis=0), wheels, rtol=0.02)
    obs += drive(guard, [0.0, -1.0], 1.0)  # turn the other way in place
    base.stop()
    time.sleep(0.4)  # the wheels ramp down; compare poses at rest
    pose = base.get_observation()["odom"][:3]
    true_pose = truth.close()
    # the driver integrates 20 Hz encoder reads; the truth integrates exact wheel angles at ~500 Hz
    assert np.hypot(*(pose[:2] - true_pose[:2])) < 0.01, (pose, true_pose)
    assert abs((pose[2] - true_pose[2] + math.pi) % (2 * math.pi) - math.pi) < 0.01
    assert np.hypot(*pose[:2]) > 0.4  # it went somewhere: about 0.3 m/s for 2 s on an arc
    assert not base.errors


def test_serial_limits_saturation_and_nan(base):
    guard = GuardedRobot(base)
    guard.observe()
    lim = base.config.safety_limits()
    guard.command([0.0, 0.0])  # the filter's rate limit counts from the last command sent
    sent, decision = guard.command([1e6, -1e6])
    assert decision.accepted  # clamped to one tick's change: max_accel / fps
    np.testing.assert_allclose(sent, [lim.max_delta[0], -lim.max_delta[1]], rtol=1e-6)
    for _ in range(60):  # ramp up to the bounds
        sent, _ = guard.command([1e6, 0.0])
    assert sent[0] == pytest.approx(base.config.max_linear, abs=1e-5)
    # wheel-speed saturation: (0.5, 2.0) needs a 16 rad/s wheel; both wheels scale to 12 rad/s
    sent = base.send_action(np.array([0.5, 2.0]))
    np.testing.assert_allclose(sent, [0.375, 1.5], atol=1e-5)
    assert base.fake.requests[-1] == "V 3.000000 12.000000"
    # NaN never reaches the board: the filter rejects it and sends a finite hold / last safe command
    n_requests = len(base.fake.requests)
    sent, decision = guard.command([float("nan"), 0.0])
    assert not decision.accepted and np.all(np.isfinite(sent)) and "non-finite" in decision.reasons[0]
    assert all("nan" not in line.lower() for line in base.fake.requests[n_requests:])
    with pytest.raises(ValueError, match="non-finite"):
        base.send_action(np.array([float("nan"), 0.0]))


def test_serial_command_timeout_and_firmware_watchdog(base):
    guard = GuardedRobot(base)
    guard.observe()
    drive(guard, [0.3, 0.0], 0.8)
    assert min(base.fake.wheel_state()[0]) > 4.0
    assert base.fake.watchdog_trips == 0
    # this computer goes silent: the firmware's watchdog stops the wheels by itself
    time.sleep(base.config.watchdog_ms / 1000 + 0.5)  # watchdog + ramp down at 20 rad/s^2
    velocities, _ = base.fake.wheel_state()
    assert velocities == (0.0, 0.0) and base.fake.watchdog_trips == 1
    base.get_observation()  # wheel speeds are averages over the interval between two encoder reads
    time.sleep(0.05)
    obs = base.get_observation()
    np.testing.assert_allclose(obs["wheel_vel"], [0.0, 0.0], atol=1e-6)
    # our side: the command timeout makes the guard send zero velocity
    sent, result = guard.tick()
    assert result.holding and np.all(sent == 0.0) and "command timeout" in result.reasons[0]
    assert base.fake.requests[-1] == "V 0.000000 0.000000"


def test_serial_garbled_and_missing_replies_are_counted_never_read(base):
    from robot_rl.drivers.diff_drive_serial import SerialBaseError

    base.send_action(np.array([0.2, 0.0]))
    time.sleep(0.1)
    base.fake.inject(garble=1)  # one bad line: retried at once, a fresh reading
    first = base.get_observation()
    assert base.errors == {"garbled": 1} and first["odom"][0] > 0
    base.fake.inject(drop=1)  # no reply: a timeout, retried
    sent = base.send_action(np.array([0.2, 0.0]))
    assert base.errors["timeout"] == 1 and sent[0] == pytest.approx(0.2)
    time.sleep(0.05)
    base.fake.inject(noise=1)  # line noise before the reply: garbled, retried
    base.get_observation()
    assert base.errors["timeout"] == 1 and base.errors["garbled"] == 2
    # every attempt garbled: the previous reading is returned unchanged (counted), not a parsed guess
    base.send_action(np.array([0.2, 0.0]))  # keep moving (well within the firmware watchdog)
    before = base.get_observation()
    base.fake.inject(garble=2)
    held = base.get_observation()
    np.testing.assert_array_equal(held["odom"], before["odom"])
    time.sleep(0.05)
    caught_up = base.get_observation()  # the cumulative ticks catch up
    assert caught_up["odom"][0] > held["odom"][0]
    # a board that keeps answering nonsense: a clear error after max_consecutive_errors
    base.fake.inject(garble=1000)
    with pytest.raises(SerialBaseError, match="failed exchanges in a row"):
        for _ in range(base.config.max_consecutive_errors):
            base.get_observation()


def test_serial_connect_errors_name_the_port(tmp_path):
    with pytest.raises(OSError, match="/dev/ttyDOESNOTEXIST"):
        make_robot("diff_drive_serial", port="/dev/ttyDOESNOTEXIST").connect()
    master, slave = os.openpty()  # a tty with nobody answering
    try:
        with pytest.raises(OSError, match="no motor controller speaking the diff_drive_serial protocol"):
            make_robot("diff_drive_serial", port=os.ttyname(slave), reply_timeout=0.02).connect()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(ValueError, match="wheel_radius must be positive"):
        make_robot("diff_drive_serial", wheel_radius=0.0)


def test_serial_missing_pyserial_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)  # import serial -> ImportError
    robot = make_robot("diff_drive_serial", fake=True)
    with pytest.raises(ImportError, match=r"pip install 'robot-rl\[serial\]'"):
        robot.connect()
    assert not robot.is_connected


# ------------------------------------------------------------------------------------ ros2_control


def test_passthrough_fake_arm_moves_and_holds_on_stale_state():
    robot = make_robot("ros2_control", fake=True, state_timeout=0.3, state_timeout_error=1.0)
    robot.connect()
    try:
        guard = GuardedRobot(robot)
        q0 = guard.observe()["joint_pos"].astype(np.float64)
        target = np.append(q0 + np.array([0.5, -0.5, 0.3, -0.3, 0.2, 0.4]), 0.8)
        drive(guard, target, 1.5)
        obs = guard.observe()
        np.testing.assert_allclose(obs["joint_pos"], target[:6], atol=0.02)  # it reached the target
        assert obs["gripper"][0] == pytest.approx(0.8, abs=0.02)  # measured: the fake reports the gripper
        assert robot.fake.commands_received > 10 and robot.fake.rejected == 0
        # the broadcaster stalls: readings are held (counted), commands become holds
        robot.fake.publishing.clear()
        time.sleep(0.4)
        received = robot.fake.commands_received
        sent = robot.send_action(target - 0.3)
        np.testing.assert_allclose(sent, robot.hold_action(robot.get_observation()), atol=1e-6)
        assert robot.stale_reads >= 2 and robot.counts["held (stale state)"] == 1
        deadline = time.monotonic() + 2.0
        while robot.fake.commands_received == received and time.monotonic() < deadline:
            time.sleep(0.01)
        np.testing.assert_allclose(robot.fake.target, sent, atol=1e-6)  # the hold went out
        time.sleep(0.7)
        with pytest.raises(TimeoutError, match="no state on /fake_ros2_control_.*/joint_states"):
            robot.get_observation()
    finally:
        robot.disconnect()


def test_passthrough_fake_base_and_connect_timeout():
    robot = make_robot("ros2_control", fake=True, mode="base_velocity")
    robot.connect()
    try:
        guard = GuardedRobot(robot)
        guard.observe()
        drive(guard, [0.4, 0.0], 1.5)
        odom = guard.observe()["odom"]
        assert odom[3] == pytest.approx(0.4) and odom[0] > 0.3  # moved forward, at the commanded speed
        sent, decision = guard.command([float("nan"), 0.0])
        assert not decision.accepted and np.all(np.isfinite(sent))
        time.sleep(robot.config.command_timeout)  # no valid command since: the guard stops the base
        received = robot.fake.commands_received
        sent, decision = guard.tick()
        assert decision.holding and np.all(sent == 0.0) and "command timeout" in decision.reasons[0]
        deadline = time.monotonic() + 2.0
        while robot.fake.commands_received == received and time.monotonic() < deadline:
            time.sleep(0.01)
        np.testing.assert_array_equal(robot.fake.twist, [0.0, 0.0])  # the zero twist reached the controller
    finally:
        robot.disconnect()
    lonely = make_robot("ros2_control", namespace="/nobody_here", connect_timeout=0.5)
    with pytest.raises(ConnectionError, match="no message on /nobody_here/joint_states"):
        lonely.connect()
    assert not lonely.is_connected


def test_passthrough_drives_our_robot_node_in_another_process():
    """Our robot node follows the ros2_control conventions: the passthrough drives it."""
    from test_ros import start, stop

    node = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", "-r", "__ns:=/arm", name="robot")
    robot = make_robot("ros2_control", namespace="/arm", command_topic="commands", connect_timeout=30.0)
    try:
        robot.connect()
        guard = GuardedRobot(robot)
        q0 = guard.observe()["joint_pos"].astype(np.float64)
        from robot_rl.robots.mock import MockArmConfig

        arm = MockArmConfig()  # the robot node's mock_arm starts inside half its joint range (seed 0)
        target = np.append(np.clip(q0 + 0.4, 0.5 * np.array(arm.joint_low), 0.5 * np.array(arm.joint_high)), 1.0)
        drive(guard, target, 2.0)
        q = guard.observe()["joint_pos"]
        np.testing.assert_allclose(q, target[:6], atol=0.05)
        assert np.max(np.abs(q - q0)) > 0.3
        assert robot.counts == {}  # no stale state, no bad joint_states
    finally:
        robot.disconnect()
        stop(node)


# ------------------------------------------------------------------------------------ RealSense

# (object, attribute) pairs the driver uses, checked on the installed pyrealsense2 and on the fake
RS_NAMES = [
    ("", "pipeline"), ("", "config"), ("", "align"), ("", "stream"), ("", "format"), ("", "option"),
    ("pipeline", "start"), ("pipeline", "wait_for_frames"), ("pipeline", "stop"),
    ("config", "enable_device"), ("config", "enable_stream"), ("align", "process"),
    ("stream", "color"), ("stream", "depth"), ("format", "rgb8"), ("format", "z16"),
    ("option", "enable_auto_exposure"), ("option", "exposure"),
]  # fmt: skip
RS_OBJECT_NAMES = [
    ("pipeline_profile", "get_device"), ("device", "first_depth_sensor"), ("device", "first_color_sensor"),
    ("depth_sensor", "get_depth_scale"), ("sensor", "set_option"),
    ("composite_frame", "get_color_frame"), ("composite_frame", "get_depth_frame"),
    ("frame", "get_data"), ("frame", "get_timestamp"),
]  # fmt: skip


def test_fake_realsense_uses_the_names_of_pyrealsense2():
    rs = pytest.importorskip("pyrealsense2", reason="pip install 'robot-rl[realsense]' to check the fake against it")
    from robot_rl.drivers.realsense_camera import FakeRealSense

    fake = FakeRealSense()
    for owner, name in RS_NAMES:
        assert hasattr(getattr(rs, owner) if owner else rs, name), f"pyrealsense2 has no {owner}.{name}"
        assert hasattr(getattr(fake, owner) if owner else fake, name), f"FakeRealSense has no {owner}.{name}"
    for owner, name in RS_OBJECT_NAMES:
        assert hasattr(getattr(rs, owner), name), f"pyrealsense2 has no {owner}.{name}"
    # and the fake's returned objects have them too
    cfg = fake.config()
    cfg.enable_stream(fake.stream.color, 64, 48, fake.format.rgb8, 30)
    cfg.enable_stream(fake.stream.depth, 64, 48, fake.format.z16, 30)
    pipe = fake.pipeline()
    objects = {"pipeline_profile": pipe.start(cfg)}
    objects["device"] = objects["pipeline_profile"].get_device()
    objects["depth_sensor"] = objects["sensor"] = objects["device"].first_depth_sensor()
    objects["composite_frame"] = pipe.wait_for_frames()
    objects["frame"] = objects["composite_frame"].get_color_frame()
    for owner, name in RS_OBJECT_NAMES:
        assert hasattr(objects[owner], name), f"the fake's {owner} has no {name}"
    pipe.stop()


def test_realsense_colour_depth_and_timestamps():
    from robot_rl.drivers.opencv_camera import frame_index, make_camera
    from robot_rl.drivers.realsense_camera import FakeRealSense, RealSenseCamera

    cam = make_camera("realsense:fake", 160, 120, 60.0)
    assert isinstance(cam, RealSenseCamera) and cam.has_depth
    cam.open()
    try:
        frames = [cam.read_rgbd() + (cam.device_time_ms,) for _ in range(5)]
    finally:
        cam.close()
    for rgb, depth, _, _ in frames:
        assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
        assert depth.shape == (120, 160) and depth.dtype == np.uint16
        assert 200 <= depth.min() and depth.max() <= 1500  # mm: the plane 500..1500 and the nearer square
    assert [frame_index(f[0]) for f in frames] == [0, 1, 2, 3, 4]
    for key in (2, 3):  # host monotonic time and device time both increase, at about 1 / fps
        stamps = np.array([f[key] for f in frames])
        assert np.all(np.diff(stamps) > 0)
    assert np.median(np.diff([f[3] for f in frames])) == pytest.approx(1000 / 60, rel=0.5)
    # another depth unit (0.1 mm per unit): still millimetres out
    fine = RealSenseCamera("000000000001", 160, 120, 60.0, exposure=8000, rs=FakeRealSense(depth_scale=0.0001))
    fine.open()
    _, depth_fine, _ = fine.read_rgbd()
    assert fine._rs.device.color.options == {"enable_auto_exposure": 0.0, "exposure": 8000.0}  # fixed exposure
    fine.close()
    np.testing.assert_allclose(depth_fine[:, :8].astype(float), frames[0][1][:, :8].astype(float), atol=1)


def test_realsense_errors(monkeypatch):
    from robot_rl.drivers.opencv_camera import make_camera
    from robot_rl.drivers.realsense_camera import FakeRealSense, RealSenseCamera

    with pytest.raises(OSError, match="cannot start RealSense 999"):
        RealSenseCamera("999", 64, 48, 30, rs=FakeRealSense()).open()
    cam = RealSenseCamera("", 64, 48, 30, timeout_ms=20, rs=FakeRealSense(fail_after=1))
    cam.open()
    cam.read()
    with pytest.raises(OSError, match="no frame within 20 ms"):
        cam.read()
    cam.close()
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    with pytest.raises(ImportError, match=r"pip install 'robot-rl\[realsense\]'"):
        make_camera("realsense:123", 64, 48, 30).open()


def test_camera_node_publishes_depth():
    """The camera node on the fake RealSense: colour and 16UC1 depth with the same stamp, over DDS."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from robot_rl.ros.common import SENSOR_QOS
    from test_ros import start, stop

    params = ("source:=realsense:fake", "width:=160", "height:=120", "fps:=30.0")
    node = start("robot_rl.ros.camera_node", *(a for p in params for a in ("-p", p)), name="head")
    ctx = Context()
    rclpy.init(args=[], context=ctx)
    probe = rclpy.create_node("depth_probe", context=ctx)
    got: dict[str, list[Image]] = {"color": [], "depth": []}
    probe.create_subscription(Image, "head/image_raw", got["color"].append, SENSOR_QOS)
    probe.create_subscription(Image, "head/depth/image_raw", got["depth"].append, SENSOR_QOS)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(got["depth"]) < 5:
            executor.spin_once(timeout_sec=0.05)
        assert len(got["depth"]) >= 5, "no depth images"
        d = got["depth"][-1]
        assert (d.encoding, d.width, d.height, d.step, d.is_bigendian) == ("16UC1", 160, 120, 320, 0)
        depth = np.frombuffer(bytes(d.data), dtype="<u2").reshape(120, 160)
        assert 200 <= depth.min() and depth.max() <= 1500
        assert got["color"] and got["color"][-1].encoding == "rgb8"
        color_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["color"]}
        depth_stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["depth"]]
        assert sum(s in color_stamps for s in depth_stamps) >= 3  # depth carries its colour frame's stamp
        assert depth_stamps == sorted(depth_stamps)
    finally:
        executor.shutdown()
        probe.destroy_node()
        ctx.try_shutdown()
        stop(node)


# ------------------------------------------------------------------------------------ hardware

HW_SERIAL = os.environ.get("ROBOT_RL_HW_SERIAL_BASE", "")
HW_REALSENSE = os.environ.get("ROBOT_RL_HW_REALSENSE", "")


@pytest.mark.hardware
@pytest.mark.skipif(
    not HW_SERIAL,
    reason="needs a motor controller: wheels off the ground, then "
    "ROBOT_RL_HW_SERIAL_BASE=/dev/ttyUSB0 .venv/bin/python -m pytest -m hardware tests/test_drivers_base.py",
)
def test_hardware_serial_base():
    robot = make_robot("diff_drive_serial", port=HW_SERIAL)
    robot.connect()
    try:
        assert robot.firmware
        guard = GuardedRobot(robot)
        guard.observe()
        obs = drive(guard, [0.1, 0.0], 1.0)
        assert obs[-1]["wheel_vel"].min() > 0.5 * robot.wheel_targets(0.1, 0.0).min()  # both wheels turn forward
        robot.stop()
        time.sleep(0.5)
        np.testing.assert_allclose(robot.get_observation()["wheel_vel"], 0.0, atol=0.2)
        assert not robot.errors
    finally:
        robot.disconnect()


@pytest.mark.hardware
@pytest.mark.skipif(
    not HW_REALSENSE,
    reason="needs a RealSense camera: "
    "ROBOT_RL_HW_REALSENSE=1 .venv/bin/python -m pytest -m hardware tests/test_drivers_base.py",
)
def test_hardware_realsense():
    from robot_rl.drivers.opencv_camera import make_camera

    cam = make_camera("realsense", 640, 480, 30)
    cam.open()
    try:
        frames = [cam.read_rgbd() for _ in range(10)]
    finally:
        cam.close()
    rgb, depth, _ = frames[-1]
    assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640) and depth.dtype == np.uint16
    assert (depth > 0).mean() > 0.2  # most pixels have a depth reading
    assert np.all(np.diff([f[2] for f in frames]) > 0)


HW_ROS2_CONTROL = os.environ.get("ROBOT_RL_HW_ROS2_CONTROL", "")


@pytest.mark.hardware
@pytest.mark.skipif(
    not HW_ROS2_CONTROL,
    reason="needs a running ros2_control robot: ROBOT_RL_HW_ROS2_CONTROL='{\"namespace\": \"\", \"joints\": [...]}' "
    ".venv/bin/python -m pytest -m hardware tests/test_drivers_base.py (config JSON; it only holds, never moves)",
)
def test_hardware_ros2_control_reads_state_and_holds():
    import json

    robot = make_robot("ros2_control", **json.loads(HW_ROS2_CONTROL))
    robot.connect()
    try:
        for _ in range(10):
            obs = robot.get_observation()
            time.sleep(0.05)
        assert robot.state_age < robot.config.state_timeout and robot.stale_reads == 0
        sent = robot.send_action(robot.hold_action(obs))  # hold where it is
        np.testing.assert_allclose(sent, robot.hold_action(obs), atol=1e-6)
        assert robot.counts == {}
    finally:
        robot.disconnect()
