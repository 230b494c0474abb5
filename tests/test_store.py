from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from robot_rl.data import (
    EpisodeStore,
    EpisodeWriter,
    SchemaError,
    StoreError,
    StoreLockedError,
)
from store_fixtures import episode_data, episode_length, small_schema, write_episode, write_store


def assert_episode_equal(store: EpisodeStore, i: int, image: bool = True) -> None:
    got = store.episode(i)
    want = episode_data(i, image)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == store.schema.keys[key].np_dtype
        np.testing.assert_array_equal(got[key], want[key].astype(store.schema.keys[key].np_dtype), err_msg=key)


def test_roundtrip_episodes_records_and_layout(store_path):
    write_store(store_path, 5, flush_every=7)
    store = EpisodeStore(store_path)
    assert len(store) == 5
    assert list(store.episode_lengths) == [episode_length(i) for i in range(5)]
    for i in range(5):
        assert_episode_equal(store, i)
    rec = store.record(1)
    assert rec["source"] == "teleop" and rec["task"] == "lift" and rec["success"] is True
    assert rec["length"] == episode_length(1) and rec["status"] == "ok" and rec["robot"] == "test_arm"
    assert rec["fps"] == 20.0 and rec["start_time"]
    # the zarr layout of DESIGN.md
    root = zarr.open_group(str(store_path), mode="r")
    assert root["meta/episode_ends"].dtype == np.int64
    np.testing.assert_array_equal(root["meta/episode_ends"][:], np.cumsum([episode_length(i) for i in range(5)]))
    assert json.loads(str(root["meta/episodes"][2]))["task"] == "stack"
    assert root.attrs["robot_rl"]["keys"]["obs.joint_pos"]["units"] == "rad"
    assert root.attrs["robot_rl"]["keys"]["obs.joint_pos"]["names"][0] == "j0"


def test_images_are_chunked_per_frame_and_compressed_numeric_along_time(store_path):
    write_store(store_path, 2)
    root = zarr.open_group(str(store_path), mode="r")
    img, q = root["data/obs.image.wrist"], root["data/obs.joint_pos"]
    assert img.chunks == (1, 24, 32, 3)
    assert q.chunks[0] > 1 and q.chunks[1:] == (7,)
    for arr in (img, q):
        names = [c.to_dict()["name"] for c in arr.metadata.codecs]
        assert "blosc" in names and "crc32c" in names
    # one chunk file per frame
    n = episode_length(0) + episode_length(1)
    assert len(list((store_path / "data" / "obs.image.wrist" / "c").iterdir())) == n


def test_filter_by_success_source_task(store_path):
    with EpisodeWriter(store_path, small_schema(False), defaults={"source": "teleop"}) as w:
        for i in range(6):
            write_episode(w, i, image=False, source="scripted" if i >= 4 else "teleop")
    store = EpisodeStore(store_path)
    assert list(store.filter(success=True)) == [1, 2, 4, 5]
    assert list(store.filter(source="scripted")) == [4, 5]
    assert list(store.filter(task="lift", success=True)) == [1, 5]
    assert list(store.filter(source=["teleop", "scripted"], success=False)) == [0, 3]


def test_discard_and_append_after_reopen(store_path):
    with EpisodeWriter(store_path, small_schema(), defaults={"source": "teleop"}, flush_every=5) as w:
        write_episode(w, 0)
        for t in range(12):  # flushed twice, then discarded
            data = episode_data(7)
            w.add_step_dict({k: v[t] for k, v in data.items()})
        assert w.discard_episode() == 12
        write_episode(w, 1)
    with EpisodeWriter(store_path, defaults={"source": "teleop"}) as w:
        assert w.num_episodes == 2
        write_episode(w, 2)
    store = EpisodeStore(store_path)
    assert len(store) == 3 and store.uncommitted_rows == 0
    for i in range(3):
        assert_episode_equal(store, i)


def test_bad_step_raises_and_loses_nothing(store_path):
    w = EpisodeWriter(store_path, small_schema(), defaults={"source": "teleop"}, flush_every=4)
    write_episode(w, 0)
    data = episode_data(1)
    steps = [{k: v[t] for k, v in data.items()} for t in range(len(data["action"]))]
    for t, step in enumerate(steps):
        w.add_step_dict(step)
        if t == 5:
            bad = dict(step, action=np.full(7, np.nan))
            with pytest.raises(SchemaError, match="key 'action': non-finite"):
                w.add_step_dict(bad)
            with pytest.raises(SchemaError, match="key 'obs.joint_pos': got shape"):
                w.add_step_dict(dict(step, **{"obs.joint_pos": np.zeros(6)}))
            with pytest.raises(SchemaError, match="goes backwards"):
                w.add_step_dict(dict(step, timestamp=0.0))
    with pytest.raises(SchemaError, match="source"):
        w.end_episode(source="alien")
    w.end_episode({"success": True})  # the episode survived the bad steps and bad metadata
    w.close()
    store = EpisodeStore(store_path)
    assert len(store) == 2
    assert_episode_equal(store, 0)
    assert_episode_equal(store, 1)


def test_end_episode_errors(store_path):
    with EpisodeWriter(store_path, small_schema(False), defaults={"source": "teleop"}) as w:
        with pytest.raises(SchemaError, match="no steps"):
            w.end_episode()
        data = episode_data(0, image=False)
        w.add_step_dict({k: v[0] for k, v in data.items()})
        with pytest.raises(SchemaError, match="JSON"):
            w.end_episode(extra=object())
        with pytest.raises(SchemaError, match="success"):
            w.end_episode(success="yes")
        assert w.end_episode(success=False) == 0


def test_writer_requires_source(store_path):
    with EpisodeWriter(store_path, small_schema(False)) as w:
        data = episode_data(0, image=False)
        w.add_step_dict({k: v[0] for k, v in data.items()})
        with pytest.raises(SchemaError, match="no source"):
            w.end_episode()
        w.end_episode(source="scripted")


def test_one_writer_at_a_time_readers_any_time(store_path):
    w = EpisodeWriter(store_path, small_schema(False), defaults={"source": "teleop"})
    write_episode(w, 0, image=False)
    with pytest.raises(StoreLockedError, match="another process"):
        EpisodeWriter(store_path)
    assert len(EpisodeStore(store_path)) == 1
    w.close()
    EpisodeWriter(store_path).close()  # lock released on close


def test_schema_mismatch_on_append(store_path):
    write_store(store_path, 1, image=False)
    with pytest.raises(SchemaError, match="different schema"):
        EpisodeWriter(store_path, small_schema(image=True))


def test_refuses_non_store_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("hi")
    with pytest.raises(StoreError, match="not an episode store"):
        EpisodeWriter(tmp_path / "x", small_schema())
    with pytest.raises(SchemaError, match="pass a StoreSchema"):
        EpisodeWriter(tmp_path / "y")


def test_stats_cached_and_recomputed_when_episodes_are_added(store_path):
    write_store(store_path, 3, image=True)
    root = zarr.open_group(str(store_path), mode="r")
    cached = root.attrs["stats"]
    store = EpisodeStore(store_path)
    assert cached["fingerprint"] == store.fingerprint()
    all_q = np.concatenate([episode_data(i)["obs.joint_pos"] for i in range(3)])
    stats = store.stats()
    np.testing.assert_allclose(stats["obs.joint_pos"]["mean"], all_q.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["obs.joint_pos"]["q99"], np.quantile(all_q, 0.99, axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["obs.joint_pos"]["min"], all_q.min(0))
    assert stats["obs.image.wrist"]["mean"].shape == (3,)
    old_fp = store.fingerprint()
    with EpisodeWriter(store_path, defaults={"source": "teleop"}) as w:
        write_episode(w, 3)
    store = EpisodeStore(store_path)
    assert store.fingerprint() != old_fp
    all_q = np.concatenate([episode_data(i)["obs.joint_pos"] for i in range(4)])
    np.testing.assert_allclose(store.stats()["obs.joint_pos"]["mean"], all_q.mean(0), rtol=1e-5)
    assert zarr.open_group(str(store_path), mode="r").attrs["stats"]["fingerprint"] == store.fingerprint()


def test_episode_index_errors(store_path):
    write_store(store_path, 2, image=False)
    store = EpisodeStore(store_path)
    with pytest.raises(IndexError, match="2 committed episodes"):
        store.episode(2)
    np.testing.assert_array_equal(store.episode(-1)["action"], episode_data(1, False)["action"])
    with pytest.raises(KeyError, match="unknown key"):
        store.episode(0, keys=["obs.nope"])


def test_all_zero_data_is_written_not_skipped(store_path):
    """zarr skips all-fill chunks by default; the store must write them (missing != zero)."""
    with EpisodeWriter(store_path, small_schema(), defaults={"source": "teleop"}) as w:
        for t in range(3):
            w.add_step({"joint_pos": np.zeros(7), "image.wrist": np.zeros((24, 32, 3), np.uint8)}, np.zeros(7), timestamp=t)
        w.end_episode()
    store = EpisodeStore(store_path)
    ep = store.episode(0)
    assert not ep["obs.image.wrist"].any() and not ep["reward"].any()
    assert len(list((store_path / "data" / "obs.image.wrist" / "c").iterdir())) == 3


def test_random_access_sample_and_verify_method(store_path):
    write_store(store_path, 3)
    store = EpisodeStore(store_path)
    start1, end1 = store.bounds(1)
    idx = np.array([0, end1 - 2, start1, store.n_steps - 1])
    out = store.sample(idx, horizon=3)
    want = np.concatenate([episode_data(i)["action"] for i in range(3)])
    assert out["action"].shape == (4, 3, 7) and out["obs.image.wrist"].shape == (4, 3, 24, 32, 3)
    np.testing.assert_array_equal(out["action"][0], want[0:3])
    np.testing.assert_array_equal(out["action"][1], want[[end1 - 2, end1 - 1, end1 - 1]])  # padded at the end
    np.testing.assert_array_equal(out["is_pad"][1], [False, False, True])
    np.testing.assert_array_equal(out["action"][3], want[[-1, -1, -1]])
    with pytest.raises(IndexError):
        store.sample([store.n_steps])
    assert store.verify().ok
