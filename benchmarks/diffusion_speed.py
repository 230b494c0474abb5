"""EDP training speed against Diffusion-QL: the same diffusion policy, critics and
batch, with the Q-term action from EDP's one-step approximation (and DPM-Solver targets)
or from the full K-step DDPM chain with back-propagation through every step (and K-step
targets), at several chain lengths K.

    .venv/bin/python benchmarks/diffusion_speed.py --data benchmarks/out/quality/data/lift_mh.zarr --steps 100 5 20 --repeats 3

Updates/s include batch sampling. Each (K, variant) is timed ``--repeats`` times in
alternation (fresh learners, ``--warmup`` untimed updates first); the table gives the
median and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "edp-td3": {"rl": "td3", "action_approx": True},
    "diffusion-ql": {"rl": "td3", "action_approx": False},
    "edp-iql": {"rl": "iql"},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--steps", type=int, nargs="*", default=[100, 20, 5], help="diffusion chain lengths K")
    p.add_argument("--updates", type=int, default=0, help="timed updates per run (0: enough for ~10 s)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from robot_rl.algos import LearnerSpec, OfflineData, make_learner
    from robot_rl.data import EpisodeStore

    store = EpisodeStore(args.data)
    keys = [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    spec = LearnerSpec.from_schema(store.schema, keys)
    data = OfflineData(store, spec, rewards="success")

    last_rate: dict[tuple[int, str], float] = {}  # sizes the next timed run of the same case

    def run(k: int, variant: str) -> float:
        config = {**VARIANTS[variant], "diffusion_steps": k, "inference_steps": min(15, k)}
        learner = make_learner("edp", spec, data.normalizer, config, seed=0)
        g = torch.Generator().manual_seed(0)
        for _ in range(args.warmup):
            learner.update(data.sample(learner.config.batch_size, g))
        n = args.updates or max(3, int(10 * last_rate.get((k, variant), 10.0)))
        t0 = time.perf_counter()
        for _ in range(n):
            learner.update(data.sample(learner.config.batch_size, g))
        rate = n / (time.perf_counter() - t0)
        last_rate[(k, variant)] = rate
        return rate

    rows = []
    for k in args.steps:
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for v in VARIANTS:
                rates[v].append(run(k, v))
        med = {v: float(np.median(r)) for v, r in rates.items()}
        rows.append({"K": k, "rates": rates, "median": med})
        print(f"K={k:4d}  " + "  ".join(f"{v} {med[v]:8.2f} upd/s" for v in VARIANTS)
              + f"  | EDP / Diffusion-QL = {med['edp-td3'] / med['diffusion-ql']:.1f}x", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
