"""Gymnasium env over any Robot, the evaluation runner, and scripted data collection."""

from robot_rl.envs.collect import collect_episodes
from robot_rl.envs.evaluate import EvalResult, evaluate, wilson_interval
from robot_rl.envs.robot_env import RobotEnv

__all__ = ["EvalResult", "RobotEnv", "collect_episodes", "evaluate", "wilson_interval"]
