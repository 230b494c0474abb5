"""The episode store: a zarr v3 layout shared with diffusion_policy (DESIGN.md).

Writers append crash-safely (:class:`EpisodeWriter`), readers see committed episodes
only (:class:`EpisodeStore`), samplers serve training windows and transitions.
This package never imports rclpy, MuJoCo or a vendor SDK.
"""

from robot_rl.data.errors import CorruptStoreError, SchemaError, StoreError, StoreLockedError
from robot_rl.data.recovery import RecoveryReport, recover
from robot_rl.data.schema import KeySpec, StoreSchema
from robot_rl.data.store import EpisodeStore
from robot_rl.data.writer import SOURCES, EpisodeWriter

__all__ = [
    "SOURCES",
    "CorruptStoreError",
    "EpisodeStore",
    "EpisodeWriter",
    "KeySpec",
    "RecoveryReport",
    "SchemaError",
    "StoreError",
    "StoreLockedError",
    "StoreSchema",
    "recover",
]
