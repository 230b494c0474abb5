"""robot_rl: a robot-learning stack for real hardware (see README.md and DESIGN.md)."""

__version__ = "0.1.0"
