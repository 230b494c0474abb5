"""Robots: the ``Robot`` interface, the registry, mock robots, the guarded command path."""

from robot_rl.robots.base import Obs, Robot, RobotConfig, SimRobot
from robot_rl.robots.guard import GuardedRobot
from robot_rl.robots.registry import available_robots, make_robot, register_lazy, register_robot, robot_classes

__all__ = [
    "GuardedRobot",
    "Obs",
    "Robot",
    "RobotConfig",
    "SimRobot",
    "available_robots",
    "make_robot",
    "register_lazy",
    "register_robot",
    "robot_classes",
]
