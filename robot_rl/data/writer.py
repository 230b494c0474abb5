"""Append episodes to a store, crash-safely.

    schema = StoreSchema.build(obs={"joint_pos": KeySpec((7,), "float32", "rad")},
                               action=KeySpec((7,), "float32", "rad"), fps=20)
    with EpisodeWriter("demo.zarr", schema, defaults={"source": "teleop", "task": "lift"}) as w:
        for t in range(100):
            w.add_step({"joint_pos": q}, action=a, reward=0.0)
        w.end_episode({"success": True})      # the commit
        ...
        w.discard_episode()                   # drop an episode in progress

Steps are validated one by one against the schema (a bad step raises and is not kept;
committed data is never touched), buffered, and appended to ``data/<key>`` every
``flush_every`` steps. ``end_episode`` flushes, writes the episode record, and only then
extends ``meta/episode_ends`` — the commit. A writer killed at any point leaves a store
that opens with every committed episode intact; re-opening it with a writer (or
``robot-rl data recover``) truncates the uncommitted tail, or salvages it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from robot_rl.data import layout
from robot_rl.data.errors import SchemaError, StoreError
from robot_rl.data.lock import WriterLock
from robot_rl.data.recovery import RecoveryReport, recover_locked
from robot_rl.data.schema import StoreSchema
from robot_rl.data.stats import compute_stats, stats_to_json

log = logging.getLogger(__name__)

SOURCES = ("teleop", "policy", "intervention", "scripted")
"""Where an episode's actions came from (DESIGN.md, meta/episodes)."""

_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "success": (bool, type(None)),
    "task": (str, type(None)),
    "robot": (str, type(None)),
    "operator": (str, type(None)),
    "policy_checkpoint": (str, type(None)),
    "interventions": (list, int, type(None)),
    "tags": (list,),
}


class EpisodeWriter:
    """The one writer of a store (holds an flock on the store directory until :meth:`close`).

    Args:
        path: the ``.zarr`` directory. Created (atomically) when absent; appended to
            when present, after recovering any uncommitted tail a dead writer left.
        schema: required to create a store; when appending it must equal the stored one.
        flush_every: steps buffered in memory before they are appended to disk. Bounds
            the data a crash can lose from an episode in progress (see ``salvage``).
        time_chunk: rows per chunk for numeric keys (image keys: one frame per chunk).
        defaults: record fields applied to every episode (``source``, ``task``,
            ``robot``, ``operator``...), overridden by ``end_episode(meta)``.
        salvage: on open, keep a dead writer's flushed-but-uncommitted rows as an
            episode with ``status: aborted`` instead of truncating them.
        overwrite: delete an existing store at ``path`` first.
        update_stats: refresh the cached normalisation statistics on close.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: StoreSchema | None = None,
        *,
        flush_every: int = 100,
        time_chunk: int = layout.DEFAULT_TIME_CHUNK,
        defaults: Mapping[str, Any] | None = None,
        salvage: bool = False,
        overwrite: bool = False,
        update_stats: bool = True,
    ) -> None:
        if flush_every < 1 or time_chunk < 1:
            raise ValueError("flush_every and time_chunk must be >= 1")
        self.path = Path(path)
        self.flush_every = int(flush_every)
        self.update_stats = update_stats
        self.defaults = dict(defaults or {})
        _check_record(self.defaults, partial=True)
        self.recovery: RecoveryReport | None = None
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        if (self.path / "zarr.json").is_file():
            self._lock = WriterLock(self.path).acquire()
            try:
                # recovery checks the reader's dtype/codec allow-list before any chunk is read
                self.recovery = recover_locked(self.path, salvage=salvage)
                if self.recovery.changed:
                    log.warning("recovered %s: %s", self.path, self.recovery.summary())
                self._open(schema)
            except BaseException:
                self._lock.release()
                raise
        else:
            if schema is None:
                raise SchemaError(f"{self.path} does not exist; pass a StoreSchema to create it")
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists and is not an episode store; refusing to write into it")
            self._lock = _create(self.path, schema, time_chunk)
            try:
                self._open(schema)
            except BaseException:
                self._lock.release()
                raise
        self._closed = False
        self._reset_episode()

    # ------------------------------------------------------------------ setup
    def _open(self, schema: StoreSchema | None) -> None:
        self._root = layout.open_root(self.path, mode="r+")
        self.schema = layout.read_schema(self._root)
        if schema is not None and schema != self.schema:
            raise SchemaError(
                f"{self.path} was written with a different schema:\n  stored: {self.schema.to_json()}\n"
                f"  given:  {schema.to_json()}"
            )
        self._arrays = {k: layout.open_array(self._root, f"{layout.DATA}/{k}", key=k) for k in self.schema.keys}
        self._ends = layout.open_array(self._root, layout.EPISODE_ENDS)
        self._records = layout.open_array(self._root, layout.EPISODES)
        meta = self._root[layout.META]
        assert isinstance(meta, zarr.Group)
        self._meta = meta
        self._n_episodes = int(self._ends.shape[0])
        self._rows = int(self._ends[-1]) if self._n_episodes else 0

    def _reset_episode(self) -> None:
        self._buffer: list[dict[str, np.ndarray]] = []
        self._steps = 0
        self._flushed_steps = 0
        self._t0_mono: float | None = None
        self._start_time: str | None = None
        self._first_ts: float | None = None
        self._last_ts: float | None = None

    # ------------------------------------------------------------------ properties
    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return self._n_episodes

    @property
    def steps_in_episode(self) -> int:
        return self._steps

    @property
    def committed_rows(self) -> int:
        return self._rows - self._flushed_steps

    # ------------------------------------------------------------------ writing
    def add_step(
        self,
        obs: Mapping[str, Any],
        action: Any,
        *,
        reward: float = 0.0,
        done: bool = False,
        timestamp: float | None = None,
        **extras: Any,
    ) -> int:
        """Validate and buffer one step; returns its index within the episode.

        ``obs`` maps observation names (``joint_pos``, ``image.wrist``) to arrays;
        ``timestamp`` (s) defaults to the monotonic time since the episode's first step.
        """
        step: dict[str, Any] = {k if k.startswith("obs.") else f"obs.{k}": v for k, v in obs.items()}
        step.update(extras)
        step.update({"action": action, "reward": reward, "done": done, "timestamp": timestamp})
        return self.add_step_dict(step)

    def add_step_dict(self, step: Mapping[str, Any]) -> int:
        """Like :meth:`add_step`, for a flat ``{store key: value}`` mapping."""
        self._check_open()
        step = dict(step)
        now = time.monotonic()
        if self._steps == 0:
            self._t0_mono = now
            self._start_time = datetime.now(timezone.utc).isoformat()
        if step.get("timestamp") is None:
            assert self._t0_mono is not None
            step["timestamp"] = now - self._t0_mono
        validated = self.schema.validate_step(step)
        ts = float(validated["timestamp"])
        if self._last_ts is not None and ts < self._last_ts:
            raise SchemaError(f"key 'timestamp': {ts} goes backwards (previous step {self._last_ts})")
        self._buffer.append(validated)
        self._first_ts = ts if self._first_ts is None else self._first_ts
        self._last_ts = ts
        self._steps += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()
        return self._steps - 1

    def flush(self) -> None:
        """Append the buffered steps of the episode in progress to disk (not a commit)."""
        self._check_open()
        if not self._buffer:
            return
        n0, k = self._rows, len(self._buffer)
        try:
            for key, arr in self._arrays.items():
                block = np.stack([s[key] for s in self._buffer])
                arr.resize((n0 + k, *arr.shape[1:]))
                arr[n0 : n0 + k] = block
            progress: dict[str, Any] = {"flushed_rows": n0 + k}
            if self._flushed_steps == 0:
                progress["open_episode"] = {"start_row": n0, **self._base_record()}
            self._meta.attrs.update(progress)
        except OSError as exc:
            raise StoreError(
                f"writing {self.path} failed ({exc}); committed episodes are intact, "
                f"the episode in progress ({self._steps} steps) was not saved — call discard_episode()"
            ) from exc
        self._rows = n0 + k
        self._flushed_steps += k
        self._buffer.clear()

    def end_episode(self, meta: Mapping[str, Any] | None = None, **fields: Any) -> int:
        """Commit the episode in progress; returns its index.

        ``meta`` / keyword fields: ``success`` (bool), ``source`` (one of SOURCES),
        ``task``, ``robot``, ``operator``, ``policy_checkpoint``, ``interventions``,
        ``tags`` and any other JSON-serialisable fields.
        """
        self._check_open()
        if self._steps == 0:
            raise SchemaError("cannot end an episode with no steps (use discard_episode or add steps)")
        record = {**self._base_record(), **dict(meta or {}), **fields}
        record.update({"length": self._steps, "status": record.get("status", "ok")})
        if self._first_ts is not None and self._last_ts is not None and self._last_ts > self._first_ts:
            record["measured_fps"] = round((self._steps - 1) / (self._last_ts - self._first_ts), 3)
        _check_record(record, partial=False)
        encoded = json.dumps(record, allow_nan=False)
        self.flush()
        e = self._n_episodes
        try:
            self._records.resize((e + 1,))
            self._records[e] = encoded
            self._ends.resize((e + 1,))
            self._ends[e] = self._rows  # the commit
        except OSError as exc:
            raise StoreError(
                f"committing episode {e} to {self.path} failed ({exc}); earlier episodes are intact"
            ) from exc
        self._n_episodes = e + 1
        self._reset_episode()
        return e

    def discard_episode(self) -> int:
        """Drop the episode in progress (buffered and flushed rows); returns its length."""
        self._check_open()
        steps = self._steps
        end = self._rows - self._flushed_steps
        if self._flushed_steps:
            # progress marker first: a crash mid-truncation must not salvage these rows
            self._meta.attrs.update({"flushed_rows": end, "open_episode": None})
            for arr in self._arrays.values():
                arr.resize((end, *arr.shape[1:]))
            self._rows = end
        self._reset_episode()
        return steps

    def _base_record(self) -> dict[str, Any]:
        base: dict[str, Any] = {"fps": self.schema.fps, "start_time": self._start_time}
        if isinstance(self.schema.robot.get("name"), str):
            base["robot"] = self.schema.robot["name"]
        base.update(self.defaults)
        return base

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            if self._steps:
                log.warning(
                    "closing %s with an episode in progress (%d steps): discarded (call end_episode to keep it)",
                    self.path,
                    self._steps,
                )
                self.discard_episode()
            if self.update_stats and self._n_episodes:
                self.write_stats()
        finally:
            self._closed = True
            self._lock.release()

    def write_stats(self) -> None:
        """Recompute the normalisation statistics and cache them in the store."""
        from robot_rl.data.store import EpisodeStore

        store = EpisodeStore(self.path)
        stats = compute_stats(store)
        self._root.attrs[layout.STATS_ATTR] = {"fingerprint": store.fingerprint(), "keys": stats_to_json(stats)}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"writer for {self.path} is closed")

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and not self._closed and self._steps:
            self.discard_episode()
        self.close()

    def __del__(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None and not getattr(self, "_closed", True):
            lock.release()


def _create(path: Path, schema: StoreSchema, time_chunk: int) -> WriterLock:
    """Build the empty store in a sibling temp dir and rename it into place (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    lock = WriterLock(tmp).acquire()
    try:
        root = zarr.create_group(str(tmp), attributes={layout.SCHEMA_ATTR: schema.to_json()})
        data = root.create_group(layout.DATA)
        for key, spec in schema.keys.items():
            layout.create_data_array(data, key, spec, time_chunk)
        meta = root.create_group(layout.META, attributes={"flushed_rows": 0, "open_episode": None})
        layout.create_meta_arrays(meta)
        if path.exists():
            path.rmdir()  # empty directory checked by the caller
        os.rename(tmp, path)
    except BaseException:
        lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lock.store_dir = path
    return lock


def _check_record(record: Mapping[str, Any], partial: bool) -> None:
    for name, types in _RECORD_TYPES.items():
        if name in record and not isinstance(record[name], types):
            raise SchemaError(
                f"episode field {name!r} must be {' or '.join(t.__name__ for t in types)}, "
                f"got {type(record[name]).__name__}"
            )
    source = record.get("source")
    if source is not None and source not in SOURCES:
        raise SchemaError(f"episode source {source!r} is not one of {SOURCES}")
    if not partial and source is None:
        raise SchemaError(f"episode has no source; pass one of {SOURCES} in defaults or end_episode")
    try:
        json.dumps(dict(record), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"episode record is not JSON-serialisable: {exc}") from exc
