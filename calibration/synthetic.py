"""Synthetic calibration views with known ground truth: a board rendered through a
pinhole camera (with distortion) at known poses, blurred and with pixel noise.

Used by the accuracy tests and to check a calibration set-up end to end without a
camera::

    from robot_rl.calibration.boards import parse_board
    from robot_rl.calibration.synthetic import SyntheticCamera, random_board_poses, render_views

    board = parse_board("checkerboard:9x6:0.025")
    cam = SyntheticCamera(k=np.array([[600, 0, 322], [0, 598, 236], [0, 0, 1]]), dist=np.array([-0.1, 0.05, 0, 0, 0]))
    poses = random_board_poses(board, cam, 20, np.random.default_rng(0))
    images = render_views(board, cam, poses, np.random.default_rng(1))   # [(name, (H, W) uint8)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.calibration.boards import Board, render_board, render_view


@dataclass
class SyntheticCamera:
    """Ground-truth camera.

    Attributes:
        k: (3, 3) camera matrix (px).
        dist: (5,) plumb_bob distortion k1, k2, p1, p2, k3 (zeros: none).
        size: (width, height) (px).
        noise: standard deviation of the Gaussian pixel noise (grey levels, 0..255).
        blur: standard deviation of the Gaussian blur (px); 0: none.
    """

    k: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    size: tuple[int, int] = (640, 480)
    noise: float = 2.0
    blur: float = 0.6


def pose_matrix(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """(4, 4) transform from a Rodrigues vector (rad) and a translation (m)."""
    import cv2

    t = np.eye(4)
    t[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))[0]
    t[:3, 3] = np.asarray(tvec, np.float64).reshape(3)
    return t


def random_board_poses(
    board: Board,
    camera: SyntheticCamera,
    n: int,
    rng: np.random.Generator,
    distance: tuple[float, float] = (0.3, 0.6),
    max_tilt_deg: float = 35.0,
    max_roll_deg: float = 30.0,
    margin_px: float = 15.0,
) -> list[np.ndarray]:
    """``n`` (4, 4) board-in-camera poses (x_cam = T @ x_board, m) with the whole printed
    pattern inside the image: distance along the optical axis in ``distance`` (m), tilt
    about the board's x and y axes up to ``max_tilt_deg``, roll about the optical axis up
    to ``max_roll_deg``. Rejection-sampled; raises ValueError when the board cannot fit."""
    import cv2
    from scipy.spatial.transform import Rotation

    x0, y0, x1, y1 = board.extent_m
    outline = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=np.float64)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    width, height = camera.size
    poses: list[np.ndarray] = []
    for _ in range(2000 * n):
        if len(poses) == n:
            break
        tilt = np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg, size=2))
        roll = np.radians(rng.uniform(-max_roll_deg, max_roll_deg))
        r = Rotation.from_euler("xyz", [tilt[0], tilt[1], roll]).as_matrix()
        z = rng.uniform(*distance)
        u, v = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
        c_cam = np.array([(u - camera.k[0, 2]) / camera.k[0, 0] * z, (v - camera.k[1, 2]) / camera.k[1, 1] * z, z])
        t = c_cam - r @ centre
        proj, _ = cv2.projectPoints(outline, cv2.Rodrigues(r)[0], t, camera.k, camera.dist)
        proj = proj.reshape(-1, 2)
        if np.all((proj > margin_px) & (proj < np.array([width, height]) - margin_px)):
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = r, t
            poses.append(pose)
    if len(poses) < n:
        raise ValueError(f"could not place board {board.spec} fully inside a {width}x{height} image at {distance} m")
    return poses


def render_views(
    board: Board,
    camera: SyntheticCamera,
    poses: list[np.ndarray],
    rng: np.random.Generator,
    px_per_m: float = 4000.0,
    prefix: str = "view",
) -> list[tuple[str, np.ndarray]]:
    """Render ``board`` at each (4, 4) board-in-camera pose; returns (name, (H, W) uint8)
    with names ``<prefix>_000.png``..., blurred and with Gaussian noise per ``camera``."""
    import cv2

    image, board_to_px = render_board(board, px_per_m)
    out = []
    for i, pose in enumerate(poses):
        rvec = cv2.Rodrigues(pose[:3, :3])[0]
        view = render_view(image, board_to_px, camera.k, camera.dist, rvec, pose[:3, 3], camera.size)
        view = view.astype(np.float32)
        if camera.blur > 0:
            view = cv2.GaussianBlur(view, (0, 0), camera.blur)
        if camera.noise > 0:
            view = view + rng.normal(0.0, camera.noise, size=view.shape).astype(np.float32)
        out.append((f"{prefix}_{i:03d}.png", np.clip(np.rint(view), 0, 255).astype(np.uint8)))
    return out
