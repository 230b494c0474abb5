"""Offline-RL training throughput: robot_rl's learners against d3rlpy 2.8.1, side by side.

    bash benchmarks/setup_d3rlpy.sh        # once: benchmarks/.venv-d3rlpy (d3rlpy 2.8.1, torch 2.11.0)
    .venv/bin/robot-rl sim collect --task lift --episodes 50 --noise 0.0 0.3 --out /tmp/bench/lift_mixed.zarr
    .venv/bin/python benchmarks/offline_throughput.py --data /tmp/bench/lift_mixed.zarr \\
        --algos iql cql td3bc rebrac --repeats 3 --threads 2 --json benchmarks/out/offline_throughput.json

What is measured, per algorithm, each side in its own fresh subprocess (so torch's
thread settings start clean), the two sides alternating (robot_rl first on even
repeats, d3rlpy first on odd ones):

* updates/s including sampling: after ``--warmup`` updates, the time of ``--updates``
  iterations of "sample a batch, one update" (CQL: ``--cql-updates``/``--cql-warmup``).
  robot_rl: ``learner.update(data.sample(256, generator))`` on ``OfflineData``.
  d3rlpy: ``algo.update(dataset.sample_transition_batch(256))``, what ``algo.fitter``
  does per step (less its metric logging), including d3rlpy's numpy -> torch
  conversion and scalers inside ``algo.update``.
* sampling alone: batches/s of the same sampling call, in rounds of ``--sample-batches``
  until ``--sample-seconds`` have passed.

Same on both sides: the data (the store's transitions, exported to an npz for d3rlpy:
low-dim observation keys concatenated in robot_rl's spec order, actions, rewards,
terminals = ``done``, timeouts = the last step of episodes that are not done), batch
256, every network an MLP of 2 hidden layers of 256 with ReLU, CPU, ``torch.set_num_threads``
(plus ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) = ``--threads``, torch 2.11.0, numpy 2.2.6,
Adam everywhere, and the settings that change the cost of an update:

* IQL: 2 critics + target critics, a value net, a Gaussian actor with a
  state-independent std; expectile 0.7, beta 3, max weight 100; actor updated every step.
* CQL: 2 critics + targets, tanh-Gaussian actor, 10 action samples per source
  (uniform, pi(s), pi(s')), fixed conservative weight 5 (robot_rl ``lagrange=False``;
  d3rlpy ``alpha_learning_rate=0``, ``initial_alpha=1``), learned entropy temperature
  (lr 1e-4), no soft backup.
* TD3+BC: 2 critics + targets, deterministic actor + target, policy delay 2, target
  smoothing 0.2 / clip 0.5, alpha 2.5.
* ReBRAC: d3rlpy 2.8.1 has ``ReBRACConfig``, so it is compared directly, both sides at
  2 x 256 and batch 256 (instead of ReBRAC's 3 x 256 / 1024): LayerNorm in the critics
  only, policy delay 2, actor/critic BC coefficients 0.01/0.01, lr 1e-3, actor on the
  min over critics.
* Parameter counts are reported for both sides as a check that the networks match.

What differs (implementation, not settings):

* Observation/action normalisation: robot_rl normalises the whole dataset once, up front
  (state mean/std, actions min-max to [-1, 1]); d3rlpy applies
  ``StandardObservationScaler`` + ``MinMaxActionScaler`` to every batch inside
  ``algo.update`` (``--no-scalers`` turns them off on the d3rlpy side).
* Sampling: robot_rl draws indices with one ``torch.randint`` and gathers rows from
  tensors; d3rlpy picks transitions one by one in Python and stacks them with numpy.
* Critic ensembles: robot_rl evaluates all members in one batched matmul
  (``EnsembleLinear``, ``baddbmm``); d3rlpy holds a ``ModuleList`` of separate Q
  networks and loops over them.
* Optimiser: robot_rl's Adam uses ``foreach=True`` and ``zero_grad(set_to_none=True)``;
  d3rlpy's ``AdamFactory`` leaves ``foreach`` unset (on the CPU: the per-parameter loop)
  and zero-fills gradients (``set_to_none`` only when ``compile_graph``).
* Algorithm-level differences in work per update: d3rlpy's IQL evaluates the target
  critics and the value net twice (once for the value loss, once for the actor
  weights); robot_rl's once. d3rlpy's CQL uses the actor's mean for the target action,
  robot_rl a sample. d3rlpy's LayerNorm sits after the ReLU, robot_rl's before it.

Results are medians over ``--repeats``; ``--json`` keeps every run. The machine may be
shared: the load average before and after each run is printed and saved. With
``--threads 2`` on a 2-core machine that something else is loading, every torch op
waits for a descheduled worker thread: in checks here at a load average of 3-5,
robot_rl's IQL fell from ~160 to ~12 upd/s and d3rlpy's TD3+BC from ~120 to ~3. Compare
numbers only from runs at similar, low load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
D3RLPY_PYTHON = ROOT / "benchmarks" / ".venv-d3rlpy" / "bin" / "python"
D3RLPY_SIDE = ROOT / "benchmarks" / "d3rlpy_side.py"
SETUP_CMD = "bash benchmarks/setup_d3rlpy.sh"
ALGOS = ("iql", "cql", "td3bc", "rebrac", "bc")


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


# ------------------------------------------------------------------ robot_rl worker
def robot_rl_worker(args: argparse.Namespace) -> int:
    """One robot_rl measurement (runs in a subprocess); prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    import numpy as np

    from robot_rl.algos import LearnerSpec, OfflineData, make_learner
    from robot_rl.data import EpisodeStore

    t0 = time.perf_counter()
    store = EpisodeStore(args.data)
    spec = LearnerSpec.from_schema(store.schema)
    if spec.image_keys:
        spec = LearnerSpec.from_schema(store.schema, obs_keys=spec.state_keys)
    data = OfflineData(store, spec, rewards="store")
    config = {"batch_size": args.batch, "hidden": args.hidden}
    learner = make_learner(args.algo, spec, data.normalizer, config, seed=args.seed)
    setup_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(args.seed)
    bs = args.batch
    for _ in range(args.warmup):
        learner.update(data.sample(bs, g))
    t0 = time.perf_counter()
    for _ in range(args.updates):
        metrics = learner.update(data.sample(bs, g))
    update_s = time.perf_counter() - t0

    n_sample, sample_s = time_sampling(lambda: data.sample(bs, g), args.sample_batches, args.sample_seconds)

    finite = all(bool(np.isfinite(float(v))) for v in metrics.values())
    print(
        json.dumps(
            {
                "side": "robot_rl",
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
                "transitions": len(data),
                "episodes": data.n_episodes,
                "n_parameters": learner.n_parameters(),
                "metrics_finite": finite,
                "versions": {"torch": torch.__version__, "numpy": np.__version__},
            }
        )
    )
    return 0


# ----------------------------------------------------------------------- export
def export_npz(store_path: str, out: Path) -> dict[str, Any]:
    """The store's transitions as d3rlpy's MDPDataset arrays (see the module docstring)."""
    import numpy as np

    from robot_rl.algos import LearnerSpec
    from robot_rl.data import EpisodeStore
    from robot_rl.data.sampler import load_episodes

    store = EpisodeStore(store_path)
    spec = LearnerSpec.from_schema(store.schema)
    if not spec.state_keys:
        raise SystemExit(f"{store_path} has no low-dim observation keys to benchmark on")
    arrays = load_episodes(store, keys=[*spec.state_keys, "action", "reward", "done"])
    n = arrays.n_steps
    obs = np.concatenate([np.asarray(arrays.data[k], np.float32).reshape(n, -1) for k in spec.state_keys], axis=1)
    done = np.asarray(arrays.data["done"], dtype=bool).reshape(-1)
    last = np.zeros(n, dtype=bool)
    last[arrays.ends - 1] = True
    timeouts = last & ~done
    np.savez(
        out,
        observations=obs,
        actions=np.asarray(arrays.data["action"], np.float32),
        rewards=np.asarray(arrays.data["reward"], np.float32).reshape(-1),
        terminals=done.astype(np.float32),
        timeouts=timeouts.astype(np.float32),
    )
    return {
        "store": str(store_path),
        "steps": int(n),
        "episodes": len(arrays.ends),
        "state_keys": spec.state_keys,
        "image_keys_ignored": spec.image_keys,
        "state_dim": int(obs.shape[1]),
        "action_dim": int(arrays.data["action"].shape[1]),
        "terminals": int(done.sum()),
        "timeouts": int(timeouts.sum()),
        "done_inside_episodes": int((done & ~last).sum()),
    }


# ------------------------------------------------------------------ orchestration
def check_d3rlpy(python: Path) -> str:
    if not python.exists():
        raise SystemExit(f"error: the d3rlpy venv is missing ({python}).\nCreate it with:  {SETUP_CMD}")
    probe = subprocess.run(
        [str(python), "-c", "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if probe.returncode != 0:
        tail = "\n".join(probe.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"error: 'import d3rlpy' fails in {python}:\n{tail}\nRe-create the venv with:  {SETUP_CMD}")
    return probe.stdout.strip()


def run_side(cmd: list[str], threads: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def fmt_runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="episode store (.zarr) with low-dim observations")
    p.add_argument("--algos", nargs="+", default=["iql", "cql", "td3bc", "rebrac"], choices=ALGOS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--updates", type=int, default=500, help="timed updates per run")
    p.add_argument("--warmup", type=int, default=50, help="untimed updates first")
    p.add_argument("--cql-updates", type=int, default=100, help="timed updates per CQL run (CQL is slow)")
    p.add_argument("--cql-warmup", type=int, default=20)
    p.add_argument("--sample-batches", type=int, default=200, help="sampling alone: batches per round")
    p.add_argument("--sample-seconds", type=float, default=1.0, help="sampling alone: rounds until this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-scalers", action="store_true", help="d3rlpy without observation/action scalers")
    p.add_argument("--sides", nargs="+", default=["robot_rl", "d3rlpy"], choices=["robot_rl", "d3rlpy"])
    p.add_argument("--d3rlpy-python", default=str(D3RLPY_PYTHON))
    p.add_argument("--npz", help="where to write the exported transitions (default: a temp file)")
    p.add_argument("--json", help="write every run and the summary here")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is abandoned")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--algo", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return robot_rl_worker(args)

    d3_python = Path(args.d3rlpy_python)
    d3_versions = check_d3rlpy(d3_python) if "d3rlpy" in args.sides else ""
    if not Path(args.data).exists():
        raise SystemExit(
            f"error: no store at {args.data}\nMake one with:  "
            f".venv/bin/robot-rl sim collect --task lift --episodes 50 --noise 0.0 0.3 --out {args.data}"
        )

    tmp = tempfile.TemporaryDirectory(prefix="offline_throughput_")
    npz = Path(args.npz) if args.npz else Path(tmp.name) / "transitions.npz"
    dataset_info = export_npz(args.data, npz)
    info = dataset_info
    print(
        f"data: {info['episodes']} episodes, {info['steps']} steps, state {info['state_dim']}-d "
        f"({' '.join(info['state_keys'])}), action {info['action_dim']}-d; npz {npz}",
        file=sys.stderr,
    )
    if d3_versions:
        print(f"d3rlpy side: d3rlpy/torch {d3_versions}", file=sys.stderr)
    load_before = loadavg()
    print(f"load average before: {load_before}", file=sys.stderr)

    common = ["--threads", str(args.threads), "--batch", str(args.batch), "--hidden", *map(str, args.hidden),
              "--sample-batches", str(args.sample_batches),
              "--sample-seconds", str(args.sample_seconds), "--seed", str(args.seed)]  # fmt: skip
    runs: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for rep in range(args.repeats):
        for algo in args.algos:
            n_upd, n_warm = (args.cql_updates, args.cql_warmup) if algo == "cql" else (args.updates, args.warmup)
            counts = ["--updates", str(n_upd), "--warmup", str(n_warm)]
            cmds = {
                "robot_rl": [sys.executable, str(Path(__file__).resolve()), "--worker",
                             "--data", args.data, "--algo", algo, *counts, *common],  # fmt: skip
                "d3rlpy": [str(d3_python), str(D3RLPY_SIDE), str(npz), "--algo", algo, *counts, *common]
                + (["--no-scalers"] if args.no_scalers else []),
            }
            order = [s for s in (("robot_rl", "d3rlpy") if rep % 2 == 0 else ("d3rlpy", "robot_rl")) if s in args.sides]
            for side in order:
                res = run_side(cmds[side], args.threads, args.timeout)
                res.update(side=side, algo=algo, repeat=rep, load=loadavg())
                runs.append(res)
                if "error" in res:
                    print(f"[{rep + 1}/{args.repeats}] {algo:7s} {side:8s} FAILED: {res['error']}", file=sys.stderr)
                else:
                    load1 = res["load"][0] if res["load"] else "?"
                    print(
                        f"[{rep + 1}/{args.repeats}] {algo:7s} {side:8s} {res['updates_per_s']:8.1f} upd/s  "
                        f"sampling {res['samples_per_s']:8.1f} batches/s  ({res['wall_s']:.0f} s, load {load1})",
                        file=sys.stderr,
                    )
    total_s = time.perf_counter() - t_start
    load_after = loadavg()

    def ok(side: str, algo: str | None = None) -> list[dict[str, Any]]:
        return [r for r in runs if r["side"] == side and "error" not in r and (algo is None or r["algo"] == algo)]

    summary: list[dict[str, Any]] = []
    print()
    mlp = "x".join(map(str, args.hidden))
    print(f"Training throughput, updates/s including sampling (batch {args.batch}, MLPs {mlp}, "
          f"{args.threads} torch threads, CPU; median of {args.repeats} [runs]):")  # fmt: skip
    print()
    print("| algo | robot_rl upd/s | d3rlpy 2.8.1 upd/s | ratio | params robot_rl / d3rlpy |")
    print("| --- | --- | --- | --- | --- |")
    for algo in args.algos:
        rr = [r["updates_per_s"] for r in ok("robot_rl", algo)]
        d3 = [r["updates_per_s"] for r in ok("d3rlpy", algo)]
        m_rr, m_d3 = median(rr), median(d3)
        ratio = m_rr / m_d3 if m_rr and m_d3 else None
        params = [str(next((r["n_parameters"] for r in ok(s, algo)), "-")) for s in ("robot_rl", "d3rlpy")]
        summary.append({"algo": algo, "robot_rl_median": m_rr, "robot_rl_runs": rr,
                        "d3rlpy_median": m_d3, "d3rlpy_runs": d3, "ratio": ratio, "n_parameters": params})  # fmt: skip
        cell = lambda m, v: f"{m:.1f} [{fmt_runs(v)}]" if m is not None else "-"  # noqa: E731
        ratio_s = f"{ratio:.2f}x" if ratio else "-"
        print(f"| {algo} | {cell(m_rr, rr)} | {cell(m_d3, d3)} | {ratio_s} | {' / '.join(params)} |")
    s_rr = [r["samples_per_s"] for r in ok("robot_rl")]
    s_d3 = [r["samples_per_s"] for r in ok("d3rlpy")]
    print()
    rng = lambda v: f"{median(v):.0f} [{min(v):.0f}-{max(v):.0f}]" if v else "-"  # noqa: E731
    line = f"Sampling alone, batches of {args.batch}/s (median [min-max] over all {len(s_rr) + len(s_d3)} runs): "
    line += f"robot_rl {rng(s_rr)}, d3rlpy {rng(s_d3)}"
    if s_rr and s_d3:
        line += f", ratio {median(s_rr) / median(s_d3):.0f}x"
    print(line)
    trans = {s: sorted({r["transitions"] for r in ok(s)}) for s in ("robot_rl", "d3rlpy")}
    print(f"Transitions sampled from: robot_rl {trans['robot_rl']}, d3rlpy {trans['d3rlpy']}; "
          f"load average before {load_before}, after {load_after}; total {total_s:.0f} s")  # fmt: skip
    failed = [r for r in runs if "error" in r]
    if failed:
        print(f"{len(failed)} run(s) failed; see above")

    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "argv": sys.argv,
            "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "algo")},
            "dataset": dataset_info,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "d3rlpy_versions": d3_versions,
            "load_before": load_before,
            "load_after": load_after,
            "total_s": total_s,
            "summary": summary,
            "sampling": {"robot_rl_median": median(s_rr), "robot_rl_runs": s_rr,
                         "d3rlpy_median": median(s_d3), "d3rlpy_runs": s_d3},  # fmt: skip
            "runs": runs,
        }
        out.write_text(json.dumps(record, indent=1))
        print(f"wrote {out}", file=sys.stderr)
    tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
