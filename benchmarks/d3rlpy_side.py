"""The d3rlpy half of benchmarks/offline_throughput.py (runs in benchmarks/.venv-d3rlpy).

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy_side.py DATA.npz --algo iql \
        --updates 500 --warmup 50 --threads 2 --batch 256 [--sample-batches 200 --sample-seconds 1] [--no-scalers]

DATA.npz holds ``observations (N, Ds) float32, actions (N, Da), rewards (N,),
terminals (N,), timeouts (N,)`` (written by offline_throughput.py). Builds
``d3rlpy.dataset.MDPDataset`` from it, creates the algorithm on the CPU with every
network at ``--hidden`` (default 2 x 256, ReLU) and the same cost-relevant settings as
robot_rl (see offline_throughput.py's docstring), then times what ``algo.fitter`` does
per step: ``dataset.sample_transition_batch(batch_size)`` followed by
``algo.update(batch)`` (its metric logging, a dict append, is left out). Also times
sampling alone (rounds of ``--sample-batches`` until ``--sample-seconds``). Prints one JSON line.

Imports only numpy, torch and d3rlpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch


def time_sampling(sample, batches: int, min_seconds: float) -> tuple[int, float]:
    """Calls ``sample()`` in rounds of ``batches`` until ``min_seconds`` have passed:
    (calls, seconds)."""
    for _ in range(min(20, batches)):
        sample()
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(batches):
            sample()
        n += batches
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n, elapsed


def build_algo(name: str, hidden: list[int], batch: int, scalers: bool):  # noqa: ANN201
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    enc = VectorEncoderFactory(hidden_units=list(hidden))
    kw = {}
    if scalers:
        # robot_rl: observations standardised, actions min-max mapped to [-1, 1]
        kw = {
            "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
            "action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(),
        }
    if name == "iql":
        cfg = d3rlpy.algos.IQLConfig(
            batch_size=batch, actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc,
            n_critics=2, expectile=0.7, weight_temp=3.0, max_weight=100.0, **kw,
        )  # fmt: skip
    elif name == "cql":
        cfg = d3rlpy.algos.CQLConfig(
            batch_size=batch, actor_encoder_factory=enc, critic_encoder_factory=enc,
            n_critics=2, n_action_samples=10, conservative_weight=5.0,
            initial_alpha=1.0, alpha_learning_rate=0.0,  # fixed weight (robot_rl lagrange=False)
            initial_temperature=1.0, temp_learning_rate=1e-4,  # learned entropy temperature
            soft_q_backup=False, **kw,
        )  # fmt: skip
    elif name == "td3bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            batch_size=batch, actor_encoder_factory=enc, critic_encoder_factory=enc,
            n_critics=2, update_actor_interval=2, alpha=2.5,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, **kw,
        )  # fmt: skip
    elif name == "rebrac":
        critic_enc = VectorEncoderFactory(hidden_units=list(hidden), use_layer_norm=True)
        cfg = d3rlpy.algos.ReBRACConfig(
            batch_size=batch, actor_encoder_factory=enc, critic_encoder_factory=critic_enc,
            n_critics=2, update_actor_interval=2, actor_beta=0.01, critic_beta=0.01,
            actor_learning_rate=1e-3, critic_learning_rate=1e-3, gamma=0.99, **kw,
        )  # fmt: skip
    elif name == "bc":
        cfg = d3rlpy.algos.BCConfig(
            batch_size=batch, encoder_factory=enc, policy_type="deterministic", learning_rate=1e-3, **kw
        )
    else:
        raise SystemExit(f"unknown algo {name!r}")
    return cfg.create(device="cpu:0")


def n_parameters(algo) -> int:  # noqa: ANN001
    modules = algo.impl.modules
    total = 0
    for f in dataclasses.fields(modules):
        value = getattr(modules, f.name)
        if isinstance(value, torch.nn.Module):
            total += sum(p.numel() for p in value.parameters())
    return int(total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--algo", required=True)
    p.add_argument("--updates", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--sample-batches", type=int, default=200, help="sampling alone: batches per round")
    p.add_argument("--sample-seconds", type=float, default=1.0, help="sampling alone: rounds until this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-scalers", action="store_true", help="no observation/action scalers (feeds raw values)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    d3rlpy.seed(args.seed)
    # d3rlpy.seed also sets cudnn.deterministic; irrelevant on the CPU.
    npz = np.load(args.data)
    t0 = time.perf_counter()
    dataset = MDPDataset(
        observations=npz["observations"].astype(np.float32),
        actions=npz["actions"].astype(np.float32),
        rewards=npz["rewards"].astype(np.float32),
        terminals=npz["terminals"].astype(np.float32),
        timeouts=npz["timeouts"].astype(np.float32),
        action_space=ActionSpace.CONTINUOUS,
    )
    algo = build_algo(args.algo, args.hidden, args.batch, not args.no_scalers)
    # what fitter() does before its loop: fit the scalers, build the networks
    for scaler in (algo.observation_scaler, algo.action_scaler):
        if scaler is not None and not scaler.built:
            scaler.fit_with_transition_picker(dataset.episodes, dataset.transition_picker)
    algo.build_with_dataset(dataset)
    setup_s = time.perf_counter() - t0

    bs = algo.config.batch_size
    for _ in range(args.warmup):
        algo.update(dataset.sample_transition_batch(bs))
    t0 = time.perf_counter()
    for _ in range(args.updates):
        metrics = algo.update(dataset.sample_transition_batch(bs))
    update_s = time.perf_counter() - t0

    n_sample, sample_s = time_sampling(
        lambda: dataset.sample_transition_batch(bs), args.sample_batches, args.sample_seconds
    )

    finite = all(np.isfinite(float(v)) for v in metrics.values())
    print(
        json.dumps(
            {
                "side": "d3rlpy",
                "algo": args.algo,
                "updates": args.updates,
                "warmup": args.warmup,
                "update_s": update_s,
                "updates_per_s": args.updates / update_s,
                "sample_batches": n_sample,
                "sample_s": sample_s,
                "samples_per_s": n_sample / sample_s,
                "setup_s": setup_s,
                "batch_size": bs,
                "hidden": args.hidden,
                "threads": torch.get_num_threads(),
                "transitions": int(dataset.transition_count),
                "episodes": len(dataset.episodes),
                "n_parameters": n_parameters(algo),
                "scalers": not args.no_scalers,
                "metrics_finite": finite,
                "versions": {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "numpy": np.__version__},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
