"""ROS 2 YAML launch files, installed as package data (``robot_rl.launch``).

``launch_dir()`` is where they live in an editable checkout or an installed wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def launch_dir() -> Path:
    return Path(str(files(__name__)))


def launch_files() -> list[Path]:
    return sorted(launch_dir().glob("*.launch.yaml"))
