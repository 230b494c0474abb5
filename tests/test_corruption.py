"""Missing or corrupt chunks raise errors naming episode, key and chunk; nothing is
zero-filled; the other episodes still load; `verify` fails loudly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from robot_rl.data import CorruptStoreError, EpisodeStore
from robot_rl.data.verify import verify
from store_fixtures import episode_data, episode_length, write_store


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
