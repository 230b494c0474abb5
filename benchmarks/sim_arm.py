"""robosuite twins: scripted-expert success rates and simulation throughput.

    .venv/bin/python benchmarks/sim_arm.py [--episodes 20 --noise 0.0 0.3 0.6 --steps 200 --repeats 3]

(a) Expert success rate on sim_lift and sim_stack at each --noise level over --episodes
    seeded episodes (episode i: reset seed i, expert seed i), each up to the task's
    max_steps and ended at the first success.
(b) Twin steps/s on sim_lift (ee_delta; send_action + get_observation of a fixed random
    action sequence) without cameras and with agentview + wrist at 84 x 84 (with
    fast_render, the default, and without it for comparison): median of --repeats runs
    of --steps steps.
Prints both tables and the command line; results go in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

from robot_rl.robots.registry import make_robot
from robot_rl.sim.robosuite_arm import EE_DELTA_SIZE, RobosuiteArm


def expert_success(task: str, noise: float, episodes: int) -> tuple[float, float, float]:
    """(success rate, mean steps of successful episodes, wall s) of the scripted expert."""
    robot = make_robot(task)
    assert isinstance(robot, RobosuiteArm)
    successes, lengths = 0, []
    t0 = time.perf_counter()
    with robot:
        for ep in range(episodes):
            expert = robot.scripted_expert(noise=noise, seed=ep)
            expert.reset()
            obs = robot.reset(seed=ep)
            for step in range(1, robot.max_episode_steps + 1):
                robot.send_action(expert.act(obs))
                obs = robot.get_observation()
                if robot.is_success():
                    successes += 1
                    lengths.append(step)
                    break
    mean_len = float(np.mean(lengths)) if lengths else float("nan")
    return successes / episodes, mean_len, time.perf_counter() - t0


def steps_per_second(cameras: tuple[str, ...], fast_render: bool, steps: int, repeats: int) -> list[float]:
    """Steps/s of ``repeats`` runs of ``steps`` random ee_delta steps on sim_lift."""
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (steps, EE_DELTA_SIZE))
    rates = []
    with make_robot("sim_lift", cameras=cameras, image_size=84, fast_render=fast_render) as robot:
        assert isinstance(robot, RobosuiteArm)
        for run in range(repeats + 1):  # run 0 warms up (numba, GL) and is not counted
            robot.reset(seed=run)
            t0 = time.perf_counter()
            for a in actions:
                robot.send_action(a)
                robot.get_observation()
            if run:
                rates.append(steps / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and noise level")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 0.6])
    parser.add_argument("--steps", type=int, default=200, help="steps per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs (median reported)")
    args = parser.parse_args()

    print(f"command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    print(f"\n(a) scripted expert, {args.episodes} seeded episodes per cell")
    print(f"{'task':<10} {'noise':>5} {'success':>8} {'mean steps (succ.)':>19} {'wall s':>7}")
    for task in ("sim_lift", "sim_stack"):
        for noise in args.noise:
            rate, mean_len, wall = expert_success(task, noise, args.episodes)
            print(f"{task:<10} {noise:>5.1f} {rate:>8.0%} {mean_len:>19.1f} {wall:>7.1f}", flush=True)

    print(f"\n(b) sim_lift throughput, median of {args.repeats} x {args.steps} steps")
    print(f"{'cameras':<40} {'steps/s':>8} {'ms/step':>8}  runs (steps/s)")
    both = ("agentview", "wrist")
    for cameras, fast in (((), True), (both, True), (both, False)):
        rates = steps_per_second(cameras, fast, args.steps, args.repeats)
        med = statistics.median(rates)
        label = f"{'+'.join(cameras)} 84x84, fast_render={fast}" if cameras else "none"
        print(f"{label:<40} {med:>8.1f} {1000 / med:>8.1f}  {', '.join(f'{r:.1f}' for r in rates)}", flush=True)


if __name__ == "__main__":
    main()
