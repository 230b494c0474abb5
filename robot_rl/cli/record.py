"""``robot-rl record``: teleoperation data collection through the record launch file,
with progress (episodes committed, steps, step rate) in the terminal."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from robot_rl.cli._args import arg


@dataclass
class RecordConfig:
    """Record episodes: robot (or twin) + teleop device + recorder, via record.launch.yaml.

    Example: robot-rl record --robot sim_lift --teleop scripted --episodes 5 --out runs/lift.zarr
    """

    out: Path = arg(help="episode store to write (created, or appended to with the same schema)")
    robot: str = arg("sim_lift", help="registered robot name")
    teleop: str = arg("scripted", help="teleop device")
    episodes: int = arg(5, help="episodes (scripted device)")
    noise: float = arg(0.0, help="scripted expert noise")
    seed: int = arg(0, help="first episode seed")
    task: str = arg("", help="task label (default: the robot name)")
    robot_config: str = arg("{}", help="JSON object of robot config overrides, e.g. '{\"cameras\": [\"agentview\"]}'")


def record(cfg: RecordConfig) -> int:
    from tqdm.auto import tqdm

    from robot_rl.data import EpisodeStore
    from robot_rl.launcher import LaunchError, run

    try:
        json.loads(cfg.robot_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--robot-config is not valid JSON: {exc}") from exc
    before = len(EpisodeStore(cfg.out)) if (cfg.out / "zarr.json").is_file() else 0
    done = threading.Event()

    def watch() -> None:
        bar = tqdm(total=cfg.episodes, desc="episodes", unit="ep")
        t0 = time.monotonic()
        while not done.wait(1.0):
            try:
                store = EpisodeStore(cfg.out)
            except Exception:  # not created yet
                continue
            n, steps = len(store) - before, store.n_steps + store.uncommitted_rows
            bar.n = n
            bar.set_postfix(steps=steps, avg_rate=f"{steps / max(time.monotonic() - t0, 1e-9):.0f} steps/s")
            bar.refresh()
        bar.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    args = {
        "robot": cfg.robot,
        "teleop": cfg.teleop,
        "episodes": str(cfg.episodes),
        "noise": str(cfg.noise),
        "seed": str(cfg.seed),
        "out": str(cfg.out),
        "task": cfg.task or cfg.robot,
        "robot_config": cfg.robot_config,
    }
    try:
        code = run("record.launch.yaml", args)
    except LaunchError as exc:
        print(f"robot-rl record: error: {exc}")
        return 2
    finally:
        done.set()
        watcher.join()
    store = EpisodeStore(cfg.out)
    new = store.records[before:]
    ok = sum(bool(r.get("success")) for r in new)
    print(f"recorded {len(new)} episode(s) ({ok} successful) into {cfg.out}; the store has {len(store)}")
    return code
