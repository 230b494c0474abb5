"""ROS 2 layer over real DDS on loopback: real nodes in separate processes, a unique
ROS_DOMAIN_ID per test run, discovery limited to localhost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import EpisodeStore

BIN = Path(sys.executable).parent / "robot-rl"
# conftest.py gives the run its own ROS_DOMAIN_ID and keeps discovery on localhost.


def read_audit(path: Path) -> dict[int, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        stamp, *values = line.split()
        out[int(stamp)] = np.array([float(v) for v in values])
    return out


def check_store_against_audit(store: EpisodeStore, audit: dict[int, np.ndarray]) -> int:
    """Every recorded action is exactly an action the robot node sent, at that stamp."""
    steps = 0
    for i in range(len(store)):
        ep = store.episode(i, keys=["action", "timestamp"])
        for action, ts in zip(ep["action"], ep["timestamp"], strict=True):
            stamp = min(audit, key=lambda s: abs(s - ts * 1e9))
            assert abs(stamp - ts * 1e9) < 2000, f"episode {i}: no sent action at stamp {ts}"
            np.testing.assert_allclose(action, audit[stamp].astype(np.float32), rtol=0, atol=0)
            steps += 1
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("robot,episodes", [("mock_arm", 4), ("sim_lift", 5)])
def test_record_launch_end_to_end(tmp_path, robot, episodes):
    out, audit = tmp_path / "rec.zarr", tmp_path / "audit.txt"
    proc = subprocess.run(
        [str(BIN), "launch", "record.launch.yaml", f"robot:={robot}", "teleop:=scripted", f"episodes:={episodes}", f"out:={out}", f"audit_log:={audit}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    store = EpisodeStore(out)
    assert len(store) == episodes
    assert all(r["source"] == "scripted" and r["robot"] == robot for r in store.records)
    assert sum(r["success"] for r in store.records) >= episodes - 1
    assert check_store_against_audit(store, read_audit(audit)) == store.n_steps
    assert store.verify().ok


def start(module: str, *ros_args: str, name: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", *ros_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        pass_fds=pass_fds,
    )


def stop(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Probe:
    """A test-side node: publishes commands/e-stop and records what the robot sends."""

    def __init__(self) -> None:
        import rclpy
        from geometry_msgs.msg import Twist
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64MultiArray, String

        from robot_rl.ros.common import LATCHED_QOS, RELIABLE_QOS, command_qos

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("probe")
        self.Twist, self.Bool, self.F64 = Twist, Bool, Float64MultiArray
        self.sent: list[tuple[float, np.ndarray]] = []
        self.status: dict = {}
        self.node.create_subscription(JointState, "action_sent", lambda m: self.sent.append((time.monotonic(), np.array(m.position))), RELIABLE_QOS)
        self.node.create_subscription(String, "robot/status", lambda m: self.status.update(json.loads(m.data)), RELIABLE_QOS)
        self.cmd_vel = self.node.create_publisher(Twist, "cmd_vel", command_qos(0.3))
        self.commands = self.node.create_publisher(Float64MultiArray, "commands", command_qos(0.3))
        self.estop = self.node.create_publisher(Bool, "estop", LATCHED_QOS)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.01)

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            self.spin(0.02)
        raise AssertionError("timed out waiting")

    def drive(self, v: float, seconds: float, period: float = 0.05) -> float:
        end = time.monotonic() + seconds
        last = time.monotonic()
        while time.monotonic() < end:
            msg = self.Twist()
            msg.linear.x = v
            self.cmd_vel.publish(msg)
            last = time.monotonic()
            self.spin(period)
        return last

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.shutdown()


@pytest.fixture
def base_robot():
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_base", name="robot")
    probe = Probe()
    try:
        probe.wait_for(lambda: min(p.get_subscription_count() for p in (probe.cmd_vel, probe.commands, probe.estop)) > 0)
        yield robot, probe
    finally:
        probe.close()
        stop(robot)


@pytest.mark.slow
def test_stale_commands_hold_within_timeout_plus_one_period(base_robot):
    robot, probe = base_robot
    last = probe.drive(0.3, 1.0)
    probe.spin(1.0)
    moving = [t for t, a in probe.sent if a[0] > 0.0]
    assert moving, "the base never moved"
    stopped = [t for t, a in probe.sent if t > last and a[0] == 0.0]
    assert stopped, "the base was never stopped"
    # timeout 0.3 s + one period 0.05 s; 0.1 s allowance for DDS delivery on a loaded 2-core machine
    assert stopped[0] - last <= 0.3 + 0.05 + 0.1
    assert all(a[0] == 0.0 for t, a in probe.sent if t > stopped[0])


@pytest.mark.slow
def test_estop_holds_until_reset(base_robot):
    from std_srvs.srv import Trigger

    robot, probe = base_robot
    probe.drive(0.3, 0.5)
    probe.estop.publish(probe.Bool(data=True))
    probe.spin(0.2)
    mark = time.monotonic()
    probe.drive(0.3, 0.6)  # commands keep coming: ignored while latched
    assert all(a[0] == 0.0 for t, a in probe.sent if t > mark)
    probe.estop.publish(probe.Bool(data=False))  # releasing the topic does not reset the latch
    mark = time.monotonic()
    probe.drive(0.3, 0.4)
    assert all(a[0] == 0.0 for t, a in probe.sent if t > mark)
    client = probe.node.create_client(Trigger, "reset_estop")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    probe.wait_for(future.done)
    assert future.result().success
    mark = time.monotonic()
    probe.drive(0.3, 0.6)
    assert any(a[0] > 0.0 for t, a in probe.sent if t > mark)


@pytest.mark.slow
def test_malformed_messages_are_rejected_and_counted(base_robot):
    from std_msgs.msg import MultiArrayDimension

    robot, probe = base_robot
    probe.drive(0.2, 0.3)  # both ends matched: a valid command got through
    probe.wait_for(lambda: any(a[0] > 0 for _, a in probe.sent) and "rejected_messages" in probe.status)
    bad = []
    for data, label in [([0.1], ""), ([0.1, 0.2, 0.3], ""), ([float("nan"), 0.0], ""), ([0.1, 0.0], "x,y"), ([float("inf"), 1e308], "")]:
        msg = probe.F64()
        msg.data = data
        if label:
            msg.layout.dim = [MultiArrayDimension(label=label, size=2, stride=2)]
        bad.append(msg)
    for _ in range(5):
        for msg in bad:
            probe.commands.publish(msg)
            probe.spin(0.03)
    # every malformed message is counted once, with its reason, as it arrives
    probe.wait_for(lambda: probe.status.get("rejected_messages", 0) >= 25)
    probe.spin(0.6)
    assert probe.status["rejected_messages"] == 25
    assert probe.status["rejected_by_reason"] == {"wrong length": 10, "non-finite value": 10, "wrong element names": 5}
    assert robot.poll() is None  # still running
    assert all(np.all(np.isfinite(a)) and abs(a[0]) <= 0.5 for _, a in probe.sent)
    probe.drive(0.3, 0.5)
    assert any(a[0] > 0 for _, a in probe.sent[-5:])  # and still obeys good commands


@pytest.mark.slow
def test_keyboard_teleop_drives_the_robot():
    """Keys written to the keyboard device's fd reach the robot as commands; Esc ends the node."""
    r, w = os.pipe()
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_base", name="robot")
    teleop = start("robot_rl.ros.teleop_node", "-p", "device:=keyboard", "-p", "robot:=mock_base", "-p", f"device_config:='{{\"fd\": {r}}}'", name="teleop", pass_fds=(r,))
    os.close(r)
    probe = Probe()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(a[0] >= 0.15 - 1e-6 for _, a in probe.sent):
            os.write(w, b"w")  # a held key, as the terminal's auto-repeat sends it
            probe.spin(0.03)
        assert any(a[0] == pytest.approx(0.15) for _, a in probe.sent), "w never drove the base (0.3 x 0.5 m/s)"
        released = time.monotonic()
        probe.wait_for(lambda: any(t > released and a[0] == 0.0 for t, a in probe.sent), timeout=5)
        os.write(w, b"\x1b")
        assert teleop.wait(timeout=20) == 0
    finally:
        os.close(w)
        probe.close()
        stop(teleop, robot)


@pytest.mark.slow
def test_sigkill_recorder_mid_episode_keeps_committed_episodes(tmp_path):
    out, audit = tmp_path / "rec.zarr", tmp_path / "audit.txt"
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", "-p", f"audit_log:={audit}", name="robot")
    recorder = start("robot_rl.ros.recorder_node", "-p", f"out:={out}", "-p", "source:=scripted", "-p", "flush_every:=5", name="recorder")
    teleop = start("robot_rl.ros.teleop_node", "-p", "robot:=mock_arm", "-p", "episodes:=50", name="teleop")
    try:
        deadline = time.monotonic() + 60
        committed = 0
        while time.monotonic() < deadline and committed < 3:
            time.sleep(0.2)
            try:
                committed = len(EpisodeStore(out))
            except Exception:  # the store does not exist yet
                committed = 0
        assert committed >= 3, "the recorder did not commit episodes"
        time.sleep(0.15)  # land inside the next episode
        os.killpg(recorder.pid, signal.SIGKILL)
        recorder.wait()
    finally:
        stop(teleop, robot, recorder)
    store = EpisodeStore(out)
    assert len(store) >= 3
    check_store_against_audit(store, read_audit(audit))
    assert store.verify().ok


@pytest.mark.slow
def test_a_service_reply_that_never_comes_is_asked_again(tmp_path):
    """ServiceCaller (the teleop node's and the policy node's episode calls): a start sent
    to a frozen recorder gets no reply in time and is given up; asked again after the
    recorder resumes, the answer "already recording" is read as the first request having gone
    through. The late reply to the
    abandoned request is dropped, not delivered."""
    from std_srvs.srv import Trigger

    from robot_rl.ros.common import ALREADY_RECORDING, ServiceCaller

    out = tmp_path / "rec.zarr"
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", name="robot")
    recorder = start("robot_rl.ros.recorder_node", "-p", f"out:={out}", "-p", "source:=scripted", name="recorder")
    probe = Probe()
    try:
        discard = probe.node.create_client(Trigger, "recorder/discard")
        start_client = probe.node.create_client(Trigger, "recorder/start")
        calls = ServiceCaller(probe.node, timeout=1.0)
        answers: list[tuple[bool, str, bool]] = []

        def answer(result, went_through):
            answers.append((result.success, result.message, went_through))

        # the recorder has its store open (discard answers) and hears the robot (a start
        # would say "waiting for first messages" otherwise): give it a moment
        probe.wait_for(lambda: discard.service_is_ready() and start_client.service_is_ready(), timeout=60)
        opened: list[bool] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (opened and opened[-1]):
            if not calls.busy:
                calls.call(discard, Trigger.Request(), "discard", lambda r, a: opened.append(r.success))
            probe.spin(0.2)
        assert opened and opened[-1], "the recorder never opened its store"
        probe.spin(1.0)

        os.killpg(recorder.pid, signal.SIGSTOP)
        try:
            assert calls.call(start_client, Trigger.Request(), "start", answer, ALREADY_RECORDING)
            end = time.monotonic() + 1.6
            while time.monotonic() < end:
                calls.poll()
                probe.spin(0.02)
            assert not calls.busy and calls.gave_up == 1 and answers == []
        finally:
            os.killpg(recorder.pid, signal.SIGCONT)
        probe.spin(1.0)  # the recorder starts recording and answers the abandoned request
        assert answers == [], "a reply to an abandoned request was delivered"
        assert calls.call(start_client, Trigger.Request(), "start", answer, ALREADY_RECORDING)
        probe.wait_for(lambda: answers, timeout=10)
        assert answers == [(False, "already recording", True)]
        # a later, answered call of the same kind is no longer "asked before"
        assert calls.call(start_client, Trigger.Request(), "start", answer, ALREADY_RECORDING)
        probe.wait_for(lambda: len(answers) == 2, timeout=10)
        assert answers[1] == (False, "already recording", False)
    finally:
        probe.close()
        stop(recorder, robot)


def test_fake_camera_capture_path():
    """The real OpenCVCamera code path on the in-package fake device."""
    from robot_rl.drivers.opencv_camera import frame_index, make_camera

    import cv2

    cam = make_camera("fake", 160, 120, 200.0)
    cam.open()
    frames = [cam.read()[0] for _ in range(5)]
    cam.close()
    assert frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8
    assert [frame_index(f) for f in frames] == [0, 1, 2, 3, 4]
    jpeg = cv2.imdecode(cv2.imencode(".jpg", frames[3], [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_COLOR)
    assert frame_index(jpeg) == 3  # the index survives compression
    with pytest.raises(ValueError, match="camera source"):
        make_camera("usb", 64, 48, 30)
    with pytest.raises(OSError, match="cannot open camera"):
        make_camera("opencv:/dev/video99", 64, 48, 30).open()


def write_calibration(tmp_path: Path) -> Path:
    good = tmp_path / "wrist.yaml"
    good.write_text(
        "image_width: 160\nimage_height: 120\ncamera_name: wrist\n"
        "camera_matrix: {rows: 3, cols: 3, data: [50, 0, 32, 0, 50, 24, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}\n"
        "rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n"
        "projection_matrix: {rows: 3, cols: 4, data: [50, 0, 32, 0, 0, 50, 24, 0, 0, 0, 1, 0]}\n"
    )
    return good


def test_camera_info_files(tmp_path):
    from robot_rl.calibration.camera_info import CalibrationError, load_camera_info

    good = write_calibration(tmp_path)
    intr = load_camera_info(good, 160, 120)
    assert intr.k[0] == 50 and intr.d[0] == 0.1
    with pytest.raises(CalibrationError, match="calibrated at 160x120"):
        load_camera_info(good, 640, 480)
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 64\nimage_height: 48\ncamera_matrix: {rows: 3, cols: 3, data: [1, 2]}\n")
    with pytest.raises(CalibrationError, match="'camera_matrix' has 2 values"):
        load_camera_info(bad)


@pytest.mark.slow
@pytest.mark.parametrize("compressed", [False, True])
def test_camera_node_feeds_the_recorder(tmp_path, compressed):
    calib = write_calibration(tmp_path)
    out = tmp_path / "cam.zarr"
    flag = "true" if compressed else "false"
    camera = start("robot_rl.ros.camera_node", "-p", "source:=fake", "-p", "width:=160", "-p", "height:=120", "-p", "fps:=30.0", "-p", f"compressed:={flag}", "-p", f"calibration:={calib}", name="wrist")
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", name="robot")
    recorder = start("robot_rl.ros.recorder_node", "-p", f"out:={out}", "-p", "cameras:=wrist:160x120", "-p", f"compressed:={flag}", name="recorder")
    teleop = start("robot_rl.ros.teleop_node", "-p", "robot:=mock_arm", "-p", "episodes:=2", name="teleop")
    try:
        assert teleop.wait(timeout=120) == 0, teleop.stdout.read()[-2000:]
    finally:
        stop(camera, robot, recorder, teleop)
    store = EpisodeStore(out)
    assert len(store) == 2 and "obs.image.wrist" in store.schema.keys
    frames = store.episode(1)["obs.image.wrist"]
    assert frames.shape[1:] == (120, 160, 3) and frames.std() > 10  # real frames, not zeros
    from robot_rl.drivers.opencv_camera import frame_index

    idx = [frame_index(f) for f in frames]  # the fake device's frame counter, in time order
    assert idx == sorted(idx) and idx[-1] > idx[0]


@pytest.mark.slow
def test_record_command(tmp_path):
    out = tmp_path / "r.zarr"
    proc = subprocess.run([str(BIN), "record", "--robot", "mock_base", "--episodes", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "recorded 2 episode(s) (2 successful)" in proc.stdout
    assert len(EpisodeStore(out)) == 2
    proc = subprocess.run([str(BIN), "record", "--out", str(out), "--robot-config", "{oops"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def test_a_node_that_cannot_activate_exits():
    """run_node: a node whose activation fails (a koch fake whose first bus read went
    unanswered, in a full-suite run) exits 1, so its launch ends with the reason logged,
    instead of idling while its peers wait for its first messages."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from robot_rl.ros.common import RobotRLNode, run_node

    class CannotActivate(RobotRLNode):
        def __init__(self) -> None:
            super().__init__("cannot_activate")

        def on_configure(self, state) -> TransitionCallbackReturn:
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state) -> TransitionCallbackReturn:
            return self.fail("no status packet from the bus")

    assert run_node(CannotActivate, ["cannot_activate"]) == 1


def test_a_callback_that_runs_into_the_shutdown_ends_the_node_cleanly():
    """SIGINT's handler shuts the context down at once; a timer callback already due then
    publishes on it and rcl raises "publisher's context is invalid". run_node reads that as
    the shutdown (exit 0), not a crash: before, nodes exited 1 with that traceback now and
    then on Ctrl-C (a robot node in a clean-clone CI run, the recorder in the disk-full
    test). The same error while the context is alive still propagates."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_msgs.msg import String

    from robot_rl.ros.common import RCLError, RobotRLNode, run_node

    class Publisher(RobotRLNode):
        shut_down_first = True

        def __init__(self) -> None:
            super().__init__("publisher")

        def on_configure(self, state) -> TransitionCallbackReturn:
            self.pub = self.create_publisher(String, "chatter", 10)
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state) -> TransitionCallbackReturn:
            self.create_timer(0.01, self.tick)
            return super().on_activate(state)

        def tick(self) -> None:
            if self.shut_down_first:
                # what SIGINT's handler does, between the executor's wait and this callback:
                # the rcl context is shut down, the handles stay
                rclpy.get_default_context().handle.shutdown()
                self.pub.publish(String(data="after the shutdown"))
            else:
                raise RCLError("an rcl failure while running")

    assert run_node(Publisher, ["publisher"]) == 0
    Publisher.shut_down_first = False
    with pytest.raises(RCLError, match="while running"):
        run_node(Publisher, ["publisher"])
