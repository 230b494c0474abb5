"""Intel RealSense cameras (pyrealsense2): colour + depth, and a fake pipeline for tests.

    cam = make_camera("realsense:123456789012", width=640, height=480, fps=30)   # or "realsense" (first device)
    cam.open()
    rgb, depth, t = cam.read_rgbd()   # (H, W, 3) uint8 RGB; (H, W) uint16 depth in mm (0 = no depth); time.monotonic()
    rgb, t = cam.read()               # colour only, like OpenCVCamera
    cam.device_time_ms                # the colour frame's device timestamp (ms, librealsense's clock domain)

Colour and depth stream at the same resolution and rate; depth is aligned to the
colour image (``rs.align``) unless ``align=False``, so pixel (u, v) of both is the same
ray. Depth is uint16 **millimetres** (0 = no reading), converted from the device's depth
units (``depth_scale``, 1 mm on D400 cameras): metres = ``depth / 1000``. Auto-exposure is
turned off and ``exposure`` (microseconds) set on the colour sensor when given, so
frames are comparable across episodes.

``FakeRealSense`` mimics the part of the pyrealsense2 module this driver calls
(``pipeline``, ``config``, ``stream``, ``format``, ``align``, ``option`` and the frame and
device objects they return; the names are checked against the installed pyrealsense2 in
tests/test_drivers_base.py), so the real ``RealSenseCamera`` code path runs without a
camera. Its colour frames carry the frame index like ``FakeVideoCapture``'s
(``frame_index``); its depth is a tilted plane (500..1500 mm) with a square 300 mm nearer
that moves with the frame index.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_rl.drivers.opencv_camera import FakeVideoCapture

INSTALL = "pip install 'robot-rl[realsense]'"


def import_realsense() -> Any:
    """pyrealsense2, or an ImportError naming the extra to install."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise ImportError(f"RealSense cameras need pyrealsense2: {INSTALL}") from exc
    return rs


class RealSenseCamera:
    """One RealSense camera: colour (rgb8) + depth (z16), fixed resolution, rate and exposure.

    Args:
        serial: the camera's serial number ("" = the first camera found).
        width, height: px, for colour and depth.
        fps: frames per second (a mode the camera supports, e.g. 6, 15, 30, 60).
        depth: also stream depth.
        align: align depth to the colour image.
        exposure: colour exposure in microseconds with auto-exposure off, or None to leave auto-exposure on.
        timeout_ms: how long ``read`` waits for a frame before OSError.
        rs: the pyrealsense2 module, or a stand-in (``FakeRealSense()``); default: import pyrealsense2.
    """

    has_depth: bool

    def __init__(
        self,
        serial: str,
        width: int,
        height: int,
        fps: float,
        depth: bool = True,
        align: bool = True,
        exposure: float | None = None,
        timeout_ms: int = 2000,
        rs: Any = None,
    ) -> None:
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.has_depth, self.align, self.exposure, self.timeout_ms = depth, align, exposure, timeout_ms
        self._rs = rs
        self._pipeline: Any = None
        self._align: Any = None
        self.depth_scale = 0.001  # m per depth unit, read from the device at open
        self.device_time_ms = 0.0
        self.source = f"realsense:{serial}" if serial else "realsense"

    def open(self) -> None:
        rs = self._rs if self._rs is not None else import_realsense()
        self._rs = rs
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, int(self.fps))
        if self.has_depth:
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, int(self.fps))
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:  # librealsense: no device, or the mode is not supported
            mode = f"{self.width}x{self.height} {self.fps:g} fps"
            raise OSError(f"cannot start RealSense {self.serial or '(first found)'} at {mode}: {exc}") from exc
        device = profile.get_device()
        if self.has_depth:
            self.depth_scale = float(device.first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color) if self.align else None
        if self.exposure is not None:
            color = device.first_color_sensor()
            color.set_option(rs.option.enable_auto_exposure, 0)
            color.set_option(rs.option.exposure, float(self.exposure))
        self._pipeline = pipeline

    def _frames(self) -> tuple[Any, float]:
        if self._pipeline is None:
            raise RuntimeError("camera is not open")
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:  # librealsense: "Frame didn't arrive within ..."
            raise OSError(f"RealSense {self.source}: no frame within {self.timeout_ms} ms ({exc})") from exc
        t = time.monotonic()
        if self._align is not None:
            frames = self._align.process(frames)
        return frames, t

    def _color(self, frames: Any) -> np.ndarray:
        color = frames.get_color_frame()
        if not color:
            raise OSError(f"RealSense {self.source}: frameset without a colour frame")
        self.device_time_ms = float(color.get_timestamp())
        rgb = np.asanyarray(color.get_data())
        if rgb.shape != (self.height, self.width, 3):
            want = (self.height, self.width, 3)
            raise OSError(f"RealSense {self.source}: colour frame {rgb.shape}, expected {want}")
        return np.ascontiguousarray(rgb, dtype=np.uint8)

    def read(self) -> tuple[np.ndarray, float]:
        """Colour only: ((H, W, 3) uint8 RGB, time.monotonic() when the frameset arrived)."""
        frames, t = self._frames()
        return self._color(frames), t

    def read_rgbd(self) -> tuple[np.ndarray, np.ndarray, float]:
        """((H, W, 3) uint8 RGB, (H, W) uint16 depth in mm (0 = none), time.monotonic() of arrival)."""
        if not self.has_depth:
            raise RuntimeError(f"RealSense {self.source} was opened without depth")
        frames, t = self._frames()
        rgb = self._color(frames)
        depth = frames.get_depth_frame()
        if not depth:
            raise OSError(f"RealSense {self.source}: frameset without a depth frame")
        raw = np.asanyarray(depth.get_data())
        if raw.shape != (self.height, self.width):
            raise OSError(f"RealSense {self.source}: depth frame {raw.shape}, expected ({self.height}, {self.width})")
        if abs(self.depth_scale - 0.001) < 1e-9:
            mm = raw.astype(np.uint16, copy=True)
        else:
            mm = np.clip(np.rint(raw.astype(np.float64) * self.depth_scale * 1000.0), 0, 65535).astype(np.uint16)
        return rgb, mm, t

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None


# ------------------------------------------------------------------------------------ fake SDK
class _Enum:
    def __init__(self, *names: str) -> None:
        for n in names:
            setattr(self, n, n)


class _FakeFrame:
    def __init__(self, data: np.ndarray, timestamp_ms: float, number: int) -> None:
        self._data, self._timestamp, self._number = data, timestamp_ms, number

    def __bool__(self) -> bool:
        return True

    def get_data(self) -> np.ndarray:
        return self._data

    def get_timestamp(self) -> float:
        return self._timestamp

    def get_frame_number(self) -> int:
        return self._number


class _FakeFrameset:
    def __init__(self, color: _FakeFrame, depth: _FakeFrame | None, aligned: bool = False) -> None:
        self._color, self._depth, self.aligned = color, depth, aligned

    def get_color_frame(self) -> _FakeFrame:
        return self._color

    def get_depth_frame(self) -> _FakeFrame | None:
        return self._depth


class _FakeSensor:
    def __init__(self, depth_scale: float) -> None:
        self.depth_scale = depth_scale
        self.options: dict[str, float] = {}

    def get_depth_scale(self) -> float:
        return self.depth_scale

    def set_option(self, option: str, value: float) -> None:
        self.options[option] = float(value)


class _FakeDevice:
    def __init__(self, depth_scale: float) -> None:
        self.depth, self.color = _FakeSensor(depth_scale), _FakeSensor(depth_scale)

    def first_depth_sensor(self) -> _FakeSensor:
        return self.depth

    def first_color_sensor(self) -> _FakeSensor:
        return self.color


class _FakeProfile:
    def __init__(self, device: _FakeDevice) -> None:
        self._device = device

    def get_device(self) -> _FakeDevice:
        return self._device


class FakeRealSense:
    """A stand-in for the pyrealsense2 module (the subset RealSenseCamera uses), paced at fps.

    Args:
        serials: serial numbers of the "connected" cameras.
        depth_scale: metres per depth unit the fake device reports.
        fail_after: frames before ``wait_for_frames`` starts timing out (None: never).
    """

    def __init__(
        self, serials: tuple[str, ...] = ("000000000001",), depth_scale: float = 0.001, fail_after: int | None = None
    ) -> None:
        fake = self
        self.serials, self.depth_scale, self.fail_after = serials, depth_scale, fail_after
        self.stream = _Enum("color", "depth")
        self.format = _Enum("rgb8", "z16", "bgr8")
        self.option = _Enum("enable_auto_exposure", "exposure")
        self.device: _FakeDevice | None = None

        class config:  # noqa: N801 - pyrealsense2's names
            def __init__(self) -> None:
                self.serial = ""
                self.streams: dict[str, tuple[int, int, str, int]] = {}

            def enable_device(self, serial: str) -> None:
                self.serial = serial

            def enable_stream(self, stream: str, width: int, height: int, fmt: str, framerate: int) -> None:
                self.streams[stream] = (width, height, fmt, framerate)

        class pipeline:  # noqa: N801
            def __init__(self) -> None:
                self._config: config | None = None
                self._index = 0
                self._capture: FakeVideoCapture | None = None
                self._t0 = 0.0

            def start(self, cfg: config) -> _FakeProfile:
                if cfg.serial and cfg.serial not in fake.serials:
                    raise RuntimeError(f"No device connected with serial {cfg.serial}")
                if "color" not in cfg.streams:
                    raise RuntimeError("no colour stream enabled")
                w, h, _, rate = cfg.streams["color"]
                self._config, self._capture, self._t0 = cfg, FakeVideoCapture(w, h, rate), time.monotonic()
                fake.device = _FakeDevice(fake.depth_scale)
                return _FakeProfile(fake.device)

            def wait_for_frames(self, timeout_ms: int = 5000) -> _FakeFrameset:
                if self._capture is None or self._config is None:
                    raise RuntimeError("wait_for_frames cannot be called before start()")
                if fake.fail_after is not None and self._index >= fake.fail_after:
                    time.sleep(timeout_ms / 1000.0)
                    raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
                _, bgr = self._capture.read()
                assert bgr is not None
                stamp = (time.monotonic() - self._t0) * 1000.0 + 1.0e9  # a device clock, ms
                color = _FakeFrame(np.ascontiguousarray(bgr[..., ::-1]), stamp, self._index)
                depth = None
                if "depth" in self._config.streams:
                    w, h = self._config.streams["depth"][:2]
                    depth = _FakeFrame(fake_depth(w, h, self._index, fake.depth_scale), stamp, self._index)
                self._index += 1
                return _FakeFrameset(color, depth)

            def stop(self) -> None:
                if self._capture is None:
                    raise RuntimeError("stop() cannot be called before start()")
                self._capture.release()
                self._capture = None

        class align:  # noqa: N801
            def __init__(self, align_to: str) -> None:
                self.align_to = align_to

            def process(self, frames: _FakeFrameset) -> _FakeFrameset:
                return _FakeFrameset(frames.get_color_frame(), frames.get_depth_frame(), aligned=True)

        self.config, self.pipeline, self.align = config, pipeline, align


def fake_depth(width: int, height: int, index: int, depth_scale: float = 0.001) -> np.ndarray:
    """The fake camera's depth (device units, uint16): a plane 500..1500 mm left to right,
    with a 300 mm nearer square moving with ``index``."""
    mm = np.broadcast_to(np.linspace(500.0, 1500.0, width), (height, width)).copy()
    side = max(4, min(width, height) // 4)
    x = (index * 4) % max(1, width - side)
    y0 = (height - side) // 2
    mm[y0 : y0 + side, x : x + side] -= 300.0
    return np.rint(mm / (depth_scale * 1000.0)).astype(np.uint16)
