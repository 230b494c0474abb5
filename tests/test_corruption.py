"""Missing or corrupt chunks raise errors naming episode, key and chunk; nothing is
zero-filled; the other episodes still load; `verify` fails loudly."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zarr

from robot_rl.data import CorruptStoreError, EpisodeStore, EpisodeWriter, recover
from robot_rl.data.verify import verify
from store_fixtures import episode_data, episode_length, write_store

ERROR_WITHIN_S = 1.0  # a behaviour bound (reads of this size take milliseconds), generous for slow CI


def starts(n):
    return np.concatenate([[0], np.cumsum([episode_length(i) for i in range(n)])])


@pytest.fixture
def store(store_path):
    write_store(store_path, 4)
    return store_path


def test_deleted_image_chunk(store):
    frame = int(starts(4)[2]) + 3  # one frame per chunk: chunk index == row
    (store / "data" / "obs.image.wrist" / "c" / str(frame) / "0" / "0" / "0").unlink()
    s = EpisodeStore(store)
    with pytest.raises(CorruptStoreError, match=rf"episode 2, key 'obs.image.wrist', chunk {frame}: chunk file is missing") as info:
        s.episode(2)
    assert (info.value.episode, info.value.key, info.value.chunk) == (2, "obs.image.wrist", frame)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(s.episode(i)["obs.image.wrist"], episode_data(i)["obs.image.wrist"])
    report = verify(store)
    assert not report.ok and any(f"chunk {frame}" in e for e in report.errors)


def test_flipped_bytes_in_numeric_chunk(store):
    chunk = store / "data" / "action" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    s = EpisodeStore(store)
    with pytest.raises(CorruptStoreError, match=r"episode 1, key 'action', chunk 0: chunk does not decode"):
        s.episode(1)
    np.testing.assert_array_equal(s.episode(1, keys=["obs.joint_pos"])["obs.joint_pos"], episode_data(1)["obs.joint_pos"])


def test_truncated_image_chunk(store):
    row = int(starts(4)[3])
    chunk = store / "data" / "obs.image.wrist" / "c" / str(row) / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(CorruptStoreError, match=rf"episode 3, key 'obs.image.wrist', chunk {row}"):
        EpisodeStore(store).episode(3)
    assert len(EpisodeStore(store).episode(2)["action"]) == episode_length(2)


def test_missing_array_metadata(store):
    (store / "data" / "action" / "zarr.json").unlink()
    with pytest.raises(CorruptStoreError, match="key 'action'"):
        EpisodeStore(store)
    assert not verify(store).ok


def test_garbage_root_metadata(store):
    (store / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match="cannot open"):
        EpisodeStore(store)


def test_missing_schema_attrs(store):
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"].pop("robot_rl")
    (store / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptStoreError, match="no robot_rl schema"):
        EpisodeStore(store)


def test_missing_episode_records(store):
    shutil.rmtree(store / "meta" / "episodes")
    with pytest.raises(CorruptStoreError, match="meta/episodes"):
        EpisodeStore(store)


def test_not_a_store(tmp_path):
    with pytest.raises(CorruptStoreError, match="not an episode store"):
        EpisodeStore(tmp_path)


def test_verify_clean_store_and_warnings(store):
    report = verify(store)
    assert report.ok and report.episodes == 4 and not report.warnings
    (store / "data" / "action" / "c" / "0" / "0.deadbeef.partial").write_bytes(b"x")
    report = verify(store)
    assert report.ok and any("temp file" in w for w in report.warnings)


# ---------------------------------------------------------------------------- more cases
TIME_CHUNK = 16  # numeric keys chunked every 16 rows: episode 1 is rows 17-70, chunks 1-4


@pytest.fixture
def chunked(store_path):
    write_store(store_path, 4, time_chunk=TIME_CHUNK)
    return store_path


@contextlib.contextmanager
def fails_fast(match: str) -> Iterator[pytest.ExceptionInfo[CorruptStoreError]]:
    """``pytest.raises(CorruptStoreError, match=...)`` that also bounds the time to the error."""
    t0 = time.monotonic()
    with pytest.raises(CorruptStoreError, match=match) as info:
        yield info
    elapsed = time.monotonic() - t0
    assert elapsed < ERROR_WITHIN_S, f"the error took {elapsed:.2f} s"


def assert_loads_exactly(store: EpisodeStore, episodes, keys=None) -> None:
    for i in episodes:
        got = store.episode(i, keys)
        want = episode_data(i)
        for key in keys or want:
            np.testing.assert_array_equal(got[key], want[key])


def numeric_chunk(root, key: str, chunk: int):
    return root / "data" / key / "c" / str(chunk) / "0"


def test_deleted_numeric_chunk(chunked):
    numeric_chunk(chunked, "action", 2).unlink()  # rows 32-47: inside episode 1 only
    s = EpisodeStore(chunked)
    with fails_fast(r"episode 1, key 'action', chunk 2: chunk file is missing") as info:
        s.episode(1)
    assert (info.value.episode, info.value.key, info.value.chunk) == (1, "action", 2)
    assert_loads_exactly(s, [0, 2, 3])
    assert_loads_exactly(s, [1], keys=["obs.joint_pos", "obs.image.wrist", "reward"])  # the other keys of episode 1
    with fails_fast(r"key 'action', chunk 2"):
        s.sample(np.array([40]), horizon=2)
    report = verify(chunked)
    assert not report.ok and any("key 'action', chunk 2: chunk file is missing" in e for e in report.errors)


def test_truncated_numeric_chunk(chunked):
    chunk = numeric_chunk(chunked, "obs.joint_pos", 6)  # rows 96-111: episode 2
    chunk.write_bytes(chunk.read_bytes()[:-7])
    s = EpisodeStore(chunked)
    with fails_fast(r"episode 2, key 'obs.joint_pos', chunk 6: chunk does not decode") as info:
        s.episode(2)
    assert (info.value.episode, info.value.chunk) == (2, 6)
    assert_loads_exactly(s, [0, 1, 3])
    assert not verify(chunked).ok


def test_chunk_truncated_to_nothing(chunked):
    (chunked / "data" / "timestamp" / "c" / "0").write_bytes(b"")  # a scalar key's chunk: c/<chunk>
    s = EpisodeStore(chunked)
    with fails_fast(r"episode 0, key 'timestamp', chunk 0"):
        s.episode(0)
    assert_loads_exactly(s, [2, 3])


@pytest.mark.parametrize("where", ["data/action/c/0", "data/obs.image.wrist/c/5/0/0", "meta/episode_ends/c", "meta/episodes/c", "."])
def test_orphan_partial_files_leave_reads_intact(store, where):
    folder = store / where
    for i in range(3):
        (folder / f"{i}.{i:032x}.partial").write_bytes(b"half a chunk" * i)
    s = EpisodeStore(store)
    assert len(s) == 4
    assert_loads_exactly(s, range(4))
    report = verify(store)
    assert report.ok and any("3 temp file(s)" in w for w in report.warnings)
    assert recover(store).removed_partial_files == 3
    assert verify(store).ok and not verify(store).warnings


@pytest.mark.parametrize("key", ["obs.image.wrist", "obs.joint_pos", "timestamp"])
def test_missing_metadata_of_one_key(store, key):
    (store / "data" / key / "zarr.json").unlink()
    with fails_fast(rf"key '{key}': array 'data/{key}' is missing"):
        EpisodeStore(store)
    report = verify(store)
    assert not report.ok and any(f"key '{key}'" in e for e in report.errors)


def test_garbled_metadata_of_one_key(store):
    (store / "data" / "reward" / "zarr.json").write_bytes(b"\x00\xff{garbage")
    with fails_fast(r"key 'reward'"):
        EpisodeStore(store)


def test_deleted_commit_marker_chunk_is_not_an_empty_store(store):
    # zarr would read the missing chunk as zeros, i.e. "no episodes", and a recovery
    # would then truncate every row as uncommitted
    (store / "meta" / "episode_ends" / "c" / "0").unlink()
    with fails_fast(r"key 'meta/episode_ends', chunk 0: chunk file is missing"):
        EpisodeStore(store)
    with pytest.raises(CorruptStoreError, match="meta/episode_ends"):
        recover(store)
    assert zarr.open_array(str(store / "data" / "action"), mode="r").shape[0] == int(starts(4)[-1])  # nothing truncated
    assert not verify(store).ok


def test_deleted_records_chunk(store):
    (store / "meta" / "episodes" / "c" / "0").unlink()
    with fails_fast(r"key 'meta/episodes', chunk 0: chunk file is missing"):
        EpisodeStore(store)


def test_flipped_byte_in_commit_marker(store):
    chunk = store / "meta" / "episode_ends" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with fails_fast(r"key 'meta/episode_ends': cannot read the commit marker"):
        EpisodeStore(store)


def test_damaged_commit_mark_hides_later_episodes_loudly(store):
    ends = zarr.open_array(str(store / "meta" / "episode_ends"), mode="r+")
    ends[1] = 5  # not after episode 0's end: episodes 1-3 are no longer committed
    s = EpisodeStore(store)
    assert len(s) == 1
    assert_loads_exactly(s, [0])
    report = verify(store)
    assert not report.ok and any("commit marker is damaged at episode 1" in e for e in report.errors)
    with pytest.raises(CorruptStoreError, match="not truncating"):
        recover(store)  # the rows of episodes 1-3 are kept for a repair
    assert zarr.open_array(str(store / "data" / "action"), mode="r").shape[0] == int(starts(4)[-1])
    with pytest.raises(CorruptStoreError, match="not truncating"):
        EpisodeWriter(store)  # a writer recovers on open: same refusal


def test_damaged_stats_cache_is_recomputed(store):
    fresh = EpisodeStore(store).stats()
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["stats"]["keys"]["action"]["mean"] = ["not", "numbers"]
    (store / "zarr.json").write_text(json.dumps(meta))
    stats = EpisodeStore(store).stats()
    np.testing.assert_allclose(stats["action"]["mean"], fresh["action"]["mean"], rtol=1e-6)
    meta["attributes"]["stats"] = [1, 2]
    (store / "zarr.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(EpisodeStore(store).stats()["action"]["std"], fresh["action"]["std"], rtol=1e-6)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("chunk_shape", [0, 7], r"key 'action'.*chunk shape \(0, 7\)"),
        ("chunk_shape", [16, 3], r"key 'action'.*chunked along time only"),
        ("shape", [-1, 7], r"key 'action'"),
        ("shape", [155, 8], r"key 'action'"),
    ],
)
def test_impossible_array_metadata(store, field, value, match):
    path = store / "data" / "action" / "zarr.json"
    meta = json.loads(path.read_text())
    if field == "chunk_shape":
        meta["chunk_grid"]["configuration"]["chunk_shape"] = value
    else:
        meta[field] = value
    path.write_text(json.dumps(meta))
    with fails_fast(match):
        EpisodeStore(store)
