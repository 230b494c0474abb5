"""One writer per store: an advisory ``flock`` on the store's directory itself.

Locking the directory (not a file inside it) keeps the store a pure zarr hierarchy.
The kernel drops the lock when the holder dies (even by SIGKILL), so a crashed writer
never leaves a store locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from robot_rl.data.errors import StoreLockedError


class WriterLock:
    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        fd = os.open(self.store_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{self.store_dir} is being written by another process; "
                "stop it first, or open the store read-only with EpisodeStore"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
