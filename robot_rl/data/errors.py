"""Errors raised by the episode store.

Every error names what is wrong and where (episode, key, chunk) so that a user can act
on it without reading the code.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class for every episode-store error."""


class SchemaError(StoreError, ValueError):
    """A step, an episode record or a schema does not match the store's spec."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""


class CorruptStoreError(StoreError):
    """Committed data is missing or does not decode.

    Attributes:
        key: the data key (e.g. ``obs.image.wrist``) or metadata array, when known.
        episode: the committed episode index the bad rows belong to, when known.
        chunk: the chunk index along time, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        episode: int | None = None,
        chunk: int | None = None,
    ) -> None:
        where = []
        if episode is not None:
            where.append(f"episode {episode}")
        if key is not None:
            where.append(f"key '{key}'")
        if chunk is not None:
            where.append(f"chunk {chunk}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.key = key
        self.episode = episode
        self.chunk = chunk
