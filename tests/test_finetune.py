"""Offline-to-online fine-tuning without ROS: methods, sampling, the online store, interventions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from robot_rl.algos import OfflineData
from robot_rl.algos.checkpoint import load_checkpoint
from robot_rl.algos.finetune import FinetuneConfig, Finetuner, build_learner
from robot_rl.cli import main
from robot_rl.data import EpisodeStore

ENSEMBLE = ["n_critics=4", "critic_layer_norm=true", "hidden=[64,64]"]


@pytest.fixture(scope="module")
def cql_checkpoint(tmp_path_factory):
    """CQL with a LayerNorm 4-critic ensemble on mixed-quality mock-arm data."""
    root = tmp_path_factory.mktemp("finetune")
    store = root / "mock.zarr"
    assert main(["sim", "collect", "--task", "mock_arm", "--episodes", "8", "--noise", "0.0", "0.8", "--out", str(store)]) == 0
    args = ["train", "--algo", "cql", "--data", str(store), "--out", str(root / "cql"), "--steps", "150", "--batch-size", "64",
            "--save-every", "0", "--log-every", "50", "--no-tensorboard", "--threads", "1"]  # fmt: skip
    assert main(args + [a for s in ENSEMBLE for a in ("--set", s)]) == 0
    return root / "cql" / "checkpoint", store


def make_tuner(cql_checkpoint, method: str, **kwargs) -> Finetuner:
    ckpt, store = cql_checkpoint
    source = load_checkpoint(ckpt).learner
    config = FinetuneConfig(method=method, batch_size=32, **kwargs)
    offline = OfflineData(EpisodeStore(store), source.spec, "success", normalizer=source.normalizer)
    return Finetuner(build_learner(source, config), config, offline, online_steps=100)


def fake_obs(tuner: Finetuner, rng: np.random.Generator) -> dict[str, np.ndarray]:
    spec = tuner.spec
    return {k.removeprefix("obs."): rng.normal(size=spec.keys[k].shape).astype(np.float32) for k in spec.state_keys}


def fill(tuner: Finetuner, n: int, source: str = "policy") -> None:
    rng = np.random.default_rng(0)
    for _ in range(n):
        obs = fake_obs(tuner, rng)
        tuner.add(obs, tuner.explore(obs), 0.0, fake_obs(tuner, rng), False, source=source)


def test_methods_build_the_right_learner_from_the_checkpoint(cql_checkpoint):
    ckpt, _ = cql_checkpoint
    source = load_checkpoint(ckpt).learner
    naive = make_tuner(cql_checkpoint, "naive").learner
    assert naive.name == "cql"  # the same learner keeps training
    for method in ("ro2o", "e2o", "rlpd", "wsrl"):
        learner = make_tuner(cql_checkpoint, method).learner
        assert learner.name == "ensemble_sac"
        for name in ("actor.net.0.weight", "critic.net.net.0.weight"):
            torch.testing.assert_close(learner.state_dict()[name], source.state_dict()[name], rtol=0, atol=0)
    assert make_tuner(cql_checkpoint, "ro2o").learner.config.smooth_eps > 0
    assert make_tuner(cql_checkpoint, "e2o").learner.config.explore == "ucb"
    assert make_tuner(cql_checkpoint, "rlpd").learner.config.target == "min_subset"
    # the critics keep the backup they were trained with (CQL: no entropy term)
    assert source.config.backup_entropy is False and make_tuner(cql_checkpoint, "rlpd").learner.config.backup_entropy is False


def test_sampling_ratios(cql_checkpoint):
    rlpd = make_tuner(cql_checkpoint, "rlpd", offline_ratio=0.5)
    fill(rlpd, 40)
    # online transitions are exactly the ones in the buffer; mark them to count them in a batch
    rlpd.buffer.reward[: len(rlpd.buffer)] = 7.0
    batch = rlpd.sample(64)
    assert int((batch["reward"] == 7.0).sum()) == 32  # symmetric: half offline, half online
    wsrl = make_tuner(cql_checkpoint, "wsrl")
    fill(wsrl, 40)
    wsrl.buffer.reward[: len(wsrl.buffer)] = 7.0
    assert bool((wsrl.sample(64)["reward"] == 7.0).all())  # no offline data retained
    naive = make_tuner(cql_checkpoint, "naive")
    fill(naive, 40)
    naive.buffer.reward[: len(naive.buffer)] = 7.0
    shares = [float((naive.sample(256)["reward"] == 7.0).float().mean()) for _ in range(20)]
    expected = 40 / (40 + len(naive.offline))  # pooled: each transition equally likely
    assert abs(np.mean(shares) - expected) < 0.02


def test_interventions_are_counted_and_replayed_as_demonstrations(cql_checkpoint):
    tuner = make_tuner(cql_checkpoint, "rlpd")
    fill(tuner, 30)
    fill(tuner, 10, source="intervention")
    assert tuner.interventions == 10 and len(tuner.demos) == 10 and len(tuner.buffer) == 40
    tuner.demos.reward[:10] = 9.0
    hits = [int((tuner.sample(256)["reward"] == 9.0).sum()) for _ in range(10)]
    assert sum(hits) > 0  # the offline half now includes the intervention steps


def test_warmup_and_offline_phase(cql_checkpoint):
    wsrl = make_tuner(cql_checkpoint, "wsrl", warmup_steps=20)
    fill(wsrl, 10)
    assert wsrl.warming_up and wsrl.train(2) == {} and wsrl.updates == 0  # no updates while warming up
    fill(wsrl, 10)
    assert not wsrl.warming_up and "critic_loss" in wsrl.train(2) and wsrl.updates == 2
    ro2o = make_tuner(cql_checkpoint, "ro2o", offline_updates=5)
    metrics = ro2o.offline_phase()
    assert ro2o.updates == 5 and {"value_smooth", "policy_smooth", "ood_loss"} <= set(metrics)


def test_e2o_loosens_pessimism_over_the_online_phase(cql_checkpoint):
    tuner = make_tuner(cql_checkpoint, "e2o", penalty_end=0.2)
    start = tuner.learner.uncertainty_penalty
    fill(tuner, 50)
    tuner.train(1)
    assert tuner.learner.uncertainty_penalty == pytest.approx(start + 0.5 * (0.2 - start))
    fill(tuner, 60)
    tuner.train(1)
    assert tuner.learner.uncertainty_penalty == pytest.approx(0.2)


def test_bad_transitions_and_configs_are_refused(cql_checkpoint):
    tuner = make_tuner(cql_checkpoint, "rlpd")
    obs = fake_obs(tuner, np.random.default_rng(0))
    bad = dict(obs)
    bad[next(iter(bad))] = bad[next(iter(bad))] * np.nan
    with pytest.raises(ValueError, match="non-finite"):
        tuner.add(obs, tuner.explore(obs), 0.0, bad, False)
    assert len(tuner.buffer) == 0
    with pytest.raises(ValueError, match="not one of"):
        FinetuneConfig(method="sac")
    ckpt, _ = cql_checkpoint
    source = load_checkpoint(ckpt).learner
    with pytest.raises(ValueError, match="pass the store"):
        Finetuner(build_learner(source, FinetuneConfig(method="rlpd")), FinetuneConfig(method="rlpd"), None)


def test_finetune_command_end_to_end(cql_checkpoint, tmp_path, capsys):
    """On the mock arm: online steps, evaluations, the online store, interventions, a deployable checkpoint."""
    ckpt, _ = cql_checkpoint
    out = tmp_path / "ft"
    args = ["finetune", str(ckpt), "--method", "rlpd", "--online-steps", "120", "--utd", "1", "--batch-size", "32",
            "--eval-every", "60", "--eval-episodes", "2", "--interventions", "expert", "--intervene-after", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "worst in the first 10%" in text and "interventions (steps)" in text
    store = EpisodeStore(out / "online.zarr")
    assert store.verify().ok and store.n_steps <= 120 and len(store) >= 1
    assert all(r["source"] in ("policy", "intervention") for r in store.records)
    assert sum(r["interventions"] for r in store.records) > 0
    assert any(r["source"] == "intervention" for r in store.records)
    with open(out / "evals.csv") as f:
        evals = list(csv.DictReader(f))
    assert [int(r["env_steps"]) for r in evals][0] == 0 and len(evals) >= 3
    assert (out / "curve.png").stat().st_size > 1000
    tuned = load_checkpoint(out / "checkpoint")
    assert tuned.config["algo"] == "ensemble_sac" and tuned.config["data"]["finetune"] == "rlpd"
    config = json.loads((out / "finetune_config.json").read_text())
    assert config["finetune"]["utd"] == 1
    with pytest.raises(SystemExit):
        main(["finetune", str(ckpt), "--method", "nope"])
    assert main(["finetune", str(ckpt), "--online-steps", "10", "--out", str(out)]) == 2  # never overwrites a run
