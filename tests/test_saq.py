"""SAQ's pieces on hand-built batches: the VQ-VAE finds action clusters, dead codes are
counted and restarted, discrete CQL's logsumexp and BRAC's KL are exact over the codes,
and the VQ-VAE stays frozen during the RL phase."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from robot_rl.algos import LearnerSpec, Normalizer, make_learner
from robot_rl.algos.saq import categorical_kl, conservative_gap
from robot_rl.data import KeySpec

DS, DA, K = 4, 2, 8
CENTRES = torch.tensor([[-0.6, -0.6], [0.6, -0.2], [0.0, 0.7]])
TINY = {"hidden": [32, 32], "vq_hidden": [64, 64], "codebook_size": K, "code_dim": 8, "vqvae_lr": 3e-3}


def learner(algo: str, **config):
    spec = LearnerSpec(
        keys={"obs.x": KeySpec((DS,), "float32"), "action": KeySpec((DA,), "float32")},
        state_keys=["obs.x"],
        image_keys=[],
    )
    normalizer = Normalizer(np.zeros(DS), np.ones(DS), -np.ones(DA), np.ones(DA))
    return make_learner(algo, spec, normalizer, {**TINY, **config}, seed=0)


def cluster_batch(g: torch.Generator, b: int = 128) -> dict[str, torch.Tensor]:
    """Each action is one of three cluster centres, shifted by the state (so the code
    must be read together with s), plus a little noise."""
    state = torch.rand(b, 1, DS, generator=g) * 2 - 1
    j = torch.randint(0, len(CENTRES), (b,), generator=g)
    action = CENTRES[j] + 0.2 * state[:, 0, :DA] + 0.01 * torch.randn(b, DA, generator=g)
    return {
        "state": state,
        "next_state": torch.rand(b, 1, DS, generator=g) * 2 - 1,
        "action": action,
        "reward": (j == 2).float(),
        "done": torch.zeros(b),
    }


def test_vqvae_reconstructs_clusters_and_reports_usage():
    threshold = 0.02
    saq = learner("saq_iql", vqvae_steps=150, restart_dead_codes=False, usage_decay=0.9, dead_code_threshold=threshold)
    g = torch.Generator().manual_seed(0)
    metrics = [saq.update(cluster_batch(g)) for _ in range(150)]
    first, last = metrics[0], metrics[-1]
    assert float(last["recon_loss"]) < 0.01 < float(first["recon_loss"]), (first, last)  # noise floor 2e-4
    assert float(last["perplexity"]) > 2.0
    assert "critic_loss" not in last
    usage = saq.nets["vqvae"].usage
    assert 0 < float(last["dead_codes"]) == int((usage < threshold).sum()) < K  # 8 codes, 3 clusters: some unused
    assert math.isclose(float(usage.sum()), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("ema", [0.99, 0.0], ids=["ema", "codebook_loss"])
def test_dead_code_restart_revives_codes(ema):
    def dead_codes(restart: bool) -> list[float]:
        config = {"codebook_ema": ema, "usage_decay": 0.8, "dead_code_threshold": 0.02, "restart_dead_codes": restart}
        saq = learner("saq_iql", vqvae_steps=100, **config)
        vq = saq.nets["vqvae"]
        with torch.no_grad():  # every code far from the encoder outputs: one code takes all the data
            vq.codebook.copy_(5.0 + 0.1 * torch.randn(K, vq.codebook.shape[1]))
            if ema > 0:
                vq.ema_sum.copy_(vq.codebook * vq.ema_count[:, None])
        g = torch.Generator().manual_seed(0)
        return [float(saq.update(cluster_batch(g))["dead_codes"]) for _ in range(60)]

    without, with_restart = dead_codes(False), dead_codes(True)
    assert max(without) == max(with_restart) == K - 1  # the far codes die ...
    assert np.mean(with_restart[-20:]) < np.mean(without[-20:]) - 2  # ... and restarts bring them back


def test_discrete_cql_gap_is_the_exact_logsumexp():
    q = torch.zeros(2, 3, 4)  # equal values: the gap is log K
    assert torch.allclose(conservative_gap(q, torch.tensor([0, 1, 3])), torch.full((2,), math.log(4)))
    q = torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, -1.0, 5.0]]])
    expected = torch.tensor(
        [math.log(math.e + math.e**2 + math.e**3) - 2.0, math.log(1 + math.exp(-1) + math.exp(5)) + 1.0]
    )
    assert torch.allclose(conservative_gap(q, torch.tensor([1])), expected)

    saq = learner("saq_cql", vqvae_steps=0, cql_weight=1.0)
    batch = cluster_batch(torch.Generator().manual_seed(0), 16)
    with torch.no_grad():
        q_all = saq.nets["critic"](saq.nets["encoder"](batch["state"]))  # (E, B, K)
        _, k = saq.code_batch(batch)
    direct = torch.stack([q_all[:, b].exp().sum(-1).log() - q_all[:, b, k[b]] for b in range(16)], dim=1).mean()
    assert torch.allclose(saq.update(batch)["cql_gap"], direct, atol=1e-6)


def test_brac_kl_is_exact():
    g = torch.Generator().manual_seed(0)
    logits_p, logits_q = torch.randn(64, K, generator=g) * 3, torch.randn(64, K, generator=g) * 3
    logits_q[:, 0] = -30.0  # a code the behaviour model all but excludes
    expected = kl_divergence(Categorical(logits=logits_p), Categorical(logits=logits_q))
    got = categorical_kl(torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1))
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)

    alpha = 0.3
    saq = learner("saq_brac", vqvae_steps=0, alpha=alpha, critic_lr=0.0)
    batch = cluster_batch(g, 16)
    n = saq.nets
    with torch.no_grad():
        feat = n["encoder"](batch["state"])
        pi, b = Categorical(logits=n["actor"](feat)), Categorical(logits=n["behaviour"](feat))
        kl = kl_divergence(pi, b)
        q_min = n["critic"](feat).min(0).values
    metrics = saq.update(batch)
    assert torch.allclose(metrics["kl"], kl.mean(), atol=1e-6)
    assert torch.allclose(metrics["actor_loss"], (alpha * kl - (pi.probs * q_min).sum(-1)).mean(), atol=1e-6)


@pytest.mark.parametrize("algo", ["saq_iql", "saq_cql", "saq_brac"])
def test_vqvae_is_frozen_after_its_phase(algo):
    saq = learner(algo, vqvae_steps=5)
    g = torch.Generator().manual_seed(0)

    def vq_state() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in saq.state_dict().items() if k.startswith(("vqvae.", "vq_encoder."))}

    before = vq_state()
    critic = saq.nets["critic"].state_dict()["net.0.weight"].clone()
    for _ in range(5):
        saq.update(cluster_batch(g, 32))
    trained = vq_state()
    assert not all(torch.equal(before[k], trained[k]) for k in before)
    for _ in range(5):
        assert "critic_loss" in saq.update(cluster_batch(g, 32))
    assert all(torch.equal(trained[k], v) for k, v in vq_state().items())
    assert not torch.equal(critic, saq.nets["critic"].state_dict()["net.0.weight"])
