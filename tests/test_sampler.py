from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data import EpisodeStore, EpisodeWriter, KeySpec, StoreSchema
from robot_rl.data.sampler import TransitionSampler, WindowSampler, load_episodes
from store_fixtures import episode_data, episode_length, write_store


def counting_store(path, lengths, done_last=(True,)):
    """obs.x[t] = action[t] = 100 * episode + t, so every sampled value names its row."""
    schema = StoreSchema.build(obs={"x": KeySpec((1,), "float32")}, action=KeySpec((1,), "float32"), fps=10)
    with EpisodeWriter(path, schema, defaults={"source": "scripted"}) as w:
        for e, n in enumerate(lengths):
            for t in range(n):
                v = np.array([100 * e + t], np.float32)
                w.add_step({"x": v}, v, reward=float(t), done=(t == n - 1) and done_last[e % len(done_last)], timestamp=t)
            w.end_episode()
    return EpisodeStore(path)


def test_windows_pad_like_diffusion_policy(store_path):
    store = counting_store(store_path, [5, 3])
    data = load_episodes(store)
    s = WindowSampler(data, horizon=4, obs_horizon=2, action_horizon=2)
    # pad_before=1, pad_after=1: windows per episode = L - 4 + 1 + 1 + 1
    assert len(s) == (5 - 1) + (3 - 1)
    batch = s.get(np.arange(len(s)))
    first = batch["action"][0, :, 0]
    np.testing.assert_array_equal(first, [0, 0, 1, 2])  # starts one step before episode 0: edge repeated
    np.testing.assert_array_equal(batch["is_pad"][0], [True, False, False, False])
    last0 = batch["action"][3, :, 0]
    np.testing.assert_array_equal(last0, [2, 3, 4, 4])  # runs one step past the end
    np.testing.assert_array_equal(batch["is_pad"][3], [False, False, False, True])
    np.testing.assert_array_equal(batch["obs.x"][4, :, 0], [100, 100])  # episode 1, obs horizon 2
    assert batch["obs.x"].shape == (6, 2, 1) and batch["action"].shape == (6, 4, 1)
    np.testing.assert_array_equal(batch["episode"], [0, 0, 0, 0, 1, 1])
    # windows never mix episodes
    assert np.all((batch["action"][:, :, 0] // 100) == batch["episode"][:, None])


def test_windows_skip_short_episodes_and_select_episodes(store_path):
    store = counting_store(store_path, [2, 8, 6])
    s = WindowSampler(load_episodes(store), horizon=8)
    assert len(s) == 1 and s.skipped_episodes == 2
    sub = load_episodes(store, episodes=[2])
    s = WindowSampler(sub, horizon=3)
    assert len(s) == 4
    assert np.all(s.get(np.arange(4))["action"] // 100 == 2)
    with pytest.raises(ValueError, match="no windows"):
        WindowSampler(load_episodes(store, episodes=[0]), horizon=8).sample(4, np.random.default_rng(0))


def test_transitions_next_obs_and_terminal_convention(store_path):
    store = counting_store(store_path, [4, 3], done_last=(True, False))
    data = load_episodes(store)
    s = TransitionSampler(data)
    # episode 1 ended without done: its last step has no next obs and is dropped
    assert len(s) == 4 + 2
    b = s.get(np.arange(len(s)))
    np.testing.assert_array_equal(b["obs.x"][:, 0], [0, 1, 2, 3, 100, 101])
    np.testing.assert_array_equal(b["next_obs.x"][:, 0], [1, 2, 3, 3, 101, 102])
    np.testing.assert_array_equal(b["done"], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(b["reward"], [0, 1, 2, 3, 0, 1])
    keep_all = TransitionSampler(data, drop_truncated_last=False)
    assert len(keep_all) == 7
    batch = keep_all.sample(32, np.random.default_rng(0))
    assert batch["obs.x"].shape == (32, 1) and batch["done"].dtype == np.float32


def test_image_memmap_cache_is_built_once_and_matches(store_path, tmp_path):
    write_store(store_path, 3)
    store = EpisodeStore(store_path)
    cache = tmp_path / "cache"
    a = load_episodes(store, image_cache="memmap", cache_dir=cache)
    img = a.data["obs.image.wrist"]
    assert isinstance(img, np.memmap)
    want = np.concatenate([episode_data(i)["obs.image.wrist"] for i in range(3)])
    np.testing.assert_array_equal(np.asarray(img), want)
    files = list(cache.rglob("*.npy"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    b = load_episodes(store, image_cache="memmap", cache_dir=cache)
    assert files[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    np.testing.assert_array_equal(np.asarray(b.data["obs.image.wrist"]), want)
    m = load_episodes(store, image_cache="memory", episodes=[1])
    np.testing.assert_array_equal(m.data["obs.image.wrist"], episode_data(1)["obs.image.wrist"])
    s = WindowSampler(a, horizon=6, obs_horizon=2, action_horizon=4)
    batch = s.sample(16, np.random.default_rng(1))
    assert batch["obs.image.wrist"].shape == (16, 2, 24, 32, 3)
    assert batch["action"].shape == (16, 6, 7)
    assert len(s) == sum(episode_length(i) - 6 + 1 + 3 + 1 for i in range(3))


def test_load_errors(store_path):
    write_store(store_path, 2, image=False)
    store = EpisodeStore(store_path)
    with pytest.raises(KeyError, match="unknown key"):
        load_episodes(store, keys=["obs.nope"])
    with pytest.raises(IndexError, match="out of range"):
        load_episodes(store, episodes=[5])
    with pytest.raises(KeyError, match="was not loaded"):
        WindowSampler(load_episodes(store, keys=["action"]), horizon=2, obs_keys=["obs.joint_pos"])
