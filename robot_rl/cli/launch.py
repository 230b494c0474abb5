"""``robot-rl launch FILE key:=value``: run a ROS 2 YAML launch file on a pip-only install."""

from __future__ import annotations

from dataclasses import dataclass

from robot_rl.cli._args import arg


@dataclass
class LaunchConfig:
    """Run a launch file (a path, or the name of one of robot_rl's) with name:=value arguments.

    Example: robot-rl launch record.launch.yaml robot:=sim_lift teleop:=scripted episodes:=5 out:=runs/lift.zarr
    """

    file: str = arg(help="launch file: a path or a name in robot_rl's launch/ (record.launch.yaml, sim.launch.yaml, ...)", positional=True)
    args: list[str] = arg([], help="launch arguments name:=value", positional=True)
    grace: float = arg(5.0, help="seconds to wait after SIGINT before escalating to SIGTERM/SIGKILL")


def launch(cfg: LaunchConfig) -> int:
    from robot_rl.launcher import LaunchError, parse_cli_args, run

    try:
        return run(cfg.file, parse_cli_args(cfg.args), grace_s=cfg.grace)
    except LaunchError as exc:
        print(f"robot-rl launch: error: {exc}")
        return 2
