from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Keep DDS traffic on this host and out of other runs' way: one domain per test run.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
# Headless rendering on the CPU; must be set before anything imports mujoco (its GL
# backend is chosen at import).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROBOT_RL_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"robot_rl_test_cache_{os.getpid()}"))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "test.zarr"
