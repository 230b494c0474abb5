"""Calibration routines (``robot_rl.calibration``): camera intrinsics, hand-eye and
joint-offset calibration, board definitions; results as versioned YAML."""
