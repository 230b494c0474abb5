"""``robot-rl demo``: the main job, runnable on any machine with no hardware.

For now it exercises the data path end to end on a synthetic point-mass task: record
episodes with a scripted expert into a zarr store, verify it, summarise it, and serve
training batches from it. The sim-twin issue replaces the task with the robosuite /
MuJoCo twin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.cli._args import arg
from robot_rl.cli.data import InfoConfig, info
from robot_rl.data import EpisodeStore
from robot_rl.data.sampler import TransitionSampler, WindowSampler, load_episodes
from robot_rl.data.synthetic import write_synthetic_store
from robot_rl.data.verify import verify


@dataclass
class DemoConfig:
    """Record a synthetic dataset with a scripted expert, verify it and sample from it.

    Example: robot-rl demo --out runs/demo --episodes 50
    """

    out: Path = arg(Path("runs/demo"), help="output directory (the store is <out>/demo.zarr)")
    episodes: int = arg(30, help="episodes to record")
    cameras: list[str] = arg(["front"], help="synthetic camera names (64x64 RGB frames each)")
    seed: int = arg(0, help="random seed")


def demo(cfg: DemoConfig) -> int:
    path = cfg.out / "demo.zarr"
    print(f"[1/4] recording {cfg.episodes} scripted episodes into {path}")
    t0 = time.perf_counter()
    write_synthetic_store(path, cfg.episodes, cameras=cfg.cameras, seed=cfg.seed, overwrite=True, progress=True)
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
