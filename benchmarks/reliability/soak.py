"""Soak: the robot node streaming at 500 Hz, a JPEG camera, the recorder and a steady
commander, for --minutes over real DDS; delivery, latency, memory and false alarms.

    .venv/bin/python benchmarks/reliability/soak.py --minutes 10

Processes: robot node (``mock_arm`` at --rate Hz, audit log on), camera node (fake
device, 320x240 JPEG at 30 Hz: the setting benchmarks/ros_recording.py found delivered
intact at every rate), recorder (the robot node's keys, in --episode-s episodes), and
this script as the commander (valid commands at 100 Hz) and as a subscriber to
``joint_states`` and the camera. Every 10 s it samples each node's resident memory
(/proc) and the robot's status. Reported:

- delivered: ``joint_states`` received here / actions the robot node sent (audit log);
  camera frames received / frame indices spanned; recorded steps / steps sent while
  recording;
- latency p50/p99/max: receive time - header stamp (joint states, frames);
- robot rate: actions sent per second, per 10 s window;
- memory: RSS of every node at 1 minute and at the end, and the least-squares slope
  over the run after the first minute (MB/min);
- false alarms: command-timeout holds counted by the robot node while this script was
  commanding without a gap longer than the timeout (a gap of its own is reported
  separately and excused).
Writes benchmarks/out/reliability/soak.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _ros import Probe, percentile, start, stop  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--episode-s", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/reliability/soak"))
    args = ap.parse_args()
    import shutil

    from sensor_msgs.msg import CompressedImage, JointState
    from std_srvs.srv import SetBool, Trigger

    from robot_rl.data import EpisodeStore
    from robot_rl.ros.common import SENSOR_QOS, command_msg, stamp_to_ns

    args.out.mkdir(parents=True, exist_ok=True)
    store, audit, log = args.out / "soak.zarr", args.out / "audit.txt", args.out / "nodes.log"
    for p in (audit, log):
        p.unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
    procs = {
        "robot": start("robot_rl.ros.robot_node", "robot", "robot:=mock_arm", f"robot_config:='{json.dumps({'fps': args.rate})}'", f"audit_log:={audit}", log=log),
        "camera": start("robot_rl.ros.camera_node", "wrist", "source:=fake", "width:=320", "height:=240", "fps:=30.0", "compressed:=true", log=log),
        "recorder": start("robot_rl.ros.recorder_node", "recorder", f"out:={store}", "task:=soak", "source:=scripted", "flush_every:=500", log=log),
    }
    probe = Probe("soak_probe")
    lat: dict[str, list[float]] = {"joint": [], "frame": []}
    frames: list[int] = []
    joints = [0]

    def on_joint(m: JointState) -> None:
        lat["joint"].append((time.time_ns() - stamp_to_ns(m.header.stamp)) / 1e6)
        joints[0] += 1

    def on_frame(m: CompressedImage) -> None:
        lat["frame"].append((time.time_ns() - stamp_to_ns(m.header.stamp)) / 1e6)
        frames.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)

    probe.node.create_subscription(JointState, "joint_states", on_joint, SENSOR_QOS)
    probe.node.create_subscription(CompressedImage, "wrist/image_raw/compressed", on_frame, SENSOR_QOS)
    probe.wait_for(lambda: probe.spec, 60, "robot_spec")
    names = probe.spec["action_spec"]["names"]
    low, high = (np.array(probe.spec["action_spec"][k]) for k in ("low", "high"))
    home = (low + high) / 2
    cmd_times: list[float] = []
    from std_msgs.msg import Float64MultiArray

    from robot_rl.ros.common import command_qos

    probe.node.destroy_publisher(probe.commands)  # its deadline is not this robot's
    commands = probe.node.create_publisher(Float64MultiArray, "commands", command_qos(float(probe.spec["command_timeout"])))

    def command() -> None:
        commands.publish(command_msg(home, names))
        cmd_times.append(time.monotonic())

    probe.node.create_timer(0.01, command)
    samples = []
    recording: list[tuple[int, int]] = []  # (first, last) audit line index while recording
    try:
        probe.wait_for(lambda: "robot/status" in probe.status and probe.sent, 60, "the robot streaming")
        probe.spin(5.0)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample, ep_start = t0, None
        while time.monotonic() < end:
            now = time.monotonic()
            if ep_start is None:
                res = probe.call(Trigger, "recorder/start", Trigger.Request())
                if res is not None and res.success:
                    ep_start = time.monotonic()
                    recording.append((len(probe.sent), -1))
            elif now - ep_start > args.episode_s:
                res = probe.call(SetBool, "recorder/stop", SetBool.Request(data=True))
                recording[-1] = (recording[-1][0], len(probe.sent))
                ep_start = None
            if now >= next_sample:
                status = probe.status.get("robot/status", {})
                samples.append({
                    "t": now - t0,
                    "rss_mb": {k: rss_mb(p.pid) for k, p in procs.items() if p.poll() is None},
                    "probe_rss_mb": rss_mb(__import__("os").getpid()),
                    "sent": len(probe.sent), "joints": joints[0], "frames": len(frames),
                    "timeouts": sum(v for k, v in status.get("safety_counts", {}).items() if "timeout" in k),
                    "alive": {k: p.poll() is None for k, p in procs.items()},
                })  # fmt: skip
                print(f"{samples[-1]['t']:6.0f} s  rss {samples[-1]['rss_mb']}  sent {samples[-1]['sent']}  timeouts {samples[-1]['timeouts']}", flush=True)
                next_sample += 10.0
            probe.spin(0.05)
        if ep_start is not None:
            probe.call(SetBool, "recorder/stop", SetBool.Request(data=True))
            recording[-1] = (recording[-1][0], len(probe.sent))
        probe.spin(1.0)
    finally:
        probe.close()
        stop(*procs.values())
    sent_audit = sum(1 for _ in audit.open())
    rec = EpisodeStore(store)
    recorded_steps = rec.n_steps
    # the robot's rate per 10 s window, from the sent-action counts seen here
    rates = [(b["sent"] - a["sent"]) / (b["t"] - a["t"]) for a, b in zip(samples, samples[1:], strict=False)]
    warm = [s for s in samples if s["t"] >= 60] or samples
    mem = {}
    for k in procs:
        t = np.array([s["t"] for s in warm if k in s["rss_mb"]]) / 60
        v = np.array([s["rss_mb"][k] for s in warm if k in s["rss_mb"]])
        mem[k] = {"at_1min_mb": float(v[0]), "end_mb": float(v[-1]), "slope_mb_per_min": float(np.polyfit(t, v, 1)[0]) if len(t) > 2 else None}
    gaps = np.diff(cmd_times)
    span = (frames[-1] - frames[0]) / 1e9 * 30 + 1 if len(frames) > 1 else 0
    summary = {
        "minutes": args.minutes,
        "rate_target_hz": args.rate,
        "robot_rate_hz": {"median": percentile(rates, 50), "min": min(rates, default=None)},
        "actions_sent": sent_audit,
        "joint_states_delivered": joints[0] / max(1, len(probe.sent)),
        "action_sent_delivered": len(probe.sent) / max(1, sent_audit),
        "frames_delivered": len(frames) / span if span else None,
        "recorded_steps_fraction": recorded_steps / max(1, sum(b - a for a, b in recording if b > 0)),
        "episodes": len(rec),
        "latency_ms": {k: {"p50": percentile(v, 50), "p99": percentile(v, 99), "max": max(v, default=None)} for k, v in lat.items()},
        "memory": mem,
        # holds counted while this script was commanding (the count before the first
        # command, while the robot waited for one, is excluded)
        "command_timeouts": samples[-1]["timeouts"] - samples[0]["timeouts"] if samples else None,
        "commander_max_gap_s": float(gaps.max()) if len(gaps) else None,
        "all_alive": all(all(s["alive"].values()) for s in samples),
    }
    (args.out.parent / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
