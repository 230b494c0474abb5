"""Calibration routines (``robot_rl.calibration``): camera intrinsics, hand-eye and
joint-offset calibration, board definitions; results as versioned YAML.

- ``boards``: board specs (``checkerboard:9x6:0.025``, ``charuco:7x5:0.04:0.03:DICT_5X5_100``), images to print
- ``intrinsics``: board detection and ``cv2.calibrateCamera``
- ``handeye``: ``cv2.calibrateHandEye`` (eye-in-hand, eye-to-hand), robot pose files
- ``joints``: joint-offset / zero calibration for servo arms
- ``registry``: ``<root>/<kind>/<id>/v<N>.yaml`` (root: ``$ROBOT_RL_CALIBRATION_DIR``)
- ``camera_info``: the ROS camera_info YAML format (read by the camera node)
- ``synthetic``: ground-truth views for tests and dry runs

Command line: ``robot-rl calibrate board|intrinsics|handeye|joints``; see docs/calibration.md.
"""

from robot_rl.calibration.camera_info import CalibrationError, CameraIntrinsics, load_camera_info

__all__ = ["CalibrationError", "CameraIntrinsics", "load_camera_info"]
