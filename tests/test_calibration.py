"""Calibration accuracy on synthetic views with known ground truth, plus the registry,
joint offsets, the CLI and the error paths.

Views are rendered by ray-casting each (distorted) camera pixel onto the board plane at
a known pose (robot_rl.calibration.synthetic), blurred (sigma 0.6 px) and with Gaussian
noise (sigma 2 grey levels); the real OpenCV detection and calibration then run on them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from robot_rl.calibration.boards import parse_board, render_board
from robot_rl.calibration.camera_info import CalibrationError, load_camera_info
from robot_rl.calibration.handeye import calibrate_handeye, invert, load_robot_poses, make_transform, save_robot_poses
from robot_rl.calibration.intrinsics import calibrate_intrinsics, detect_board
from robot_rl.calibration.joints import JointCalibration, calibrate_joint_offsets
from robot_rl.calibration.registry import load_calibration, resolve_ref, save_calibration, versions
from robot_rl.calibration.synthetic import SyntheticCamera, random_board_poses, render_views

CHECKER = "checkerboard:9x6:0.025"
CHARUCO = "charuco:7x5:0.04:0.03:DICT_5X5_100"
K_TRUE = np.array([[605.0, 0.0, 322.5], [0.0, 598.0, 236.0], [0.0, 0.0, 1.0]])
DIST_TRUE = np.array([-0.12, 0.06, 0.001, -0.0008, 0.0])


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude()))


@pytest.fixture(scope="module")
def checker_views():
    """16 views of the checkerboard through a camera without distortion."""
    board = parse_board(CHECKER)
    cam = SyntheticCamera(K_TRUE.copy(), np.zeros(5))
    poses = random_board_poses(board, cam, 16, np.random.default_rng(0))
    return board, cam, render_views(board, cam, poses, np.random.default_rng(1))


@pytest.fixture(scope="module")
def charuco_result():
    """ChArUco intrinsics through a camera with distortion (also used by the hand-eye tests)."""
    board = parse_board(CHARUCO)
    cam = SyntheticCamera(K_TRUE.copy(), DIST_TRUE.copy())
    poses = random_board_poses(board, cam, 16, np.random.default_rng(2))
    views = render_views(board, cam, poses, np.random.default_rng(3))
    return board, cam, calibrate_intrinsics(views, board, "wrist")


def check_intrinsics(result, name: str) -> None:
    fx_err = abs(result.k[0, 0] / K_TRUE[0, 0] - 1)
    fy_err = abs(result.k[1, 1] / K_TRUE[1, 1] - 1)
    c_err = np.abs(result.k[:2, 2] - K_TRUE[:2, 2]).max()
    print(f"{name}: RMS {result.rms:.3f} px, fx err {100 * fx_err:.3f}%, fy err {100 * fy_err:.3f}%, principal point err {c_err:.2f} px")  # pytest -s shows the measured accuracy
    assert result.rms < 0.5
    assert fx_err < 0.01 and fy_err < 0.01
    assert c_err < 5.0
    assert not result.rejected


def test_checkerboard_intrinsics_accuracy(checker_views):
    board, _cam, views = checker_views
    result = calibrate_intrinsics(views, board, "wrist")
    check_intrinsics(result, "intrinsics checkerboard 9x6, no distortion, 16 views")
    assert np.abs(result.dist).max() < 0.02  # the true camera has none
    assert set(result.per_view_rms) == {n for n, _ in views} and max(result.per_view_rms.values()) < 0.5


def test_charuco_intrinsics_accuracy_with_distortion(charuco_result):
    _board, _cam, result = charuco_result
    check_intrinsics(result, "intrinsics ChArUco 7x5, k1=-0.12 k2=0.06, 16 views")
    assert abs(result.dist[0] - DIST_TRUE[0]) < 0.02  # k1 recovered


def test_checkerboard_orientation_is_canonical(checker_views):
    """The detectors may start at either end of the grid; the board frame must not."""
    board, cam, views = checker_views
    poses = random_board_poses(board, cam, 16, np.random.default_rng(0))
    for (name, image), pose in list(zip(views, poses))[:8]:
        det = detect_board(image, board, name)
        proj, _ = cv2.projectPoints(board.object_points(), cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3], cam.k, cam.dist)
        assert np.abs(det.image_points - proj.reshape(-1, 2)).max() < 0.5, name


@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_handeye_accuracy(charuco_result, mode):
    board, cam, intr_result = charuco_result
    rng = np.random.default_rng(10 if mode == "eye_in_hand" else 11)
    if mode == "eye_in_hand":  # X = T_gripper_camera; the board is fixed in the base frame
        x_true = make_transform(Rotation.from_euler("xyz", [10, -5, 92], degrees=True).as_matrix(), [0.03, -0.05, 0.08])
        fixed = make_transform(Rotation.from_euler("z", 30, degrees=True).as_matrix(), [0.5, 0.1, 0.0])  # T_base_board
    else:  # X = T_base_camera; the board rides on the gripper
        x_true = make_transform(Rotation.from_euler("xyz", [-150, 5, 80], degrees=True).as_matrix(), [0.9, 0.1, 0.6])
        fixed = make_transform(Rotation.from_euler("x", 180, degrees=True).as_matrix(), [0.0, -0.05, 0.12])  # T_gripper_board
    board_in_cam = random_board_poses(board, cam, 12, rng, max_tilt_deg=40)
    if mode == "eye_in_hand":
        robot = [fixed @ invert(p) @ invert(x_true) for p in board_in_cam]
    else:
        robot = [x_true @ p @ invert(fixed) for p in board_in_cam]
    # the driver's pose readings carry a little noise too (0.2 mm, 0.02 deg)
    robot = [r @ make_transform(Rotation.from_rotvec(rng.normal(0, np.radians(0.02), 3)).as_matrix(), rng.normal(0, 2e-4, 3)) for r in robot]
    views = render_views(board, cam, board_in_cam, rng)
    result = calibrate_handeye(views, {n: r for (n, _), r in zip(views, robot)}, intr_result.intrinsics, board, mode, "park")
    rot_err = rotation_error_deg(result.transform, x_true)
    trans_err = 1000 * np.linalg.norm(result.transform[:3, 3] - x_true[:3, 3])
    print(f"hand-eye {mode} (park, 12 views, calibrated intrinsics): rotation err {rot_err:.3f} deg, translation err {trans_err:.2f} mm")
    assert rot_err < 1.0
    assert trans_err < 5.0
    assert rotation_error_deg(result.target, fixed) < 1.0 and 1000 * np.linalg.norm(result.target[:3, 3] - fixed[:3, 3]) < 5.0
    assert result.translation_residuals_mm.max() < 10 and len(result.views) == 12


def test_handeye_rejects_ambiguous_board_and_mismatched_poses(charuco_result):
    _board, _cam, intr_result = charuco_result
    square = parse_board("checkerboard:7x5:0.03")  # 7 + 5 even: a half turn looks the same
    with pytest.raises(CalibrationError, match="ambiguous"):
        calibrate_handeye([], {}, intr_result.intrinsics, square)
    board = parse_board(CHARUCO)
    image = np.zeros((480, 640), np.uint8)
    with pytest.raises(CalibrationError, match=r"images without a pose \['a.png'\]"):
        calibrate_handeye([("a.png", image)], {"b.png": np.eye(4)}, intr_result.intrinsics, board)


def test_robot_poses_file_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    poses = {f"v{i}.png": make_transform(Rotation.random(random_state=i).as_matrix(), rng.normal(size=3)) for i in range(4)}
    path = save_robot_poses(tmp_path / "poses.yaml", poses)
    loaded = load_robot_poses(path)
    assert list(loaded) == list(poses)
    for name in poses:
        np.testing.assert_allclose(loaded[name], poses[name], atol=1e-9)
    (tmp_path / "bad.yaml").write_text("poses:\n  - image: a.png\n    position: [0, 0, 0]\n    quaternion: [0, 0, 0, 2]\n")
    with pytest.raises(CalibrationError, match=r"bad.yaml: poses\[0\].*unit quaternion"):
        load_robot_poses(tmp_path / "bad.yaml")


def test_capture_pose_from_a_robot():
    from robot_rl.calibration.handeye import capture_robot_pose

    class Arm:  # a connected robot's observation with the sim twin's end-effector keys
        config = type("C", (), {"name": "arm"})()

        def get_observation(self):
            return {"eef_pos": np.array([0.4, 0.0, 0.3], np.float32), "eef_quat": np.array([0, 0, np.sin(0.25), np.cos(0.25)], np.float32)}

    t = capture_robot_pose(Arm())
    np.testing.assert_allclose(t[:3, 3], [0.4, 0.0, 0.3], atol=1e-6)
    assert abs(rotation_error_deg(t, make_transform(Rotation.from_euler("z", 0.5).as_matrix(), np.zeros(3)))) < 1e-3
    with pytest.raises(CalibrationError, match="has no \\['tcp_pos'\\]"):
        capture_robot_pose(Arm(), position_key="tcp_pos")


def test_too_few_views_names_the_rejected_files(checker_views):
    board, _cam, views = checker_views
    blank = [(f"blank_{i}.png", np.full((480, 640), 128, np.uint8)) for i in range(3)]
    with pytest.raises(CalibrationError, match=r"only 2 of 5 images.*blank_0.png, blank_1.png, blank_2.png"):
        calibrate_intrinsics(views[:2] + blank, board)
    with pytest.raises(CalibrationError, match="320x240 but the first image is 640x480"):  # mixed camera modes
        calibrate_intrinsics([views[0], ("small.png", np.zeros((240, 320), np.uint8))], board)


def test_board_specs():
    b = parse_board("charuco:7x5:0.04:0.03:DICT_5X5_100")
    assert (b.cols, b.rows, b.square, b.marker, b.dictionary) == (7, 5, 0.04, 0.03, "DICT_5X5_100") and b.n_corners == 24
    assert parse_board(b.spec) == b and parse_board(CHECKER).object_points().shape == (54, 3)
    for bad, msg in [
        ("checker:9x6:0.025", "expected 'checkerboard"),
        ("checkerboard:9by6:0.025", "COLSxROWS"),
        ("checkerboard:9x6:abc", "must be numbers"),
        ("charuco:7x5:0.04:0.05:DICT_5X5_100", "smaller than the square"),
        ("charuco:7x5:0.04:0.03:DICT_NOPE", "unknown ArUco dictionary"),
        ("charuco:20x20:0.04:0.03:DICT_4X4_50", "has only 50"),
    ]:
        with pytest.raises(CalibrationError, match=msg):
            parse_board(bad)
    image, to_px = render_board(parse_board(CHECKER), 2000.0)
    assert image.shape == (7 * 50 + 2 * 50, 10 * 50 + 2 * 50)  # 10 x 7 squares of 50 px, one-square margin
    found, corners = cv2.findChessboardCorners(image, (9, 6))
    assert found  # the printable image is itself detectable
    expected = parse_board(CHECKER).object_points()[:, :2] @ to_px[:2, :2].T + to_px[:2, 2]
    assert min(np.abs(corners.reshape(-1, 2) - expected).max(), np.abs(corners.reshape(-1, 2)[::-1] - expected).max()) < 1.0


def test_joint_offsets_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    true_offsets = rng.uniform(-0.5, 0.5, 6)
    signs = np.array([1, -1, 1, 1, -1, 1])
    reference = np.array([0.0, -1.57, 1.57, 0.0, 0.5, 0.0])
    raw = signs * reference + true_offsets + rng.normal(0, 1e-3, (20, 6))  # 20 readings of the arm held still
    cal = calibrate_joint_offsets(raw, reference, signs)
    np.testing.assert_allclose(cal.offsets, true_offsets, atol=2e-3)
    np.testing.assert_allclose(cal.to_calibrated(raw.mean(axis=0)), reference, atol=1e-9)
    q = rng.uniform(-2, 2, (5, 6))
    np.testing.assert_allclose(cal.to_calibrated(cal.to_raw(q)), q, atol=1e-12)
    path = save_calibration("joints", "arm", cal.to_dict(), tmp_path)
    assert JointCalibration.from_dict(load_calibration("joints", "arm", root=tmp_path)) == cal
    moving = raw.copy()
    moving[10:, 2] += 0.2
    with pytest.raises(CalibrationError, match="moved.*joint_2"):
        calibrate_joint_offsets(moving, reference, signs)
    with pytest.raises(CalibrationError, match="for 6 joints"):
        cal.to_calibrated(np.zeros(5))
    assert path.name == "v1.yaml"


def test_joint_calibration_from_a_robot(tmp_path, capsys):
    from robot_rl.cli import main

    assert main(["calibrate", "joints", "--robot", "mock_arm", "--id", "mock", "--samples", "3", "--calibration-dir", str(tmp_path)]) == 0
    doc = load_calibration("joints", "mock", root=tmp_path)
    assert doc["names"] == [f"joint_{i}" for i in range(6)] and doc["offsets"] == [0.0] * 6  # a fresh mock_arm sits at 0
    assert "saved" in capsys.readouterr().out
    assert main(["calibrate", "joints", "--id", "mock", "--calibration-dir", str(tmp_path)]) == 2  # neither --robot nor --readings


def test_registry_versions_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOT_RL_CALIBRATION_DIR", str(tmp_path))
    with pytest.raises(CalibrationError, match="no joints calibration for 'arm'.*robot-rl calibrate joints"):
        load_calibration("joints", "arm")
    p1 = save_calibration("joints", "arm", {"names": ["a"], "offsets": [0.1], "signs": [1]})
    p2 = save_calibration("joints", "arm", {"names": ["a"], "offsets": [0.2], "signs": [1]})
    assert (p1.name, p2.name) == ("v1.yaml", "v2.yaml") and p1.parent == tmp_path / "joints" / "arm"
    assert versions("joints", "arm") == [1, 2]
    latest = load_calibration("joints", "arm")
    assert latest["version"] == 2 and latest["offsets"] == [0.2] and latest["kind"] == "joints" and latest["created"].endswith("+00:00")
    assert load_calibration("joints", "arm", version=1)["offsets"] == [0.1]
    assert resolve_ref("joints/arm") == "joints/arm/v2" and resolve_ref("joints/arm/v1") == "joints/arm/v1"
    (tmp_path / "joints" / "arm" / "v3.yaml").write_text("version: 3\nkind: [unclosed\n")
    with pytest.raises(CalibrationError, match=r"v3.yaml: cannot read calibration file"):
        load_calibration("joints", "arm")
    (tmp_path / "joints" / "arm" / "v3.yaml").write_text(yaml.safe_dump({"version": 3, "created": "x", "kind": "handeye", "id": "arm"}))
    with pytest.raises(CalibrationError, match="v3.yaml: is a 'handeye' calibration, expected 'joints'"):
        load_calibration("joints", "arm")
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(CalibrationError, match="calibration id"):
            save_calibration("joints", bad, {})
    with pytest.raises(CalibrationError, match="reserved"):
        save_calibration("joints", "arm", {"version": 9})
    with pytest.raises(CalibrationError, match="not one of"):
        save_calibration("extrinsics", "arm", {})


def test_cli_intrinsics_writes_a_camera_info_file(tmp_path, checker_views, capsys):
    from robot_rl.cli import main

    _board, _cam, views = checker_views
    images = tmp_path / "images"
    images.mkdir()
    for name, image in views[:12]:
        cv2.imwrite(str(images / name), image)
    root = tmp_path / "calib"
    argv = ["calibrate", "intrinsics", "--images", str(images), "--board", CHECKER, "--camera-id", "wrist", "--calibration-dir", str(root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reprojection RMS" in out and "fx" in out and "saved" in out
    path = root / "intrinsics" / "wrist" / "v1.yaml"
    intr = load_camera_info(path, 640, 480)  # the ROS camera_info loader accepts the versioned file
    assert abs(intr.k[0] / K_TRUE[0, 0] - 1) < 0.01 and intr.camera_name == "wrist"
    assert load_calibration("intrinsics", "wrist", root=root)["reprojection_rms_px"] < 0.5
    # the camera node's calibration_id and the recorder's references resolve to this file
    from robot_rl.calibration.registry import intrinsics_file
    from robot_rl.ros.recorder_node import resolve_calibrations

    assert intrinsics_file("wrist", root) == path
    import os

    os.environ["ROBOT_RL_CALIBRATION_DIR"] = str(root)
    try:
        assert resolve_calibrations("intrinsics/wrist") == {"intrinsics/wrist": "intrinsics/wrist/v1"}
    finally:
        del os.environ["ROBOT_RL_CALIBRATION_DIR"]
    # no board anywhere: a clear error naming the files, exit code 2
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(blank / f"empty_{i}.png"), np.full((480, 640), 200, np.uint8))
    assert main(["calibrate", "intrinsics", "--images", str(blank), "--board", CHECKER, "--camera-id", "x", "--calibration-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "empty_0.png, empty_1.png, empty_2.png" in err and "only 0 of 3" in err


def test_cli_board_and_handeye(tmp_path, charuco_result, capsys):
    from robot_rl.calibration.camera_info import save_camera_info
    from robot_rl.cli import main

    assert main(["calibrate", "board", CHARUCO, "--out", str(tmp_path / "b.png"), "--px-per-m", "3000"]) == 0
    printed = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_GRAYSCALE)
    assert detect_board(printed, parse_board(CHARUCO)).ids.size == 24
    board, cam, intr_result = charuco_result
    rng = np.random.default_rng(20)
    x_true = make_transform(Rotation.from_euler("xyz", [5, 3, -88], degrees=True).as_matrix(), [0.0, 0.06, 0.1])
    fixed = make_transform(np.eye(3), [0.6, 0.0, 0.0])
    board_in_cam = random_board_poses(board, cam, 10, rng, max_tilt_deg=40)
    views = render_views(board, cam, board_in_cam, rng)
    folder = tmp_path / "he"
    folder.mkdir()
    for name, image in views:
        cv2.imwrite(str(folder / name), image)
    save_robot_poses(folder / "poses.yaml", {n: fixed @ invert(p) @ invert(x_true) for (n, _), p in zip(views, board_in_cam)})
    save_camera_info(intr_result.intrinsics, tmp_path / "wrist.yaml")
    root = tmp_path / "calib"
    argv = ["calibrate", "handeye", "--images", str(folder), "--poses", str(folder / "poses.yaml"), "--board", CHARUCO,
            "--intrinsics", str(tmp_path / "wrist.yaml"), "--id", "wrist", "--calibration-dir", str(root)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "T_gripper_camera" in capsys.readouterr().out
    doc = load_calibration("handeye", "wrist", root=root)
    assert doc["mode"] == "eye_in_hand" and rotation_error_deg(np.array(doc["transform"]), x_true) < 1.0



@pytest.mark.slow
def test_camera_node_and_recorder_use_the_registry(tmp_path):
    """The camera node publishes camera_info from ``calibration_id``; the recorder records the
    versions it resolved in the store attrs and in every episode."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from robot_rl.calibration.intrinsics import intrinsics_from_matrix
    from robot_rl.calibration.camera_info import camera_info_dict
    from robot_rl.data import EpisodeStore

    root = tmp_path / "calib"
    k = np.array([[150.0, 0, 80], [0, 151.0, 60], [0, 0, 1]])
    for fx in (140.0, 150.0):  # v1, then the latest v2
        data = camera_info_dict(intrinsics_from_matrix(k * [[fx / 150, 1, 1], [1, 1, 1], [1, 1, 1]], np.zeros(5), 160, 120, "wrist"))
        save_calibration("intrinsics", "wrist", data, root)
    save_calibration("joints", "arm", {"names": ["j"], "offsets": [0.0], "signs": [1]}, root)
    env = {**os.environ, "ROBOT_RL_CALIBRATION_DIR": str(root)}

    def start(module: str, *params: str, name: str) -> subprocess.Popen[str]:
        args = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", *(x for p in params for x in ("-p", p))]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)

    # a missing id: the camera node refuses to configure, naming it
    bad = start("robot_rl.ros.camera_node", "source:=fake", "calibration_id:=nope", name="cam")
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode != 0 and "no intrinsics calibration for 'nope'" in out

    store_path = tmp_path / "cal.zarr"
    procs = [
        start("robot_rl.ros.camera_node", "source:=fake", "width:=160", "height:=120", "fps:=30.0", "calibration_id:=wrist", name="wrist"),
        start("robot_rl.ros.robot_node", "robot:=mock_arm", name="robot"),
        start("robot_rl.ros.recorder_node", f"out:={store_path}", "cameras:=wrist:160x120", "calibration:=intrinsics/wrist,joints/arm/v1", name="recorder"),
    ]
    import rclpy
    from sensor_msgs.msg import CameraInfo

    from robot_rl.ros.common import SENSOR_QOS

    rclpy.init()
    node = rclpy.create_node("calibration_probe")
    infos: list[CameraInfo] = []
    node.create_subscription(CameraInfo, "wrist/camera_info", infos.append, SENSOR_QOS)
    teleop = start("robot_rl.ros.teleop_node", "robot:=mock_arm", "episodes:=1", name="teleop")
    try:
        end = time.monotonic() + 60
        while not infos and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert infos, "no camera_info from the camera node"
        assert list(infos[-1].k)[:3] == [150.0, 0.0, 80.0] and infos[-1].width == 160  # v2, the latest
        assert teleop.wait(timeout=120) == 0, teleop.stdout.read()[-2000:]
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for p in (*procs, teleop):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in (*procs, teleop):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    store = EpisodeStore(store_path)
    expected = {"intrinsics/wrist": "intrinsics/wrist/v2", "joints/arm": "joints/arm/v1"}
    assert dict(store.schema.calibration) == {ref: {"kind": ref.split("/")[0], "id": ref.split("/")[1]} for ref in expected}
    assert len(store) == 1 and store.records[0]["calibration"] == expected, json.dumps(store.records[0])
