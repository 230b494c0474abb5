"""One contract test over every learner (STYLE.md rule 6): updates decrease the loss,
save/load round-trips bit-exactly, actions respect the action spec, a seed fixes the
result. Runs on a tiny store with a camera and without."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from robot_rl.algos import LearnerSpec, OfflineData, available_learners, learner_class, make_config, make_learner
from robot_rl.algos.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robot_rl.data import EpisodeStore
from store_fixtures import IMAGE, write_store

ALGOS = available_learners()
SMALL = {"batch_size": 32, "hidden": [64, 64], "image_channels": 8, "image_feature_dim": 16}
FAST_LR = {
    "bc": {"lr": 3e-3},
    "iql": {"critic_lr": 3e-3, "actor_lr": 3e-3},
    "cql": {"critic_lr": 3e-3, "actor_lr": 3e-3, "n_action_samples": 4},
    "ensemble_sac": {"critic_lr": 3e-3, "actor_lr": 3e-3},
    "td3bc": {"critic_lr": 3e-3, "actor_lr": 3e-3},
    "rebrac": {"critic_lr": 3e-3, "actor_lr": 3e-3, "batch_size": 32, "hidden": [64, 64]},
    # chunks of 4 actions, 2 executed per prediction (the U-Net has tests of its own in test_diffusion.py)
    "diffusion": {"lr": 3e-3, "network": "mlp", "action_horizon": 4, "exec_horizon": 2, "inference_steps": 4},
    "edp": {"critic_lr": 3e-3, "actor_lr": 3e-3, "diffusion_steps": 20, "inference_steps": 5, "n_action_candidates": 4},
    **{
        algo: {
            "critic_lr": 3e-3,
            "actor_lr": 3e-3,
            "vqvae_lr": 3e-3,
            "vqvae_steps": 20,  # the loss test compares the 40 RL updates after them
            "codebook_size": 8,
            "vq_hidden": [64, 64],
        }
        for algo in ("saq_iql", "saq_cql", "saq_brac")
    },
}
MAIN_LOSS = {"bc": "loss", "diffusion": "loss"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("learn") / "tiny.zarr"
    write_store(path, 6, image=True)
    return EpisodeStore(path)


def build(store, algo, image, seed=0, obs_horizon=1, **extra):
    keys = None if image else ["joint_pos"]
    spec = LearnerSpec.from_schema(store.schema, keys, obs_horizon)
    config = make_config(algo, {**SMALL, **FAST_LR[algo], "obs_horizon": obs_horizon, **extra})
    horizon = getattr(config, "action_horizon", 1)
    data = OfflineData(store, spec, rewards="success", with_next=learner_class(algo).uses_next, action_horizon=horizon)
    return spec, data, make_learner(algo, spec, data.normalizer, config, seed=seed)


def obs_of(image: bool, value: float = 0.3) -> dict[str, np.ndarray]:
    obs = {"joint_pos": np.full(7, 10.0 + value, np.float32)}
    if image:
        obs["image.wrist"] = np.full(IMAGE, 100, np.uint8)
    return obs


@pytest.mark.parametrize("image", [False, True], ids=["lowdim", "camera"])
@pytest.mark.parametrize("algo", ALGOS)
def test_updates_decrease_the_loss(store, algo, image):
    _, data, learner = build(store, algo, image)
    batch = data.sample(32, torch.Generator().manual_seed(0))
    key = MAIN_LOSS.get(algo, "critic_loss")
    metrics = [learner.update(batch) for _ in range(60)]
    losses = [float(m[key]) for m in metrics if key in m]  # SAQ: only after its VQ-VAE phase
    assert len(losses) >= 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses[::10]


@pytest.mark.parametrize("image", [False, True], ids=["lowdim", "camera"])
@pytest.mark.parametrize("algo", ALGOS)
def test_save_load_round_trip_is_bit_exact(store, algo, image, tmp_path):
    _, data, learner = build(store, algo, image, obs_horizon=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        learner.update(data.sample(32, g))
    save_checkpoint(tmp_path / "ck", learner, data={"fingerprint": store.fingerprint()})
    loaded = load_checkpoint(tmp_path / "ck").learner
    original, restored = learner.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for k in original:
        assert torch.equal(original[k], restored[k]), k
    p1, p2 = learner.policy(), loaded.policy()
    for value in (0.1, 0.5, -0.7):  # frame history as well as weights
        a1, a2 = p1.act(obs_of(image, value)), p2.act(obs_of(image, value))
        assert np.array_equal(a1, a2)


@pytest.mark.parametrize("algo", ALGOS)
def test_actions_respect_the_action_spec(store, algo):
    spec, data, learner = build(store, algo, image=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        learner.update(data.sample(32, g))
    policy = learner.policy()
    policy.reset()
    actions = np.stack([policy.act(obs_of(True, v)) for v in np.linspace(-50, 50, 9)])  # far outside the data too
    assert actions.shape == (9, *spec.keys["action"].shape) and actions.dtype == np.float32
    # within the range of the recorded actions (4..6 in the fixture), hence inside any limit the data respected
    assert np.all(actions >= data.normalizer.action_low) and np.all(actions <= data.normalizer.action_high)
    with pytest.raises(ValueError, match="non-finite"):
        policy.act({"joint_pos": np.full(7, np.nan, np.float32), "image.wrist": np.zeros(IMAGE, np.uint8)})
    with pytest.raises(KeyError, match="joint_pos"):
        policy.act({"image.wrist": np.zeros(IMAGE, np.uint8)})


@pytest.mark.parametrize("algo", ALGOS)
def test_same_seed_same_result(store, algo):
    def run(seed):
        _, data, learner = build(store, algo, image=True, seed=seed)
        g = torch.Generator().manual_seed(seed)
        for _ in range(4):
            learner.update(data.sample(32, g))
        return learner.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ensemble_members_are_independent_and_batched():
    from robot_rl.algos.nets import QEnsemble

    q = QEnsemble(5, 3, 2, [16, 16])
    feat, act = torch.randn(8, 3), torch.randn(8, 2)
    out = q(feat, act)
    assert out.shape == (5, 8)
    assert len({round(float(v), 6) for v in out.detach()[:, 0]}) == 5  # members differ
    many = q(feat, torch.stack([act, act * 2]))  # (N, B, Da) candidates in one pass
    assert many.shape == (5, 2, 8) and torch.allclose(many[:, 0], out, atol=1e-6)


def test_checkpoint_rejects_tampering_and_pickles(store, tmp_path):
    _, _, learner = build(store, "bc", image=False)
    ck = save_checkpoint(tmp_path / "ck", learner)
    model = ck / "model.safetensors"
    raw = bytearray(model.read_bytes())
    raw[-3] ^= 0xFF
    model.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(ck)
    model.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))  # a pickle in disguise is never unpickled
    with pytest.raises(CheckpointError):
        load_checkpoint(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "missing")


def test_loading_never_calls_pickle(store, tmp_path, monkeypatch):
    _, _, learner = build(store, "iql", image=True)
    ck = save_checkpoint(tmp_path / "ck", learner)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(ck).learner.name == "iql"


def test_checkpoint_names_a_robot_mismatch(store, tmp_path):
    from robot_rl.robots import make_robot

    spec, _, _ = build(store, "bc", image=False)
    robot = make_robot("mock_arm")
    with pytest.raises(ValueError) as exc:
        spec.check_robot(robot.observation_spec, robot.action_spec)
    message = str(exc.value)
    assert "obs.joint_pos: trained on shape (7,), the robot gives (6,)" in message


def test_unknown_config_fields_and_bad_values_are_named(store):
    spec, data, _ = build(store, "bc", image=False)
    with pytest.raises(ValueError, match="no config field"):
        make_learner("iql", spec, data.normalizer, {"expectiel": 0.8})
    with pytest.raises(ValueError, match="expectile"):
        make_learner("iql", spec, data.normalizer, {"expectile": 1.5})
    with pytest.raises(KeyError, match="available"):
        make_learner("ppo", spec, data.normalizer)
    assert make_config("iql", {"actor_lr": "1e-3"}).actor_lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    with pytest.raises(ValueError, match="must be a number"):
        make_config("iql", {"actor_lr": "fast"})


@pytest.mark.parametrize("algo", ALGOS)
def test_every_limit_names_a_field_and_the_defaults_keep_them(algo):
    import dataclasses

    from robot_rl.algos.base import check_limits, config_limits

    cls = learner_class(algo).config_class
    limits = config_limits(cls)
    assert set(limits) <= {f.name for f in dataclasses.fields(cls)}, set(limits) - {f.name for f in dataclasses.fields(cls)}
    assert {"batch_size", "hidden"} <= set(limits)  # the base class's limits reach every learner
    check_limits(algo, cls())


@pytest.mark.parametrize(
    ("algo", "override", "message"),
    [
        ("bc", {"batch_size": 0}, "bc.batch_size must be >= 1, got 0"),
        ("bc", {"lr": -1e-3}, "bc.lr must be >= 0, got -0.001"),
        ("iql", {"gamma": 1.5}, "iql.gamma must be in [0, 1], got 1.5"),
        ("iql", {"expectile": 1.0}, "iql.expectile must be in (0, 1), got 1.0"),
        ("cql", {"n_action_samples": 0}, "cql.n_action_samples must be >= 1, got 0"),
        ("rebrac", {"tau": -0.005}, "rebrac.tau must be in [0, 1], got -0.005"),  # limits inherited from td3bc
        ("td3bc", {"hidden": [64, 0]}, "td3bc.hidden[1] must be >= 1, got 0"),
        ("diffusion", {"down_dims": [32, -4]}, "diffusion.down_dims[1] must be >= 1, got -4"),
        ("edp", {"eta": -1.0}, "edp.eta must be >= 0, got -1.0"),
        ("saq_iql", {"codebook_ema": 1.0}, "saq_iql.codebook_ema must be in [0, 1), got 1.0"),  # from SAQConfig
        ("saq_iql", {"expectile": 0.0}, "saq_iql.expectile must be in (0, 1), got 0.0"),
        ("ensemble_sac", {"critic_lr": -3e-4}, "ensemble_sac.critic_lr must be >= 0, got -0.0003"),
    ],
)
def test_out_of_range_values_are_named_before_anything_is_built(algo, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config(algo, override)


def test_a_config_built_directly_is_checked_too(store):
    from robot_rl.algos.iql import IQLConfig

    spec, data, _ = build(store, "bc", image=False)
    with pytest.raises(ValueError, match=re.escape("iql.gamma must be in [0, 1], got 2.0")):
        make_learner("iql", spec, data.normalizer, IQLConfig(gamma=2.0))


def test_train_cli_refuses_an_out_of_range_override_before_training(tmp_path, capsys):
    from robot_rl.cli import main

    path = tmp_path / "s.zarr"
    write_store(path, 2, image=False)
    out = tmp_path / "run"
    assert main(["train", "--algo", "iql", "--data", str(path), "--set", "gamma=1.5", "--steps", "5", "--out", str(out)]) == 2
    assert "iql.gamma must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert not out.exists()


def test_the_cli_offers_every_registered_learner():
    from robot_rl.cli.train import ALGOS as CLI_ALGOS

    assert sorted(CLI_ALGOS) == ALGOS
