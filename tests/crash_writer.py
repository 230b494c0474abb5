"""Subprocess for test_crash.py: append deterministic episodes forever until killed.

usage: python crash_writer.py STORE FLUSH_EVERY SALVAGE(0|1)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from robot_rl.data import EpisodeWriter  # noqa: E402
from store_fixtures import small_schema, write_episode  # noqa: E402

path, flush_every, salvage = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
writer = EpisodeWriter(path, small_schema(), defaults={"source": "teleop"}, flush_every=flush_every, salvage=salvage)
print("ready", writer.num_episodes, flush=True)
index = writer.num_episodes
while True:
    write_episode(writer, index)
    index += 1
