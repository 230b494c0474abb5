"""LeRobotDataset v3 export/import through the real lerobot library (offline)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download: every dataset here is local

pytest.importorskip("lerobot", reason="needs pip install 'robot-rl[lerobot]'")  # installed in the dev env

from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

from robot_rl.cli import main  # noqa: E402
from robot_rl.data import EpisodeStore, EpisodeWriter, KeySpec, StoreSchema  # noqa: E402
from robot_rl.interop.lerobot import LeRobotFormatError, export_lerobot, import_lerobot  # noqa: E402

IMG = (32, 32, 3)
LENGTHS = (6, 11, 8)
TASKS = ("lift the cube", "stack", None)
SUCCESS = (True, False, None)


def _frames(n: int, seed: int) -> np.ndarray:
    """Smooth frames (video-codec friendly): gradients that drift over time."""
    yy, xx = np.mgrid[0 : IMG[0], 0 : IMG[1]]
    out = np.empty((n, *IMG), np.uint8)
    for t in range(n):
        for c in range(3):
            out[t, :, :, c] = 30 + 5 * seed + 2 * xx + 2 * yy + 3 * t + 20 * c  # 30..244, no wrap
    return out


def _episode(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    n = LENGTHS[i]
    return {
        "obs.joint_pos": rng.normal(size=(n, 3)).astype(np.float32),
        "obs.gripper": rng.uniform(0, 0.08, n),  # float64 scalar: exported exactly on its own too
        "obs.image.wrist": _frames(n, i),
        "action": rng.normal(size=(n, 4)).astype(np.float32),
        "reward": rng.uniform(size=n).astype(np.float32),
        "done": np.arange(n) == n - 1,
        "timestamp": 100.0 + 0.1 * np.arange(n) + rng.uniform(0, 0.01, n),  # jittered real clock
        "intervention": rng.integers(0, 2, n).astype(bool),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("lr") / "src.zarr"
    schema = StoreSchema.build(
        obs={
            "joint_pos": KeySpec((3,), "float32", "rad", names=("shoulder", "elbow", "wrist")),
            "gripper": KeySpec((), "float64", "m"),
            "image.wrist": KeySpec(IMG, "uint8"),
        },
        action=KeySpec((4,), "float32", "rad"),
        fps=10.0,
        extras={"intervention": KeySpec((), "bool")},
        robot={"name": "test_arm", "dof": 3},
    )
    with EpisodeWriter(path, schema, defaults={"source": "teleop", "operator": "ana"}) as w:
        for i in range(len(LENGTHS)):
            ep = _episode(i)
            for t in range(LENGTHS[i]):
                w.add_step_dict({k: v[t] for k, v in ep.items()})
            w.end_episode(success=SUCCESS[i], task=TASKS[i], tags=["x"] if i else [])
    return path


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("lr") / "ds_video"
    summary = export_lerobot(store, out, repo_id="test/arm", videos=True, progress=False)
    return out, summary


def _assert_same_store(a: EpisodeStore, b: EpisodeStore, exact_images: bool) -> None:
    assert b.schema == a.schema
    np.testing.assert_array_equal(b.episode_lengths, a.episode_lengths)
    for e in range(len(a)):
        ea, eb = a.episode(e), b.episode(e)
        for key, spec in a.schema.keys.items():
            assert eb[key].dtype == ea[key].dtype and eb[key].shape == ea[key].shape, key
            if spec.is_image and not exact_images:
                err = np.abs(eb[key].astype(np.int16) - ea[key].astype(np.int16)).mean()
                assert err < 6.0, f"episode {e} {key}: mean abs error {err:.2f} (video is lossy, but not this lossy)"
            else:
                np.testing.assert_array_equal(eb[key], ea[key], err_msg=f"episode {e} key {key}")
        ra, rb = a.record(e), b.record(e)
        for field in ("source", "success", "task", "operator", "tags", "fps", "start_time", "length"):
            assert rb.get(field) == ra.get(field), (e, field)


def test_export_loads_in_lerobot(store, exported) -> None:
    out, summary = exported
    src = EpisodeStore(store)
    assert summary.episodes == 3 and summary.steps == sum(LENGTHS)
    ds = LeRobotDataset("test/arm", root=out)
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3 and ds.fps == 10
    assert ds.meta.robot_type == "test_arm"
    feats = ds.features
    assert feats["observation.state"]["names"] == ["joint_pos.shoulder", "joint_pos.elbow", "joint_pos.wrist", "gripper"]
    assert feats["observation.images.wrist"]["dtype"] == "video"
    assert feats["observation.gripper"]["dtype"] == "float64"
    assert {"action", "next.reward", "next.done", "intervention"} <= set(feats)
    for e in range(3):
        ep = ds.meta.episodes[e]
        start, end = src.bounds(e)
        assert (ep["dataset_from_index"], ep["dataset_to_index"]) == (start, end)
    assert ds.meta.stats["action"]["mean"].shape == (4,)
    k = src.bounds(1)[0] + 4  # episode 1, step 4
    item = ds[k]
    row = _episode(1)
    np.testing.assert_array_equal(item["action"].numpy(), row["action"][4])
    np.testing.assert_allclose(item["observation.state"].numpy(), np.r_[row["obs.joint_pos"][4], row["obs.gripper"][4]], rtol=1e-6)
    assert item["task"] == TASKS[1]
    assert abs(float(item["timestamp"]) - 0.4) < 1e-6  # LeRobot's clock: frame_index / fps
    image = item["observation.images.wrist"]  # float CHW in [0, 1]
    assert tuple(image.shape) == (3, 32, 32) and float(image.max()) <= 1.0
    err = np.abs(image.numpy().transpose(1, 2, 0) * 255 - row["obs.image.wrist"][4]).mean()
    assert err < 6.0
    assert ds[0]["task"] == TASKS[0] and ds[src.bounds(2)[0]]["task"] == ""  # no task -> ""


def test_round_trip_video(store, exported, tmp_path) -> None:
    out, _ = exported
    summary = import_lerobot(out, tmp_path / "back.zarr", progress=False)
    assert summary.episodes == 3 and summary.steps == sum(LENGTHS)
    _assert_same_store(EpisodeStore(store), EpisodeStore(tmp_path / "back.zarr"), exact_images=False)


def test_round_trip_images_exact_via_cli(store, tmp_path, capsys) -> None:
    out = tmp_path / "ds_png"
    assert main(["data", "export", "--to", "lerobot", str(store), str(out), "--no-videos", "--no-progress"]) == 0
    assert LeRobotDataset("local/ds_png", root=out).features["observation.images.wrist"]["dtype"] == "image"
    back = tmp_path / "back.zarr"
    assert main(["data", "import", "--from", "lerobot", str(out), str(back), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "3 episodes, 25 steps" in text and "obs.image.wrist" in text  # the summary table
    _assert_same_store(EpisodeStore(store), EpisodeStore(back), exact_images=True)
    assert main(["data", "import", "--from", "lerobot", str(out), str(back), "--no-progress"]) == 2  # exists


def test_generic_import_when_meta_was_edited(store, exported, tmp_path) -> None:
    """Without a matching meta/robot_rl.json the generic mapping applies (observation.state -> obs.state)."""
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    block = json.loads((out / "meta/robot_rl.json").read_text())
    block["episode_lengths"] = [1, 2, 3]
    (out / "meta/robot_rl.json").write_text(json.dumps(block))
    summary = import_lerobot(out, tmp_path / "g.zarr", progress=False)
    assert any("does not match" in n for n in summary.notes)
    g = EpisodeStore(tmp_path / "g.zarr")
    assert {"obs.state", "obs.gripper", "obs.image.wrist", "action", "reward", "done", "timestamp", "intervention"} == set(g.keys)
    src = EpisodeStore(store).episode(2)
    ep = g.episode(2)
    np.testing.assert_array_equal(ep["obs.state"][:, :3], src["obs.joint_pos"])
    np.testing.assert_array_equal(ep["obs.gripper"][:, 0], src["obs.gripper"])  # LeRobot has no scalars: (1,)
    np.testing.assert_array_equal(ep["reward"], src["reward"])
    np.testing.assert_array_equal(ep["timestamp"], src["timestamp"])  # robot_rl.timestamp is the recorded clock
    assert g.record(1)["task"] == TASKS[1] and g.record(1)["source"] == "teleop"


def test_import_dataset_made_by_lerobot(tmp_path) -> None:
    """A dataset written with LeRobotDataset.create directly (not by our exporter) imports."""
    root = tmp_path / "native"
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
        "observation.images.top": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "vy"]},
    }
    ds = LeRobotDataset.create("me/native", fps=15, features=features, root=root, robot_type="koch", use_videos=False)
    rng = np.random.default_rng(7)
    written = []
    for e, (n, task) in enumerate([(4, "push"), (7, "pull")]):
        rows = {
            "observation.state": rng.normal(size=(n, 2)).astype(np.float32),
            "observation.images.top": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
            "action": rng.normal(size=(n, 2)).astype(np.float32),
        }
        for t in range(n):
            ds.add_frame({**{k: v[t] for k, v in rows.items()}, "task": task})
        ds.save_episode()
        written.append((rows, task))
    ds.finalize()
    summary = import_lerobot(root, tmp_path / "n.zarr", progress=False)
    assert any("next.reward" in n for n in summary.notes)
    st = EpisodeStore(tmp_path / "n.zarr")
    assert st.schema.fps == 15 and st.schema.robot == {"name": "koch"}
    assert st.schema.keys["obs.state"].names == ("x", "y")
    assert st.schema.keys["obs.image.top"] == KeySpec((16, 16, 3), "uint8")
    np.testing.assert_array_equal(st.episode_lengths, [4, 7])
    for e, (rows, task) in enumerate(written):
        ep = st.episode(e)
        np.testing.assert_array_equal(ep["obs.state"], rows["observation.state"])
        np.testing.assert_array_equal(ep["obs.image.top"], rows["observation.images.top"])
        np.testing.assert_array_equal(ep["action"], rows["action"])
        assert not ep["done"].any() and not ep["reward"].any()
        np.testing.assert_allclose(ep["timestamp"], np.arange(len(rows["action"])) / 15, atol=1e-6)
        assert st.record(e)["task"] == task and st.record(e)["lerobot_episode_index"] == e


def test_bad_inputs_name_the_problem(store, exported, tmp_path) -> None:
    with pytest.raises(LeRobotFormatError, match="info.json is missing"):
        import_lerobot(tmp_path / "nothing", tmp_path / "a.zarr", progress=False)
    old = tmp_path / "old"
    shutil.copytree(exported[0], old)
    info = json.loads((old / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (old / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotFormatError, match=r"v2\.1, not v3.*convert"):
        import_lerobot(old, tmp_path / "b.zarr", progress=False)
    with pytest.raises(FileExistsError, match="exists"):
        export_lerobot(store, exported[0], progress=False)
    from robot_rl.interop.lerobot import _generic_plan

    features = {
        "observation.state": {"dtype": "float32", "shape": (2,)},
        "action": {"dtype": "float32", "shape": (2,)},
        "language_instruction": {"dtype": "string", "shape": (1,)},
    }
    with pytest.raises(LeRobotFormatError, match="'language_instruction' has dtype 'string'.*--skip language_instruction"):
        _generic_plan(features, 10.0, None, set())
    schema, _, _ = _generic_plan(features, 10.0, None, {"language_instruction"})
    assert "language_instruction" not in schema.keys
    del features["action"]
    with pytest.raises(LeRobotFormatError, match="no 'action' feature"):
        _generic_plan(features, 10.0, None, {"language_instruction"})
