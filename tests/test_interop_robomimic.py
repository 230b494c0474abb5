"""robomimic HDF5 import: a robomimic-layout file written here with real h5py -> store -> train BC."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.data import EpisodeStore
from robot_rl.interop.robomimic import RobomimicFormatError, import_robomimic

# demo index -> length; written in shuffled order so the import must sort by index (2 before 10)
DEMOS = {10: 7, 2: 5, 3: 9}
MASKS = {"train": ["demo_2", "demo_10"], "valid": ["demo_3"]}


def _demo(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    n = DEMOS[i]
    rewards = np.zeros(n)
    dones = np.zeros(n, dtype=np.int64)
    if i != 3:  # demo_3 never succeeds
        rewards[-1], dones[-1] = 1.0, 1
    return {
        "obs/robot0_eef_pos": rng.normal(size=(n, 3)),  # float64, as robomimic writes it
        "obs/object": rng.normal(size=(n, 5)).astype(np.float32),
        "obs/agentview_image": rng.integers(0, 256, (n, 12, 16, 3), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (n, 4)),
        "rewards": rewards,
        "dones": dones,
        "states": rng.normal(size=(n, 6)),
    }


def write_robomimic(path, demos=DEMOS, drop: str | None = None) -> None:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = sum(demos.values())
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "has_renderer": False}})
        for i in demos:
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = demos[i]
            for name, value in _demo(i).items():
                if name != drop:
                    g.create_dataset(name, data=value)
        mask = f.create_group("mask")
        for name, members in MASKS.items():
            mask.create_dataset(name, data=np.array(members, dtype="S"))


def test_import_then_train(tmp_path, capsys) -> None:
    src = tmp_path / "lift.hdf5"
    write_robomimic(src)
    store_path = tmp_path / "lift.zarr"
    assert main(["data", "import", "--from", "robomimic", str(src), str(store_path), "--states", "--no-progress"]) == 0
    assert "3 episodes, 21 steps" in capsys.readouterr().out
    store = EpisodeStore(store_path)
    assert set(store.keys) == {
        "obs.robot0_eef_pos", "obs.object", "obs.image.agentview", "action", "reward", "done", "timestamp", "sim_state",
    }  # fmt: skip
    assert store.schema.fps == 20.0 and store.schema.robot["name"] == "Lift"
    assert store.schema.keys["obs.image.agentview"].is_image
    assert store.schema.keys["obs.robot0_eef_pos"].dtype == "float64"
    np.testing.assert_array_equal(store.episode_lengths, [DEMOS[2], DEMOS[3], DEMOS[10]])
    for e, i in enumerate((2, 3, 10)):
        ep, raw = store.episode(e), _demo(i)
        np.testing.assert_array_equal(ep["obs.robot0_eef_pos"], raw["obs/robot0_eef_pos"])
        np.testing.assert_array_equal(ep["obs.object"], raw["obs/object"])
        np.testing.assert_array_equal(ep["obs.image.agentview"], raw["obs/agentview_image"])
        np.testing.assert_array_equal(ep["action"], raw["actions"].astype(np.float64))
        np.testing.assert_array_equal(ep["reward"], raw["rewards"].astype(np.float32))
        np.testing.assert_array_equal(ep["done"], raw["dones"].astype(bool))
        np.testing.assert_array_equal(ep["sim_state"], raw["states"])
        np.testing.assert_allclose(ep["timestamp"], np.arange(DEMOS[i]) / 20.0)
        record = store.record(e)
        assert record["robomimic_demo"] == f"demo_{i}" and record["task"] == "Lift" and record["source"] == "teleop"
        assert record["success"] is (i != 3)
    assert store.record(0)["tags"] == ["train"] and store.record(1)["tags"] == ["valid"]
    assert store.filter(tag="train").tolist() == [0, 2] and store.filter(tag="valid").tolist() == [1]
    assert store.filter(tag="train", success=True).tolist() == [0, 2]

    run = tmp_path / "bc"
    args = ["train", "--algo", "bc", "--data", str(store_path), "--steps", "5", "--out", str(run), "--log-every", "1"]
    args += ["--obs-keys", "robot0_eef_pos", "object", "--no-tensorboard"]
    assert main(args) == 0
    assert (run / "checkpoint" / "model.safetensors").is_file() and (run / "checkpoint" / "config.json").is_file()


def test_filter_key_and_obs_keys(tmp_path) -> None:
    src = tmp_path / "lift.hdf5"
    write_robomimic(src)
    summary = import_robomimic(src, tmp_path / "valid.zarr", obs_keys=["object"], filter_key="valid", fps=10, progress=False)
    assert summary.episodes == 1 and summary.steps == DEMOS[3]
    store = EpisodeStore(tmp_path / "valid.zarr")
    assert set(store.keys) == {"obs.object", "action", "reward", "done", "timestamp"}
    assert store.schema.fps == 10.0 and store.record(0)["robomimic_demo"] == "demo_3"
    with pytest.raises(RobomimicFormatError, match=r"no filter mask/test \(filters: \['train', 'valid'\]\)"):
        import_robomimic(src, tmp_path / "t.zarr", filter_key="test", progress=False)


def test_malformed_files_name_the_problem(tmp_path) -> None:
    no_actions = tmp_path / "no_actions.hdf5"
    write_robomimic(no_actions, drop="actions")
    with pytest.raises(RobomimicFormatError, match="demo_2 has no 'actions' dataset"):
        import_robomimic(no_actions, tmp_path / "a.zarr", progress=False)
    missing_obs = tmp_path / "missing_obs.hdf5"
    write_robomimic(missing_obs)
    with h5py.File(missing_obs, "a") as f:
        del f["data/demo_10/obs/object"]
    with pytest.raises(RobomimicFormatError, match="demo_10 has no 'object' dataset"):
        import_robomimic(missing_obs, tmp_path / "b.zarr", progress=False)
    short = tmp_path / "short.hdf5"
    write_robomimic(short)
    with h5py.File(short, "a") as f:
        del f["data/demo_3/rewards"]
        f["data/demo_3"].create_dataset("rewards", data=np.zeros(2))
    with pytest.raises(RobomimicFormatError, match="demo_3: 'reward' has 2 steps but actions has 9"):
        import_robomimic(short, tmp_path / "c.zarr", progress=False)
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(RobomimicFormatError, match="no 'data' group"):
        import_robomimic(other, tmp_path / "d.zarr", progress=False)
    not_hdf5 = tmp_path / "text.hdf5"
    not_hdf5.write_text("hello")
    assert main(["data", "import", "--from", "robomimic", str(not_hdf5), str(tmp_path / "e.zarr"), "--no-progress"]) == 2
