"""Training runs end to end: the CLI, logs, resume, determinism, evaluation, relabelling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from robot_rl.algos import LearnerSpec, OfflineData, make_learner
from robot_rl.algos.trainer import fit
from robot_rl.cli import main
from robot_rl.data import EpisodeStore, EpisodeWriter
from robot_rl.data.errors import StoreError, StoreLockedError
from robot_rl.data.relabel import read_rewards, relabel_success, success_rewards, write_rewards
from store_fixtures import write_episode, write_store


@pytest.fixture(scope="module")
def mock_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "mock.zarr"
    assert main(["sim", "collect", "--task", "mock_arm", "--episodes", "6", "--noise", "0.0", "0.5", "--out", str(path)]) == 0
    return path


def test_success_rewards_terminal_convention():
    ends = np.array([3, 5, 9])
    success = np.array([True, False, True])
    done = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0], bool)  # episode 1 failed with a reported terminal (a collision)
    reward, out = success_rewards(ends, success, done)
    assert reward.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert out.tolist() == [0, 0, 1, 0, 1, 0, 0, 0, 1]
    # a failed episode stopped by the operator (no done) stays a truncation: nothing terminal
    r2, d2 = success_rewards(np.array([4]), np.array([False]), np.zeros(4, bool))
    assert r2.sum() == 0 and not d2.any()


def test_relabel_writes_rewards_that_go_stale_when_episodes_are_appended(tmp_path, capsys):
    path = tmp_path / "s.zarr"
    write_store(path, 4, image=False)
    assert main(["data", "relabel", str(path), "--name", "sparse"]) == 0
    store = EpisodeStore(path)
    reward, done = read_rewards(store, "sparse")
    expected = relabel_success(store)
    assert np.array_equal(reward, expected[0]) and np.array_equal(done, expected[1])
    assert reward.sum() == sum(r["success"] for r in store.records)
    assert main(["data", "verify", str(path)]) == 0  # the derived group does not upset verify
    with EpisodeWriter(path) as w:
        with pytest.raises(StoreLockedError):
            write_rewards(path, "other", reward, done)
        write_episode(w, 4, image=False, source="teleop")
    with pytest.raises(StoreError, match="re-run"):
        read_rewards(EpisodeStore(path), "sparse")
    with pytest.raises(ValueError, match="one reward and done per committed step"):
        write_rewards(path, "short", reward, done)
    assert main(["data", "relabel", str(path), "--name", "sparse"]) == 0
    assert read_rewards(EpisodeStore(path), "sparse")[0].size == EpisodeStore(path).n_steps
    capsys.readouterr()
    assert main(["train", "--algo", "iql", "--data", str(path), "--rewards", "missing", "--steps", "5"]) == 2
    assert "no relabelled rewards 'missing'" in capsys.readouterr().err


def test_resumed_training_continues_exactly(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path, 4, image=True)
    store = EpisodeStore(path)
    spec = LearnerSpec.from_schema(store.schema)
    data = OfflineData(store, spec, rewards="success")
    config = {"batch_size": 16, "hidden": [32], "image_channels": 4, "image_feature_dim": 8}

    def learner():
        return make_learner("td3bc", spec, data.normalizer, config, seed=3)

    straight = learner()
    fit(straight, data, tmp_path / "a", steps=12, seed=3, log_every=4, tensorboard=False, progress=False)
    first = learner()
    fit(first, data, tmp_path / "b", steps=6, seed=3, log_every=4, tensorboard=False, progress=False)
    resumed = learner()
    fit(resumed, data, tmp_path / "b", steps=12, seed=3, log_every=4, resume=True, tensorboard=False, progress=False)
    a, b = straight.state_dict(), resumed.state_dict()
    assert resumed.steps == 12
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [float(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "metrics.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # no duplicated rows after the resume


def test_train_cli_writes_logs_checkpoints_and_evaluates(mock_store, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--algo", "bc", "--data", str(mock_store), "--steps", "60", "--log-every", "20",
            "--eval-task", "mock_arm", "--eval-every", "30", "--eval-episodes", "2", "--out", str(run), "--set", "hidden=[32,32]"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "success (mock_arm, final)" in out and "updates/s" in out
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["step"] for r in rows if r.get("train/loss")] == ["20.0", "40.0", "60.0"]
    assert [r["step"] for r in rows if r.get("eval/success_rate")] == ["30.0", "60.0"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["algo"] == "bc" and config["step"] == 60 and config["learner_config"]["hidden"] == [32, 32]
    assert config["data"]["fingerprint"] == EpisodeStore(mock_store).fingerprint()
    assert config["spec"]["robot"]["name"] == "mock_arm" and (run / "best" / "model.safetensors").is_file()

    assert main(args) == 2  # refuses to overwrite a run
    assert "--resume" in capsys.readouterr().err
    assert main([*args[:6], "100", *args[7:], "--resume"]) == 0
    assert json.loads((run / "checkpoint" / "config.json").read_text())["step"] == 100

    assert main(["eval", str(run / "checkpoint"), "--episodes", "3", "--seed", "7"]) == 0
    result = json.loads((run / "checkpoint" / "eval" / "eval.json").read_text())
    assert result["episodes"] == 3 and result["task"] == "mock_arm" and result["algo"] == "bc"
    assert main(["eval", str(run / "checkpoint"), "--task", "mock_base", "--episodes", "1"]) == 2
    assert "does not match this robot" in capsys.readouterr().err


def test_same_seed_and_threads_give_the_same_weights(mock_store, tmp_path):
    def sha(seed, name):
        args = ["train", "--algo", "iql", "--data", str(mock_store), "--steps", "30", "--seed", str(seed),
                "--threads", "1", "--out", str(tmp_path / name), "--no-tensorboard"]  # fmt: skip
        assert main(args) == 0
        return json.loads((tmp_path / name / "checkpoint" / "config.json").read_text())["model_sha256"]

    assert sha(0, "a") == sha(0, "b") != sha(1, "c")


@pytest.mark.parametrize(
    ("algo", "settings"),
    [
        ("diffusion", ["down_dims=[16,32]", "action_horizon=4", "exec_horizon=2", "inference_steps=3"]),
        ("edp", ["hidden=[32,32]", "diffusion_steps=10", "inference_steps=3", "n_action_candidates=2"]),
        ("saq_cql", ["hidden=[32,32]", "vq_hidden=[32,32]", "vqvae_steps=10", "codebook_size=4"]),
    ],
)
def test_train_and_eval_the_diffusion_and_quantized_families(mock_store, tmp_path, algo, settings):
    run = tmp_path / algo
    args = ["train", "--algo", algo, "--data", str(mock_store), "--steps", "20", "--batch-size", "16", "--threads", "1",
            "--save-every", "10", "--out", str(run), "--no-tensorboard", "--set", *settings]  # fmt: skip
    assert main(args) == 0
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["algo"] == algo and config["step"] == 20
    if algo == "diffusion":
        assert config["horizons"] == {"obs": 1, "action": 4, "execute": 2}
    assert main([*args[:6], "30", *args[7:], "--resume"]) == 0  # resumes past SAQ's VQ phase, chunk data included
    assert main(["eval", str(run / "checkpoint"), "--episodes", "2", "--seed", "3"]) == 0
    result = json.loads((run / "checkpoint" / "eval" / "eval.json").read_text())
    assert result["episodes"] == 2 and result["algo"] == algo
