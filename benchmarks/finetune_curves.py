"""Offline-to-online fine-tuning on the Lift twin: success vs online environment steps for
naive fine-tuning, RO2O, E2O, RLPD and WSRL, side by side, several seeds.

    .venv/bin/python benchmarks/finetune_curves.py --seeds 0 1 2 --online-steps 3000 --utd 2 --jobs 2

Protocol:
1. Offline: CQL (10 LayerNorm critics, hidden [128, 128], the library's other defaults)
   trained for --pretrain-updates on Lift MH (benchmarks/offline_quality.py's mixed-quality
   data: noise 0 / 0.3 / 0.6, sparse success rewards), one checkpoint per seed.
2. Online, from that checkpoint, every method with the same budget: --online-steps
   environment steps at UTD --utd, batch 256, `robot-rl finetune --method M --seed S`
   (each method's other settings are its presets in robot_rl/algos/finetune.py). The
   deterministic policy is evaluated on --eval-episodes fixed seeds at step 0, four
   times in the first 10% and every --eval-every steps.
3. Report: per method, the mean over seeds of success at the start, the worst dip in the
   first 10% (min over those evaluations minus the start, per seed, then averaged), the
   final success, the area under the curve; curves as PNG (mean over seeds, band = min..max).

Variants: ``--methods ro2o --set uncertainty_penalty=5 --tag beta5`` runs ro2o[beta5].
Runs go to OUT/runs/<method>_s<seed>/ (a finished run has evals.csv and is skipped when
the command is run again, so an interrupted benchmark resumes); --report only reports.
Each run is a `robot-rl finetune` subprocess with 1 torch thread; --jobs run at once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "robot-rl"
METHODS = ("naive", "ro2o", "e2o", "rlpd", "wsrl")
CQL_SET = ["n_critics=10", "critic_layer_norm=true", "hidden=[128,128]"]


def pretrain(data: Path, out: Path, seed: int, updates: int) -> Path:
    ckpt = out / "offline" / f"cql_s{seed}" / "checkpoint"
    if (ckpt / "config.json").is_file():
        return ckpt
    cmd = [str(BIN), "train", "--algo", "cql", "--data", str(data), "--out", str(ckpt.parent), "--steps", str(updates), "--seed", str(seed),
           "--obs-keys", "joint_pos", "eef_pos", "eef_quat", "gripper_qpos", "object", "--threads", "1", "--save-every", "0",
           "--log-every", "500", "--no-tensorboard"]  # fmt: skip
    for s in CQL_SET:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return ckpt


def label(method: str, args: argparse.Namespace) -> str:
    return f"{method}[{args.tag}]" if args.tag else method


def finetune(ckpt: Path, method: str, seed: int, args: argparse.Namespace) -> Path:
    run = args.out / "runs" / f"{label(method, args)}_s{seed}"
    if (run / "evals.csv").is_file():
        return run
    if run.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(run)
    cmd = [str(BIN), "finetune", str(ckpt), "--method", method, "--seed", str(seed), "--online-steps", str(args.online_steps),
           "--utd", str(args.utd), "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
           "--threads", "1", "--out", str(run)]  # fmt: skip
    for item in args.set:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    log = args.out / "logs" / f"{label(method, args)}_s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=f, stderr=subprocess.STDOUT)
    (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    print(f"  {label(method, args)} seed {seed}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return run


def read_evals(run: Path) -> list[dict[str, float]]:
    with open(run / "evals.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def report(args: argparse.Namespace) -> str:
    """Every method and variant (``method[tag]``) found under OUT/runs, in METHODS order."""
    rows, curves = [], {}
    found = {p.name.rsplit("_s", 1)[0] for p in (args.out / "runs").glob("*_s*") if (p / "evals.csv").is_file()}
    labels = sorted(found, key=lambda n: (METHODS.index(n.split("[")[0]) if n.split("[")[0] in METHODS else 99, n))
    for method in labels:
        runs = [args.out / "runs" / f"{method}_s{s}" for s in args.seeds]
        runs = [r for r in runs if (r / "evals.csv").is_file()]
        if not runs:
            continue
        evals = [read_evals(r) for r in runs]
        budget = args.online_steps
        start = np.array([e[0]["success_rate"] for e in evals])
        dip = np.array([min(x["success_rate"] for x in e if x["env_steps"] <= 0.1 * budget) - e[0]["success_rate"] for e in evals])
        final = np.array([e[-1]["success_rate"] for e in evals])
        auc = np.array([np.trapezoid([x["success_rate"] for x in e], [x["env_steps"] for x in e]) / max(e[-1]["env_steps"], 1) for e in evals])
        walls = [float((r / "wall_seconds.txt").read_text()) for r in runs if (r / "wall_seconds.txt").is_file()]
        rows.append(
            f"| {method} | {len(runs)} | {100 * start.mean():.0f} | {100 * dip.mean():+.0f} (worst seed {100 * dip.min():+.0f}) | "
            f"{100 * final.mean():.0f} [{100 * final.min():.0f}, {100 * final.max():.0f}] | {100 * auc.mean():.0f} | "
            f"{np.median(walls) / 60 if walls else float('nan'):.0f} |"
        )
        # a common grid: evaluations happen at episode boundaries, so steps differ slightly per seed
        grid = np.array(sorted({int(x["env_steps"]) for x in evals[0]}))
        values = np.array([np.interp(grid, [x["env_steps"] for x in e], [x["success_rate"] for x in e]) for e in evals])
        curves[method] = (grid, values)
    table = (
        "| method | seeds | success at start (%) | change in the first 10% (mean, pp) | final success (%) mean [min, max] | "
        "area under the curve (%) | wall time per run (min, median) |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    if curves:
        plot(curves, args.out / "finetune_curves.png", args)
    return table


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, (grid, values) in curves.items():
        line = ax.plot(grid, 100 * values.mean(0), marker="o", markersize=3, label=f"{method} (n={len(values)})")[0]
        ax.fill_between(grid, 100 * values.min(0), 100 * values.max(0), color=line.get_color(), alpha=0.12)
    ax.axvline(0.1 * args.online_steps, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("online environment steps")
    ax.set_ylabel(f"success (%), {args.eval_episodes} eval episodes")
    ax.set_title(f"Lift MH, from offline CQL: UTD {args.utd}, mean over seeds (band: min..max)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"curves: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "benchmarks/out/quality/data/lift_mh.zarr")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/out/finetune")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--pretrain-updates", type=int, default=3000)
    p.add_argument("--online-steps", type=int, default=3000)
    p.add_argument("--utd", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=750)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], help="learner overrides FIELD=VALUE for these runs (name them with --tag)")
    p.add_argument("--tag", default="", help="variant name: runs are METHOD[TAG]_sSEED")
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    if not args.report:
        if not args.data.exists():
            sys.exit(f"{args.data} is missing: run benchmarks/offline_quality.py --task lift first (it collects the MH data)")
        print(f"pretraining CQL on {args.data} ({args.pretrain_updates} updates, seeds {args.seeds})", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            ckpts = dict(zip(args.seeds, pool.map(lambda s: pretrain(args.data, args.out, s, args.pretrain_updates), args.seeds), strict=True))
        jobs = [(m, s) for s in args.seeds for m in args.methods]
        print(f"fine-tuning: {len(jobs)} runs, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda j: finetune(ckpts[j[1]], j[0], j[1], args), jobs))
    table = report(args)
    print(table)
    (args.out / "report.md").write_text(table + "\n")
    print(json.dumps({"online_steps": args.online_steps, "utd": args.utd, "eval_episodes": args.eval_episodes}))


if __name__ == "__main__":
    main()
