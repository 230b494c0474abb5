"""Hardware backends (``robot_rl.drivers``): one module per robot family.

Vendor SDKs are imported lazily inside each driver, with a message naming the
``pip install robot-rl[<extra>]`` line when missing. Drivers arrive with the
real-hardware issue; this package is installed now so the layout is stable.
"""

from robot_rl.robots.registry import register_lazy

register_lazy("diff_drive_serial", "robot_rl.drivers.diff_drive_serial:DiffDriveSerial")
register_lazy("ros2_control", "robot_rl.ros.passthrough:Ros2ControlRobot")
register_lazy("so100", "robot_rl.drivers.lerobot_robots:SO100")
register_lazy("so101", "robot_rl.drivers.lerobot_robots:SO101")
register_lazy("koch", "robot_rl.drivers.lerobot_robots:Koch")
register_lazy("lekiwi", "robot_rl.drivers.lerobot_robots:LeKiwi")
register_lazy("ur", "robot_rl.drivers.ur:URRobot")
register_lazy("franka", "robot_rl.drivers.franka:FrankaRobot")
register_lazy("xarm", "robot_rl.drivers.xarm:XArmRobot")
