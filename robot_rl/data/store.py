"""Read-only access to an episode store: committed episodes only, every chunk checked.

    store = EpisodeStore("demo.zarr")
    len(store), store.n_steps               # committed episodes / steps
    ep = store.episode(3)                   # {"obs.joint_pos": (T, 7), "action": (T, 7), ...}
    store.record(3)                          # {"source": "teleop", "success": True, ...}
    store.filter(success=True, source="teleop")
    store.stats()["action"]["mean"]

A store being written by another process can be read at the same time: a reader sees
the episodes committed when it was opened (or last ``refresh()``ed), never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from robot_rl.data import layout
from robot_rl.data.errors import CorruptStoreError
from robot_rl.data.schema import StoreSchema
from robot_rl.data.stats import Stats, compute_stats, stats_from_json

if TYPE_CHECKING:
    from robot_rl.data.verify import VerifyReport


class EpisodeStore:
    """Reader over the committed episodes of a store (never modifies it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._root = layout.open_root(self.path, mode="r")
        self.schema: StoreSchema = layout.read_schema(self._root)
        self.refresh()

    # ------------------------------------------------------------------ opening
    def refresh(self) -> None:
        """Re-read the commit marker to see episodes committed since opening."""
        self._root = layout.open_root(self.path, mode="r")
        layout.check_format(self.path, self.schema)
        self._arrays: dict[str, zarr.Array] = {}
        for key, spec in self.schema.keys.items():
            arr = layout.open_array(self._root, f"{layout.DATA}/{key}", key=key)
            if tuple(arr.shape[1:]) != spec.shape or arr.dtype != spec.np_dtype:
                raise CorruptStoreError(
                    f"array has per-step shape {tuple(arr.shape[1:])} {arr.dtype}, schema says {spec.describe()}",
                    key=key,
                )
            self._arrays[key] = arr
        ends_arr = layout.open_array(self._root, layout.EPISODE_ENDS)
        records_arr = layout.open_array(self._root, layout.EPISODES)
        layout.check_meta_chunks(self.path, layout.EPISODE_ENDS, ends_arr)
        layout.check_meta_chunks(self.path, layout.EPISODES, records_arr)
        try:
            raw_ends = np.asarray(ends_arr[:], dtype=np.int64)
        except Exception as exc:
            raise CorruptStoreError(f"cannot read the commit marker: {exc}", key=layout.EPISODE_ENDS) from exc
        self._data_rows = min(a.shape[0] for a in self._arrays.values())
        n = layout.committed_prefix(raw_ends, self._data_rows)
        self._ends = raw_ends[:n].copy()
        self._uncommitted_ends = int(raw_ends.size - n)
        self._uncommitted_records = int(records_arr.shape[0] - n)  # a writer that died leaves at most one of each
        if records_arr.shape[0] < n:
            raise CorruptStoreError(
                f"{n} committed episodes but only {records_arr.shape[0]} episode records", key=layout.EPISODES
            )
        try:
            raw_records = records_arr[:n] if n else np.array([], dtype=str)
        except Exception as exc:
            raise CorruptStoreError(f"cannot read episode records: {exc}", key=layout.EPISODES) from exc
        self._records = [layout.decode_record(str(r), i) for i, r in enumerate(raw_records)]
        self._max_rows = max(a.shape[0] for a in self._arrays.values())

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return int(self._ends.size)

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if self._ends.size else 0

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self._ends[:-1]]).astype(np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[0], self._ends])).astype(np.int64)

    @property
    def uncommitted_rows(self) -> int:
        """Rows written after the last committed episode (a writer is busy or died)."""
        return self._max_rows - self.n_steps

    @property
    def keys(self) -> list[str]:
        return list(self.schema.keys)

    def bounds(self, episode: int) -> tuple[int, int]:
        """``(start, end)`` rows of a committed episode (end exclusive)."""
        episode = self._check_index(episode)
        start = int(self._ends[episode - 1]) if episode > 0 else 0
        return start, int(self._ends[episode])

    def _check_index(self, episode: int) -> int:
        n = len(self)
        if not -n <= episode < n:
            raise IndexError(f"episode {episode} out of range: the store has {n} committed episodes")
        return episode % n

    # ------------------------------------------------------------------ records
    def record(self, episode: int) -> dict[str, Any]:
        """The per-episode record: source, success, task, robot, start_time, fps, ..."""
        return dict(self._records[self._check_index(episode)])

    @property
    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._records]

    def filter(
        self,
        *,
        success: bool | None = None,
        source: str | Collection[str] | None = None,
        task: str | Collection[str] | None = None,
        status: str | Collection[str] | None = None,
        tag: str | None = None,
    ) -> np.ndarray:
        """Indices of committed episodes matching every given criterion (``tag``: in the record's ``tags``)."""

        def matches(value: Any, want: Any) -> bool:
            if want is None:
                return True
            if isinstance(want, str):
                return value == want
            return value in want

        keep = [
            i
            for i, r in enumerate(self._records)
            if (success is None or bool(r.get("success")) == success)
            and matches(r.get("source"), source)
            and matches(r.get("task"), task)
            and matches(r.get("status", "ok"), status)
            and (tag is None or tag in (r.get("tags") or []))
        ]
        return np.asarray(keep, dtype=np.int64)

    # ------------------------------------------------------------------ data
    def episode(self, episode: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """One committed episode as ``{key: (T, ...) array}``."""
        episode = self._check_index(episode)
        start, end = self.bounds(episode)
        return {key: self.read(key, start, end) for key in (keys if keys is not None else self.keys)}

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``data/<key>``, restricted to committed rows.

        Raises :class:`CorruptStoreError` naming the episode, key and chunk when a chunk
        file is missing or does not decode (crc32c mismatch, truncation); a missing chunk
        is never returned as zeros.
        """
        if key not in self._arrays:
            raise KeyError(f"unknown key {key!r}; the store has {self.keys}")
        if not 0 <= start <= stop <= self.n_steps:
            raise IndexError(f"rows [{start}, {stop}) outside the {self.n_steps} committed rows")
        arr = self._arrays[key]
        if start == stop:
            return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
        rows = arr.chunks[0]
        missing = layout.first_missing_chunk(self.path, key, arr, range(start // rows, (stop - 1) // rows + 1))
        if missing is not None:
            raise CorruptStoreError(
                "chunk file is missing (deleted or never written)",
                key=key,
                episode=self.episode_of_row(max(start, missing * rows)),
                chunk=missing,
            )
        try:
            return np.asarray(arr[start:stop])
        except Exception as exc:
            self._locate_bad_chunk(key, start, stop, exc)
            raise CorruptStoreError(f"read failed: {exc}", key=key) from exc

    def _locate_bad_chunk(self, key: str, start: int, stop: int, exc: Exception) -> None:
        arr = self._arrays[key]
        rows = arr.chunks[0]
        for chunk in range(start // rows, (stop - 1) // rows + 1):
            lo, hi = max(chunk * rows, start), min((chunk + 1) * rows, stop)
            try:
                arr[lo:hi]
            except Exception as inner:
                raise CorruptStoreError(
                    f"chunk does not decode ({type(inner).__name__}: {inner})",
                    key=key,
                    episode=self.episode_of_row(lo),
                    chunk=chunk,
                ) from inner

    def sample(self, indices: Sequence[int] | np.ndarray, horizon: int = 1, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Random access without loading the store: ``horizon`` rows from each index.

        ``indices`` are committed step rows (B,). Returns each key as ``(B, horizon, ...)``
        and ``is_pad`` ``(B, horizon)``: rows past the episode's end repeat its last row.
        For training loops, ``robot_rl.data.sampler`` (arrays loaded once) is faster.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or horizon < 1:
            raise ValueError("indices must be 1-D and horizon >= 1")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_steps):
            raise IndexError(f"row indices outside the {self.n_steps} committed rows")
        last = self._ends[np.searchsorted(self._ends, idx, side="right")] - 1
        raw = idx[:, None] + np.arange(horizon)[None]
        rows = np.minimum(raw, last[:, None])
        unique, inverse = np.unique(rows, return_inverse=True)
        out: dict[str, np.ndarray] = {}
        for key in keys if keys is not None else self.keys:
            arr = self._arrays[key]
            per_chunk = arr.chunks[0]
            missing = layout.first_missing_chunk(self.path, key, arr, np.unique(unique // per_chunk))
            if missing is not None:
                raise CorruptStoreError(
                    "chunk file is missing (deleted or never written)",
                    key=key,
                    episode=self.episode_of_row(missing * per_chunk),
                    chunk=missing,
                )
            try:
                values = np.asarray(arr.oindex[unique])
            except Exception as exc:
                self._locate_bad_chunk(key, int(unique[0]), int(unique[-1]) + 1, exc)
                raise CorruptStoreError(f"read failed: {exc}", key=key) from exc
            out[key] = values[inverse.reshape(rows.shape)]
        out["is_pad"] = raw != rows
        return out

    def verify(self, progress: bool = False) -> VerifyReport:
        """Read every committed chunk and check the store's invariants (see ``verify.py``)."""
        from robot_rl.data.verify import verify

        return verify(self.path, progress=progress)

    def episode_of_row(self, row: int) -> int | None:
        """Committed episode holding ``row``, or None for uncommitted rows."""
        if row >= self.n_steps:
            return None
        return int(np.searchsorted(self._ends, row, side="right"))

    def iter_chunks(self, key: str) -> Iterable[tuple[int, int, int]]:
        """``(chunk, start_row, stop_row)`` for every chunk holding committed rows of key."""
        rows = self._arrays[key].chunks[0]
        n = self.n_steps
        for chunk in range((n + rows - 1) // rows):
            yield chunk, chunk * rows, min((chunk + 1) * rows, n)

    def chunk_rows(self, key: str) -> int:
        return int(self._arrays[key].chunks[0])

    # ------------------------------------------------------------------ summaries
    def stats(self, keys: Sequence[str] | None = None) -> dict[str, Stats]:
        """Normalisation statistics per key (mean/std/min/max/q01/q99).

        Served from the store's cache when it matches the committed episodes (the writer
        refreshes it on close); recomputed in memory otherwise.
        """
        cached = self._root.attrs.get(layout.STATS_ATTR)
        if isinstance(cached, dict) and cached.get("fingerprint") == self.fingerprint():
            try:
                stats = stats_from_json(cached.get("keys"), self.schema)
            except ValueError:
                stats = {}  # a damaged cache is only a cache: recompute from the data
            if stats and (keys is None or all(k in stats for k in keys)):
                return {k: stats[k] for k in (keys or stats)}
        return compute_stats(self, keys)

    def fingerprint(self) -> str:
        """sha256 of the schema, the commit marker and the episode records.

        The store is append-only, so this names a snapshot of its committed content;
        checkpoints record it as their training-data fingerprint.
        """
        h = hashlib.sha256()
        h.update(json.dumps(self.schema.to_json(), sort_keys=True).encode())
        h.update(self._ends.astype("<i8").tobytes())
        for r in self._records:
            h.update(json.dumps(r, sort_keys=True).encode())
        return h.hexdigest()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={len(self)}, steps={self.n_steps})"
