"""OpenCV cameras (USB / V4L2 devices), and a fake capture device for tests and CI.

    cam = make_camera("opencv:/dev/video0", width=640, height=480, fps=30)   # or "opencv:0"
    cam = make_camera("fake", width=320, height=240, fps=30)                 # no hardware
    cam.open(); frame, t = cam.read()   # (H, W, 3) uint8 RGB, time.monotonic() of capture

Exposure, resolution and frame rate are fixed at open (auto-exposure off where the
driver allows), so frames are comparable across episodes. ``FakeVideoCapture`` stands
in for ``cv2.VideoCapture`` at the device boundary: the real ``OpenCVCamera`` code
path (settings, checks, BGR->RGB) runs on it. Its frames carry their index as 16
black/white 8x8 blocks along the top-left edge (readable after JPEG compression;
frames at least 128 px wide) and a moving bar.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

INDEX_BITS, BLOCK = 16, 8


class FakeVideoCapture:
    """cv2.VideoCapture look-alike: ``read() -> (ok, BGR frame)``, ``set``/``get``, paced at fps."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.props: dict[int, float] = {3: float(width), 4: float(height), 5: float(fps)}
        self.index = 0
        self._next = time.monotonic()
        self._open = True
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), np.full_like(xx, 96)], -1).astype(np.uint8)

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self._open

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._open:
            return False, None
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
        self._next = max(self._next + 1.0 / self.props[5], time.monotonic())
        w, h = int(self.props[3]), int(self.props[4])
        frame = self._base[:h, :w].copy()
        x = (self.index * 4) % w
        frame[:, x : x + 8] = (255, 255, 255)
        for bit in range(INDEX_BITS):
            frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (self.index >> bit) & 1 else 0
        self.index += 1
        return True, frame

    def release(self) -> None:
        self._open = False


def frame_index(frame: np.ndarray) -> int:
    """The index (mod 2**16) a FakeVideoCapture wrote into a frame (RGB or BGR, raw or decoded JPEG)."""
    means = [frame[:BLOCK, b * BLOCK : (b + 1) * BLOCK].mean() for b in range(INDEX_BITS)]
    return sum(1 << b for b, m in enumerate(means) if m > 127)


class OpenCVCamera:
    """One camera through OpenCV's VideoCapture API, with fixed settings."""

    def __init__(self, source: str | int, width: int, height: int, fps: float, capture: Any = None) -> None:
        self.source, self.width, self.height, self.fps = source, width, height, fps
        self._capture = capture
        self._cap: Any = None

    def open(self) -> None:
        if self._capture is not None:
            cap = self._capture
        else:
            try:
                import cv2
            except ImportError as exc:
                raise ImportError("OpenCV cameras need opencv: pip install 'robot-rl[sim]' (opencv-python-headless)") from exc
            cap = cv2.VideoCapture(self.source, cv2.CAP_V4L2) if isinstance(self.source, str) else cv2.VideoCapture(self.source)
            if not cap.isOpened():
                raise OSError(f"cannot open camera {self.source!r} (is it connected, and readable by this user?)")
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2 manual exposure, where supported
        cap.set(3, self.width)
        cap.set(4, self.height)
        cap.set(5, self.fps)
        got = (int(cap.get(3)), int(cap.get(4)))
        if got != (self.width, self.height):
            cap.release()
            raise OSError(f"camera {self.source!r} gives {got[0]}x{got[1]}, asked for {self.width}x{self.height}")
        self._cap = cap

    def read(self) -> tuple[np.ndarray, float]:
        if self._cap is None:
            raise RuntimeError("camera is not open")
        ok, frame = self._cap.read()
        t = time.monotonic()
        if not ok or frame is None:
            raise OSError(f"camera {self.source!r} returned no frame")
        return np.ascontiguousarray(frame[..., ::-1]), t  # BGR -> RGB

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def make_camera(source: str, width: int, height: int, fps: float) -> Any:
    """``fake`` | ``opencv:<index>`` | ``opencv:/dev/videoN`` | ``realsense[:<serial>]`` (colour +
    depth, ``robot_rl.drivers.realsense_camera``; ``realsense:fake`` is its fake pipeline)."""
    if source == "fake":
        return OpenCVCamera("fake", width, height, fps, capture=FakeVideoCapture(width, height, fps))
    kind, _, target = source.partition(":")
    if kind == "realsense":
        from robot_rl.drivers.realsense_camera import FakeRealSense, RealSenseCamera

        if target == "fake":
            return RealSenseCamera("000000000001", width, height, fps, rs=FakeRealSense())
        return RealSenseCamera(target, width, height, fps)
    if kind != "opencv" or not target:
        raise ValueError(f"camera source {source!r}: use 'fake', 'opencv:<index>', 'opencv:/dev/videoN', 'realsense', 'realsense:<serial>' or 'realsense:fake'")
    return OpenCVCamera(int(target) if target.isdigit() else target, width, height, fps)
