"""Camera intrinsics from views of a checkerboard or ChArUco board (OpenCV).

    robot-rl calibrate intrinsics --images captures/wrist --board checkerboard:9x6:0.025 --camera-id wrist

Detection: checkerboards with ``findChessboardCorners`` + ``cornerSubPix`` (falling back
to ``findChessboardCornersSB``), ChArUco boards with ``cv2.aruco.CharucoDetector``.
Views with fewer than ``min_corners`` corners are rejected (and named); the rest go to
``cv2.calibrateCamera`` (pinhole + plumb_bob distortion k1, k2, p1, p2[, k3]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.calibration.boards import Board
from robot_rl.calibration.camera_info import CalibrationError, CameraIntrinsics

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Detection:
    """The board corners found in one image.

    Attributes:
        name: the image's file name (or label).
        image_points: (N, 2) float32 corner positions (px).
        object_points: (N, 3) float32 the same corners in the board frame (m).
        ids: (N,) int32 corner indices into ``Board.object_points()``.
    """

    name: str
    image_points: np.ndarray
    object_points: np.ndarray
    ids: np.ndarray


@dataclass
class IntrinsicsResult:
    """A camera calibration and how well it fits.

    Attributes:
        intrinsics: the calibration (camera_info fields).
        rms: reprojection RMS over every corner of every used view (px).
        per_view_rms: image name -> reprojection RMS of its corners (px).
        rejected: image name -> why it was not used.
        board: the board spec string.
        rvecs, tvecs: per used view, the board pose in the camera frame (Rodrigues rad, m).
    """

    intrinsics: CameraIntrinsics
    rms: float
    per_view_rms: dict[str, float]
    rejected: dict[str, str]
    board: str
    rvecs: list[np.ndarray] = field(default_factory=list, repr=False)
    tvecs: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def k(self) -> np.ndarray:
        """(3, 3) camera matrix (px)."""
        return np.asarray(self.intrinsics.k, dtype=np.float64).reshape(3, 3)

    @property
    def dist(self) -> np.ndarray:
        """(5,) distortion coefficients k1, k2, p1, p2, k3."""
        return np.asarray(self.intrinsics.d, dtype=np.float64)

    def summary(self) -> str:
        k = self.k
        worst = max(self.per_view_rms.items(), key=lambda kv: kv[1]) if self.per_view_rms else ("-", 0.0)
        lines = [
            f"views used       {len(self.per_view_rms)} (rejected {len(self.rejected)})",
            f"reprojection RMS {self.rms:.3f} px (worst view {worst[0]}: {worst[1]:.3f} px)",
            f"focal length     fx {k[0, 0]:.2f} px, fy {k[1, 1]:.2f} px",
            f"principal point  cx {k[0, 2]:.2f} px, cy {k[1, 2]:.2f} px",
            f"distortion       {', '.join(f'{v:+.4f}' for v in self.dist)} (k1, k2, p1, p2, k3)",
        ]
        lines += [f"rejected         {name}: {why}" for name, why in self.rejected.items()]
        return "\n".join(lines)


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 from a grey, BGR or BGRA image; CalibrationError for anything else."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise CalibrationError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise CalibrationError(f"images must be (H, W) or (H, W, 3|4), got shape {image.shape}")


def load_images(directory: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every image in ``directory`` (sorted by name) as (file name, (H, W) uint8 grey)."""
    import cv2

    directory = Path(directory)
    if not directory.is_dir():
        raise CalibrationError(f"{directory}: not a directory of calibration images")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    out = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CalibrationError(f"{path}: cannot read this image (corrupt or unsupported format)")
        out.append((path.name, image))
    return out


def _canonical_checkerboard(gray: np.ndarray, corners: np.ndarray, board: Board) -> np.ndarray:
    """Reorder detected checkerboard corners (N, 2) so that the board frame is the same in
    every view: right-handed (x along rows, y down columns, z into the board) and, when
    the board allows it (cols + rows odd), starting at the corner whose outer square is
    black. The detectors may start at either end of the grid."""
    grid = corners.reshape(board.rows, board.cols, 2)
    a, b = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
    if a[0] * b[1] - a[1] * b[0] < 0:  # mirrored order: the board would be seen from behind
        grid = grid[:, ::-1]
    if board.orientation_unique:
        a, b = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
        outer = _mean_around(gray, grid[0, 0] - (a + b) / 2, a, b)  # square (0, 0): black when the order is right
        beside = _mean_around(gray, grid[0, 0] + (a - b) / 2, a, b)  # square (1, 0): white
        if outer > beside:
            grid = grid[::-1, ::-1]  # a half turn: start at the opposite corner
    return np.ascontiguousarray(grid.reshape(-1, 2))


def _mean_around(gray: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    r = max(1, int(0.15 * min(np.linalg.norm(a), np.linalg.norm(b))))
    x, y = int(round(p[0])), int(round(p[1]))
    patch = gray[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
    return float(patch.mean()) if patch.size else 127.0


def detect_board(image: np.ndarray, board: Board, name: str = "", min_corners: int | None = None) -> Detection | None:
    """Find ``board`` in ``image``; None when it is not found or shows fewer than
    ``min_corners`` corners (default: all corners of a checkerboard, 6 of a ChArUco board).

    Args:
        image: (H, W) grey or (H, W, 3) BGR uint8.
    """
    import cv2

    gray = to_gray(image)
    if board.kind == "checkerboard":
        size = (board.cols, board.rows)
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        found, corners = cv2.findChessboardCorners(gray, size, flags=flags)
        if found:
            # half the smallest distance between corners bounds the refinement window
            pts = corners.reshape(-1, 2)
            spacing = float(np.min(np.linalg.norm(np.diff(pts.reshape(board.rows, board.cols, 2), axis=1), axis=2)))
            win = int(np.clip(spacing / 2 - 1, 2, 11))
            criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-3)
            corners = cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), criteria)
        else:
            found, corners = cv2.findChessboardCornersSB(gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_ACCURACY)
        if not found:
            return None
        pts = _canonical_checkerboard(gray, corners.reshape(-1, 2).astype(np.float32), board)
        ids = np.arange(board.n_corners, dtype=np.int32)
        obj = board.object_points()
    else:
        detector = cv2.aruco.CharucoDetector(board.charuco_board())
        corners, ids, _markers, _marker_ids = detector.detectBoard(gray)
        if corners is None or ids is None:
            return None
        pts, ids = corners.reshape(-1, 2).astype(np.float32), ids.reshape(-1).astype(np.int32)
        obj = board.object_points()[ids]
    need = board.n_corners if (min_corners is None and board.kind == "checkerboard") else (min_corners or 6)
    if len(ids) < need:
        return None
    return Detection(name=name, image_points=pts, object_points=np.ascontiguousarray(obj, dtype=np.float32), ids=ids)


def detect_views(
    images: Iterable[tuple[str, np.ndarray]], board: Board, min_corners: int | None = None
) -> tuple[list[Detection], dict[str, str], tuple[int, int]]:
    """Detect ``board`` in every (name, image); returns the detections, the rejected
    names with the reason, and the image size (width, height) — all images must share it."""
    detections: list[Detection] = []
    rejected: dict[str, str] = {}
    size: tuple[int, int] | None = None
    for name, image in images:
        h, w = np.asarray(image).shape[:2]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise CalibrationError(
                f"{name}: image is {w}x{h} but the first image is {size[0]}x{size[1]}; calibrate one camera mode at a time"
            )
        det = detect_board(image, board, name=name, min_corners=min_corners)
        if det is None:
            need = min_corners or ("all" if board.kind == "checkerboard" else 6)
            rejected[name] = f"board {board.spec} not found (or fewer than {need} corners)"
        else:
            detections.append(det)
    if size is None:
        raise CalibrationError("no images given")
    return detections, rejected, size


def calibrate_intrinsics(
    images: Sequence[tuple[str, np.ndarray]],
    board: Board,
    camera_name: str = "camera",
    min_views: int = 5,
    min_corners: int | None = None,
    fix_k3: bool = True,
    fix_aspect: bool = False,
) -> IntrinsicsResult:
    """Calibrate a camera from board views.

    Args:
        images: (name, image) pairs, (H, W) grey or (H, W, 3) BGR uint8, one camera mode.
        board: the board in the images.
        camera_name: written into the result (camera_info ``camera_name``).
        min_views: fewer usable views is an error naming the rejected images.
        min_corners: corners a view must show (default: all for checkerboards, 6 for ChArUco).
        fix_k3: keep k3 = 0 (ROS camera_calibration's default; k3 is poorly constrained by
            a few views of a flat board).
        fix_aspect: force fx = fy.

    Raises:
        CalibrationError: too few usable views (naming the rejected ones), or OpenCV failed.
    """
    import cv2

    detections, rejected, (width, height) = detect_views(images, board, min_corners)
    if len(detections) < min_views:
        names = ", ".join(rejected) or "none"
        raise CalibrationError(
            f"only {len(detections)} of {len(detections) + len(rejected)} images show the board {board.spec} "
            f"(need {min_views}); rejected: {names}. Check the board spec (inner corners for checkerboards), "
            "lighting and focus, and capture more views"
        )
    obj = [d.object_points.reshape(-1, 1, 3) for d in detections]
    img = [d.image_points.reshape(-1, 1, 2) for d in detections]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    k0 = None
    if fix_aspect:  # OpenCV keeps fx / fy of the initial guess, whose ratio is 1
        k0 = cv2.initCameraMatrix2D(obj, img, (width, height), 1.0)
        flags |= cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_USE_INTRINSIC_GUESS
    try:
        rms, k, d, rvecs, tvecs = cv2.calibrateCamera(obj, img, (width, height), k0, None, flags=flags)
    except cv2.error as exc:
        raise CalibrationError(f"cv2.calibrateCamera failed on {len(detections)} views: {exc}") from exc
    per_view: dict[str, float] = {}
    for det, rv, tv in zip(detections, rvecs, tvecs):
        proj, _ = cv2.projectPoints(det.object_points, rv, tv, k, d)
        per_view[det.name] = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - det.image_points) ** 2, axis=1))))
    d5 = np.zeros(5)
    d5[: min(5, d.size)] = d.ravel()[:5]
    intr = intrinsics_from_matrix(k, d5, width, height, camera_name)
    return IntrinsicsResult(intr, float(rms), per_view, rejected, board.spec, list(rvecs), list(tvecs))


def intrinsics_from_matrix(k: np.ndarray, dist: np.ndarray, width: int, height: int, camera_name: str) -> CameraIntrinsics:
    """camera_info fields for a monocular camera: R = identity, P = [K | 0]."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.concatenate([k, np.zeros((3, 1))], axis=1)
    return CameraIntrinsics(
        width=int(width),
        height=int(height),
        camera_name=camera_name,
        k=tuple(float(v) for v in k.ravel()),
        distortion_model="plumb_bob",
        d=tuple(float(v) for v in np.asarray(dist, dtype=np.float64).ravel()),
        r=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        p=tuple(float(v) for v in p.ravel()),
    )
