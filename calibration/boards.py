"""Calibration boards: checkerboards and ChArUco boards, their specs, 3-D corner
positions and printable images.

A board is given by a compact spec string::

    checkerboard:9x6:0.025                  # 9 x 6 inner corners, 25 mm squares
    charuco:7x5:0.04:0.03:DICT_5X5_100      # 7 x 5 squares, 40 mm squares, 30 mm markers

Board frame (both kinds): the origin is a corner of the printed pattern, x along a row
of squares (``cols``), y down the columns (``rows``), z = x cross y pointing into the
board (away from a camera that sees its printed face); units m. For a checkerboard the
origin is the first inner corner; for a ChArUco board it is the outer corner of the
first square (OpenCV's convention), so its first inner corner is at (s, s, 0).

Print one with ``robot-rl calibrate board checkerboard:9x6:0.025 --out board.png``
(at ``--px-per-m`` pixels per metre; check the printed square size with a ruler).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from robot_rl.calibration.camera_info import CalibrationError

BOARD_KINDS = ("checkerboard", "charuco")
_SPEC_HELP = "expected 'checkerboard:COLSxROWS:SQUARE_M' or 'charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT_NAME'"


@dataclass(frozen=True)
class Board:
    """A planar calibration target.

    Attributes:
        kind: ``checkerboard`` or ``charuco``.
        cols, rows: checkerboard: inner corners per row / column (OpenCV's patternSize);
            ChArUco: squares per row / column.
        square: side of one square (m).
        marker: ChArUco only: side of the ArUco marker inside a white square (m).
        dictionary: ChArUco only: the ArUco dictionary name, e.g. ``DICT_5X5_100``.
    """

    kind: str
    cols: int
    rows: int
    square: float
    marker: float = 0.0
    dictionary: str = ""

    def __post_init__(self) -> None:
        if self.kind not in BOARD_KINDS:
            raise CalibrationError(f"board kind {self.kind!r} is not one of {BOARD_KINDS}")
        if self.cols < 3 or self.rows < 3:
            what = "inner corners" if self.kind == "checkerboard" else "squares"
            raise CalibrationError(f"board {self.spec}: needs at least 3x3 {what}")
        if not (np.isfinite(self.square) and 0 < self.square < 1):
            raise CalibrationError(f"board {self.spec}: square size {self.square!r} m must be in (0, 1)")
        if self.kind == "charuco":
            if not 0 < self.marker < self.square:
                raise CalibrationError(
                    f"board {self.spec}: marker size {self.marker} m must be positive and smaller than the square ({self.square} m)"
                )
            import cv2

            if not self.dictionary.startswith("DICT_") or not hasattr(cv2.aruco, self.dictionary):
                names = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))
                raise CalibrationError(
                    f"board {self.spec}: unknown ArUco dictionary {self.dictionary!r}; one of {', '.join(names)}"
                )
            needed = (self.cols * self.rows) // 2
            size = self.aruco_dictionary().bytesList.shape[0]
            if needed > size:
                raise CalibrationError(f"board {self.spec}: needs {needed} markers but {self.dictionary} has only {size}")

    @property
    def spec(self) -> str:
        """The compact spec string this board parses from."""
        if self.kind == "checkerboard":
            return f"checkerboard:{self.cols}x{self.rows}:{self.square:g}"
        return f"charuco:{self.cols}x{self.rows}:{self.square:g}:{self.marker:g}:{self.dictionary}"

    @property
    def squares(self) -> tuple[int, int]:
        """Squares per row and per column of the printed pattern."""
        return (self.cols + 1, self.rows + 1) if self.kind == "checkerboard" else (self.cols, self.rows)

    @property
    def size_m(self) -> tuple[float, float]:
        """Width and height of the printed pattern (m), without its white margin."""
        sx, sy = self.squares
        return sx * self.square, sy * self.square

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the printed pattern in the board frame (m)."""
        sx, sy = self.size_m
        x0 = -self.square if self.kind == "checkerboard" else 0.0
        return x0, x0, x0 + sx, x0 + sy

    @property
    def n_corners(self) -> int:
        """Number of inner (chessboard) corners the detector can report."""
        return self.cols * self.rows if self.kind == "checkerboard" else (self.cols - 1) * (self.rows - 1)

    @property
    def orientation_unique(self) -> bool:
        """True when a detection fixes the board frame (needed for hand-eye): always for
        ChArUco (marker ids); for a checkerboard only when cols + rows is odd, so that a
        180-degree turn swaps black and white squares."""
        return self.kind == "charuco" or (self.cols + self.rows) % 2 == 1

    def object_points(self) -> np.ndarray:
        """(N, 3) float32 board-frame positions (m) of the inner corners, row-major
        (index = row * corners_per_row + col), the order the detectors report them in."""
        if self.kind == "charuco":
            return np.asarray(self.charuco_board().getChessboardCorners(), dtype=np.float32).reshape(-1, 3)
        ys, xs = np.mgrid[0 : self.rows, 0 : self.cols]
        pts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1) * self.square
        return pts.astype(np.float32)

    def aruco_dictionary(self):  # -> cv2.aruco.Dictionary
        import cv2

        return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))

    def charuco_board(self):  # -> cv2.aruco.CharucoBoard
        import cv2

        if self.kind != "charuco":
            raise CalibrationError(f"board {self.spec} is not a ChArUco board")
        return cv2.aruco.CharucoBoard((self.cols, self.rows), self.square, self.marker, self.aruco_dictionary())


def parse_board(spec: str) -> Board:
    """A :class:`Board` from its spec string (see the module docstring); a
    :class:`CalibrationError` saying what is wrong otherwise."""
    parts = spec.strip().split(":")
    kind = parts[0].lower()
    want = {"checkerboard": 3, "charuco": 5}.get(kind)
    if want is None or len(parts) != want:
        raise CalibrationError(f"board spec {spec!r}: {_SPEC_HELP}")
    m = re.fullmatch(r"(\d+)[xX](\d+)", parts[1])
    if not m:
        raise CalibrationError(f"board spec {spec!r}: size {parts[1]!r} must be COLSxROWS, e.g. 9x6")
    try:
        sizes = [float(v) for v in parts[2 : 4 if kind == "charuco" else 3]]
    except ValueError:
        raise CalibrationError(f"board spec {spec!r}: square/marker sizes must be numbers in metres, e.g. 0.025") from None
    cols, rows = int(m.group(1)), int(m.group(2))
    if kind == "checkerboard":
        return Board("checkerboard", cols, rows, sizes[0])
    return Board("charuco", cols, rows, sizes[0], sizes[1], parts[4].upper())


def render_board(board: Board, px_per_m: float = 4000.0, margin_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render ``board`` as a grey image for printing or for synthetic views.

    Args:
        px_per_m: resolution (pixels per metre of board); 4000 ~ 100 dpi.
        margin_m: white quiet zone around the pattern (m); default one square (the
            checkerboard detectors need a white border).

    Returns:
        image: (H, W) uint8, black squares 0, white 255; the square at the board-frame
            origin's corner is black.
        board_to_px: (3, 3) float64 affine map from board-frame (x, y) in m to pixel
            coordinates (pixel centres at integers, OpenCV's convention) of ``image``.
    """
    import cv2

    if not (np.isfinite(px_per_m) and px_per_m > 0):
        raise CalibrationError(f"px_per_m must be positive, got {px_per_m!r}")
    margin_m = board.square if margin_m is None else margin_m
    sq = int(round(board.square * px_per_m))
    if sq < 8:
        raise CalibrationError(f"board {board.spec}: {px_per_m:g} px/m gives {sq} px squares; use at least 8 px per square")
    margin = int(round(margin_m * px_per_m))
    nx, ny = board.squares
    width, height = nx * sq + 2 * margin, ny * sq + 2 * margin
    scale = sq / board.square  # actual px per m after rounding the square to whole pixels
    if board.kind == "charuco":
        image = board.charuco_board().generateImage((width, height), marginSize=margin, borderBits=1)
        origin = margin  # the board origin is the pattern's outer corner
    else:
        cells = (np.add.outer(np.arange(ny), np.arange(nx)) % 2 == 0)  # True = black, (0, 0) black
        pattern = np.where(np.kron(cells, np.ones((sq, sq), dtype=bool)), 0, 255).astype(np.uint8)
        image = cv2.copyMakeBorder(pattern, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)
        origin = margin + sq  # the first inner corner
    board_to_px = np.array([[scale, 0.0, origin - 0.5], [0.0, scale, origin - 0.5], [0.0, 0.0, 1.0]])
    return np.ascontiguousarray(image), board_to_px


def render_view(
    board_image: np.ndarray,
    board_to_px: np.ndarray,
    k: np.ndarray,
    dist: np.ndarray | None,
    rvec: np.ndarray,
    tvec: np.ndarray,
    size: tuple[int, int],
    supersample: int = 2,
    background: int = 128,
) -> np.ndarray:
    """What a pinhole camera with intrinsics ``k`` and distortion ``dist`` sees of a board
    image at pose (``rvec``, ``tvec``), for synthetic calibration data with known truth.

    Each output pixel (sampled ``supersample`` x ``supersample`` times and box-averaged)
    is undistorted to its ray, the ray is intersected with the board plane and the board
    image is sampled there (bilinear); rays that miss the board or point away from it
    see ``background``.

    Args:
        board_image, board_to_px: from :func:`render_board`.
        k: (3, 3) camera matrix (px). dist: OpenCV distortion coefficients or None.
        rvec, tvec: board pose in the camera frame (Rodrigues rad, m): x_cam = R x_board + t.
        size: (width, height) of the camera image (px).

    Returns:
        (height, width) uint8 image.
    """
    import cv2

    width, height = size
    ss = int(supersample)
    dist = None if dist is None else np.asarray(dist, np.float64)
    norm = _undistorted_grid(np.asarray(k, np.float64), dist, width, height, ss)
    r, _ = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))
    t = np.asarray(tvec, np.float64).reshape(3)
    # board plane z_b = 0: x_cam = [r1 r2 t] (x, y, 1); per ray (x, y, 1), board coords up to
    # scale, then straight to board-image pixels: (u, v, w) = board_to_px @ inv([r1 r2 t]) @ ray
    m = board_to_px @ np.linalg.inv(np.stack([r[:, 0], r[:, 1], t], axis=1))
    # w is linear in the ray, so its minimum over the image is on the image border
    border = np.concatenate([norm[0], norm[-1], norm[:, 0], norm[:, -1]]).astype(np.float64)
    if np.min(border @ m[2, :2] + m[2, 2]) > 1e-9:
        maps = cv2.perspectiveTransform(norm.reshape(-1, 1, 2), m).reshape(norm.shape)
    else:  # some rays meet the plane behind the camera (or never): they see the background
        hom = norm.reshape(-1, 2).astype(np.float64) @ m[:, :2].T + m[:, 2]
        behind = hom[:, 2] <= 1e-9
        hom[behind] = (-1e6, -1e6, 1.0)
        maps = (hom[:, :2] / hom[:, 2:]).astype(np.float32).reshape(norm.shape)
    hi = cv2.remap(board_image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    if ss == 1:
        return hi
    return cv2.resize(hi, (width, height), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=2)
def _undistorted_grid_cached(k: tuple[float, ...], dist: tuple[float, ...], width: int, height: int, ss: int) -> np.ndarray:
    import cv2

    kk = np.asarray(k, np.float64).reshape(3, 3)
    # pixel centres of the supersampled grid, in camera-image coordinates
    u = (np.arange(width * ss, dtype=np.float64) - (ss - 1) / 2) / ss
    v = (np.arange(height * ss, dtype=np.float64) - (ss - 1) / 2) / ss
    uu, vv = np.meshgrid(u, v)
    if any(dist):
        pts = np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
        norm = cv2.undistortPointsIter(pts, kk, np.asarray(dist, np.float64), None, None, criteria)
    else:
        norm = np.stack([(uu - kk[0, 2]) / kk[0, 0], (vv - kk[1, 2]) / kk[1, 1]], axis=-1)
    out = np.ascontiguousarray(norm.reshape(height * ss, width * ss, 2), dtype=np.float32)
    out.flags.writeable = False
    return out


def _undistorted_grid(k: np.ndarray, dist: np.ndarray | None, width: int, height: int, ss: int) -> np.ndarray:
    """(H * ss, W * ss, 2) float32 normalised undistorted coordinates (x / z, y / z) of the
    centres of a supersampled pixel grid; cached (it depends only on the camera)."""
    d = tuple(float(v) for v in np.ravel(dist)) if dist is not None else ()
    return _undistorted_grid_cached(tuple(float(v) for v in k.ravel()), d, int(width), int(height), int(ss))
