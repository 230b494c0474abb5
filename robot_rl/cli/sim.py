"""``robot-rl sim collect|eval``: scripted data and policy evaluation on the sim twin."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table
from robot_rl.robots import SimRobot, available_robots, make_robot, robot_classes

TASKS = {"lift": "sim_lift", "stack": "sim_stack", "base": "sim_base"}
"""Task names -> sim robots; any registered sim robot name (e.g. mock_arm) works too."""


def parse_overrides(robot_name: str, items: list[str]) -> dict[str, Any]:
    """``["cameras=[agentview]", "fps=10"]`` -> typed config overrides (YAML values)."""
    config_cls, _ = robot_classes(robot_name)
    hints = typing.get_type_hints(config_cls)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in hints:
            fields = sorted(f.name for f in dataclasses.fields(config_cls))
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {fields}")
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def make_sim_robot(task: str, overrides: list[str]) -> tuple[str, SimRobot]:
    name = TASKS.get(task, task)
    if name not in available_robots():
        raise KeyError(f"unknown task {task!r}; tasks: {sorted(TASKS)}; robots: {available_robots()}")
    robot = make_robot(name, **parse_overrides(name, overrides))
    if not isinstance(robot, SimRobot):
        raise TypeError(f"{name} is not a simulated robot")
    return name, robot


@dataclass
class CollectConfig:
    """Record scripted-expert episodes on the sim twin into an episode store.

    Several --noise levels (round-robin over episodes) give mixed-quality data.
    Example: robot-rl sim collect --task lift --episodes 50 --noise 0.0 --out lift_ph.zarr
    """

    task: str = arg(help=f"task ({', '.join(TASKS)}) or sim robot name")
    out: Path = arg(help="store to create (or append to, with the same schema)")
    episodes: int = arg(50, help="episodes to record")
    noise: list[float] = arg([0.0], help="expert noise levels (action noise std, normalised units)")
    seed: int = arg(0, help="seed of the first episode (episode i uses seed+i)")
    set: list[str] = arg([], help="robot config overrides FIELD=VALUE, e.g. cameras=[agentview,wrist]")
    overwrite: bool = arg(False, help="replace an existing store at --out")


def collect(cfg: CollectConfig) -> int:
    from robot_rl.cli.data import InfoConfig, info
    from robot_rl.envs import collect_episodes

    name, robot = make_sim_robot(cfg.task, cfg.set)
    with robot:
        results = collect_episodes(robot, name, cfg.task, cfg.out, cfg.episodes, cfg.noise, cfg.seed, cfg.overwrite)
    rows = [[f"{level:g}", len(s), sum(s), f"{100 * sum(s) / len(s):.1f}%"] for level, s in sorted(results.items())]
    print(format_table(["noise", "episodes", "successes", "success rate"], rows))
    print()
    return info(InfoConfig(store=cfg.out))


@dataclass
class EvalConfig:
    """Evaluate a policy on the sim twin: success rate (95% CI), return, length, videos.

    Example: robot-rl sim eval --policy scripted --task lift --episodes 50 --videos 2 --set cameras=[agentview]
    """

    task: str = arg(help=f"task ({', '.join(TASKS)}) or sim robot name")
    policy: str = arg("scripted", help="'scripted' (the task's expert) or a checkpoint directory")
    episodes: int = arg(50, help="episodes to run")
    noise: float = arg(0.0, help="scripted expert noise")
    seed: int = arg(1000, help="seed of the first episode")
    videos: int = arg(0, help="save an MP4 of the first N episodes (needs a camera)")
    out: Path = arg(Path("runs/eval"), help="directory for videos and eval.json")
    set: list[str] = arg([], help="robot config overrides FIELD=VALUE")


def evaluate_cmd(cfg: EvalConfig) -> int:
    from robot_rl.envs import RobotEnv, evaluate

    if cfg.policy != "scripted":
        from robot_rl.cli.train import CheckpointEvalConfig, evaluate_checkpoint

        ckpt = CheckpointEvalConfig(Path(cfg.policy), cfg.task, cfg.episodes, cfg.seed, cfg.videos, cfg.out, cfg.set)
        return evaluate_checkpoint(ckpt)
    name, robot = make_sim_robot(cfg.task, cfg.set)
    env = RobotEnv(robot)
    try:
        policy = robot.scripted_expert(noise=cfg.noise, seed=cfg.seed)
        result = evaluate(env, policy, cfg.episodes, seed=cfg.seed, video_dir=cfg.out / "videos", n_videos=cfg.videos)
    finally:
        env.close()
    print(f"{name} / {cfg.policy} policy (noise {cfg.noise:g})")
    print(result.table())
    for v in result.videos:
        print(f"video: {v}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "eval.json").write_text(json.dumps({"robot": name, "policy": cfg.policy, **result.summary()}, indent=2))
    return 0
