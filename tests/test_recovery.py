"""Deterministic crash states (what a writer killed at each point of the commit
protocol leaves behind) and how readers, writers and `recover` handle them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from robot_rl.data import EpisodeStore, EpisodeWriter, StoreLockedError, recover
from store_fixtures import episode_data, episode_length, small_schema, write_episode, write_store


def crash_mid_episode(path, steps: int, flush_every: int = 4) -> None:
    """Leave episode 2 half written (flushed rows, no commit), as after a SIGKILL."""
    w = EpisodeWriter(path, small_schema(), defaults={"source": "teleop", "task": "lift"}, flush_every=flush_every)
    data = episode_data(2)
    for t in range(steps):
        w.add_step_dict({k: v[t] for k, v in data.items()})
    w._lock.release()  # the process "dies": no close, no discard
    w._closed = True


def test_reader_ignores_uncommitted_tail_and_writer_truncates_it(store_path):
    write_store(store_path, 2)
    crash_mid_episode(store_path, 10)
    store = EpisodeStore(store_path)
    assert len(store) == 2 and store.uncommitted_rows == 8  # 2 flushes of 4, 2 steps lost in memory
    with EpisodeWriter(store_path, defaults={"source": "teleop"}) as w:
        assert w.recovery is not None and w.recovery.truncated_rows == 8
        write_episode(w, 2)
    store = EpisodeStore(store_path)
    assert len(store) == 3 and store.uncommitted_rows == 0
    np.testing.assert_array_equal(store.episode(2)["action"], episode_data(2)["action"])


def test_salvage_keeps_flushed_rows_as_aborted_episode(store_path):
    write_store(store_path, 2)
    crash_mid_episode(store_path, 11, flush_every=3)
    report = recover(store_path, salvage=True)
    assert report.salvaged_episode == 2 and report.salvaged_rows == 9
    store = EpisodeStore(store_path)
    assert len(store) == 3
    rec = store.record(2)
    assert rec["status"] == "aborted" and rec["success"] is False and rec["recovered"] is True
    assert rec["task"] == "lift" and rec["source"] == "teleop" and rec["length"] == 9
    for key, values in episode_data(2).items():
        np.testing.assert_array_equal(store.episode(2)[key], values[:9].astype(store.schema.keys[key].np_dtype))
    assert list(store.filter(status="ok")) == [0, 1]


def test_crash_between_record_and_commit_marker(store_path):
    write_store(store_path, 2)
    n = episode_length(2)
    crash_mid_episode(store_path, n, flush_every=n)  # every row flushed
    root = zarr.open_group(str(store_path), mode="r+")
    records = root["meta/episodes"]
    records.resize((3,))
    records[2] = json.dumps({"source": "teleop", "success": True, "length": n, "status": "ok", "task": "lift"})
    # readers: still 2 episodes (the commit marker was never extended)
    assert len(EpisodeStore(store_path)) == 2
    report = recover(store_path, salvage=True)
    assert report.salvaged_rows == n
    store = EpisodeStore(store_path)
    rec = store.record(2)
    assert rec["success"] is True and rec["status"] == "ok" and rec["recovered"] is True


def test_truncate_drops_orphan_record(store_path):
    write_store(store_path, 2)
    root = zarr.open_group(str(store_path), mode="r+")
    root["meta/episodes"].resize((3,))
    root["meta/episodes"][2] = json.dumps({"source": "teleop"})
    report = recover(store_path)
    assert report.dropped_records == 1
    assert zarr.open_group(str(store_path), mode="r")["meta/episodes"].shape == (2,)


def test_marker_resized_but_not_written(store_path):
    """Crash between resizing episode_ends and writing its value: a trailing fill 0."""
    write_store(store_path, 3)
    root = zarr.open_group(str(store_path), mode="r+")
    root["meta/episode_ends"].resize((4,))
    store = EpisodeStore(store_path)
    assert len(store) == 3
    report = recover(store_path)
    assert report.dropped_marker_entries == 1
    assert zarr.open_group(str(store_path), mode="r")["meta/episode_ends"].shape == (3,)
    assert len(EpisodeStore(store_path)) == 3


def test_partial_temp_files_are_removed(store_path):
    write_store(store_path, 1)
    junk = store_path / "data" / "action" / "c" / "0.0123abcd.partial"
    junk.write_bytes(b"half a chunk")
    report = recover(store_path)
    assert report.removed_partial_files == 1 and not junk.exists()
    assert len(EpisodeStore(store_path)) == 1


def test_recover_refuses_while_writer_alive(store_path):
    write_store(store_path, 1)
    w = EpisodeWriter(store_path)
    with pytest.raises(StoreLockedError):
        recover(store_path)
    w.close()
    assert not recover(store_path).changed


def test_discarded_rows_are_never_salvaged(store_path):
    write_store(store_path, 1)
    w = EpisodeWriter(store_path, defaults={"source": "teleop"}, flush_every=2)
    data = episode_data(1)
    for t in range(6):
        w.add_step_dict({k: v[t] for k, v in data.items()})
    w.discard_episode()
    w._lock.release()
    w._closed = True
    report = recover(store_path, salvage=True)
    assert report.salvaged_rows == 0
    assert len(EpisodeStore(store_path)) == 1


def test_a_salvaged_tail_without_a_source_verifies_with_a_warning(store_path):
    """The writer's defaults may leave the source to end_episode; a salvaged tail then has
    none. That is what happened, not corruption: verify warns and stays ok."""
    from robot_rl.data.verify import verify

    write_store(store_path, 2)
    w = EpisodeWriter(store_path, small_schema(), defaults={"task": "lift"}, flush_every=3)
    data = episode_data(2)
    for t in range(7):
        w.add_step_dict({k: v[t] for k, v in data.items()})
    w._lock.release()  # the process "dies"
    w._closed = True
    assert recover(store_path, salvage=True).salvaged_rows == 6
    rec = EpisodeStore(store_path).record(2)
    assert rec["source"] is None and rec["status"] == "aborted" and rec["recovered"] is True
    report = verify(store_path)
    assert report.ok, report.errors
    assert any("salvaged without a recorded source" in w for w in report.warnings)
