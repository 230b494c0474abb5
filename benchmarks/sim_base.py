"""sim_base (MuJoCo differential-drive twin): scripted-expert success and step throughput.

    .venv/bin/python benchmarks/sim_base.py [--episodes 30 --noise 0.0 0.3 0.6 --steps 400 --repeats 3]

Expert: ``robot.scripted_expert(noise, seed=episode)`` on ``robot.reset(seed=episode)``
for episodes 0..N-1, driving the robot directly (no SafetyFilter), until success,
failure (collision) or ``max_steps``. Throughput: control steps per second of the twin
(``send_action`` + ``get_observation`` + ``reward`` / ``is_success`` / ``is_failure``)
under a fixed open-loop command pattern (no expert cost), resetting every ``max_steps``
or on a collision; without and with the 64x64 front camera; median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

from robot_rl.robots import make_robot
from robot_rl.sim.diff_drive import DiffDriveRobot


def run_expert(robot: DiffDriveRobot, noise: float, episodes: int) -> dict[str, float]:
    """Success / collision / timeout rates, mean steps of successes, mean return."""
    outcomes = {"success": 0, "collision": 0, "timeout": 0}
    success_steps: list[int] = []
    returns: list[float] = []
    for ep in range(episodes):
        expert = robot.scripted_expert(noise=noise, seed=ep)
        obs = robot.reset(seed=ep)
        expert.reset()
        ret = 0.0
        for t in range(robot.max_episode_steps):
            robot.send_action(expert.act(obs))
            obs = robot.get_observation()
            ret += robot.reward()
            if robot.is_success():
                outcomes["success"] += 1
                success_steps.append(t + 1)
                break
            if robot.is_failure():
                outcomes["collision"] += 1
                break
        else:
            outcomes["timeout"] += 1
        returns.append(ret)
    return {
        **{k: v / episodes for k, v in outcomes.items()},
        "steps": statistics.mean(success_steps) if success_steps else math.nan,
        "return": statistics.mean(returns),
    }


def steps_per_second(robot: DiffDriveRobot, steps: int) -> float:
    """Twin control steps per second under an open-loop sweep of (v, omega)."""
    robot.reset(seed=0)
    t0 = time.perf_counter()
    episode_step = 0
    for t in range(steps):
        robot.send_action(np.array([0.4 * math.sin(0.05 * t), 1.5 * math.sin(0.13 * t)]))
        robot.get_observation()
        robot.reward()
        robot.is_success()
        episode_step += 1
        if robot.is_failure() or episode_step >= robot.max_episode_steps:
            robot.reset(seed=t)
            episode_step = 0
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=30, help="expert episodes per noise level")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 0.6], help="expert noise levels")
    ap.add_argument("--steps", type=int, default=400, help="control steps per throughput run")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs (median reported)")
    ap.add_argument("--image-size", type=int, default=64, help="camera image size [px] for the camera run")
    args = ap.parse_args()

    print(f"command: .venv/bin/python {shlex.join(sys.argv)}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"mujoco {mujoco.__version__}, numpy {np.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}")

    robot = make_robot("sim_base")
    assert isinstance(robot, DiffDriveRobot)
    with robot:
        print(f"\nexpert, {args.episodes} episodes per noise level (seeds 0..{args.episodes - 1}), "
              f"max_steps {robot.max_episode_steps}")
        print("| noise | success | collision | timeout | mean steps (successes) | mean return | wall s |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for noise in args.noise:
            t0 = time.perf_counter()
            r = run_expert(robot, noise, args.episodes)
            print(f"| {noise:.1f} | {r['success']:.0%} | {r['collision']:.0%} | {r['timeout']:.0%} | {r['steps']:.1f} "
                  f"| {r['return']:.2f} | {time.perf_counter() - t0:.1f} |")

    print(f"\nthroughput, {args.steps} steps per run, median of {args.repeats}")
    print("| config | steps/s (median) | runs |")
    print("| --- | ---: | --- |")
    size = args.image_size
    cameras = {"no camera": {}, f"front camera {size}x{size}": {"camera": True, "image_size": size}}
    for label, overrides in cameras.items():
        robot = make_robot("sim_base", **overrides)
        assert isinstance(robot, DiffDriveRobot)
        with robot:
            runs = [steps_per_second(robot, args.steps) for _ in range(args.repeats)]
        print(f"| {label} | {statistics.median(runs):.0f} | {', '.join(f'{r:.0f}' for r in runs)} |")


if __name__ == "__main__":
    main()
