"""Diffusion machinery and the chunked policies: samplers against an exact denoiser,
the U-Net, action chunks from the store, the receding-horizon action queue, EDP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_rl.algos import LearnerSpec, OfflineData, make_learner
from robot_rl.algos.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.algos.diffusion_nets import NoiseSchedule, UNet1D, sample, timesteps
from robot_rl.data import EpisodeStore
from store_fixtures import episode_data, episode_length, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("diffusion") / "tiny.zarr"
    write_store(path, 4, image=False)
    return EpisodeStore(path)


def mixture_denoiser(schedule: NoiseSchedule, points: torch.Tensor):
    """The exact noise prediction E[eps | x_t] for data that is one of ``points`` (equal weights)."""

    def net(x, t, cond):
        ab = schedule.alpha_bar[t].view(-1, 1, 1, 1)
        means = ab.sqrt() * points[None]  # (1, M, T, Da) -> per-sample below
        d2 = (x[:, None] - means).pow(2).flatten(2).sum(-1)  # (B, M)
        post = torch.softmax(-d2 / (2 * (1 - ab.view(-1, 1))), dim=1)
        x0 = torch.einsum("bm,mtd->btd", post, points)
        return (x - ab.view(-1, 1, 1).sqrt() * x0) / (1 - ab.view(-1, 1, 1)).sqrt()

    return net


@pytest.mark.parametrize(("method", "steps"), [("ddpm", None), ("ddim", 10), ("ddim", 1), ("dpm", 5), ("dpm", 2)])
def test_samplers_reproduce_the_data_with_an_exact_denoiser(method, steps):
    schedule = NoiseSchedule(100)
    point = torch.tensor([[0.3, -0.5], [0.1, 0.9]])[None]  # one chunk (1, T=2, Da=2)
    out = sample(mixture_denoiser(schedule, point), torch.zeros(8, 1), (8, 2, 2), schedule, method, steps, torch.Generator().manual_seed(0))
    assert torch.allclose(out, point.expand(8, -1, -1), atol=1e-4)


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm"])
def test_samplers_keep_both_modes_of_a_bimodal_action_distribution(method):
    """The reason for diffusion policies: two ways round an obstacle are both sampled, never their mean."""
    schedule = NoiseSchedule(100)
    points = torch.tensor([[[-0.8, 0.5]], [[0.8, 0.5]]])  # (M=2, T=1, Da=2)
    out = sample(mixture_denoiser(schedule, points), torch.zeros(400, 1), (400, 1, 2), schedule, method, 10, torch.Generator().manual_seed(1))
    dist = (out[:, None] - points[None]).abs().amax(dim=(2, 3))  # (B, M)
    assert dist.min(1).values.max() < 0.05  # every sample is at one of the modes
    left = float((dist.argmin(1) == 0).float().mean())
    assert 0.35 < left < 0.65, left


def test_schedule_is_invertible_and_timesteps_cover_the_chain():
    s = NoiseSchedule(100)
    assert torch.all(s.alpha_bar[1:] < s.alpha_bar[:-1]) and 0.99 < float(s.alpha_bar[0]) <= 1.0 and float(s.alpha_bar[-1]) < 1e-3
    x0, eps, t = torch.rand(6, 4, 3) * 2 - 1, torch.randn(6, 4, 3), torch.tensor([0, 5, 20, 50, 90, 99])
    assert torch.allclose(s.predict_x0(s.add_noise(x0, eps, t), eps, t), x0, atol=1e-3)  # EDP's action approximation
    assert timesteps(s, 10)[0] == 99 and timesteps(s, 10)[-1] == 0 and len(timesteps(s, 10)) == 10
    with pytest.raises(ValueError, match="sampling steps"):
        timesteps(s, 101)


def test_unet_shapes_and_its_horizon_rule():
    net = UNet1D(action_dim=3, horizon=8, cond_dim=5, down_dims=(16, 32))
    out = net(torch.randn(4, 8, 3), torch.randint(0, 100, (4,)), torch.randn(4, 5))
    assert out.shape == (4, 8, 3)
    with pytest.raises(ValueError, match="divisible"):
        UNet1D(3, 6, 5, down_dims=(16, 32, 64))


def test_unet_learns_a_state_conditioned_chunk():
    """Trained on chunks that are ramps whose slope is the state, the U-Net's denoising
    loss falls well below the unconditional level and DDIM samples the right ramp."""
    torch.manual_seed(0)
    schedule = NoiseSchedule(50)
    net = UNet1D(action_dim=1, horizon=8, cond_dim=1, down_dims=(16, 32), step_dim=16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    ramp = torch.linspace(0, 1, 8)[None, :, None]
    losses = []
    for _ in range(300):
        slope = torch.rand(64, 1) * 2 - 1
        x0 = slope[:, :, None] * ramp
        t = torch.randint(0, 50, (64,))
        eps = torch.randn_like(x0)
        loss = (net(schedule.add_noise(x0, eps, t), t, slope) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:5])
    with torch.no_grad():
        slope = torch.tensor([[-0.6], [0.7]])
        out = sample(net, slope, (2, 8, 1), schedule, "ddim", 10, torch.Generator().manual_seed(0))
    assert (out - slope[:, :, None] * ramp).abs().mean() < 0.1


def test_action_chunks_follow_the_episode_and_repeat_its_last_action(store):
    spec = LearnerSpec.from_schema(store.schema, ["joint_pos"])
    data = OfflineData(store, spec, with_next=False, action_horizon=5)
    first = episode_data(0, image=False)["action"]
    n0 = episode_length(0)
    batch = data.get(torch.tensor([0, n0 - 2]))
    norm = data.normalizer
    assert np.allclose(norm.unaction(batch["action_chunk"][0].numpy()), first[:5], atol=1e-5)
    tail = norm.unaction(batch["action_chunk"][1].numpy())  # 2 steps left: then the last action repeats
    assert np.allclose(tail, np.concatenate([first[-2:], np.repeat(first[-1:], 3, 0)]), atol=1e-5)
    assert torch.equal(batch["action_chunk"][:, 0], batch["action"])
    with pytest.raises(ValueError, match="action_horizon"):
        OfflineData(store, spec, action_horizon=0)


def small_diffusion(store, **config):
    spec = LearnerSpec.from_schema(store.schema, ["joint_pos"])
    c = {"batch_size": 16, "down_dims": [16, 32], "action_horizon": 4, "exec_horizon": 3, "inference_steps": 4, **config}
    data = OfflineData(store, spec, with_next=False, action_horizon=c["action_horizon"])
    return data, make_learner("diffusion", spec, data.normalizer, c, seed=0)


def test_policy_executes_chunks_with_a_receding_horizon(store):
    _, learner = small_diffusion(store)
    chunks = []
    real_act = learner.act

    def recording_act(state, images):
        out = real_act(state, images)
        chunks.append(out[0].numpy())
        return out

    learner.act = recording_act
    policy = learner.policy()
    obs = {"joint_pos": np.full(7, 10.0, np.float32)}
    actions = [policy.act(obs) for _ in range(7)]
    assert policy.inferences == 3 and len(chunks) == 3  # steps 0, 3, 6 with Ta = 3
    expected = [learner.normalizer.unaction(c[i]) for c in chunks for i in range(3)][:7]
    assert all(np.array_equal(a, e) for a, e in zip(actions, expected, strict=True))
    policy.reset()  # a new episode drops the queue
    policy.act(obs)
    assert policy.inferences == 4
    every_step = learner.policy()
    every_step.reuse_chunks = False
    for _ in range(4):
        every_step.act(obs)
    assert every_step.inferences == 4


def test_chunk_horizons_are_checked_and_saved(store, tmp_path):
    with pytest.raises(ValueError, match="exec_horizon"):
        small_diffusion(store, exec_horizon=5)
    with pytest.raises(ValueError, match="sampler"):
        small_diffusion(store, sampler="euler")
    data, learner = small_diffusion(store)
    learner.update(data.sample(16, torch.Generator().manual_seed(0)))
    ck = save_checkpoint(tmp_path / "ck", learner)
    assert json.loads((ck / "config.json").read_text())["horizons"] == {"obs": 1, "action": 4, "execute": 3}
    loaded = load_checkpoint(ck).learner
    assert loaded.action_horizon == 4 and loaded.exec_horizon == 3


def test_ema_weights_act_and_trail_the_trained_ones(store):
    data, learner = small_diffusion(store, lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        learner.update(data.sample(16, g))
    live, ema = learner.nets["noise"].state_dict(), learner.nets["ema_noise"].state_dict()
    diffs = [float((live[k] - ema[k]).abs().max()) for k in live if live[k].is_floating_point()]
    assert max(diffs) > 0  # an average, not a copy
    assert not any(p.requires_grad for p in learner.nets["ema_noise"].parameters())


def edp(store, **config):
    spec = LearnerSpec.from_schema(store.schema, ["joint_pos"])
    data = OfflineData(store, spec, rewards="success")
    c = {"batch_size": 16, "hidden": [32, 32], "diffusion_steps": 20, "inference_steps": 5, **config}
    return data, make_learner("edp", spec, data.normalizer, c, seed=0)


def test_edp_acts_with_the_best_candidate_under_its_critic(store):
    data, learner = edp(store, n_action_candidates=6)
    learner.update(data.sample(16, torch.Generator().manual_seed(0)))
    state = data.get(torch.tensor([3]))["state"]
    gen_state = learner.sample_generator.get_state()
    chosen = learner.act(state, None)
    learner.sample_generator.set_state(gen_state)  # the same 6 candidates again
    feats = learner.nets["encoder"](state, None).repeat_interleave(6, 0)
    candidates = learner._sample(learner.nets["ema_noise"], feats, full_chain=False, generator=learner.sample_generator)
    q = learner.nets["critic"](feats, candidates).min(0).values
    assert torch.allclose(chosen[0], candidates[int(q.argmax())])


def test_diffusion_ql_backpropagates_through_the_whole_chain_and_edp_does_not(store):
    """The Q-term gradient reaches the noise network either way; Diffusion-QL evaluates
    the network K times per update for it, EDP once."""
    calls = {}
    for approx in (True, False):
        data, learner = edp(store, action_approx=approx)
        net = learner.nets["noise"]
        count = [0]
        hook = net.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        metrics = learner.update(data.sample(16, torch.Generator().manual_seed(0)))
        hook.remove()
        calls[approx] = count[0]
        assert np.isfinite(float(metrics["q_pi"]))
    assert calls[True] == 1  # the diffusion loss pass, reused for the action approximation
    assert calls[False] == 1 + 20  # plus the 20-step chain with gradients
