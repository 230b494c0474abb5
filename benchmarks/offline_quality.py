"""Learning quality of the offline learners on twin datasets: success after a matched
update budget, several training seeds, fixed evaluation seeds, IQM with bootstrap CIs.

    .venv/bin/python benchmarks/offline_quality.py --task lift --updates 3000 --seeds 0 1 2 3 4 \
        --algos bc iql cql td3bc rebrac --eval-episodes 50 --workers 2 --out runs/bench_quality

Datasets (collected once, by the scripted expert, into OUT/data/):
  ph  expert demonstrations, noise 0            (robomimic "PH"-like)
  mh  mixed quality, noise 0 / 0.3 / 0.6        (robomimic "MH"-like; the 0.6 episodes often fail)

Protocol: every (dataset, algorithm, seed) run trains for --updates gradient updates with
the algorithm's default hyper-parameters (batch size included) on the low-dim
observations, with sparse success rewards (``--rewards success``); the policy is
evaluated with --eval-episodes rollouts on fixed seeds 1000, 1001, ... at the middle
and at the end of training. "final" is the end-of-training success rate, "best" the
better of the two evaluations. Across training seeds we report the interquartile mean
(IQM: the mean of the middle 50% of runs, rliable's aggregate) with a 95% stratified
bootstrap confidence interval over seeds.

Runs are appended as JSON lines to OUT/runs.jsonl as they finish (the report also
reads other OUT/runs*.jsonl files, e.g. d3rlpy's runs from benchmarks/d3rlpy_quality.py); re-running the
command skips runs already there, so an interrupted benchmark resumes. ``--report``
only prints the table from what is there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

DATASETS = {"ph": (0.0,), "mh": (0.0, 0.3, 0.6)}


def collect(task: str, name: str, episodes: int, out: Path) -> Path:
    from robot_rl.cli.sim import make_sim_robot
    from robot_rl.envs import collect_episodes

    path = out / "data" / f"{task}_{name}.zarr"
    if path.exists():
        return path
    robot_name, robot = make_sim_robot(task, [])
    with robot:
        collect_episodes(robot, robot_name, task, path, episodes, DATASETS[name], seed=0)
    return path


def run_one(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    from robot_rl.algos import LearnerSpec, OfflineData, learner_class, make_config, make_learner
    from robot_rl.algos.trainer import fit
    from robot_rl.cli.train import sim_evaluator
    from robot_rl.data import EpisodeStore

    store = EpisodeStore(job["data"])
    low_dim = [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    config = make_config(job["algo"], job.get("config", {}))
    spec = LearnerSpec.from_schema(store.schema, low_dim, config.obs_horizon)
    data = OfflineData(store, spec, rewards="success", with_next=learner_class(job["algo"]).uses_next,
                       action_horizon=getattr(config, "action_horizon", 1))  # fmt: skip
    learner = make_learner(job["algo"], spec, data.normalizer, config, seed=job["seed"])
    evaluate_fn, env = sim_evaluator(job["task"], spec, job["eval_episodes"], 1000)
    run_dir = Path(job["out"]) / "runs" / f"{job['task']}_{job['dataset']}_{job['label']}_s{job['seed']}"
    t0 = time.perf_counter()
    try:
        result = fit(learner, data, run_dir, job["updates"], seed=job["seed"], log_every=max(job["updates"] // 10, 1),
                     eval_every=job["updates"] // job.get("evals", 2), evaluate_fn=evaluate_fn, tensorboard=False, progress=False)  # fmt: skip
    finally:
        env.close()
    evals = [e["eval/success_rate"] for e in result.eval_history]
    return {
        **{k: job[k] for k in ("task", "dataset", "seed", "updates", "eval_episodes")},
        "algo": job["label"],
        "config": job.get("config", {}),
        "final": evals[-1],
        "best": max(evals),
        "evals": evals,
        "final_return": result.eval_history[-1]["eval/mean_return"],
        "updates_per_s": result.updates_per_second,
        "seconds": time.perf_counter() - t0,
        "data_episodes": data.n_episodes,
        "data_success": data.success_rate,
    }


def parse_algo_overrides(items: list[str]) -> dict[str, dict]:
    """``["diffusion:network=mlp", "diffusion:lr=1e-3"]`` -> ``{"diffusion": {"network": "mlp", "lr": ...}}``."""
    import yaml

    overrides: dict[str, dict] = {}
    for item in items:
        algo, _, rest = item.partition(":")
        field, sep, value = rest.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected ALGO:FIELD=VALUE")
        overrides.setdefault(algo, {})[field] = yaml.safe_load(value)
    return overrides


def iqm(values: np.ndarray) -> float:
    """Mean of the middle 50% (rliable): trims 25% at each end, fractional weights at the cut."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    lo, hi = 0.25 * n, 0.75 * n
    weights = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, 1)
    return float(np.sum(weights * x) / np.sum(weights))


def bootstrap_ci(values: np.ndarray, reps: int = 5000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    stats = [iqm(values[rng.integers(0, values.size, values.size)]) for _ in range(reps)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def report(out: Path) -> str:
    rows = [json.loads(line) for f in sorted(out.glob("runs*.jsonl")) for line in f.read_text().splitlines() if line.strip()]
    lines = [
        "| task | data | algorithm | seeds | final IQM [95% CI] | best IQM [95% CI] | per-seed final | upd/s (median) |",
        "| --- | --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    keys = sorted({(r["task"], r["dataset"], r["algo"]) for r in rows}, key=lambda k: (k[0], k[1], ALGO_ORDER.index(k[2].split("[")[0]) if k[2].split("[")[0] in ALGO_ORDER else 99))
    for task, dataset, algo in keys:
        rs = sorted((r for r in rows if (r["task"], r["dataset"], r["algo"]) == (task, dataset, algo)), key=lambda r: r["seed"])
        final = np.array([r["final"] for r in rs])
        best = np.array([r["best"] for r in rs])
        fl, fh = bootstrap_ci(final)
        bl, bh = bootstrap_ci(best)
        per_seed = " ".join(f"{100 * v:.0f}" for v in final)
        ups = np.median([r["updates_per_s"] for r in rs])
        lines.append(
            f"| {task} | {dataset} | {algo} | {len(rs)} | {100 * iqm(final):.1f}% [{100 * fl:.0f}, {100 * fh:.0f}] | "
            f"{100 * iqm(best):.1f}% [{100 * bl:.0f}, {100 * bh:.0f}] | {per_seed} | {ups:.0f} |"
        )
    return "\n".join(lines)


ALGO_ORDER = ["bc", "diffusion", "iql", "saq_iql", "cql", "saq_cql", "saq_brac", "td3bc", "rebrac", "edp", "d3rlpy-iql", "d3rlpy-cql"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="lift")
    p.add_argument("--datasets", nargs="*", default=["ph", "mh"], choices=sorted(DATASETS))
    p.add_argument("--episodes", type=int, default=50, help="episodes per dataset")
    p.add_argument("--algos", nargs="*", default=ALGO_ORDER[:5])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2, help="parallel runs (each with --threads torch threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/bench_quality"))
    p.add_argument("--evals", type=int, default=2, help="evaluations per run, evenly spaced (the last at the end)")
    p.add_argument("--set", nargs="*", default=[], help="learner config overrides ALGO:FIELD=VALUE (YAML values)")
    p.add_argument("--tag", default="", help="label the runs ALGO[TAG] (a variant with --set)")
    p.add_argument("--report", action="store_true", help="only print the table of finished runs")
    args = p.parse_args()
    overrides = parse_algo_overrides(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    if not args.report:
        paths = {d: collect(args.task, d, args.episodes, args.out) for d in args.datasets}
        done = set()
        if log.exists():
            done = {(r["task"], r["dataset"], r["algo"], r["seed"], r["updates"]) for r in map(json.loads, log.read_text().splitlines()) if r}
        jobs = [
            {"task": args.task, "dataset": d, "data": str(paths[d]), "algo": a, "seed": s, "updates": args.updates,
             "eval_episodes": args.eval_episodes, "threads": args.threads, "out": str(args.out),
             "evals": args.evals, "config": overrides.get(a, {}), "label": f"{a}[{args.tag}]" if args.tag else a}  # fmt: skip
            for s in args.seeds for d in args.datasets for a in args.algos
            if (args.task, d, f"{a}[{args.tag}]" if args.tag else a, s, args.updates) not in done
        ]
        cost = {"diffusion": -1, "cql": 0, "rebrac": 1, "iql": 2, "td3bc": 3, "bc": 4}  # slowest first: the workers finish together
        jobs.sort(key=lambda j: cost.get(j["algo"], 5))
        print(f"{len(jobs)} runs to do ({len(done)} already in {log}); {args.workers} workers x {args.threads} threads")
        os.environ.setdefault("MUJOCO_GL", "egl")
        t0 = time.perf_counter()
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for i, result in enumerate(pool.imap_unordered(run_one, jobs), 1):
                with open(log, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"[{i}/{len(jobs)} {time.perf_counter() - t0:.0f}s] {result['dataset']} {result['algo']} seed {result['seed']}: "
                      f"final {100 * result['final']:.0f}% best {100 * result['best']:.0f}% ({result['seconds']:.0f}s)", flush=True)  # fmt: skip
    print(report(args.out))


if __name__ == "__main__":
    main()
