"""Full integrity check of a store: every committed chunk of every key is read.

Errors (the store cannot be trusted as is): unreadable metadata or schema, a data type or
codec robot_rl does not write (see ``layout.check_format``), missing or undecodable chunks,
symlinks leading outside the store, non-finite floats, timestamps going backwards,
episode records that disagree with the commit marker. Warnings (readers are fine, ``recover`` tidies):
an uncommitted tail left by a writer that died, zarr temp files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data import layout
from robot_rl.data.errors import CorruptStoreError
from robot_rl.data.store import EpisodeStore
from robot_rl.data.writer import SOURCES

MAX_ERRORS = 50


@dataclass
class VerifyReport:
    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks_checked: int = 0
    episodes: int = 0
    steps: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def verify(path: str | os.PathLike[str], progress: bool = False) -> VerifyReport:
    report = VerifyReport(path=Path(path))
    try:
        store = EpisodeStore(path)
    except CorruptStoreError as exc:
        report.errors.append(str(exc))
        return report
    report.episodes, report.steps = len(store), store.n_steps
    if store.uncommitted_rows:
        report.warnings.append(
            f"{store.uncommitted_rows} uncommitted rows after the last episode (a writer is running or died); "
            "`robot-rl data recover` truncates or salvages them"
        )
    if store._uncommitted_ends > 1 or store._uncommitted_records > 1:
        # a writer that died leaves at most one unfinished commit mark and one record past
        # the committed episodes: more means the marker was damaged and hides episodes
        report.errors.append(
            f"key '{layout.EPISODE_ENDS}': {len(store)} committed episodes, then {store._uncommitted_ends} commit mark(s) "
            f"and {store._uncommitted_records} record(s) that are not valid (a crash leaves at most one of each): "
            f"the commit marker is damaged at episode {len(store)}"
        )
    partial = layout.partial_files(store.path)
    if partial:
        report.warnings.append(f"{len(partial)} temp file(s) from interrupted writes, e.g. {partial[0]}")
    outside = links_outside(store.path)
    if outside:
        report.errors.append(
            f"{len(outside)} symlink(s) lead outside the store, e.g. {outside[0]} -> {os.path.realpath(outside[0])}: "
            "robot_rl writes plain files; copy the data into the store"
        )

    lengths = store.episode_lengths
    for i, record in enumerate(store.records):
        if record.get("length") is not None and record["length"] != int(lengths[i]):
            report.errors.append(f"episode {i}: record says length {record['length']}, commit marker says {lengths[i]}")
        if record.get("source") not in SOURCES:
            if record.get("source") is None and record.get("recovered") and record.get("status") == "aborted":
                # a salvaged tail whose writer died before it recorded the episode's fields
                report.warnings.append(f"episode {i}: salvaged without a recorded source")
            else:
                report.errors.append(f"episode {i}: unknown source {record.get('source')!r}")

    blocks = {key: list(_blocks(store, key)) for key in store.keys}
    total = sum(c for key in blocks for _, _, c in blocks[key])
    with tqdm(total=total, desc="verify", unit="chunk", disable=not progress) as bar:
        for key, key_blocks in blocks.items():
            spec = store.schema.keys[key]
            for lo, hi, n_chunks in key_blocks:
                bar.update(n_chunks)
                report.chunks_checked += n_chunks
                try:
                    values = store.read(key, lo, hi)
                except CorruptStoreError as exc:
                    report.errors.append(str(exc))
                    if len(report.errors) >= MAX_ERRORS:
                        report.errors.append(f"... stopping after {MAX_ERRORS} errors")
                        return report
                    continue
                if spec.np_dtype.kind == "f":
                    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
                    if bad.any():
                        row = lo + int(np.flatnonzero(bad)[0])
                        where = CorruptStoreError(
                            f"non-finite value at row {row}",
                            key=key,
                            episode=store.episode_of_row(row),
                            chunk=row // store.chunk_rows(key),
                        )
                        report.errors.append(str(where))
    if "timestamp" in store.schema.keys and store.n_steps:
        try:
            ts = np.concatenate([store.read("timestamp", lo, hi) for _, lo, hi in store.iter_chunks("timestamp")])
            back = np.flatnonzero(np.diff(ts) < 0) + 1
            starts = set(store.episode_starts.tolist())
            for row in back:
                if int(row) not in starts:
                    report.errors.append(f"episode {store.episode_of_row(int(row))}: timestamp goes backwards at row {row}")
                    break
        except CorruptStoreError:
            pass  # already reported per chunk
    return report


def links_outside(root: Path) -> list[Path]:
    """Symlinks under ``root`` whose target is not inside it (zarr.json cannot name a path
    outside the store; a link on disk can)."""
    top = os.path.realpath(root)
    found = []
    for folder, dirs, files in os.walk(root):  # does not descend into linked folders
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() and os.path.commonpath([top, os.path.realpath(path)]) != top:
                found.append(path)
    return sorted(found)


def _blocks(store: EpisodeStore, key: str, min_rows: int = 256) -> list[tuple[int, int, int]]:
    """``(start, stop, n_chunks)`` read units: whole chunks, at least ``min_rows`` rows.

    A read that fails is narrowed down to the bad chunk by ``EpisodeStore.read``.
    """
    rows = store.chunk_rows(key)
    per = max(1, min_rows // rows)
    n = store.n_steps
    step = per * rows
    return [(lo, min(lo + step, n), (min(lo + step, n) - lo + rows - 1) // rows) for lo in range(0, n, step)]
