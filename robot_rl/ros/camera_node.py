"""Camera node: OpenCV devices (USB / V4L2) or the fake device, raw or JPEG-compressed.

    robot-rl-camera-node --ros-args -r __node:=wrist -p source:=opencv:/dev/video0 \\
        -p width:=640 -p height:=480 -p fps:=30.0 -p compressed:=true -p calibration:=calib/wrist.yaml
    # or -p calibration_id:=wrist: the latest `robot-rl calibrate intrinsics --camera-id wrist` result

Publishes ``<name>/image_raw`` (sensor_msgs/Image, rgb8) or ``<name>/image_raw/compressed``
(sensor_msgs/CompressedImage, jpeg), and ``<name>/camera_info`` (from the calibration file
when given, else only the size), with sensor-data QoS, stamped at capture. Cameras with
depth (``source:=realsense:<serial>``) also publish ``<name>/depth/image_raw`` (16UC1,
millimetres, 0 = no reading; aligned to the colour image, same stamp), always raw. The sim
twin's cameras are published by the robot node (they render the sim state it owns).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from robot_rl.calibration.camera_info import CalibrationError, load_camera_info
from robot_rl.calibration.registry import intrinsics_file
from robot_rl.drivers.opencv_camera import make_camera
from robot_rl.ros.common import RELIABLE_QOS, SENSOR_QOS, RobotRLNode, image_msg, ns_to_stamp, run_node


class CameraNode(RobotRLNode):
    def __init__(self) -> None:
        super().__init__("camera")
        for name, default in (("source", "fake"), ("width", 640), ("height", 480), ("fps", 30.0), ("compressed", False), ("jpeg_quality", 90), ("calibration", ""), ("calibration_id", ""), ("frame_id", "")):
            self.declare_parameter(name, default)
        self.published = 0
        self.failures = 0
        self._stop = threading.Event()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = {n: self.get_parameter(n).value for n in ("source", "width", "height", "fps", "compressed", "jpeg_quality", "calibration", "calibration_id", "frame_id")}
        if not (p["width"] > 0 and p["height"] > 0 and p["fps"] > 0 and 1 <= p["jpeg_quality"] <= 100):
            return self.fail(f"invalid camera parameters {p}")
        try:
            self.camera = make_camera(p["source"], int(p["width"]), int(p["height"]), float(p["fps"]))
            self.camera.open()
            self.info = self._camera_info(p)
        except (ValueError, OSError, ImportError, CalibrationError) as exc:
            return self.fail(f"camera {self.get_name()}: {exc}")
        self.compressed, self.quality = bool(p["compressed"]), int(p["jpeg_quality"])
        self.frame_id = p["frame_id"] or self.get_name()
        name = self.get_name()
        if self.compressed:
            self._pub = self.create_publisher(CompressedImage, f"{name}/image_raw/compressed", SENSOR_QOS)
        else:
            self._pub = self.create_publisher(Image, f"{name}/image_raw", SENSOR_QOS)
        self._info_pub = self.create_publisher(CameraInfo, f"{name}/camera_info", SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, f"{name}/depth/image_raw", SENSOR_QOS) if getattr(self.camera, "has_depth", False) else None
        self._status_pub = self.create_publisher(String, f"{name}/status", RELIABLE_QOS)
        return TransitionCallbackReturn.SUCCESS

    def _camera_info(self, p: dict) -> CameraInfo:
        info = CameraInfo()
        info.width, info.height = int(p["width"]), int(p["height"])
        if p["calibration"] and p["calibration_id"]:
            raise CalibrationError("give either 'calibration' (a camera_info YAML path) or 'calibration_id', not both")
        if p["calibration_id"]:  # the latest (or a pinned intrinsics/<id>/vN) version from the calibration registry
            p["calibration"] = str(intrinsics_file(p["calibration_id"]))
        if p["calibration"]:
            c = load_camera_info(p["calibration"], info.width, info.height)
            info.k, info.d, info.r, info.p = list(c.k), list(c.d), list(c.r), list(c.p)
            info.distortion_model = c.distortion_model
        return info

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        # capture in its own thread: a device read blocks until the next frame
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self._status_timer = self.create_timer(1.0, self._publish_status)
        return super().on_activate(state)

    def _loop(self) -> None:
        import cv2

        while not self._stop.is_set():
            try:
                if self._depth_pub is not None:
                    frame, depth, _ = self.camera.read_rgbd()
                else:
                    frame, _ = self.camera.read()
            except OSError as exc:
                self.failures += 1
                self.get_logger().error(f"{exc}", throttle_duration_sec=2.0)
                time.sleep(0.1)
                continue
            stamp = self.stamp_ns()
            if self.compressed:
                msg = CompressedImage()
                msg.header.stamp = ns_to_stamp(stamp)
                msg.header.frame_id = self.frame_id
                msg.format = "rgb8; jpeg compressed bgr8"
                ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                msg.data = buf.tobytes()
            else:
                msg = image_msg(frame, stamp, self.frame_id)
            self._pub.publish(msg)
            if self._depth_pub is not None:
                self._depth_pub.publish(depth_msg(depth, stamp, self.frame_id))
            self.info.header.stamp = ns_to_stamp(stamp)
            self.info.header.frame_id = self.frame_id
            self._info_pub.publish(self.info)
            self.published += 1

    def _publish_status(self) -> None:
        self._status_pub.publish(String(data=json.dumps({"published": self.published, "failures": self.failures})))

    def destroy_node(self) -> None:
        self._stop.set()
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout=2.0)
        if getattr(self, "camera", None) is not None:
            self.camera.close()
        super().destroy_node()


def depth_msg(depth: np.ndarray, stamp_ns: int, frame_id: str = "") -> Image:
    """(H, W) uint16 depth in mm -> sensor_msgs/Image 16UC1 (little-endian)."""
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(depth.shape[0]), int(depth.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "16UC1", 0, int(depth.shape[1] * 2)
    msg.data = np.ascontiguousarray(depth, dtype="<u2").tobytes()
    return msg


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
