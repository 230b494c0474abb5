"""Policy faults: SIGSTOP / SIGKILL of the policy node while it drives the Lift twin.

    .venv/bin/python benchmarks/reliability/policy_faults.py --faults 100 --tag _run1

A robot node (sim_lift) and a policy node (a BC checkpoint; trained here on scripted
demonstrations if --checkpoint is not given) run over real DDS. Each fault alternates
SIGSTOP (frozen mid-loop, then SIGCONT) and SIGKILL (then a restart with
``enabled:=false``). Measured per fault: the time from the policy's last command to
the robot's first hold action (must be within the command timeout + one control period),
commands after that hold (the robot must stay held; a SIGCONTed policy must not command
until ``policy/enable``), and whether an explicit enable brings it back.
Writes benchmarks/out/reliability/policy_faults.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _ros import Probe, percentile, start, stop  # noqa: E402

TIMEOUT, PERIOD = 0.25, 0.05  # sim_lift's command timeout and control period


def make_checkpoint(root: Path) -> Path:
    ckpt = root / "bc" / "checkpoint"
    if (ckpt / "config.json").exists():
        return ckpt
    from robot_rl.cli.train import TrainConfig, train
    from robot_rl.envs import collect_episodes
    from robot_rl.robots import make_robot

    with make_robot("sim_lift") as robot:
        collect_episodes(robot, "sim_lift", "lift", root / "lift.zarr", 12, [0.0], 0)
    low_dim = ["joint_pos", "eef_pos", "eef_quat", "gripper_qpos", "object"]
    train(TrainConfig(algo="bc", data=root / "lift.zarr", out=root / "bc", steps=1500, seed=0, obs_keys=low_dim, eval_episodes=0, save_every=0, log_every=500))
    return ckpt


def is_hold(action: np.ndarray) -> bool:
    return bool(np.all(action[:6] == 0.0))  # ee_delta hold: no motion


def watch_stalls(pid: int, audit: Path, py_spy: str, out: Path) -> None:
    """A daemon thread: when the audit log (one line per robot tick) has not grown for
    0.35 s, run ``py-spy dump --native`` on the robot node (works while a C call holds the
    GIL, which stops the node's own faulthandler dumps from naming the C function)."""
    import subprocess
    import threading

    out.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        size, grew, dumped = -1, time.monotonic(), False
        while True:
            time.sleep(0.05)
            now_size = audit.stat().st_size if audit.exists() else 0
            if now_size != size:
                size, grew, dumped = now_size, time.monotonic(), False
            elif not dumped and size > 0 and time.monotonic() - grew > 0.35:
                dumped = True
                stall = time.monotonic() - grew
                res = subprocess.run([py_spy, "dump", "--native", "--pid", str(pid)], capture_output=True, text=True, check=False)
                path = out / f"stall_{time.strftime('%H%M%S')}_{int(time.monotonic() * 1000) % 100000}.txt"
                path.write_text(f"stalled {stall:.2f} s at dump start, dump took {time.monotonic() - grew - stall:.2f} s\n{res.stdout}\n{res.stderr}")
                print(f"robot ticks stalled: native stacks in {path}", flush=True)

    threading.Thread(target=run, daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/reliability/policy_faults"))
    ap.add_argument("--tag", default="", help="suffix of the output JSON")
    ap.add_argument("--native-dumps", metavar="PY_SPY", help="path of a py-spy binary: when the robot node's ticks stop for 0.35 s, dump its native and Python stacks into the output folder")
    args = ap.parse_args()
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    from robot_rl.ros.common import command_qos

    args.out.mkdir(parents=True, exist_ok=True)
    log, audit = args.out / "nodes.log", args.out / "audit.txt"
    log.unlink(missing_ok=True)
    audit.unlink(missing_ok=True)
    ckpt = args.checkpoint or make_checkpoint(args.out)
    # stall_traceback: a tick gap over 0.4 s dumps the robot node's stacks into nodes.log
    robot = start("robot_rl.ros.robot_node", "robot", "robot:=sim_lift", "seed:=3", f"audit_log:={audit}", "stall_traceback:=0.4", log=log)
    policy = start("robot_rl.ros.policy_node", "policy", f"checkpoint:={ckpt}", log=log)
    if args.native_dumps:
        watch_stalls(robot.pid, audit, args.native_dumps, args.out / f"native_dumps{args.tag}")
    probe = Probe()
    commanded: list[float] = []
    probe.node.create_subscription(Float64MultiArray, "commands", lambda m: commanded.append(time.monotonic()), command_qos(TIMEOUT))

    def enable() -> bool:
        res = probe.call(SetBool, "policy/enable", SetBool.Request(data=True), timeout=30)
        return bool(res and res.success)

    faults = []
    t0 = time.monotonic()
    try:
        probe.wait_for(lambda: len(commanded) > 20, 120, "the policy's first commands")
        for k in range(args.faults):
            kind = "SIGSTOP" if k % 2 == 0 else "SIGKILL"
            # a fresh twin episode, so that the policy is moving the arm (at the end of an
            # episode it can sit where the safety filter turns its commands into holds)
            assert probe.call(Trigger, "reset", Trigger.Request()).success
            mark = time.monotonic()
            probe.wait_for(lambda: len([t for t, _, a in probe.sent if t > mark and not is_hold(a)]) >= 5, 60, "the policy moving the arm")
            fault_wall = time.time_ns()
            holds_before = probe.status["robot/status"].get("timeout_holds", 0)
            os.kill(policy.pid, signal.SIGSTOP if kind == "SIGSTOP" else signal.SIGKILL)
            probe.spin(1.2)
            last_cmd = max(commanded)
            before = [a for t, _, a in probe.sent if mark < t <= last_cmd]
            after = [(t, a) for t, _, a in probe.sent if t > last_cmd]
            first_hold = next((t for t, a in after if is_hold(a)), None)
            moved_after_hold = first_hold is not None and any(not is_hold(a) for t, a in after if t >= first_hold)
            f = {"fault": kind, "hold_latency_s": None if first_hold is None else first_hold - last_cmd, "moved_after_hold": moved_after_hold}
            f["moving_before"] = bool(before) and not is_hold(before[-1])  # a hold was not already being sent
            # the robot's own control loop around the fault: largest gap between its ticks (audit stamps)
            ticks = [int(line.split(None, 1)[0]) for line in audit.read_text().splitlines()]
            window = [t for t in ticks if fault_wall - 200_000_000 <= t <= fault_wall + 1_200_000_000]
            f["robot_max_tick_gap_s"] = float(np.diff(window).max()) / 1e9 if len(window) > 1 else None
            # the robot node's own measure: last command's arrival -> its first timeout hold
            status = probe.status["robot/status"]
            new_hold = status.get("timeout_holds", 0) == holds_before + 1
            f["robot_side_hold_latency_s"] = status.get("timeout_hold_latency_last_s") if new_hold else None
            if first_hold is None:  # diagnostics: what the robot sent instead
                f["after"] = [[round(t - last_cmd, 3), [round(float(x), 4) for x in a]] for t, a in after[:30]]
            if kind == "SIGSTOP":
                received = probe.status["robot/status"]["received_messages"]  # <= 0.5 s old: the policy was stopped since
                os.kill(policy.pid, signal.SIGCONT)
                resumed = time.monotonic()
                probe.spin(1.2)
                f["commands_without_enable"] = len([t for t in commanded if t > resumed])
                # what the robot itself received after the resume (a command handed to DDS
                # before the freeze can still be delivered after it)
                f["robot_received_without_enable"] = probe.status["robot/status"]["received_messages"] - received
                # and whether any of it moved the robot (rearm_commands: a lone late command does not)
                f["robot_moved_without_enable"] = len([a for t, _, a in probe.sent if t > resumed and not is_hold(a)])
            else:
                policy.wait()
                probe.status.pop("policy/status", None)
                policy = start("robot_rl.ros.policy_node", "policy", f"checkpoint:={ckpt}", "enabled:=false", log=log)
                resumed = time.monotonic()
                probe.wait_for(lambda: "policy/status" in probe.status, 60, "the restarted policy node's status")
                probe.spin(1.0)
                f["commands_without_enable"] = len([t for t in commanded if t > resumed])
            f["enabled_again"] = enable()
            mark = time.monotonic()
            try:
                probe.wait_for(lambda: len([t for t in commanded if t > mark]) >= 5, 60, "commands after enable")
                f["resumed"] = True
            except TimeoutError:
                f["resumed"] = False
            faults.append(f)
            print(f"fault {k + 1}/{args.faults} {kind}: hold after {f['hold_latency_s']}, commands without enable {f['commands_without_enable']}, resumed {f['resumed']}", flush=True)
    finally:
        probe.close()
        stop(policy, robot)
    lat = {kind: [f["hold_latency_s"] for f in faults if f["fault"] == kind and f["hold_latency_s"] is not None] for kind in ("SIGSTOP", "SIGKILL")}
    bound = TIMEOUT + PERIOD
    summary = {
        "faults": len(faults),
        "held": sum(f["hold_latency_s"] is not None for f in faults),
        "held_within_timeout_plus_period": sum(f["hold_latency_s"] is not None and f["hold_latency_s"] <= bound for f in faults),
        "held_within_bound_plus_0.1s_dds": sum(f["hold_latency_s"] is not None and f["hold_latency_s"] <= bound + 0.1 for f in faults),
        "moved_after_hold": sum(f["moved_after_hold"] for f in faults),
        "moving_before_fault": sum(f["moving_before"] for f in faults),
        "commands_without_enable": sum(f["commands_without_enable"] for f in faults),
        "robot_received_without_enable": sum(f.get("robot_received_without_enable", 0) for f in faults),
        "robot_moved_without_enable": sum(f.get("robot_moved_without_enable", 0) for f in faults),
        "resumed_after_enable": sum(f["resumed"] for f in faults),
        "hold_latency_s": {k: {"median": percentile(v, 50), "p99": percentile(v, 99), "max": max(v, default=None)} for k, v in lat.items()},
        "bound_s": bound,
        "robot_side_hold_latency_s": {
            "measured": len(rs := [f["robot_side_hold_latency_s"] for f in faults if f.get("robot_side_hold_latency_s") is not None]),
            "within_bound": sum(x <= bound for x in rs),
            "median": percentile(rs, 50),
            "max": max(rs, default=None),
        },
        "robot_max_tick_gap_s": max((f["robot_max_tick_gap_s"] or 0) for f in faults) if faults else None,
        "robot_tick_gaps_over_2_periods": sum((f["robot_max_tick_gap_s"] or 0) > 2 * PERIOD for f in faults),
        "minutes": (time.monotonic() - t0) / 60,
    }
    (args.out.parent / f"policy_faults{args.tag}.json").write_text(json.dumps({"summary": summary, "faults": faults}, indent=1, default=float))
    print(json.dumps(summary, indent=1))
    ok = summary["held"] == len(faults) and summary["moved_after_hold"] == 0 and summary["robot_moved_without_enable"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
