"""Hand-eye calibration (``cv2.calibrateHandEye``) from board views and robot poses.

    robot-rl calibrate handeye --images captures/handeye --poses captures/handeye/poses.yaml \\
        --board charuco:7x5:0.04:0.03:DICT_5X5_100 --intrinsics wrist --mode eye_in_hand --id wrist

Frames and names: ``T_a_b`` is the (4, 4) transform taking points in frame b to frame a
(x_a = T_a_b @ x_b), units m. Per view the robot gives ``T_base_gripper`` (its
end-effector pose) and solvePnP gives ``T_camera_board``.

- ``eye_in_hand``: the camera rides on the gripper, the board is fixed in the world.
  Result ``T_gripper_camera``; ``T_base_board`` is constant over the views.
- ``eye_to_hand``: the camera is fixed, the board rides on the gripper. Result
  ``T_base_camera``; ``T_gripper_board`` is constant over the views.

Residuals are the spread of that constant transform over the views (rotation in deg,
translation in mm): small residuals mean the poses, detections and result agree.

Robot pose files (YAML or JSON), one entry per image::

    poses:
      - image: view_000.png
        position: [0.41, -0.02, 0.33]        # m, base frame
        quaternion: [0.0, 1.0, 0.0, 0.0]     # x, y, z, w (the sim twin's eef_quat order)
      - image: view_001.png
        matrix: [[1, 0, 0, 0.4], [0, 1, 0, 0], [0, 0, 1, 0.3], [0, 0, 0, 1]]

``capture_robot_pose(robot)`` reads one from a connected Robot's ``eef_pos`` /
``eef_quat`` observation; ``save_robot_poses`` writes such a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_rl.calibration.boards import Board
from robot_rl.calibration.camera_info import CalibrationError, CameraIntrinsics
from robot_rl.calibration.intrinsics import Detection, detect_views

MODES = ("eye_in_hand", "eye_to_hand")
METHODS = ("tsai", "park", "horaud", "andreff", "daniilidis")


@dataclass
class HandEyeResult:
    """A hand-eye calibration.

    Attributes:
        mode: ``eye_in_hand`` or ``eye_to_hand``.
        method: the cv2.calibrateHandEye method used.
        transform: (4, 4) ``T_gripper_camera`` (eye_in_hand) or ``T_base_camera`` (eye_to_hand), m.
        target: (4, 4) the constant board pose it implies: ``T_base_board`` (eye_in_hand)
            or ``T_gripper_board`` (eye_to_hand), m.
        rotation_residuals_deg, translation_residuals_mm: per view, the angle / distance
            between that view's board pose and ``target``.
        views: image names used, in order.
        rejected: image name -> why it was not used.
        pnp_rms: per view, reprojection RMS of solvePnP (px).
    """

    mode: str
    method: str
    transform: np.ndarray
    target: np.ndarray
    rotation_residuals_deg: np.ndarray
    translation_residuals_mm: np.ndarray
    views: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    pnp_rms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def transform_name(self) -> str:
        return "T_gripper_camera" if self.mode == "eye_in_hand" else "T_base_camera"

    def to_dict(self) -> dict[str, Any]:
        """YAML-safe data for the registry."""
        return {
            "mode": self.mode,
            "method": self.method,
            "transform_name": self.transform_name,
            "transform": [[float(v) for v in row] for row in self.transform],
            "target_name": "T_base_board" if self.mode == "eye_in_hand" else "T_gripper_board",
            "target": [[float(v) for v in row] for row in self.target],
            "rotation_residual_deg_rms": float(np.sqrt(np.mean(self.rotation_residuals_deg**2))),
            "translation_residual_mm_rms": float(np.sqrt(np.mean(self.translation_residuals_mm**2))),
            "pnp_rms_px": float(np.sqrt(np.mean(self.pnp_rms**2))) if self.pnp_rms.size else None,
            "views": list(self.views),
        }

    def summary(self) -> str:
        t = self.transform
        from scipy.spatial.transform import Rotation

        rpy = Rotation.from_matrix(t[:3, :3]).as_euler("xyz", degrees=True)
        lines = [
            f"mode             {self.mode} ({self.method}), {len(self.views)} views (rejected {len(self.rejected)})",
            f"{self.transform_name.ljust(16)} translation {', '.join(f'{v:+.4f}' for v in t[:3, 3])} m, "
            f"rotation xyz {', '.join(f'{v:+.2f}' for v in rpy)} deg",
            f"residuals        rotation rms {np.sqrt(np.mean(self.rotation_residuals_deg ** 2)):.3f} deg "
            f"(max {self.rotation_residuals_deg.max():.3f}), translation rms "
            f"{np.sqrt(np.mean(self.translation_residuals_mm ** 2)):.2f} mm (max {self.translation_residuals_mm.max():.2f})",
        ]
        if self.pnp_rms.size:
            lines.append(f"board PnP RMS    {np.sqrt(np.mean(self.pnp_rms ** 2)):.3f} px")
        lines += [f"rejected         {name}: {why}" for name, why in self.rejected.items()]
        return "\n".join(lines)


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(4, 4) from a (3, 3) rotation and a (3,) translation (m)."""
    t = np.eye(4)
    t[:3, :3] = np.asarray(rotation, dtype=np.float64)
    t[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return t


def invert(t: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform."""
    r = t[:3, :3]
    return make_transform(r.T, -r.T @ t[:3, 3])


def pose_from_xyz_quat(position: Sequence[float], quaternion: Sequence[float], where: str = "pose") -> np.ndarray:
    """(4, 4) from a position (m) and a quaternion (x, y, z, w), checked."""
    from scipy.spatial.transform import Rotation

    p, q = np.asarray(position, dtype=np.float64).reshape(-1), np.asarray(quaternion, dtype=np.float64).reshape(-1)
    if p.shape != (3,) or q.shape != (4,) or not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise CalibrationError(f"{where}: position must be 3 finite numbers (m) and quaternion 4 (x, y, z, w)")
    n = np.linalg.norm(q)
    if abs(n - 1.0) > 1e-2:
        raise CalibrationError(f"{where}: quaternion {q.tolist()} has norm {n:.4f}, expected a unit quaternion (x, y, z, w)")
    return make_transform(Rotation.from_quat(q / n).as_matrix(), p)


def check_transform(t: Any, where: str = "pose") -> np.ndarray:
    """A (4, 4) rigid transform from nested lists, checked (finite, orthonormal rotation,
    last row 0 0 0 1)."""
    try:
        t = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: matrix must be 4x4 numbers") from None
    if t.shape != (4, 4) or not np.all(np.isfinite(t)):
        raise CalibrationError(f"{where}: matrix must be 4x4 finite numbers, got shape {t.shape}")
    r = t[:3, :3]
    if not (np.allclose(r @ r.T, np.eye(3), atol=1e-4) and np.linalg.det(r) > 0 and np.allclose(t[3], [0, 0, 0, 1])):
        raise CalibrationError(f"{where}: not a rigid transform (rotation must be orthonormal with det +1, last row 0 0 0 1)")
    return t


def load_robot_poses(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Image name -> (4, 4) ``T_base_gripper`` (m) from a YAML or JSON poses file."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read robot poses: {exc}") from exc
    entries = doc.get("poses") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CalibrationError(f"{path}: expected a mapping with a non-empty 'poses' list (see robot_rl.calibration.handeye)")
    out: dict[str, np.ndarray] = {}
    for i, e in enumerate(entries):
        where = f"{path}: poses[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("image"), str):
            raise CalibrationError(f"{where}: each entry needs 'image' (file name) and 'matrix' or 'position' + 'quaternion'")
        if e["image"] in out:
            raise CalibrationError(f"{where}: image {e['image']!r} appears twice")
        if "matrix" in e:
            out[e["image"]] = check_transform(e["matrix"], where)
        elif "position" in e and "quaternion" in e:
            out[e["image"]] = pose_from_xyz_quat(e["position"], e["quaternion"], where)
        else:
            raise CalibrationError(f"{where}: needs 'matrix' (4x4) or 'position' (m) + 'quaternion' (x, y, z, w)")
    return out


def save_robot_poses(path: str | os.PathLike[str], poses: Mapping[str, np.ndarray]) -> Path:
    """Write image name -> (4, 4) ``T_base_gripper`` as a poses YAML file (position + quaternion)."""
    from scipy.spatial.transform import Rotation

    entries = []
    for name, t in poses.items():
        t = check_transform(t, f"pose of {name}")
        q = Rotation.from_matrix(t[:3, :3]).as_quat()
        entries.append({"image": name, "position": [float(v) for v in t[:3, 3]], "quaternion": [float(v) for v in q]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"frame": "T_base_gripper (m, quaternion x y z w)", "poses": entries}, sort_keys=False))
    return path


def capture_robot_pose(robot: Any, position_key: str = "eef_pos", quaternion_key: str = "eef_quat") -> np.ndarray:
    """(4, 4) ``T_base_gripper`` from a connected ``Robot``'s observation (``eef_pos`` in m,
    ``eef_quat`` as x, y, z, w — the sim twin's names; a driver may use other keys)."""
    obs = robot.get_observation()
    missing = [k for k in (position_key, quaternion_key) if k not in obs]
    if missing:
        raise CalibrationError(
            f"robot {getattr(robot.config, 'name', '?')!r} observation has no {missing}; it has {sorted(obs)}. "
            "Pass the keys of its end-effector position (m) and quaternion (x, y, z, w)"
        )
    return pose_from_xyz_quat(obs[position_key], obs[quaternion_key], f"robot observation {position_key}/{quaternion_key}")


def board_pose(det: Detection, k: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, float]:
    """(4, 4) ``T_camera_board`` (m) of one detection by solvePnP (IPPE, then
    Levenberg-Marquardt refinement) and its reprojection RMS (px)."""
    import cv2

    obj, img = det.object_points.astype(np.float64), det.image_points.astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise CalibrationError(f"{det.name}: solvePnP failed for the board")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, dist, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, k, dist)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img) ** 2, axis=1))))
    return make_transform(cv2.Rodrigues(rvec)[0], tvec), rms


def _mean_transform(ts: Sequence[np.ndarray]) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    r = Rotation.from_matrix(np.stack([t[:3, :3] for t in ts])).mean().as_matrix()
    return make_transform(r, np.mean([t[:3, 3] for t in ts], axis=0))


def solve_handeye(
    robot_poses: Sequence[np.ndarray], board_poses: Sequence[np.ndarray], mode: str = "eye_in_hand", method: str = "park"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2.calibrateHandEye on matched (4, 4) ``T_base_gripper`` and ``T_camera_board``.

    Returns (transform, target, rotation residuals deg, translation residuals mm); see
    :class:`HandEyeResult` for the frames.
    """
    import cv2
    from scipy.spatial.transform import Rotation

    if mode not in MODES:
        raise CalibrationError(f"hand-eye mode {mode!r} is not one of {MODES}")
    if method not in METHODS:
        raise CalibrationError(f"hand-eye method {method!r} is not one of {METHODS}")
    if len(robot_poses) != len(board_poses):
        raise CalibrationError(f"{len(robot_poses)} robot poses but {len(board_poses)} board poses")
    if len(robot_poses) < 3:
        raise CalibrationError(
            f"hand-eye calibration needs at least 3 views (better 10+ with varied rotations), got {len(robot_poses)}"
        )
    # eye_to_hand: the same solver with the inverse robot poses (T_gripper_base) gives T_base_camera
    motion = [t if mode == "eye_in_hand" else invert(t) for t in robot_poses]
    r, t = cv2.calibrateHandEye(
        [m[:3, :3] for m in motion],
        [m[:3, 3].reshape(3, 1) for m in motion],
        [b[:3, :3] for b in board_poses],
        [b[:3, 3].reshape(3, 1) for b in board_poses],
        method=getattr(cv2, f"CALIB_HAND_EYE_{method.upper()}"),
    )
    x = make_transform(r, t)
    if not np.all(np.isfinite(x)):
        raise CalibrationError(
            f"cv2.calibrateHandEye ({method}) returned no solution: the robot poses need more varied rotations"
        )
    chain = [m @ x @ b for m, b in zip(motion, board_poses)]  # T_base_board or T_gripper_board per view
    target = _mean_transform(chain)
    rot = np.array([np.degrees(Rotation.from_matrix(target[:3, :3].T @ c[:3, :3]).magnitude()) for c in chain])
    trans = np.array([1000.0 * np.linalg.norm(c[:3, 3] - target[:3, 3]) for c in chain])
    return x, target, rot, trans


def calibrate_handeye(
    images: Sequence[tuple[str, np.ndarray]],
    robot_poses: Mapping[str, np.ndarray],
    intrinsics: CameraIntrinsics,
    board: Board,
    mode: str = "eye_in_hand",
    method: str = "park",
    min_views: int = 5,
) -> HandEyeResult:
    """Hand-eye calibration from (name, image) views and name -> ``T_base_gripper``.

    Every image needs a pose (and the other way round); views where the board is not
    found are rejected and named. The board must fix its own frame (ChArUco, or a
    checkerboard with cols + rows odd).
    """
    if not board.orientation_unique:
        raise CalibrationError(
            f"board {board.spec}: a checkerboard with cols + rows even looks the same turned by 180 degrees, so its "
            "pose is ambiguous; use a ChArUco board or a checkerboard like 9x6 for hand-eye calibration"
        )
    names = [n for n, _ in images]
    no_pose = [n for n in names if n not in robot_poses]
    no_image = [n for n in robot_poses if n not in names]
    if no_pose or no_image:
        raise CalibrationError(
            f"images and robot poses do not match: images without a pose {no_pose}, poses without an image {no_image}"
        )
    detections, rejected, size = detect_views(images, board)
    if (intrinsics.width, intrinsics.height) != size:
        raise CalibrationError(
            f"intrinsics are for {intrinsics.width}x{intrinsics.height} images, these are {size[0]}x{size[1]}"
        )
    if len(detections) < min_views:
        raise CalibrationError(
            f"board {board.spec} found in only {len(detections)} views (need {min_views}); "
            f"rejected: {', '.join(rejected) or 'none'}"
        )
    k = np.asarray(intrinsics.k, dtype=np.float64).reshape(3, 3)
    dist = np.asarray(intrinsics.d, dtype=np.float64)
    poses_board, rms = [], []
    for det in detections:
        pose, err = board_pose(det, k, dist)
        poses_board.append(pose)
        rms.append(err)
    x, target, rot, trans = solve_handeye([robot_poses[d.name] for d in detections], poses_board, mode, method)
    return HandEyeResult(mode, method, x, target, rot, trans, [d.name for d in detections], rejected, np.asarray(rms))
