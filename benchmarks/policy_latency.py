"""Inference latency of every policy family on this CPU: p50 / p99 per action, with
action-chunk reuse (the receding horizon the policy runs with) and without it (a new
prediction every step).

    .venv/bin/python benchmarks/policy_latency.py --data benchmarks/out/quality/data/lift_ph.zarr --steps 400

Each learner is built with its default configuration on the store's low-dim observations
(``--camera`` adds the store's cameras) and trained for a few updates (latency depends on
the network, not on how well it is trained). The timed call is ``LearnedPolicy.act(obs)``
on observations replayed from the store: history, normalisation, the network (the whole
sampling chain for diffusion policies), un-normalisation. Steps cross episode
boundaries with ``reset()``, as a controller would.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(policy, observations: list[dict[str, np.ndarray]], starts: set[int], warmup: int = 20) -> np.ndarray:
    times = []
    for i, obs in enumerate(observations):
        if i in starts:
            policy.reset()
        t0 = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - t0)
    return np.array(times[warmup:]) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--algos", nargs="*", default=None, help="default: every registered learner")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--camera", action="store_true", help="use the store's cameras too")
    p.add_argument("--set", nargs="*", default=[], help="ALGO:FIELD=VALUE config overrides")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch
    from offline_quality import parse_algo_overrides  # same directory

    torch.set_num_threads(args.threads)
    from robot_rl.algos import LearnerSpec, OfflineData, available_learners, learner_class, make_learner
    from robot_rl.data import EpisodeStore

    store = EpisodeStore(args.data)
    keys = None if args.camera else [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    overrides = parse_algo_overrides(args.set)

    # observations replayed from the store, robot-style names
    obs_keys = [k for k in store.schema.obs_keys if keys is None or k in keys]
    observations, starts = [], set()
    for ep in range(len(store)):
        data = store.episode(ep, keys=obs_keys)
        starts.add(len(observations))
        n = len(next(iter(data.values())))
        observations += [{k.removeprefix("obs."): np.asarray(data[k][t]) for k in obs_keys} for t in range(n)]
        if len(observations) >= args.steps:
            break
    observations = observations[: args.steps]

    results = []
    for algo in args.algos or available_learners():
        config = overrides.get(algo, {})
        spec = LearnerSpec.from_schema(store.schema, keys, int(config.get("obs_horizon", 1)))
        cls = learner_class(algo)
        horizon = int(config.get("action_horizon", getattr(cls.config_class(), "action_horizon", 1)))
        data = OfflineData(store, spec, rewards="success", with_next=cls.uses_next, action_horizon=horizon)
        learner = make_learner(algo, spec, data.normalizer, config, seed=0)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            learner.update(data.sample(learner.config.batch_size, g))
        row = {"algo": algo, "params": learner.n_parameters(), "T": learner.action_horizon, "Ta": learner.exec_horizon}
        for reuse in (True, False):
            policy = learner.policy()
            policy.reuse_chunks = reuse
            ms = measure(policy, observations, starts)
            row["reuse" if reuse else "every_step"] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}
        results.append(row)
        r, e = row["reuse"], row["every_step"]
        print(f"{algo:10s} params {row['params']:>9,d}  T={row['T']:<2d} Ta={row['Ta']:<2d}  with reuse p50 {r['p50']:7.2f} ms p99 {r['p99']:7.2f} ms | "
              f"every step p50 {e['p50']:7.2f} ms p99 {e['p99']:7.2f} ms", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "camera": args.camera, "steps": args.steps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
