"""Camera intrinsics files in ROS's camera_info YAML format (camera_calibration_parsers):

    image_width: 640
    image_height: 480
    camera_name: wrist
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, p1, p2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [...]}
    projection_matrix: {rows: 3, cols: 4, data: [...]}

``robot-rl calibrate intrinsics`` writes them (``camera_info_dict`` / ``save_camera_info``),
versioned per camera id by ``robot_rl.calibration.registry`` (extra keys such as
``version``, ``created`` and ``reprojection_rms`` are allowed and ignored here); the
camera node loads them to publish ``camera_info``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class CalibrationError(ValueError):
    """A calibration file is missing, malformed or does not fit the camera."""


@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    camera_name: str
    k: tuple[float, ...]  # 3x3 row-major
    distortion_model: str
    d: tuple[float, ...]
    r: tuple[float, ...]  # 3x3
    p: tuple[float, ...]  # 3x4


def _matrix(doc: dict[str, Any], key: str, rows: int, cols: int | None, path: Path) -> tuple[float, ...]:
    m = doc.get(key)
    if not isinstance(m, dict) or "data" not in m:
        raise CalibrationError(f"{path}: '{key}' must be a mapping with rows, cols and data")
    data = tuple(float(v) for v in m["data"])
    want = rows * cols if cols is not None else None
    if want is not None and len(data) != want:
        raise CalibrationError(f"{path}: '{key}' has {len(data)} values, expected {want}")
    return data


def load_camera_info(path: str | os.PathLike[str], width: int | None = None, height: int | None = None) -> CameraIntrinsics:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: cannot read camera calibration: {exc}") from exc
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path}: not a camera_info YAML mapping")
    try:
        intr = CameraIntrinsics(
            width=int(doc["image_width"]),
            height=int(doc["image_height"]),
            camera_name=str(doc.get("camera_name", "")),
            k=_matrix(doc, "camera_matrix", 3, 3, path),
            distortion_model=str(doc.get("distortion_model", "plumb_bob")),
            d=_matrix(doc, "distortion_coefficients", 1, None, path),
            r=_matrix(doc, "rectification_matrix", 3, 3, path),
            p=_matrix(doc, "projection_matrix", 3, 4, path),
        )
    except KeyError as exc:
        raise CalibrationError(f"{path}: missing {exc}") from exc
    if width is not None and height is not None and (intr.width, intr.height) != (width, height):
        raise CalibrationError(f"{path}: calibrated at {intr.width}x{intr.height}, the camera runs at {width}x{height}")
    return intr


def camera_info_dict(intr: CameraIntrinsics) -> dict[str, Any]:
    """The camera_info YAML mapping of ``intr`` (the fields :func:`load_camera_info` reads)."""
    return {
        "image_width": int(intr.width),
        "image_height": int(intr.height),
        "camera_name": intr.camera_name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in intr.k]},
        "distortion_model": intr.distortion_model,
        "distortion_coefficients": {"rows": 1, "cols": len(intr.d), "data": [float(v) for v in intr.d]},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in intr.r]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [float(v) for v in intr.p]},
    }


def save_camera_info(intr: CameraIntrinsics, path: str | os.PathLike[str]) -> Path:
    """Write ``intr`` as a camera_info YAML file (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(camera_info_dict(intr), sort_keys=False))
    os.replace(tmp, path)
    return path
