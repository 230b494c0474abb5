"""``robot-rl deploy``: run a checkpoint on a robot (or its twin) through deploy.launch.yaml
and print a success table with the control loop's timing."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table


@dataclass
class DeployConfig:
    """Deploy a checkpoint through deploy.launch.yaml (robot node + policy node [+ recorder]).

    Example: robot-rl deploy runs/demo/lift_bc/checkpoint --robot sim_lift --episodes 20
    On a sim twin the policy node runs --episodes episodes and the table shows their
    success; --episodes 0 runs until Ctrl-C (a real robot: enable with the policy/enable service).
    """

    checkpoint: Path = arg(help="checkpoint directory", positional=True)
    robot: str = arg("sim_lift", help="registered robot name")
    episodes: int = arg(20, help="sim twin episodes (0: run until stopped)")
    max_steps: int = arg(0, help="steps per episode (0: the robot's max_steps)")
    seed: int = arg(1000, help="seed of the twin's first episode (each episode adds 1)")
    record: Path | None = arg(None, help="log the episodes into this store (source=policy, with the checkpoint hash)")
    robot_config: str = arg("{}", help="JSON object of robot config overrides")
    summary: Path | None = arg(None, help="write the per-episode results and loop timing here (JSON)")


def deploy(cfg: DeployConfig) -> int:
    from robot_rl.algos.checkpoint import read_config
    from robot_rl.launcher import LaunchError, isolate_on_this_host, run

    config = read_config(cfg.checkpoint)  # a clear error here, before anything starts
    try:
        json.loads(cfg.robot_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--robot-config is not valid JSON: {exc}") from exc
    isolate_on_this_host(cfg.robot)
    with tempfile.TemporaryDirectory() as tmp:
        summary = cfg.summary or Path(tmp) / "summary.json"
        args = {
            "robot": cfg.robot,
            "robot_config": cfg.robot_config,
            "checkpoint": str(cfg.checkpoint),
            "episodes": str(cfg.episodes),
            "max_steps": str(cfg.max_steps),
            "seed": str(cfg.seed),
            "summary": str(summary),
        }
        if cfg.record is not None:
            args.update(record="true", out=str(cfg.record))
        print(f"deploying {config['algo']} ({cfg.checkpoint}, sha256 {config['model_sha256'][:12]}) on {cfg.robot}")
        try:
            code = run("deploy.launch.yaml", args)
        except LaunchError as exc:
            print(f"robot-rl deploy: error: {exc}")
            return 2
        if cfg.episodes == 0 or not summary.is_file():
            return code
        result = json.loads(summary.read_text())
    print(deploy_table(result))
    if cfg.record is not None:
        print(f"episodes logged in {cfg.record} (source=policy)")
    return code


def deploy_table(result: dict[str, Any]) -> str:
    from robot_rl.envs.evaluate import wilson_interval

    episodes = result["episodes"]
    n, ok = len(episodes), sum(e["success"] for e in episodes)
    lo, hi = wilson_interval(ok, n)
    loop = result.get("loop", {})
    row = [
        f"{result['algo']} ({result['robot']})",
        f"{ok}/{n} = {100 * ok / max(n, 1):.0f}%",
        f"{100 * lo:.0f}-{100 * hi:.0f}%",
        f"{sum(e['steps'] for e in episodes) / max(n, 1):.1f}",
        f"{loop.get('latency_p50_ms', float('nan')):.1f} / {loop.get('latency_p99_ms', float('nan')):.1f}",
        f"{loop.get('deadline_misses', 0)}/{loop.get('steps', 0)}",
    ]
    headers = ["policy", "success", "95% CI", "mean length", "inference p50/p99 ms", "deadline misses"]
    return format_table(headers, [row])
