"""``robot-rl demo``: the main job, on the sim twin, with no hardware.

Records scripted-expert episodes on the twin into a zarr store through the ROS 2
launch path (``record.launch.yaml``: robot node, teleop node with the scripted
expert standing in for the operator, recorder node; real DDS on this host), verifies
every chunk, prints the store summary and serves training batches from it, then
trains a small policy on the recording (BC on the low-dim observations by default)
and evaluates it on the twin beside the scripted expert, printing a success table.
``--via direct`` records in-process through the Gymnasium env instead.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table
from robot_rl.cli.data import InfoConfig, info
from robot_rl.cli.sim import TASKS, make_sim_robot
from robot_rl.cli.train import ALGOS
from robot_rl.data import EpisodeStore
from robot_rl.data.sampler import TransitionSampler, WindowSampler, load_episodes
from robot_rl.data.verify import verify
from robot_rl.robots import robot_classes


@dataclass
class DemoConfig:
    """Collect a small dataset on the sim twin with the scripted expert, verify it, summarise it, sample from it.

    Example: robot-rl demo --task lift --episodes 10 --out runs/demo
    """

    task: str = arg("lift", help=f"sim task ({', '.join(TASKS)})")
    episodes: int = arg(20, help="episodes to record")
    noise: list[float] = arg([0.0], help="expert noise levels (--via direct takes several: mixed-quality data)")
    via: str = arg("ros", help="record through ROS 2 nodes (ros) or in-process through the env (direct)", choices=("ros", "direct"))
    out: Path = arg(Path("runs/demo"), help="output directory (the store is <out>/<task>.zarr)")
    cameras: list[str] = arg(["agentview"], help="cameras to record, for arm tasks (none: --cameras with no names)")
    set: list[str] = arg([], help="other robot config overrides FIELD=VALUE")
    seed: int = arg(0, help="random seed")
    algo: str = arg("bc", help="algorithm to train on the recording", choices=ALGOS)
    train_steps: int = arg(2000, help="gradient updates (0: record only)")
    eval_episodes: int = arg(20, help="evaluation episodes of the trained policy and of the expert")
    deploy_episodes: int = arg(3, help="episodes of the trained policy deployed through deploy.launch.yaml (0: skip)")


def demo(cfg: DemoConfig) -> int:
    from robot_rl.envs import collect_episodes

    path = cfg.out / f"{cfg.task}.zarr"
    overrides = list(cfg.set)
    if _has_cameras(TASKS.get(cfg.task, cfg.task)):
        overrides.append(f"cameras=[{','.join(cfg.cameras)}]")
    name, robot = make_sim_robot(cfg.task, overrides)
    stages = 4 if cfg.train_steps <= 0 else 7 if cfg.deploy_episodes > 0 else 6
    print(f"[1/{stages}] recording {cfg.episodes} scripted episodes of {name} (noise {cfg.noise}) into {path} via {cfg.via}")
    t0 = time.perf_counter()
    if path.exists():
        shutil.rmtree(path)
    if cfg.via == "ros":
        code = _record_via_ros(cfg, name, robot, path)
        if code != 0:
            print(f"      the record launch failed (exit code {code})")
            return code
    else:
        with robot:
            results = collect_episodes(robot, name, cfg.task, path, cfg.episodes, cfg.noise, cfg.seed)
        for level, s in sorted(results.items()):
            print(f"      noise {level:g}: {sum(s)}/{len(s)} successful")
    print(f"      done in {time.perf_counter() - t0:.1f} s")
    print(f"[2/{stages}] verifying every chunk")
    report = verify(path, progress=True)
    if not report.ok:
        print("\n".join(report.errors))
        return 1
    print(f"      OK: {report.chunks_checked} chunks")
    print(f"[3/{stages}] summary")
    info(InfoConfig(store=path))
    print(f"[4/{stages}] sampling training batches")
    store = EpisodeStore(path)
    data = load_episodes(store, image_cache="memmap", cache_dir=cfg.out / "cache")
    rng = np.random.default_rng(cfg.seed)
    windows = WindowSampler(data, horizon=16, obs_horizon=2, action_horizon=8)
    batch = windows.sample(64, rng)
    print(f"      {len(windows)} windows; a batch: " + ", ".join(f"{k} {v.shape}" for k, v in batch.items()))
    transitions = TransitionSampler(data)
    batch = transitions.sample(256, rng)
    print(f"      {len(transitions)} transitions; a batch: " + ", ".join(f"{k} {v.shape}" for k, v in batch.items()))
    if cfg.train_steps <= 0:
        return 0
    return _train_and_evaluate(cfg, name, store, path)


def _train_and_evaluate(cfg: DemoConfig, name: str, store: EpisodeStore, path: Path) -> int:
    from robot_rl.cli.train import TrainConfig, train
    from robot_rl.envs import RobotEnv, evaluate

    run = cfg.out / f"{cfg.task}_{cfg.algo}"
    if run.exists():
        shutil.rmtree(run)
    low_dim = [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    stages = 7 if cfg.deploy_episodes > 0 else 6
    print(f"[5/{stages}] training {cfg.algo} on {', '.join(low_dim)} for {cfg.train_steps} updates -> {run}")
    code = train(TrainConfig(algo=cfg.algo, data=path, out=run, steps=cfg.train_steps, seed=cfg.seed, obs_keys=low_dim,
                             eval_task=cfg.task, eval_episodes=cfg.eval_episodes, eval_seed=1000, eval_set=["cameras=[]"] if _has_cameras(name) else [],
                             save_every=0, log_every=100))  # fmt: skip
    if code != 0:
        return code
    print(f"[6/{stages}] the scripted expert on the same {cfg.eval_episodes} evaluation episodes (seeds 1000..)")
    learned = json.loads((run / "checkpoint" / "config.json").read_text())["metrics"]
    _, robot = make_sim_robot(cfg.task, [])
    env = RobotEnv(robot)
    try:
        expert = evaluate(env, robot.scripted_expert(seed=1000), cfg.eval_episodes, seed=1000, progress=False).summary()
    finally:
        env.close()
    rows = [
        ["scripted expert", *_row(expert)],
        [f"{cfg.algo} ({cfg.train_steps} updates, {len(store)} episodes)", *_row({k.removeprefix("eval/"): v for k, v in learned.items()})],
    ]
    print(format_table(["policy", "success", "95% CI", "mean length"], rows))
    print(f"      checkpoint: {run / 'checkpoint'}  (robot-rl eval {run / 'checkpoint'} --episodes 50)")
    if cfg.deploy_episodes <= 0:
        return 0
    return _deploy(cfg, name, run / "checkpoint")


def _deploy(cfg: DemoConfig, name: str, checkpoint: Path) -> int:
    from robot_rl.cli.deploy import DeployConfig, deploy

    print(f"[7/7] deploying the checkpoint on the twin through ROS 2: robot node + policy node (deploy.launch.yaml), {cfg.deploy_episodes} episodes")
    print(f"      the same as: robot-rl deploy {checkpoint} --robot {name} --episodes {cfg.deploy_episodes} --seed 2000")
    return deploy(DeployConfig(checkpoint=checkpoint, robot=name, episodes=cfg.deploy_episodes, seed=2000))


def _has_cameras(robot_name: str) -> bool:
    config_cls, _ = robot_classes(robot_name)
    return "cameras" in {f.name for f in dataclasses.fields(config_cls)}


def _row(summary: dict[str, float]) -> list[str]:
    return [
        f"{100 * summary['success_rate']:.0f}%",
        f"{100 * summary['ci95_low']:.0f}-{100 * summary['ci95_high']:.0f}%",
        f"{summary['mean_length']:.1f}",
    ]


def _record_via_ros(cfg: DemoConfig, name: str, robot: Any, path: Path) -> int:
    from robot_rl.launcher import isolate_on_this_host, run

    print(f"      ROS 2 on this host only, domain {isolate_on_this_host()}")
    config = {f.name: getattr(robot.config, f.name) for f in dataclasses.fields(robot.config)}
    overrides = {k: v for k, v in config.items() if v != getattr(type(robot.config)(), k)}
    args = {
        "robot": name,
        "robot_config": json.dumps(overrides, default=list),
        "teleop": "scripted",
        "episodes": str(cfg.episodes),
        "noise": str(cfg.noise[0]),
        "seed": str(cfg.seed),
        "out": str(path),
        "task": cfg.task,
    }
    return run("record.launch.yaml", args)
