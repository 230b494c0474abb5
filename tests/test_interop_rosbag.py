"""rosbag2 / MCAP import: bags written here with the real writers (rosbags' rosbag2 Writer with
the MCAP storage plugin, and mcap-ros2-support's Writer), real ROS 2 message types, imported
into a real store and checked message by message against the written stamps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is in the interop extra: pip install 'robot-rl[interop]'")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from robot_rl.data import EpisodeStore  # noqa: E402
from robot_rl.data.verify import verify  # noqa: E402
from robot_rl.interop.rosbag import (  # noqa: E402
    RosbagImportConfig,
    RosbagImportError,
    cut_episodes,
    import_rosbag,
    latest_before,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types
S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S  # bag time origin (epoch ns)


# ---------------------------------------------------------------------------------------------- message builders
def header(ns: int, frame: str = "") -> Any:
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // S, nanosec=ns % S), frame_id=frame)


def joint_state(ns: int, names: list[str], pos: np.ndarray, vel: np.ndarray | None = None) -> Any:
    empty = np.zeros(0, dtype=np.float64)
    return T["sensor_msgs/msg/JointState"](
        header=header(ns), name=names, position=np.asarray(pos, np.float64),
        velocity=np.asarray(vel, np.float64) if vel is not None else empty, effort=empty,
    )


def image(ns: int, frame: np.ndarray, encoding: str = "rgb8") -> Any:
    h, w, c = frame.shape
    return T["sensor_msgs/msg/Image"](
        header=header(ns), height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c,
        data=np.ascontiguousarray(frame, np.uint8).ravel(),
    )


def float_array(values: np.ndarray, label: str = "") -> Any:
    dims = [T["std_msgs/msg/MultiArrayDimension"](label=label, size=len(values), stride=len(values))] if label else []
    return T["std_msgs/msg/Float64MultiArray"](
        layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0), data=np.asarray(values, np.float64)
    )


class Bag:
    """A rosbag2 directory written with rosbags' Writer (MCAP storage plugin by default)."""

    def __init__(self, path: Path, storage: StoragePlugin = StoragePlugin.MCAP) -> None:
        self.path = path
        self.writer = Writer(path, version=9, storage_plugin=storage)
        self.writer.open()
        self.conns: dict[str, Any] = {}
        self.rows: list[tuple[int, str, str, Any]] = []

    def add(self, topic: str, msgtype: str, receive_ns: int, msg: Any) -> None:
        self.rows.append((receive_ns, topic, msgtype, msg))

    def topic(self, topic: str, msgtype: str) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=TS)

    def close(self) -> Path:
        for topic, msgtype in sorted({(r[1], r[2]) for r in self.rows}):
            self.topic(topic, msgtype)
        for t, topic, msgtype, msg in sorted(self.rows, key=lambda r: r[0]):  # a recorder writes in receive order
            self.writer.write(self.conns[topic], t, TS.serialize_cdr(msg, msgtype))
        self.writer.close()
        return self.path


def latest(stamps: list[int], t: int) -> int:
    """Brute force: the index of the message with the largest stamp <= t (the last such on ties)."""
    best = -1
    for i, s in enumerate(stamps):
        if s <= t and (best < 0 or s >= stamps[best]):
            best = i
    return best


# ---------------------------------------------------------------------------------------------- the main bag
JOINTS = ["shoulder", "elbow", "wrist"]
BURSTS = [(0.0, 2.0), (4.0, 1.5), (7.5, 2.2)]  # (start s, duration s), separated by > 1 s gaps


def write_session(path: Path, seed: int = 0, storage: StoragePlugin = StoragePlugin.MCAP) -> dict[str, Any]:
    """JointState (header stamps) at 100 Hz, rgb8 Image at 15 Hz, Float64MultiArray commands at
    20 Hz (no header: receive time), in three bursts; returns what was written."""
    rng = np.random.default_rng(seed)
    bag = Bag(path, storage)
    js: list[tuple[int, np.ndarray, np.ndarray]] = []
    imgs: list[tuple[int, np.ndarray]] = []
    cmds: list[tuple[int, np.ndarray]] = []
    for start, dur in BURSTS:
        b0 = T0 + int(start * S)
        for j in range(int(dur * 100) + 1):
            t = b0 + j * 10 * MS
            pos, vel = rng.normal(size=3), rng.normal(size=3)
            js.append((t, pos, vel))
            bag.add("/robot/joint_states", "sensor_msgs/msg/JointState", t + 2 * MS, joint_state(t, JOINTS, pos, vel))
        for j in range(int(dur * 15) + 1):
            t = b0 + 5 * MS + j * S // 15
            frame = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
            imgs.append((t, frame))
            bag.add("/wrist/image_raw", "sensor_msgs/msg/Image", t + 4 * MS, image(t, frame))
        for j in range(int(dur * 20)):
            t = b0 + 12 * MS + j * 50 * MS
            a = rng.normal(size=4)
            cmds.append((t, a))
            bag.add("/robot/commands", "std_msgs/msg/Float64MultiArray", t, float_array(a, "j0,j1,j2,gripper"))
    bag.close()
    return {"js": js, "imgs": imgs, "cmds": cmds}


MAPPING = """
step: /robot/commands
keys:
  action: {topic: /robot/commands, field: data}
  obs.joint_pos: {topic: /robot/joint_states, field: position}
  obs.joint_vel: {topic: /robot/joint_states, field: velocity}
  obs.image.wrist: {topic: /wrist/image_raw}
episodes: {gap: 1.0}
task: pick_cube
"""


def write_yaml(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run(tmp_path: Path, bag: Path, text: str, name: str = "out") -> Any:
    """Import ``bag`` with the mapping ``text`` into ``tmp_path/<name>.zarr``."""
    cfg = RosbagImportConfig(bag=bag, out=tmp_path / f"{name}.zarr", mapping=write_yaml(tmp_path, text), progress=False)
    return import_rosbag(cfg)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bags") / "session"
    return path, write_session(path)


def check_session_store(out: Path, written: dict[str, Any]) -> None:
    store = EpisodeStore(out)
    cmd_t = [t for t, _ in written["cmds"]]
    js_t = [t for t, _, _ in written["js"]]
    img_t = [t for t, _ in written["imgs"]]
    # expected episodes: the command stamps split at > 1 s gaps
    expected: list[list[int]] = [[0]]
    for i in range(1, len(cmd_t)):
        (expected.append([i]) if cmd_t[i] - cmd_t[i - 1] > S else expected[-1].append(i))
    assert len(store) == len(BURSTS) == len(expected)
    assert store.episode_lengths.tolist() == [len(e) for e in expected]
    for ep, steps in enumerate(expected):
        data = store.episode(ep)
        for row, i in enumerate(steps):
            t = cmd_t[i]
            assert data["timestamp"][row] == t / S
            np.testing.assert_array_equal(data["action"][row], written["cmds"][i][1].astype(np.float32))
            j = latest(js_t, t)
            np.testing.assert_array_equal(data["obs.joint_pos"][row], written["js"][j][1].astype(np.float32))
            np.testing.assert_array_equal(data["obs.joint_vel"][row], written["js"][j][2].astype(np.float32))
            np.testing.assert_array_equal(data["obs.image.wrist"][row], written["imgs"][latest(img_t, t)][1])
        rec = store.record(ep)
        assert rec["task"] == "pick_cube" and rec["source"] == "teleop" and rec["length"] == len(steps)
        assert rec["import"]["topics"]["obs.joint_pos"] == "/robot/joint_states"
        assert rec["start_time"].startswith("2023-11-14T22:13:")  # the bag's time, not the import's
    spec = store.schema.keys
    assert spec["obs.joint_pos"].names == tuple(JOINTS) and spec["obs.joint_pos"].units == "rad"
    assert spec["obs.joint_vel"].units == "rad/s"
    assert spec["action"].names == ("j0", "j1", "j2", "gripper")
    assert spec["obs.image.wrist"].shape == (24, 32, 3) and spec["obs.image.wrist"].is_image
    assert store.schema.fps == pytest.approx(20.0)
    report = verify(out)
    assert report.ok, report.errors


def test_import_rosbag2_directory(session: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, written = session
    out = tmp_path / "out.zarr"
    summary = import_rosbag(RosbagImportConfig(bag=bag, out=out, mapping=write_yaml(tmp_path, MAPPING), progress=False))
    check_session_store(out, written)
    assert summary.steps_written == len(written["cmds"]) == summary.steps_total
    assert summary.skipped_missing == 0 and summary.dropped_short == 0
    # commands at +12 ms + k*50 ms never coincide with a 10 ms joint stamp: every joint step is held,
    # never stale (<= 10 ms old); images at 15 Hz are held up to 67 ms
    assert summary.keys["obs.joint_pos"].held == summary.steps_written and summary.keys["obs.joint_pos"].stale == 0
    assert summary.keys["action"].exact == summary.steps_written
    assert summary.keys["obs.image.wrist"].messages == len(written["imgs"])
    table = summary.table()
    assert "/wrist/image_raw" in table and f"{len(BURSTS)} episodes" in table
    conv = summary.to_conversion_summary()  # what `robot-rl data import` prints for every format
    assert (conv.episodes, conv.steps) == (len(BURSTS), len(written["cmds"]))
    assert ("/wrist/image_raw", "obs.image.wrist", "(24, 32, 3)", "uint8") == conv.keys[-1][:4]


def test_import_bare_mcap_file_and_append(session: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, written = session
    (mcap_file,) = bag.glob("*.mcap")
    out = tmp_path / "bare.zarr"
    import_rosbag(RosbagImportConfig(bag=mcap_file, out=out, mapping=write_yaml(tmp_path, MAPPING), progress=False))
    check_session_store(out, written)
    # importing again appends to the same store (same schema)
    import_rosbag(RosbagImportConfig(bag=mcap_file, out=out, mapping=write_yaml(tmp_path, MAPPING), progress=False))
    assert len(EpisodeStore(out)) == 2 * len(BURSTS)


def test_import_sqlite3_rosbag2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .db3 bag (rosbag2's other storage plugin), with the progress bar on."""
    written = write_session(tmp_path / "db3_session", seed=5, storage=StoragePlugin.SQLITE3)
    assert list((tmp_path / "db3_session").glob("*.db3"))
    out = tmp_path / "db3.zarr"
    import_rosbag(RosbagImportConfig(bag=tmp_path / "db3_session", out=out, mapping=write_yaml(tmp_path, MAPPING)))
    check_session_store(out, written)
    assert "write db3.zarr" in capsys.readouterr().err  # the tqdm bar


def test_decode_image_encodings() -> None:
    from robot_rl.interop.rosbag import decode_image

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = image(0, rgb[..., ::-1], encoding="bgr8")
    np.testing.assert_array_equal(decode_image(msg, "sensor_msgs/msg/Image"), rgb)
    padded = np.zeros((2, 12), np.uint8)  # row step 12 > 3 px * 3 channels
    padded[:, :9] = rgb.reshape(2, 9)
    msg = T["sensor_msgs/msg/Image"](header=header(0), height=2, width=3, encoding="rgb8", is_bigendian=0, step=12,
                                     data=padded.ravel())
    np.testing.assert_array_equal(decode_image(msg, "sensor_msgs/msg/Image"), rgb)
    mono = rgb[..., :1].copy()
    np.testing.assert_array_equal(decode_image(image(0, mono, encoding="mono8"), "sensor_msgs/msg/Image"), mono)
    with pytest.raises(ValueError, match=r"encoding '16UC1' is not supported"):
        decode_image(image(0, mono, encoding="16UC1"), "sensor_msgs/msg/Image")


def test_rate_clock_and_min_steps(session: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, written = session
    text = MAPPING.replace("step: /robot/commands", "rate: 10")
    text = text.replace("episodes: {gap: 1.0}", "episodes: {gap: 1.0, min_steps: 18}")
    out = tmp_path / "rate.zarr"
    summary = import_rosbag(RosbagImportConfig(bag=bag, out=out, mapping=write_yaml(tmp_path, text), progress=False))
    store = EpisodeStore(out)
    cmd_t = [t for t, _ in written["cmds"]]
    # 10 Hz ticks from each burst's first to last command; the 1.5 s burst (15 ticks) is too short
    lengths = []
    for start, dur in BURSTS:
        burst = [t for t in cmd_t if T0 + start * S <= t <= T0 + (start + dur) * S]
        lengths.append((burst[-1] - burst[0]) // (100 * MS) + 1)
    assert store.episode_lengths.tolist() == [n for n in lengths if n >= 18]
    assert summary.dropped_short == sum(n < 18 for n in lengths) == 1
    assert store.schema.fps == 10.0
    ts = store.episode(1)["timestamp"]
    np.testing.assert_allclose(np.diff(ts), 0.1, atol=1e-6)
    first = int(round(ts[0] * S))
    a = store.episode(1)["action"][0]
    np.testing.assert_array_equal(a, written["cmds"][latest(cmd_t, first)][1].astype(np.float32))


# ---------------------------------------------------------------------------------------------- markers
def write_marked_mcap(path: Path, marker_type: str) -> tuple[list[int], list[tuple[int, str]], list[np.ndarray]]:
    """A bare .mcap written with mcap-ros2-support's Writer: commands at 20 Hz without gaps,
    PNG CompressedImage at 10 Hz, a marker topic switching recording on and off."""
    from mcap_ros2.writer import Writer as McapWriter

    schemas: dict[str, Any] = {}
    frames: list[np.ndarray] = []
    import cv2

    with open(path, "wb") as f:
        w = McapWriter(f)

        def write(topic: str, msgtype: str, t: int, msg: dict[str, Any]) -> None:
            if msgtype not in schemas:
                schemas[msgtype] = w.register_msgdef(msgtype, TS.generate_msgdef(msgtype, ros_version=2)[0])
            w.write_message(topic, schemas[msgtype], msg, log_time=t)

        cmd_t = []
        marks = [(T0 + ms * MS, kind) for ms, kind in ((300, "start"), (1300, "stop"), (2000, "start"), (2600, "stop"))]
        events = sorted([(t, "mark", k) for t, k in marks] + [(T0 + j * 50 * MS, "cmd", j) for j in range(60)]
                        + [(T0 + j * 100 * MS, "img", j) for j in range(30)])
        rng = np.random.default_rng(3)
        for t, what, arg in events:
            if what == "mark":
                if marker_type == "std_msgs/msg/Bool":
                    write("/recorder/recording", marker_type, t, {"data": arg == "start"})
                else:
                    write("/recorder/recording", marker_type, t, {"data": arg})
            elif what == "cmd":
                cmd_t.append(t)
                write("/robot/commands", "std_msgs/msg/Float64MultiArray", t,
                      {"layout": {"dim": [], "data_offset": 0}, "data": [float(arg), 1.0]})
            else:
                frame = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
                frames.append(frame)
                ok, png = cv2.imencode(".png", frame[..., ::-1])
                assert ok
                stamp = {"sec": t // S, "nanosec": t % S}
                write("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", t,
                      {"header": {"stamp": stamp, "frame_id": "cam"}, "format": "png", "data": png.tobytes()})
        w.finish()
    return cmd_t, marks, frames


MARKED = """
step: /robot/commands
keys:
  action: {topic: /robot/commands}
  obs.image.cam: {topic: /cam/image_raw/compressed}
episodes: {topic: /recorder/recording, min_steps: 1}
"""


@pytest.mark.parametrize("marker_type", ["std_msgs/msg/Bool", "std_msgs/msg/String"])
def test_marker_topic_cuts_episodes(tmp_path: Path, marker_type: str) -> None:
    path = tmp_path / "marked.mcap"
    cmd_t, marks, frames = write_marked_mcap(path, marker_type)
    out = tmp_path / "marked.zarr"
    summary = import_rosbag(RosbagImportConfig(bag=path, out=out, mapping=write_yaml(tmp_path, MARKED), progress=False))
    store = EpisodeStore(out)
    (on1, _), (off1, _), (on2, _), (off2, _) = marks
    want = [[t for t in cmd_t if on1 <= t < off1], [t for t in cmd_t if on2 <= t < off2]]
    assert store.episode_lengths.tolist() == [len(w) for w in want] == [20, 12]
    assert summary.outside_episodes == len(cmd_t) - 32
    img_t = [T0 + j * 100 * MS for j in range(30)]
    for ep, stamps in enumerate(want):
        data = store.episode(ep)
        np.testing.assert_array_equal(data["timestamp"], [t / S for t in stamps])
        np.testing.assert_array_equal(data["action"][:, 0], [(t - T0) // (50 * MS) for t in stamps])
        for row, t in enumerate(stamps):
            np.testing.assert_array_equal(data["obs.image.cam"][row], frames[latest(img_t, t)])
    assert verify(out).ok


# ---------------------------------------------------------------------------------------------- robot_rl's mapping
def test_default_mapping_of_a_robot_rl_session(tmp_path: Path) -> None:
    """A bag with the topics a robot_rl robot node publishes (robot_spec, state/<key>, action_sent,
    task, joint_states) imports with the namespace alone, with the recorder's key specs."""
    from robot_rl.robots import make_robot

    robot = make_robot("mock_arm")
    robot.connect()
    robot.reset(0)
    spec = {
        "name": robot.config.name, "fps": robot.config.fps, "sim": True,
        "observation_spec": {k: s.to_json() for k, s in robot.observation_spec.items()},
        "action_spec": robot.action_spec.to_json(),
    }
    bag = Bag(tmp_path / "robot_rl_session")
    bag.add("/robot/robot_spec", "std_msgs/msg/String", T0, T["std_msgs/msg/String"](data=json.dumps(spec)))
    period = int(S / robot.config.fps)
    rng = np.random.default_rng(1)
    obs_log, act_log, stamps = [], [], []

    def publish_obs(t: int, obs: dict[str, np.ndarray]) -> None:
        for key, value in obs.items():
            names = list(robot.observation_spec[key].names)
            bag.add(f"/robot/state/{key}", "sensor_msgs/msg/JointState", t + MS, joint_state(t, names, value))
        msg = joint_state(t, JOINTS + ["j3"], obs["joint_pos"])
        bag.add("/robot/joint_states", "sensor_msgs/msg/JointState", t + MS, msg)

    t = T0 + 10 * MS
    for episode in range(2):
        obs = robot.reset(episode)
        publish_obs(t, obs)
        for k in range(25):
            action = np.clip(rng.normal(scale=0.3, size=robot.action_spec.shape), -1, 1)
            sent = robot.send_action(action)
            obs_log.append({k2: v.copy() for k2, v in obs.items()})
            act_log.append(np.asarray(sent, np.float64))
            stamps.append(t)
            names = list(robot.action_spec.names)
            bag.add("/robot/action_sent", "sensor_msgs/msg/JointState", t + 2 * MS, joint_state(t, names, sent))
            task = np.array([-float(k), 0.0, float(k == 24)])
            msg = joint_state(t, ["reward", "success", "failure"], task)
            bag.add("/robot/task", "sensor_msgs/msg/JointState", t + 2 * MS, msg)
            t += period
            obs = robot.get_observation()
            publish_obs(t, obs)
        t += 3 * S  # the operator resets: a gap
    bag.close()

    out = tmp_path / "session.zarr"
    summary = import_rosbag(RosbagImportConfig(bag=bag.path, out=out, namespace="/robot", task="reach", progress=False))
    store = EpisodeStore(out)
    assert store.episode_lengths.tolist() == [25, 25]
    for key, s in robot.observation_spec.items():
        assert store.schema.keys[f"obs.{key}"] == s  # the robot_spec's KeySpecs, limits and all
    assert store.schema.keys["action"] == robot.action_spec
    assert store.schema.fps == robot.config.fps and store.schema.robot["name"] == "mock_arm"
    data = {k: np.concatenate([store.episode(e)[k] for e in range(2)]) for k in store.keys}
    for i, t in enumerate(stamps):
        assert data["timestamp"][i] == t / S
        np.testing.assert_array_equal(data["action"][i], act_log[i].astype(np.float32))
        for key, value in obs_log[i].items():
            np.testing.assert_array_equal(data[f"obs.{key}"][i], np.asarray(value, np.float32))
        assert data["reward"][i] == -float(i % 25)
        assert bool(data["done"][i]) == (i % 25 == 24)
    rec = store.record(0)
    assert rec["task"] == "reach" and rec["robot"] == "mock_arm"
    # robot-node keys share the action's stamp: nothing held, like the recorder's zero drops
    assert all(s.held == 0 for s in summary.keys.values())
    assert verify(out).ok


# ---------------------------------------------------------------------------------------------- errors
def test_unknown_topic_names_the_topics_in_the_bag(session: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, _ = session
    text = MAPPING.replace("/wrist/image_raw", "/front/image_raw")
    with pytest.raises(RosbagImportError, match=r"/front/image_raw.*not in.*topics in the bag: .*/wrist/image_raw"):
        run(tmp_path, bag, text, "x")
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(RosbagImportError, match=r"no /robot/action_sent topic.*--namespace"):
        import_rosbag(RosbagImportConfig(bag=bag, out=tmp_path / "x.zarr", namespace="/robot", progress=False))


def test_wrong_field_and_type(session: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, _ = session
    text = MAPPING.replace("field: velocity", "field: velocty")
    with pytest.raises(RosbagImportError, match=r"obs.joint_vel.*JointState.*no field 'velocty'.*position.*velocity"):
        run(tmp_path, bag, text, "a")
    text = MAPPING.replace("obs.joint_vel: {topic: /robot/joint_states, field: velocity}", "obs.cam: /wrist/image_raw")
    with pytest.raises(RosbagImportError, match=r"obs.cam.*sensor_msgs/msg/Image.*obs.image.<cam>"):
        run(tmp_path, bag, text, "b")
    text = MAPPING.replace("{topic: /wrist/image_raw}", "{topic: /robot/joint_states}")
    with pytest.raises(RosbagImportError, match=r"obs.image.wrist.*JointState.*cannot map to an image key"):
        run(tmp_path, bag, text, "c")
    text = MAPPING.replace("field: velocity", "field: header")
    with pytest.raises(RosbagImportError, match=r"'obs.joint_vel'.*'header' is a std_msgs/msg/Header message"):
        run(tmp_path, bag, text, "d")


def test_shape_change_mid_bag(tmp_path: Path) -> None:
    bag = Bag(tmp_path / "grows")
    for j in range(40):
        t = T0 + j * 50 * MS
        n = 3 if j < 30 else 4  # a joint appears at t = 1.5 s
        bag.add("/js", "sensor_msgs/msg/JointState", t, joint_state(t, [f"j{i}" for i in range(n)], np.zeros(n)))
        bag.add("/cmd", "std_msgs/msg/Float64MultiArray", t, float_array(np.zeros(2)))
    bag.close()
    text = "step: /cmd\nkeys:\n  action: {topic: /cmd}\n  obs.joint_pos: {topic: /js}\n"
    with pytest.raises(RosbagImportError, match=r"'obs.joint_pos'.*mid-bag on /js at t=1700000001.500 s: 4 values"):
        run(tmp_path, bag.path, text, "g")


def test_empty_bag_and_bad_mapping(tmp_path: Path) -> None:
    bag = Bag(tmp_path / "empty")
    bag.topic("/cmd", "std_msgs/msg/Float64MultiArray")
    bag.close()
    text = "step: /cmd\nkeys:\n  action: {topic: /cmd}\n  obs.x: {topic: /cmd}\n"
    with pytest.raises(RosbagImportError, match=r"empty \(no messages\); topics: /cmd"):
        run(tmp_path, bag.path, text, "e")
    with pytest.raises(RosbagImportError, match=r"no 'action' key"):
        run(tmp_path, bag.path, "step: /cmd\nkeys:\n  obs.x: {topic: /cmd}\n", "e")
    with pytest.raises(RosbagImportError, match=r"exactly one of `step"):
        run(tmp_path, bag.path, "keys:\n  action: /cmd\n  obs.x: /cmd\n", "e")
    with pytest.raises(RosbagImportError, match=r"does not exist"):
        import_rosbag(RosbagImportConfig(bag=tmp_path / "nope", out=tmp_path / "e.zarr", progress=False))


# ---------------------------------------------------------------------------------------------- pure helpers
def test_latest_before_and_cut_episodes() -> None:
    msgs = np.array([10, 20, 20, 35])
    np.testing.assert_array_equal(latest_before(np.array([5, 10, 19, 20, 34, 99]), msgs), [-1, 0, 0, 2, 2, 3])
    stamps = np.array([0, 1, 2, 10, 11, 30]) * S
    assert cut_episodes(stamps, 2.0) == ([(0, 3), (3, 5), (5, 6)], 0)
    assert cut_episodes(stamps, 2.0, min_steps=2) == ([(0, 3), (3, 5)], 1)
    marks = [(1 * S, "start"), (10 * S, "reset"), (20 * S, "stop")]
    assert cut_episodes(stamps, None, marks) == ([(1, 3), (3, 5)], 0)


def test_config_is_cli_ready() -> None:
    import argparse

    from robot_rl.cli._args import add_dataclass_arguments, dataclass_from_namespace

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, RosbagImportConfig)
    ns = parser.parse_args(["bag_dir", "--out", "o.zarr", "--namespace", "/robot", "--gap", "0.5", "--no-progress"])
    cfg = dataclass_from_namespace(RosbagImportConfig, ns)
    assert cfg.bag == Path("bag_dir") and cfg.gap == 0.5 and cfg.namespace == "/robot" and cfg.progress is False
