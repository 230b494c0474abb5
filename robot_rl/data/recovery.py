"""Bring a store whose writer died back to a clean committed state.

After a crash a store may hold, past its last committed episode: data rows of an
unfinished episode, an episode record whose commit marker was never written, a
trailing ``episode_ends`` entry still at its fill value, and zarr ``*.partial`` temp
files. Readers ignore all of these; recovery removes them (truncate) or, with
``salvage=True``, keeps the fully written tail rows as one more episode marked
``status: aborted`` (or, when its record had already been written, as the episode
it was about to become, marked ``recovered``). Nothing committed is ever touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from robot_rl.data import layout
from robot_rl.data.errors import CorruptStoreError
from robot_rl.data.lock import WriterLock


@dataclass
class RecoveryReport:
    committed_episodes: int = 0
    committed_rows: int = 0
    truncated_rows: int = 0
    dropped_marker_entries: int = 0
    dropped_records: int = 0
    removed_partial_files: int = 0
    salvaged_episode: int | None = None
    salvaged_rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.truncated_rows
            or self.dropped_marker_entries
            or self.dropped_records
            or self.removed_partial_files
            or self.salvaged_rows
        )

    def summary(self) -> str:
        if not self.changed:
            return f"clean: {self.committed_episodes} committed episodes, {self.committed_rows} rows"
        parts = [f"{self.committed_episodes} committed episodes ({self.committed_rows} rows) kept"]
        if self.salvaged_rows:
            parts.append(f"salvaged {self.salvaged_rows} tail rows as episode {self.salvaged_episode}")
        if self.truncated_rows:
            parts.append(f"truncated {self.truncated_rows} uncommitted rows")
        if self.dropped_records:
            parts.append(f"dropped {self.dropped_records} uncommitted episode record(s)")
        if self.dropped_marker_entries:
            parts.append(f"dropped {self.dropped_marker_entries} unfinished commit-marker entr(y/ies)")
        if self.removed_partial_files:
            parts.append(f"removed {self.removed_partial_files} partial temp file(s)")
        return "; ".join(parts + self.notes)


def recover(path: str | os.PathLike[str], salvage: bool = False) -> RecoveryReport:
    """Recover a store in place (takes the writer lock: fails if a writer is alive)."""
    root_dir = Path(path)
    layout.open_root(root_dir, mode="r")  # clear error if this is not a store
    with WriterLock(root_dir):
        return recover_locked(root_dir, salvage=salvage)


def recover_locked(root_dir: Path, salvage: bool = False) -> RecoveryReport:
    """Recovery for a caller that already holds the writer lock."""
    root = layout.open_root(root_dir, mode="r+")
    schema = layout.read_schema(root)
    layout.check_format(root_dir, schema)  # the reader's allow-list, before any chunk is read
    arrays = {k: layout.open_array(root, f"{layout.DATA}/{k}", key=k) for k in schema.keys}
    ends_arr = layout.open_array(root, layout.EPISODE_ENDS)
    records_arr = layout.open_array(root, layout.EPISODES)
    layout.check_meta_chunks(root_dir, layout.EPISODE_ENDS, ends_arr)  # else all data looks uncommitted
    layout.check_meta_chunks(root_dir, layout.EPISODES, records_arr)
    meta = root[layout.META]
    assert isinstance(meta, zarr.Group)
    try:
        raw_ends = np.asarray(ends_arr[:], dtype=np.int64)
    except Exception as exc:
        raise CorruptStoreError(f"commit marker unreadable, cannot recover: {exc}", key=layout.EPISODE_ENDS) from exc

    data_rows = min(a.shape[0] for a in arrays.values())
    n_committed = layout.committed_prefix(raw_ends, data_rows)
    n_records = records_arr.shape[0]
    if raw_ends.size - n_committed > 1 or n_records - n_committed > 1:
        raise CorruptStoreError(
            f"{n_committed} committed episodes, then {raw_ends.size - n_committed} commit mark(s) and "
            f"{n_records - n_committed} record(s) that are not valid; a crash leaves at most one of each, so the "
            "commit marker is damaged: not truncating (restore meta/episode_ends from a backup)",
            key=layout.EPISODE_ENDS,
        )
    if n_records < n_committed:
        raise CorruptStoreError(
            f"{n_committed} committed episodes but only {n_records} records; cannot recover automatically",
            key=layout.EPISODES,
        )
    end = int(raw_ends[n_committed - 1]) if n_committed else 0
    report = RecoveryReport()
    flushed = int(meta.attrs.get("flushed_rows", end))
    tail_end = min(data_rows, max(flushed, end))

    if salvage and tail_end > end:
        record = _salvage_record(records_arr, n_committed, n_records, end, tail_end, meta.attrs.get("open_episode"))
        bad = _unreadable_tail(root_dir, arrays, end, tail_end)
        if bad is not None:
            report.notes.append(f"tail not salvaged: {bad}")
        else:
            records_arr.resize((n_committed + 1,))
            records_arr[n_committed] = json.dumps(record)
            ends_arr.resize((n_committed + 1,))
            ends_arr[n_committed] = tail_end
            report.salvaged_episode = n_committed
            report.salvaged_rows = tail_end - end
            n_committed += 1
            n_records = max(n_records, n_committed)
            raw_ends = np.concatenate([raw_ends[: n_committed - 1], [tail_end]])
            end = tail_end

    # The progress marker goes first, so a crash during truncation cannot resurrect rows.
    meta.attrs.update({"flushed_rows": end, "open_episode": None})
    if raw_ends.size > n_committed:
        report.dropped_marker_entries = int(raw_ends.size - n_committed)
        ends_arr.resize((n_committed,))
    if n_records > n_committed:
        report.dropped_records = n_records - n_committed
        records_arr.resize((n_committed,))
    longest = max(a.shape[0] for a in arrays.values())
    report.truncated_rows = max(0, longest - end)
    for arr in arrays.values():
        if arr.shape[0] > end:
            arr.resize((end, *arr.shape[1:]))
    partial = layout.partial_files(root_dir)
    for p in partial:
        p.unlink(missing_ok=True)
    report.removed_partial_files = len(partial)
    report.committed_episodes = n_committed
    report.committed_rows = end
    return report


def _salvage_record(
    records_arr: zarr.Array, n_committed: int, n_records: int, start: int, stop: int, open_episode: object
) -> dict:
    if n_records > n_committed:
        # The writer died between writing this record and the commit marker: the
        # episode was complete, so keep it as it was meant to be committed.
        try:
            record = layout.decode_record(str(records_arr[n_committed]), n_committed)
            if record.get("length") == stop - start:
                record["recovered"] = True
                return record
        except Exception:  # an unreadable record: fall back to an aborted one
            pass
    base = dict(open_episode) if isinstance(open_episode, dict) and open_episode.get("start_row") == start else {}
    base.pop("start_row", None)
    base.update({"status": "aborted", "success": False, "length": stop - start, "recovered": True})
    base.setdefault("source", None)
    return base


def _unreadable_tail(root_dir: Path, arrays: dict[str, zarr.Array], start: int, stop: int) -> str | None:
    for key, arr in arrays.items():
        rows = arr.chunks[0]
        missing = layout.first_missing_chunk(root_dir, key, arr, range(start // rows, (stop - 1) // rows + 1))
        if missing is not None:
            return f"key '{key}' chunk {missing} is missing"
        try:
            arr[start:stop]
        except Exception as exc:
            return f"key '{key}' rows [{start}, {stop}) do not decode ({exc})"
    return None
