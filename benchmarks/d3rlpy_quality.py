"""d3rlpy 2.8.1's IQL and CQL in the learning-quality benchmark (benchmarks/offline_quality.py).

    bash benchmarks/setup_d3rlpy.sh     # once: benchmarks/.venv-d3rlpy (d3rlpy 2.8.1, torch 2.11.0)
    .venv/bin/python benchmarks/d3rlpy_quality.py --out benchmarks/out/quality --updates 2000 \\
        --seeds 0 1 2 3 4 --eval-episodes 50 --algos iql cql --workers 2

This is a benchmark of a peer library, not of a robot_rl checkpoint: d3rlpy trains in its
own venv (a subprocess running this file with ``--d3rlpy-train``, which imports only
numpy, torch and d3rlpy) and saves its greedy policy with ``algo.save_policy`` (TorchScript,
scalers included); this process loads that file with ``torch.jit.load`` and rolls it out
through robot_rl's evaluation code. Rows go to OUT/runs_d3rlpy.jsonl (algos
``d3rlpy-iql``, ``d3rlpy-cql``) in the format of offline_quality.py's OUT/runs.jsonl;
``offline_quality.py --report`` reads both. Runs already in the file are skipped, so an
interrupted benchmark resumes; ``--report`` only prints the table.

Same as the robot_rl runs of offline_quality.py:

* data: the stores OUT/data/<task>_<dataset>.zarr (collected with offline_quality.py's
  ``collect`` if missing), exported to OUT/d3rlpy/<task>_<dataset>.npz with robot_rl's
  training signal: observations = the low-dim keys concatenated in ``LearnerSpec.state_keys``
  order; actions; rewards and terminals from the ``success`` relabelling
  (``relabel_success``: reward 1 and terminal on the last step of a successful episode);
  timeouts = the last step of every episode that is not terminal. d3rlpy drops the last
  step of a timed-out episode (no s'), as robot_rl's ``OfflineData(with_next=True)`` does,
  so both sample from the same transitions;
* budget: ``--updates`` gradient updates of batch 256 (d3rlpy's manual fit loop:
  ``dataset.sample_transition_batch`` + ``algo.update``, what ``algo.fitter`` does);
* networks: every MLP 2 x 256, ReLU (``VectorEncoderFactory([256, 256])`` for the actor,
  the critics and IQL's value net); observations standardised, actions min-max mapped to
  [-1, 1] (``StandardObservationScaler`` + ``MinMaxActionScaler``);
* seed: the run's seed (``d3rlpy.seed``); CPU, ``torch.set_num_threads(--threads)`` and
  ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``--threads`` (1 by default) in training and
  evaluation;
* evaluation: at the middle and at the end of training (every ``updates // 2`` updates
  before the end, then at the end, as ``robot_rl.algos.trainer.fit`` with
  ``eval_every=updates // 2``), ``--eval-episodes`` rollouts on seeds 1000, 1001, ... with
  ``robot_rl.cli.train.sim_evaluator`` (the sim twin built from the store's recorded robot
  config), the policy acting greedily (both: tanh of the Gaussian's mean, as robot_rl's
  ``act``), actions mapped back to the robot's units by the scaler;
* row: task, dataset, algo, seed, updates, eval_episodes, final, best, evals,
  final_return, updates_per_s (sample + update only, as robot_rl's, saving the policy is
  left out), seconds (the whole run: d3rlpy's process start, dataset build, training,
  policy saving and the evaluations; robot_rl's counts from after its data is loaded),
  data_episodes, data_success.

Hyper-parameters are d3rlpy's defaults apart from the above (batch, networks, scalers).
Against robot_rl's defaults (robot_rl/algos/iql.py, cql.py):

* IQL: identical settings: actor/critic lr 3e-4, gamma 0.99, tau 0.005, 2 critics,
  expectile 0.7, beta (d3rlpy ``weight_temp``) 3, max weight 100, Gaussian actor with a
  state-independent log std clamped to [-5, 2], log-prob around tanh(mean), Adam, no lr
  schedule.
* CQL: lrs (actor 1e-4, critic 3e-4, temperature 1e-4), gamma, tau, 2 critics,
  initial temperature 1, conservative weight 5, 10 action samples per source, no soft
  backup: the same. Differs: d3rlpy's default learns the conservative weight
  (``alpha_learning_rate=1e-4``, ``initial_alpha=1``, ``alpha_threshold=10``: penalty
  ``alpha * 5 * (gap - 10)``), i.e. robot_rl's ``lagrange=True`` variant (target gap 10,
  lr 1e-4, weight starting at 5); robot_rl's default is a fixed weight 5
  (``lagrange=False``). Over 2000 updates at lr 1e-4 log-alpha moves by at most ~0.2, so
  the weight stays within ~[4, 6]. Also: d3rlpy's critic target uses the actor's
  (squashed) mean at s', robot_rl a sample; d3rlpy's temperature loss is
  ``-(exp(log_t) * (log_pi - Da))``, robot_rl's ``-(log_t * (log_pi - Da))``.
* Both: d3rlpy's StandardObservationScaler divides by ``std + 1e-3``, robot_rl by
  ``max(std, 1e-3)``; d3rlpy fits its scalers on the sampled transitions (without the
  dropped last steps of timed-out episodes), robot_rl on every step; robot_rl clips
  actions to the data's range after un-normalising (d3rlpy's are inside it by tanh).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
D3RLPY_PYTHON = ROOT / "benchmarks" / ".venv-d3rlpy" / "bin" / "python"
SETUP_CMD = "bash benchmarks/setup_d3rlpy.sh"
ALGOS = ("iql", "cql")
LOG_NAME = "runs_d3rlpy.jsonl"


def eval_steps(updates: int) -> list[int]:
    """The updates after which the policy is evaluated, as ``trainer.fit`` with
    ``eval_every=updates // 2`` does: every multiple of it before the end, then the end."""
    every = updates // 2
    return ([*range(every, updates, every)] if every else []) + [updates]


# ------------------------------------------------------------------ d3rlpy side
# Runs in benchmarks/.venv-d3rlpy: numpy, torch and d3rlpy only.
def d3rlpy_config(algo: str, batch: int):  # noqa: ANN201
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    enc = VectorEncoderFactory(hidden_units=[256, 256])
    common = {
        "batch_size": batch,
        "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
        "action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(),
        "actor_encoder_factory": enc,
        "critic_encoder_factory": enc,
    }
    if algo == "iql":
        return d3rlpy.algos.IQLConfig(value_encoder_factory=enc, **common)
    if algo == "cql":
        return d3rlpy.algos.CQLConfig(**common)
    raise SystemExit(f"unknown algo {algo!r}; choose from {ALGOS}")


def d3rlpy_train(args: argparse.Namespace) -> int:
    """Train one run, save the greedy policy at each evaluation step; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    import d3rlpy
    from d3rlpy.algos.utility import build_scalers_with_transition_picker
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    t0 = time.perf_counter()
    d3rlpy.seed(args.seed)
    npz = np.load(args.data)
    dataset = MDPDataset(
        observations=npz["observations"].astype(np.float32),
        actions=npz["actions"].astype(np.float32),
        rewards=npz["rewards"].astype(np.float32),
        terminals=npz["terminals"].astype(np.float32),
        timeouts=npz["timeouts"].astype(np.float32),
        action_space=ActionSpace.CONTINUOUS,
    )
    algo = d3rlpy_config(args.algo, args.batch).create(device="cpu:0")
    build_scalers_with_transition_picker(algo, dataset)  # what fitter() does before its loop
    algo.build_with_dataset(dataset)
    setup_s = time.perf_counter() - t0

    out = Path(args.policy_dir)
    out.mkdir(parents=True, exist_ok=True)
    saves = eval_steps(args.updates)
    bs = algo.config.batch_size
    policies, update_s, metrics = [], 0.0, {}
    step = 0
    for stop in saves:
        t0 = time.perf_counter()
        while step < stop:
            metrics = algo.update(dataset.sample_transition_batch(bs))
            step += 1
        update_s += time.perf_counter() - t0
        path = out / f"policy_{stop}.pt"
        algo.save_policy(str(path))
        policies.append({"step": stop, "path": str(path)})
    finite = all(np.isfinite(float(v)) for v in metrics.values())
    print(json.dumps({
        "algo": args.algo, "seed": args.seed, "updates": step, "update_s": update_s,
        "updates_per_s": step / update_s if update_s > 0 else 0.0, "setup_s": setup_s,
        "policies": policies, "transitions": int(dataset.transition_count), "episodes": len(dataset.episodes),
        "threads": torch.get_num_threads(), "metrics": {k: float(v) for k, v in metrics.items()},
        "metrics_finite": finite, "versions": {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__},
    }))  # fmt: skip
    return 0


# ------------------------------------------------------------ robot_rl side (main venv)
def export_npz(store_path: Path, out: Path) -> dict[str, Any]:
    """The store's transitions with robot_rl's training signal (``--rewards success``) as
    d3rlpy's MDPDataset arrays; see the module docstring."""
    from robot_rl.algos import LearnerSpec
    from robot_rl.data import EpisodeStore
    from robot_rl.data.relabel import relabel_success

    store = EpisodeStore(store_path)
    low_dim = [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    spec = LearnerSpec.from_schema(store.schema, low_dim)
    n = store.n_steps
    obs = np.concatenate([np.asarray(store.read(k, 0, n), np.float32).reshape(n, -1) for k in spec.state_keys], axis=1)
    actions = np.asarray(store.read("action", 0, n), np.float32)
    reward, done = relabel_success(store)
    ends = np.asarray(store.episode_ends)
    last = np.zeros(n, dtype=bool)
    last[ends - 1] = True
    if np.any(done & ~last):
        raise SystemExit(f"{store_path}: terminal steps inside episodes; d3rlpy would split those episodes there")
    if np.any(actions.max(0) - actions.min(0) <= 0):
        raise SystemExit(f"{store_path}: a constant action element; d3rlpy's MinMaxActionScaler would divide by zero")
    timeouts = last & ~done
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, observations=obs, actions=actions, rewards=reward.astype(np.float32),
             terminals=done.astype(np.float32), timeouts=timeouts.astype(np.float32))  # fmt: skip
    os.replace(tmp, out)
    success = np.array([bool(r.get("success", False)) for r in store.records], dtype=bool)
    return {
        "npz": str(out),
        "episodes": len(ends),
        "steps": int(n),
        "success_rate": float(success.mean()) if success.size else 0.0,
        "state_keys": spec.state_keys,
        "terminals": int(done.sum()),
        "timeouts": int(timeouts.sum()),
    }


class TorchScriptPolicy:
    """A d3rlpy ``save_policy`` TorchScript file as a robot_rl ``Policy``: the low-dim
    observations concatenated in the spec's order, (1, D) float32 in, the action (in the
    robot's units: the scalers are inside the file) out."""

    def __init__(self, path: str | Path, spec: Any) -> None:
        import torch

        self.spec = spec
        self.module = torch.jit.load(str(path), map_location="cpu")
        self.module.eval()

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        state = self.spec.state_vector(obs)
        with torch.no_grad():
            action = self.module(torch.from_numpy(state[None]))
        return action[0].numpy().astype(np.float32)


class _PolicyHolder:
    """What ``sim_evaluator``'s function calls ``.policy()`` on."""

    def __init__(self, policy: TorchScriptPolicy) -> None:
        self._policy = policy

    def policy(self) -> TorchScriptPolicy:
        return self._policy


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(job["threads"])
    from robot_rl.algos import LearnerSpec
    from robot_rl.cli.train import sim_evaluator
    from robot_rl.data import EpisodeStore

    store = EpisodeStore(job["data"])
    low_dim = [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    spec = LearnerSpec.from_schema(store.schema, low_dim)
    algo = job["algo"].removeprefix("d3rlpy-")
    run_dir = Path(job["out"]) / "runs" / f"{job['dataset']}_{job['algo']}_s{job['seed']}"
    cmd = [job["d3rlpy_python"], str(Path(__file__).resolve()), "--d3rlpy-train", job["npz"], "--algo", algo,
           "--seed", str(job["seed"]), "--updates", str(job["updates"]), "--threads", str(job["threads"]),
           "--batch", str(job["batch"]), "--policy-dir", str(run_dir)]  # fmt: skip
    n = str(job["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        return {**{k: job[k] for k in ("dataset", "algo", "seed")}, "error": f"d3rlpy training exit {proc.returncode}:\n{tail}"}
    trained = json.loads(lines[-1])
    (run_dir / "d3rlpy_train.json").write_text(json.dumps(trained, indent=1))

    evaluate_fn, sim_env = sim_evaluator(job["task"], spec, job["eval_episodes"], 1000)
    history = []
    try:
        for p in trained["policies"]:
            result = evaluate_fn(_PolicyHolder(TorchScriptPolicy(p["path"], spec)))
            history.append({"step": p["step"], **result})
    finally:
        sim_env.close()
    evals = [float(h["success_rate"]) for h in history]
    return {
        **{k: job[k] for k in ("task", "dataset", "algo", "seed", "updates", "eval_episodes")},
        "final": evals[-1],
        "best": max(evals),
        "evals": evals,
        "final_return": float(history[-1]["mean_return"]),
        "updates_per_s": trained["updates_per_s"],
        "seconds": time.perf_counter() - t0,
        "data_episodes": job["data_episodes"],
        "data_success": job["data_success"],
    }


def check_d3rlpy(python: Path) -> str:
    if not python.exists():
        raise SystemExit(f"error: the d3rlpy venv is missing ({python}).\nCreate it with:  {SETUP_CMD}")
    probe = subprocess.run([str(python), "-c", "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    if probe.returncode != 0:
        tail = "\n".join(probe.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"error: 'import d3rlpy' fails in {python}:\n{tail}\nRe-create the venv with:  {SETUP_CMD}")
    return probe.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="lift")
    p.add_argument("--datasets", nargs="*", default=["ph", "mh"], choices=["ph", "mh"])
    p.add_argument("--episodes", type=int, default=50, help="episodes per dataset, if it has to be collected")
    p.add_argument("--algos", nargs="*", default=list(ALGOS), choices=ALGOS)
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2, help="parallel runs (each with --threads torch threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/bench_quality"))
    p.add_argument("--d3rlpy-python", default=str(D3RLPY_PYTHON))
    p.add_argument("--report", action="store_true", help="only print the table of finished runs")
    # the d3rlpy side (run by run_one in the d3rlpy venv)
    p.add_argument("--d3rlpy-train", metavar="NPZ", help=argparse.SUPPRESS)
    p.add_argument("--algo", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--policy-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.d3rlpy_train:
        args.data = args.d3rlpy_train
        return d3rlpy_train(args)

    from offline_quality import collect, report  # benchmarks/ is sys.path[0]

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / LOG_NAME
    failed = 0
    if not args.report:
        versions = check_d3rlpy(Path(args.d3rlpy_python))
        print(f"d3rlpy side: d3rlpy/torch {versions} ({args.d3rlpy_python})")
        done = set()
        if log.exists():
            done = {(r["task"], r["dataset"], r["algo"], r["seed"], r["updates"])
                    for r in map(json.loads, log.read_text().splitlines()) if r}  # fmt: skip
        todo = [(s, d, f"d3rlpy-{a}") for s in args.seeds for d in args.datasets for a in args.algos
                if (args.task, d, f"d3rlpy-{a}", s, args.updates) not in done]  # fmt: skip
        data: dict[str, dict[str, Any]] = {}
        for d in sorted({d for _, d, _ in todo}):
            store = collect(args.task, d, args.episodes, args.out)
            data[d] = {"store": str(store), **export_npz(store, args.out / "d3rlpy" / f"{args.task}_{d}.npz")}
            info = data[d]
            print(f"data {d}: {info['episodes']} episodes ({100 * info['success_rate']:.0f}% successful), {info['steps']} steps, "
                  f"{info['terminals']} terminal / {info['timeouts']} timed out -> {info['npz']}")  # fmt: skip
        jobs = [
            {"task": args.task, "dataset": d, "data": data[d]["store"], "npz": data[d]["npz"], "algo": a, "seed": s,
             "updates": args.updates, "batch": args.batch, "eval_episodes": args.eval_episodes, "threads": args.threads,
             "out": str(args.out), "d3rlpy_python": str(Path(args.d3rlpy_python).absolute()),
             "data_episodes": data[d]["episodes"], "data_success": data[d]["success_rate"]}  # fmt: skip
            for s, d, a in todo
        ]
        jobs.sort(key=lambda j: 0 if j["algo"] == "d3rlpy-cql" else 1)  # slowest first: the workers finish together
        print(f"{len(jobs)} runs to do ({len(done)} already in {log}); {args.workers} workers x {args.threads} threads")
        os.environ.setdefault("MUJOCO_GL", "egl")
        t0 = time.perf_counter()
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for i, result in enumerate(pool.imap_unordered(run_one, jobs), 1):
                head = f"[{i}/{len(jobs)} {time.perf_counter() - t0:.0f}s] {result['dataset']} {result['algo']} seed {result['seed']}"
                if "error" in result:
                    failed += 1
                    print(f"{head}: FAILED: {result['error']}", flush=True)
                    continue
                with open(log, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"{head}: final {100 * result['final']:.0f}% best {100 * result['best']:.0f}% "
                      f"({result['updates_per_s']:.0f} upd/s, {result['seconds']:.0f}s)", flush=True)  # fmt: skip
    print(report(args.out))
    if failed:
        print(f"{failed} run(s) failed; see above")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
