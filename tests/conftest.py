from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Keep any DDS traffic of later ROS tests on this host and out of other runs' way.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROBOT_RL_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"robot_rl_test_cache_{os.getpid()}"))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "test.zarr"
