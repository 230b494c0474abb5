"""``robot-rl demo``: the main job, on the sim twin, with no hardware.

Records scripted-expert episodes on the twin into a zarr store through the ROS 2
launch path (``record.launch.yaml``: robot node, teleop node with the scripted
expert standing in for the operator, recorder node; real DDS on this host), verifies
every chunk, prints the store summary and serves training batches from it.
``--via direct`` records in-process through the Gymnasium env instead. Later issues
extend the demo to train a policy and deploy it back on the twin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cli._args import arg
from robot_rl.cli.data import InfoConfig, info
from robot_rl.cli.sim import TASKS, make_sim_robot
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
    episodes: int = arg(5, help="episodes to record")
    noise: list[float] = arg([0.0], help="expert noise levels (--via direct takes several: mixed-quality data)")
    via: str = arg("ros", help="record through ROS 2 nodes (ros) or in-process through the env (direct)", choices=("ros", "direct"))
    out: Path = arg(Path("runs/demo"), help="output directory (the store is <out>/<task>.zarr)")
    cameras: list[str] = arg(["agentview"], help="cameras to record, for arm tasks (none: --cameras with no names)")
    set: list[str] = arg([], help="other robot config overrides FIELD=VALUE")
    seed: int = arg(0, help="random seed")


def demo(cfg: DemoConfig) -> int:
    from robot_rl.envs import collect_episodes

    path = cfg.out / f"{cfg.task}.zarr"
    overrides = list(cfg.set)
    config_cls, _ = robot_classes(TASKS.get(cfg.task, cfg.task))
    if "cameras" in {f.name for f in dataclasses.fields(config_cls)}:
        overrides.append(f"cameras=[{','.join(cfg.cameras)}]")
    name, robot = make_sim_robot(cfg.task, overrides)
    print(f"[1/4] recording {cfg.episodes} scripted episodes of {name} (noise {cfg.noise}) into {path} via {cfg.via}")
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
    print("[2/4] verifying every chunk")
    report = verify(path, progress=True)
    if not report.ok:
        print("\n".join(report.errors))
        return 1
    print(f"      OK: {report.chunks_checked} chunks")
    print("[3/4] summary")
    info(InfoConfig(store=path))
    print("[4/4] sampling training batches")
    store = EpisodeStore(path)
    data = load_episodes(store, image_cache="memmap", cache_dir=cfg.out / "cache")
    rng = np.random.default_rng(cfg.seed)
    windows = WindowSampler(data, horizon=16, obs_horizon=2, action_horizon=8)
    batch = windows.sample(64, rng)
    print(f"      {len(windows)} windows; a batch: " + ", ".join(f"{k} {v.shape}" for k, v in batch.items()))
    transitions = TransitionSampler(data)
    batch = transitions.sample(256, rng)
    print(f"      {len(transitions)} transitions; a batch: " + ", ".join(f"{k} {v.shape}" for k, v in batch.items()))
    return 0


def _record_via_ros(cfg: DemoConfig, name: str, robot: Any, path: Path) -> int:
    from robot_rl.launcher import run

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the demo stays on this host
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
