"""ensemble_sac beyond the contract test: the two ensemble targets, the smoothness terms
(each must actually change what is learned), UCB exploration, warm-starting from CQL,
config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.algos import LearnerSpec, Normalizer, OfflineData, make_learner
from robot_rl.algos.ensemble_sac import EnsembleSAC, warm_start
from robot_rl.data import EpisodeStore
from store_fixtures import write_store

SMALL = {"batch_size": 32, "hidden": [64, 64], "image_channels": 8, "image_feature_dim": 16, "n_critics": 5, "critic_lr": 3e-3, "actor_lr": 3e-3}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("esac") / "tiny.zarr"
    write_store(path, 6, image=True)
    return EpisodeStore(path)


def setup(store, image=False, algo="ensemble_sac", seed=0, **config):
    spec = LearnerSpec.from_schema(store.schema, None if image else ["joint_pos"], 1)
    data = OfflineData(store, spec, rewards="success")
    learner = make_learner(algo, spec, data.normalizer, {**SMALL, **config} if algo == "ensemble_sac" else config, seed=seed)
    return spec, data, learner


def fixed_batch(data, noisy_rewards=False):
    batch = data.sample(32, torch.Generator().manual_seed(0))
    if noisy_rewards:  # Q must memorise random labels: without smoothing it grows sensitive to the state
        batch = {**batch, "reward": 5 * torch.randn(32, generator=torch.Generator().manual_seed(1)), "done": torch.ones(32)}
    return batch


def deltas(batch, eps, k=32, seed=5):
    return (torch.rand((k, *batch["state"].shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1) * eps


# --------------------------------------------------------------------- targets
def test_penalty_target_is_mean_minus_beta_std_of_the_target_ensemble(store):
    _, data, learner = setup(store, target="penalty", uncertainty_penalty=0.5)
    batch = fixed_batch(data)
    for _ in range(3):  # target nets and alpha away from their initial values
        learner.update(batch)
    learner.uncertainty_penalty = 2.0  # the attribute (a fine-tuning loop anneals it), not the config field
    torch.manual_seed(3)
    y = learner.target_values(batch)

    n = learner.nets
    torch.manual_seed(3)  # the same a' ~ pi(. | s')
    with torch.no_grad():
        next_a, next_logp = n["actor"].sample(n["encoder"](batch["next_state"]))
        q = n["target_critic"](n["target_encoder"](batch["next_state"]), next_a[0]).numpy()  # (E, B)
        alpha = float(n["scalars"].log_alpha.exp())
    value = q.mean(0) - 2.0 * q.std(0) - alpha * next_logp[0].numpy()
    expected = batch["reward"].numpy() + 0.99 * (1 - batch["done"].numpy()) * value
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)

    torch.manual_seed(3)  # update() draws a' first too: its target_q is that target's mean
    assert float(learner.update(batch)["target_q"]) == pytest.approx(float(y.mean()), abs=1e-5)


def test_min_subset_target(store):
    q = torch.randn(5, 64)
    _, _, full = setup(store, target="min_subset", subset_size=5)
    assert torch.equal(full.ensemble_target(q), q.min(0).values)

    _, _, pair = setup(store, target="min_subset", subset_size=2)
    pair_mins = {(i, j): torch.minimum(q[i], q[j]) for i in range(5) for j in range(i + 1, 5)}
    seen = set()
    for _ in range(40):
        out = pair.ensemble_target(q)
        assert torch.all(out >= q.min(0).values) and torch.all(out <= q.max(0).values)
        # one subset for the whole batch, drawn fresh at each call
        match = [p for p, m in pair_mins.items() if torch.equal(out, m)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) > 3
    assert any(torch.any(pair_mins[p] > q.min(0).values) for p in seen)  # not always the full minimum


# ------------------------------------------------------------------ smoothness
def trained(store, updates=60, **config):
    _, data, learner = setup(store, **config)
    batch = fixed_batch(data, noisy_rewards=True)
    torch.manual_seed(0)
    metrics = [learner.update(batch) for _ in range(updates)]
    return learner, batch, metrics


@torch.no_grad()
def perturbed(learner, batch, eps):
    feat = learner.nets["encoder"](batch["state"])
    d = deltas(batch, eps)
    return feat, learner.perturbed_features(feat, batch["state"], d), d.shape[0]


@torch.no_grad()
def q_gap(learner, batch, eps):
    """mean over members and states of max_delta |Q_i(s + delta, a) - Q_i(s, a)|, fresh deltas."""
    feat, pert, k = perturbed(learner, batch, eps)
    q = learner.nets["critic"](feat, batch["action"])
    q_pert = learner.nets["critic"](pert, batch["action"].repeat(k, 1)).reshape(q.shape[0], k, -1)
    return float((q_pert - q.unsqueeze(1)).abs().max(1).values.mean())


@torch.no_grad()
def policy_gap(learner, batch, eps):
    feat, pert, k = perturbed(learner, batch, eps)
    mode = learner.nets["actor"].mode(feat)
    return float((learner.nets["actor"].mode(pert).reshape(k, *mode.shape) - mode).pow(2).sum(-1).max(0).values.mean())


def test_value_smoothness_flattens_q_around_the_data(store):
    eps = 0.5
    plain, batch, _ = trained(store)
    smooth, _, metrics = trained(store, smooth_eps=eps, value_smooth_weight=10.0)
    assert "value_smooth" in metrics[-1] and "policy_smooth" not in metrics[-1] and "ood_loss" not in metrics[-1]
    assert q_gap(smooth, batch, eps) < 0.6 * q_gap(plain, batch, eps)


def test_policy_smoothness_makes_the_actor_less_sensitive(store):
    eps = 0.5
    plain, batch, _ = trained(store)
    gaps = [policy_gap(trained(store, smooth_eps=eps, policy_smooth_weight=w)[0], batch, eps) for w in (10.0, 100.0)]
    assert gaps[0] < 0.5 * policy_gap(plain, batch, eps)
    assert gaps[1] < gaps[0]  # a larger weight: smoother still (with a stop-gradient on the clean end it got rougher)


def test_ood_penalty_lowers_q_on_perturbed_states_and_policy_actions(store):
    eps = 0.5

    @torch.no_grad()
    def ood_excess(learner, batch):
        """Q on (s~, pi(s~)) above Q on the data."""
        feat, pert, _ = perturbed(learner, batch, eps)
        critic = learner.nets["critic"]
        return float(critic(pert, learner.nets["actor"].mode(pert)).mean() - critic(feat, batch["action"]).mean())

    plain, batch, _ = trained(store, updates=40)
    pessimistic, _, metrics = trained(store, updates=40, smooth_eps=eps, ood_weight=1.0, ood_beta=5.0)
    assert all(np.isfinite(float(m["ood_loss"])) for m in metrics)
    assert ood_excess(pessimistic, batch) < ood_excess(plain, batch) - 1.0
    # on a subset of the perturbations (ood_samples, for speed) the penalty still acts
    subset, _, _ = trained(store, updates=40, smooth_eps=eps, ood_weight=1.0, ood_beta=5.0, ood_samples=2)
    assert ood_excess(subset, batch) < ood_excess(plain, batch) - 1.0


def test_smoothness_losses_are_the_max_over_the_sampled_perturbations(store):
    _, data, learner = setup(store, smooth_eps=0.3, smooth_samples=6, value_smooth_weight=1.0, policy_smooth_weight=1.0)
    batch = fixed_batch(data)
    learner.update(batch)
    d = deltas(batch, 0.3, k=6)
    learner.sample_deltas = lambda state: d  # the update's perturbations, known
    n = learner.nets
    with torch.no_grad():
        q = n["critic"](batch["state"].flatten(1), batch["action"]).numpy()  # (E, B)
        q_pert = np.stack([n["critic"]((batch["state"] + d[k]).flatten(1), batch["action"]).numpy() for k in range(6)], 1)  # (E, K, B)
        mode = n["actor"].mode(batch["state"].flatten(1)).numpy()
        mode_pert = np.stack([n["actor"].mode((batch["state"] + d[k]).flatten(1)).numpy() for k in range(6)])  # (K, B, Da)
    metrics = learner.update(batch)
    value = ((q_pert - q[:, None]) ** 2).mean(0).max(0).mean()
    policy = ((mode_pert - mode) ** 2).sum(-1).max(0).mean()
    assert float(metrics["value_smooth"]) == pytest.approx(value, rel=1e-4)
    assert float(metrics["policy_smooth"]) == pytest.approx(policy, rel=1e-4)


def test_perturbed_features_equal_the_encoder_on_perturbed_states(store):
    _, data, learner = setup(store, image=True)
    batch = fixed_batch(data)
    enc = learner.nets["encoder"]
    d = deltas(batch, 0.1, k=3)
    with torch.no_grad():
        pert = learner.perturbed_features(enc(batch["state"], batch["images"]), batch["state"], d)
        for k in range(3):
            direct = enc(batch["state"] + d[k], batch["images"])
            torch.testing.assert_close(pert[k * 32 : (k + 1) * 32], direct, rtol=0, atol=0)


def test_all_smoothness_terms_on_a_camera_batch(store):
    _, data, learner = setup(store, image=True, smooth_eps=0.05, smooth_samples=4, value_smooth_weight=1.0, policy_smooth_weight=1.0, ood_weight=0.1)
    batch = fixed_batch(data)
    conv = next(iter(learner.nets["encoder"].cameras.values())).head[0].weight
    before = conv.detach().clone()
    metrics = learner.update(batch)
    for key in ("critic_loss", "td_loss", "q", "q_std", "actor_loss", "alpha", "entropy", "target_q", "value_smooth", "policy_smooth", "ood_loss"):
        assert metrics[key].dim() == 0 and not metrics[key].requires_grad and torch.isfinite(metrics[key]), key
    assert not torch.equal(conv.detach(), before)  # the camera encoder trains with the critic
    assert learner.steps == 1


# ----------------------------------------------------------------- exploration
def test_ucb_exploration_picks_the_most_optimistic_candidate(store):
    _, data, learner = setup(store, explore="ucb", ucb_candidates=8, ucb_coef=5.0)
    batch = fixed_batch(data)
    for _ in range(5):
        learner.update(batch)
    state = batch["state"]
    out = learner.explore(state, None, torch.Generator().manual_seed(7))

    with torch.no_grad():  # the same candidates again, scored member by member
        feat = learner.nets["encoder"](state)
        candidates = learner.sample_actions(feat, 8, torch.Generator().manual_seed(7))  # (K, B, Da)
        q = np.stack([learner.nets["critic"](feat, candidates[k]).numpy() for k in range(8)], axis=1)  # (E, K, B)
    ucb = (q.mean(0) + 5.0 * q.std(0)).argmax(0)
    greedy = q.mean(0).argmax(0)
    expected = candidates[torch.as_tensor(ucb), torch.arange(32)]
    assert torch.equal(out, expected)
    assert np.any(ucb != greedy)  # the std term decided somewhere
    assert out.shape == (32, 7) and torch.all(out.abs() <= 1)


def test_sample_exploration_draws_from_the_actor_with_the_generator(store):
    _, data, learner = setup(store)
    batch = fixed_batch(data)
    learner.update(batch)
    state = batch["state"]
    a = learner.explore(state, None, torch.Generator().manual_seed(3))
    assert torch.equal(a, learner.explore(state, None, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, learner.explore(state, None, torch.Generator().manual_seed(4)))
    assert (a - learner.act(state, None)).abs().mean() > 0.1 and a.shape == (32, 7)
    with torch.no_grad():  # the actor's own distribution: same noise, same actions as TanhGaussianActor.sample
        feat = learner.nets["encoder"](state)
        torch.manual_seed(11)
        reference = learner.nets["actor"].sample(feat)[0][0]
        torch.manual_seed(11)
        torch.testing.assert_close(learner.sample_actions(feat, 1)[0], reference)


# ------------------------------------------------------------------ warm start
CQL = {"batch_size": 32, "hidden": [64, 64], "image_channels": 8, "image_feature_dim": 16, "n_action_samples": 4}


def test_warm_start_from_cql_copies_the_weights_exactly(store):
    spec, data, cql = setup(store, image=True, algo="cql", **CQL, n_critics=10, critic_layer_norm=True)
    batch = fixed_batch(data)
    for _ in range(3):
        cql.update(batch)
    learner = make_learner("ensemble_sac", spec, data.normalizer, {**SMALL, "n_critics": 10}, seed=1)
    learner.uncertainty_penalty = 0.3
    copied = warm_start(learner, cql)

    source, target = cql.state_dict(), learner.state_dict()
    assert set(copied) == set(target)  # every tensor, the conv encoder and log_alpha included
    assert "scalars.log_cql_weight" not in copied and any(k.startswith("encoder.cameras.") for k in copied)
    for name in target:
        assert torch.equal(target[name], source[name]), name
    assert torch.equal(learner.act(batch["state"], batch["images"]), cql.act(batch["state"], batch["images"]))
    assert learner.uncertainty_penalty == 0.3

    learner.update(batch)  # fine-tuning changes its own copy only
    assert torch.equal(cql.state_dict()["critic.net.net.0.weight"], source["critic.net.net.0.weight"])
    assert not torch.equal(learner.state_dict()["critic.net.net.0.weight"], source["critic.net.net.0.weight"])


def test_warm_start_refuses_what_does_not_fit(store):
    spec, data, learner = setup(store, n_critics=10)
    before = learner.state_dict()
    two = setup(store, algo="cql", **CQL, n_critics=2, critic_layer_norm=True)[2]
    with pytest.raises(ValueError, match=r"2 critics, the fine-tuning config 10: pretrain with n_critics=10") as exc:
        warm_start(learner, two)
    assert "(2, 14, 64)" in str(exc.value) and "(10, 14, 64)" in str(exc.value)  # the tensor's two shapes
    no_ln = setup(store, algo="cql", **CQL, n_critics=10)[2]
    with pytest.raises(ValueError, match="pretrain with critic_layer_norm=True"):
        warm_start(learner, no_ln)
    with pytest.raises(ValueError, match=r"no \['critic'\]"):
        warm_start(learner, setup(store, algo="bc", batch_size=32, hidden=[64, 64])[2])
    with pytest.raises(ValueError, match="actor"):  # IQL's actor is a different network
        warm_start(learner, setup(store, algo="iql", batch_size=32, hidden=[64, 64], n_critics=10)[2])
    ok = setup(store, algo="cql", **CQL, n_critics=10, critic_layer_norm=True)[2]
    shifted = Normalizer(data.normalizer.state_mean + 1, data.normalizer.state_std, data.normalizer.action_low, data.normalizer.action_high)
    other = make_learner("ensemble_sac", spec, shifted, {**SMALL, "n_critics": 10})
    with pytest.raises(ValueError, match="normalizer"):
        warm_start(other, ok)
    camera = setup(store, image=True, algo="cql", **CQL, n_critics=10, critic_layer_norm=True)[2]
    with pytest.raises(ValueError, match="camera keys"):
        warm_start(learner, camera)
    after = learner.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing copied by a refused warm start


# --------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"target": "max"}, r"target must be one of \['min_subset', 'penalty'\]"),
        ({"explore": "greedy"}, r"explore must be one of \['sample', 'ucb'\]"),
        ({"actor_q": "median"}, r"actor_q must be one of \['mean', 'min'\]"),
        ({"subset_size": 0}, r"subset_size must be in \[1, n_critics=5\]"),
        ({"subset_size": 6}, r"subset_size must be in \[1, n_critics=5\]"),
        ({"smooth_eps": -0.1}, "smooth_eps must be >= 0"),
        ({"value_smooth_weight": 1.0}, "no effect with smooth_eps=0"),
        ({"ood_weight": -1.0}, "ood_weight must be >= 0"),
        ({"smooth_samples": 0, "smooth_eps": 0.1}, "smooth_samples"),
        ({"target_entropy": "high"}, "target_entropy"),
        ({"ood_samples": -1}, "ood_samples must be >= 0"),
    ],
)
def test_config_errors_are_named(store, override, message):
    with pytest.raises(ValueError, match=message):
        setup(store, **override)


def test_cameras_only_cannot_smooth(store):
    spec = LearnerSpec.from_schema(store.schema, ["image.wrist"], 1)
    data = OfflineData(store, spec, rewards="success")
    with pytest.raises(ValueError, match="low-dim state"):
        make_learner("ensemble_sac", spec, data.normalizer, {**SMALL, "smooth_eps": 0.1, "value_smooth_weight": 1.0})
    assert isinstance(make_learner("ensemble_sac", spec, data.normalizer, SMALL), EnsembleSAC)
