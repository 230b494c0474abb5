"""``robot-rl finetune``: offline-to-online fine-tuning of a checkpoint on the sim twin."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table
from robot_rl.cli.train import parse_learner_overrides, resolve_device, sim_evaluator, write_run_summary


@dataclass
class FinetuneCLIConfig:
    """Fine-tune a checkpoint online on the sim twin (naive, RO2O, E2O, RLPD or WSRL).

    The offline data is the store the checkpoint was trained on (--data to override).
    Writes RUN/online.zarr (every online step: the run is a dataset), RUN/checkpoint,
    RUN/evals.csv + RUN/episodes.csv, RUN/curve.png (success vs online environment steps),
    RUN/summary.md + summary.json (the final table).
    Example: robot-rl finetune runs/lift_cql/checkpoint --method rlpd --online-steps 5000 --out runs/lift_rlpd
    --via ros runs the same learner through launch/finetune.launch.yaml (robot node, the policy
    node as exploring actor, a learner node, the recorder) instead of in one process.
    """

    checkpoint: Path = arg(help="offline checkpoint to start from", positional=True)
    method: str = arg("rlpd", help="fine-tuning method", choices=("naive", "ro2o", "e2o", "rlpd", "wsrl"))
    out: Path | None = arg(None, help="run directory (default runs/finetune_<method>)")
    data: Path | None = arg(None, help="offline store (default: the checkpoint's training store)")
    online_steps: int = arg(5000, help="online environment steps")
    utd: int = arg(2, help="gradient updates per environment step")
    batch_size: int = arg(256, help="transitions per update")
    offline_ratio: float = arg(-1.0, help="share of each batch from the offline data (-1: the method's default)")
    warmup_steps: int = arg(-1, help="steps with the pre-trained policy before updating (-1: the method's default)")
    offline_updates: int = arg(-1, help="updates on the offline data before going online (-1: the method's default)")
    set: list[str] = arg([], help="learner config overrides FIELD=VALUE (over the method's preset)")
    task: str = arg("", help="sim task (default: the robot the checkpoint was trained on)")
    eval_every: int = arg(1000, help="environment steps between evaluations (plus 4 in the first 10%)")
    eval_episodes: int = arg(10, help="episodes per evaluation (fixed seeds)")
    eval_seed: int = arg(10_000, help="seed of the first evaluation episode")
    interventions: str = arg("none", help="'expert': the scripted expert takes over episodes stuck for --intervene-after steps", choices=("none", "expert"))
    intervene_after: int = arg(100, help="steps without success before an intervention")
    seed: int = arg(0, help="seed of the networks, sampling and episodes")
    threads: int = arg(1, help="torch CPU threads")
    device: str = arg("cpu", help="cpu, cuda or auto", choices=("cpu", "cuda", "auto"))
    via: str = arg("env", help="env: one process on the Gymnasium env; ros: actor and learner nodes over ROS 2", choices=("env", "ros"))


def eval_points(steps: int, every: int) -> list[int]:
    """0, four points in the first 10% (to see an early dip), then every ``every`` steps, and the end."""
    early = [int(steps * f) for f in (0.025, 0.05, 0.075, 0.1)]
    regular = list(range(every, steps, every)) if every > 0 else []
    return sorted({0, *early, *regular, steps})


def finetune(cfg: FinetuneCLIConfig) -> int:
    import torch

    from robot_rl.algos.checkpoint import load_checkpoint, save_checkpoint
    from robot_rl.algos.finetune import FinetuneConfig, Finetuner, build_learner, offline_data
    from robot_rl.envs.online import run_online
    from robot_rl.teleop import ScriptedRescue

    if cfg.online_steps <= 0:
        raise ValueError("--online-steps must be positive")
    if cfg.via == "ros":
        return finetune_ros(cfg)
    torch.set_num_threads(max(cfg.threads, 1))
    device = resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.checkpoint, device=device)
    source = ckpt.learner
    run = cfg.out or Path("runs") / f"finetune_{cfg.method}"
    if (run / "online.zarr").exists():
        raise ValueError(f"{run} already holds a fine-tuning run: pass another --out")
    ft = FinetuneConfig(
        method=cfg.method, utd=cfg.utd, batch_size=cfg.batch_size,
        offline_ratio=None if cfg.offline_ratio < 0 else cfg.offline_ratio,
        warmup_steps=None if cfg.warmup_steps < 0 else cfg.warmup_steps,
        offline_updates=None if cfg.offline_updates < 0 else cfg.offline_updates,
        learner=parse_learner_overrides(cfg.set),
    )  # fmt: skip
    data_info = dict(ckpt.config.get("data", {}))
    offline = offline_data(ckpt.config, source, ft, cfg.data, device)
    learner = build_learner(source, ft, seed=cfg.seed, device=device)
    tuner = Finetuner(learner, ft, offline, seed=cfg.seed, online_steps=cfg.online_steps)
    task = cfg.task or source.spec.robot.get("name", "")
    if not task:
        raise ValueError("the checkpoint does not record its robot: pass --task")
    _, env = sim_evaluator(task, source.spec, 0, cfg.eval_seed)
    intervention = ScriptedRescue(env.robot, after=cfg.intervene_after, seed=cfg.seed) if cfg.interventions == "expert" else None
    run.mkdir(parents=True, exist_ok=True)
    (run / "finetune_config.json").write_text(json.dumps({**asdict(cfg), "finetune": asdict(ft), "learner": asdict(learner.config)}, indent=2, default=str))
    print(
        f"fine-tuning {ckpt.config['algo']} ({cfg.checkpoint}) with {cfg.method} as {learner.name}: {cfg.online_steps} online steps, "
        f"UTD {cfg.utd}, offline share {ft.resolved_offline_ratio if ft.resolved_offline_ratio is not None else 'pooled'}, "
        f"warm-up {ft.resolved_warmup} steps, offline phase {ft.resolved_offline_updates} updates"
    )

    def show(row: dict[str, float]) -> None:
        print(f"  env step {int(row['env_steps']):>6}: success {100 * row['success_rate']:.0f}% ({int(row['episodes'])} episodes)")

    try:
        history = run_online(
            tuner, env, cfg.online_steps, robot_name=env.robot.config.name, store=run / "online.zarr",
            eval_at=eval_points(cfg.online_steps, cfg.eval_every), eval_episodes=cfg.eval_episodes, eval_seed=cfg.eval_seed,
            seed=cfg.seed, intervention=intervention, on_eval=show,
        )  # fmt: skip
    finally:
        env.close()
    final = history.evals[-1]
    metrics = {f"eval/{k}": float(v) for k, v in final.items()}
    save_checkpoint(run / "checkpoint", learner, data={**data_info, "online": str(run / "online.zarr"), "finetune": cfg.method}, metrics=metrics)
    write_csv(run / "evals.csv", history.evals)
    write_csv(run / "episodes.csv", history.episodes)
    curve = plot_curve(history.evals, run / "curve.png", f"{cfg.method} from {ckpt.config['algo']}")
    start, worst = history.evals[0]["success_rate"], min(r["success_rate"] for r in history.evals if r["env_steps"] <= 0.1 * cfg.online_steps)
    rows = [
        ["online steps / episodes", f"{tuner.env_steps} / {len(history.episodes)}"],
        ["updates", tuner.updates],
        ["success at start", f"{100 * start:.0f}%"],
        ["worst in the first 10%", f"{100 * worst:.0f}%"],
        ["success at the end", f"{100 * final['success_rate']:.0f}% (95% CI {100 * final['ci95_low']:.0f}-{100 * final['ci95_high']:.0f}%)"],
        ["interventions (steps)", tuner.interventions],
        ["wall time", f"{history.seconds / 60:.1f} min"],
    ]
    print(format_table(["", cfg.method], rows))
    files = {"checkpoint": run / "checkpoint", "online data": run / "online.zarr", "curve": curve}
    files.update(evals=run / "evals.csv", episodes=run / "episodes.csv")
    numbers = {
        "method": cfg.method, "source_checkpoint": str(cfg.checkpoint), "online_steps": tuner.env_steps,
        "updates": tuner.updates, "interventions": tuner.interventions, "evals": history.evals,
    }  # fmt: skip
    title = f"robot-rl finetune: {cfg.method} from {ckpt.config['algo']}"
    summary = write_run_summary(run, title, ["", cfg.method], rows, files, numbers)
    print(f"checkpoint: {run / 'checkpoint'}\nonline data: {run / 'online.zarr'}\ncurve: {curve}\nsummary: {summary}")
    return 0


def finetune_ros(cfg: FinetuneCLIConfig) -> int:
    from robot_rl.algos.checkpoint import read_config
    from robot_rl.launcher import LaunchError, isolate_on_this_host, run

    config = read_config(cfg.checkpoint)
    robot = cfg.task or config["spec"].get("robot", {}).get("name", "")
    if not robot:
        raise ValueError("the checkpoint does not record its robot: pass --task")
    out = cfg.out or Path("runs") / f"finetune_{cfg.method}_ros"
    if (out / "online.zarr").exists():
        raise ValueError(f"{out} already holds a fine-tuning run: pass another --out")
    isolate_on_this_host(robot)
    args = {
        "robot": robot, "checkpoint": str(cfg.checkpoint), "method": cfg.method, "online_steps": str(cfg.online_steps),
        "utd": str(cfg.utd), "batch_size": str(cfg.batch_size), "learner_config": json.dumps(parse_learner_overrides(cfg.set)),
        "out": str(out), "seed": str(cfg.seed), "offline_ratio": str(cfg.offline_ratio), "warmup_steps": str(cfg.warmup_steps),
        "offline_updates": str(cfg.offline_updates),
    }  # fmt: skip
    if cfg.data is not None:
        args["data"] = str(cfg.data)
    try:
        code = run("finetune.launch.yaml", args)
    except LaunchError as exc:
        print(f"robot-rl finetune: error: {exc}")
        return 2
    summary = out / "learner.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        print(format_table(["", f"{cfg.method} via ROS"], [[k.replace("_", " "), v] for k, v in s.items()]))
        print(f"evaluate it: robot-rl deploy {s['checkpoint']} --robot {robot} --episodes 20")
    return code


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot_curve(evals: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["env_steps"] for r in evals], [100 * r["success_rate"] for r in evals], marker="o")
    ax.set_xlabel("online environment steps")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
