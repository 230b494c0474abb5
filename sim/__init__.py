"""The sim twin (``robot_rl.sim``): MuJoCo / robosuite robots and tasks, MJCF assets,
scripted experts. The only place in robot_rl that imports MuJoCo.

Robots are declared lazily so that listing them imports no simulator:
``make_robot("sim_lift")`` imports ``robot_rl.sim.robosuite_arm`` on first use.
"""

import os

# MuJoCo picks its GL backend when it is first imported: headless EGL unless the user
# chose one (osmesa, glfw with a display).
os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.robots.registry import register_lazy  # noqa: E402

register_lazy("sim_lift", "robot_rl.sim.robosuite_arm:LiftRobot")
register_lazy("sim_stack", "robot_rl.sim.robosuite_arm:StackRobot")
register_lazy("sim_base", "robot_rl.sim.diff_drive:DiffDriveRobot")
