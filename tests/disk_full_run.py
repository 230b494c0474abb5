"""Disk full during ROS 2 recording: run inside a private mount namespace, e.g.

    unshare --user --map-root-user --mount python tests/disk_full_run.py DIR --size 6m

Mounts a small tmpfs at DIR, starts a robot node (mock arm at 50 Hz), a fake camera node
and a recorder writing DIR/rec.zarr, then records short episodes until the disk is full.
Prints one JSON line: episodes committed, when the recorder reported the fault, the
control loop's largest gap, and what the store holds afterwards. Used by
tests/test_reliability.py and benchmarks/reliability/recorder_faults.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--size", default="6m", help="tmpfs size")
    ap.add_argument("--camera", default="160x120")
    ap.add_argument("--episode-s", type=float, default=0.6)
    ap.add_argument("--flush-every", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size}", "tmpfs", str(args.dir)], check=True)
    store = args.dir / "rec.zarr"
    w, h = (int(v) for v in args.camera.split("x"))

    logs: dict[str, list[tuple[float, str]]] = {}  # each node's output lines, read as they come (a pipe never fills)

    def start(module: str, name: str, *params: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", *(x for p in params for x in ("-p", p))]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines = logs.setdefault(name, [])
        threading.Thread(target=lambda: lines.extend((time.monotonic(), line.rstrip("\n")) for line in proc.stdout), daemon=True).start()
        return proc

    robot = start("robot_rl.ros.robot_node", "robot", "robot:=mock_arm")
    camera = start("robot_rl.ros.camera_node", "wrist", "source:=fake", f"width:={w}", f"height:={h}", "fps:=50.0")
    recorder = start(
        "robot_rl.ros.recorder_node", "recorder", f"out:={store}", "task:=fill", "source:=scripted",
        f"cameras:=wrist:{w}x{h}", f"flush_every:={args.flush_every}",
    )  # fmt: skip
    procs = [robot, camera, recorder]
    result: dict = {"committed": [], "start_refusals": 0}
    try:
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from robot_rl.ros.common import RELIABLE_QOS

        rclpy.init()
        node = rclpy.create_node("disk_filler")
        sent: list[float] = []  # stamps of the robot's control ticks
        status: dict = {}
        fault_seen: list[float] = []

        def on_status(m: String) -> None:
            status.update(json.loads(m.data))
            if status.get("fault") and not fault_seen:
                fault_seen.append(time.monotonic())

        node.create_subscription(JointState, "action_sent", lambda m: sent.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), RELIABLE_QOS)
        node.create_subscription(String, "recorder/status", on_status, RELIABLE_QOS)
        start_c, stop_c = node.create_client(Trigger, "recorder/start"), node.create_client(SetBool, "recorder/stop")

        def spin(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.005)
                free = shutil.disk_usage(args.dir).free
                if free < 64 * 1024 and "full_at" not in result:
                    result["full_at"] = time.monotonic()

        def call(client, request):
            future = client.call_async(request)
            end = time.monotonic() + 10
            while not future.done() and time.monotonic() < end:
                spin(0.01)
            return future.result()

        assert start_c.wait_for_service(timeout_sec=30) and stop_c.wait_for_service(timeout_sec=30)
        t_end = time.monotonic() + args.timeout
        while time.monotonic() < t_end and not fault_seen:
            r = call(start_c, Trigger.Request())
            if r is None or not r.success:
                result["start_refusals"] += 1
                spin(0.2)
                continue
            spin(args.episode_s)
            r = call(stop_c, SetBool.Request(data=True))
            if r is not None and r.success:
                result["committed"].append(r.message)
        spin(1.0)
        result["fault"] = status.get("fault")
        result["fault_after_full_s"] = (fault_seen[0] - result["full_at"]) if fault_seen and "full_at" in result else None
        result["start_after_fault"] = (lambda r: None if r is None else [r.success, r.message])(call(start_c, Trigger.Request()))
        gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
        result["actions_sent"] = len(sent)
        result["max_action_gap_s"] = max(gaps) if gaps else None
        result["robot_alive"] = robot.poll() is None
        result["recorder_alive"] = recorder.poll() is None
        node.destroy_node()
        rclpy.shutdown()
    finally:
        result["sigint_at"] = time.monotonic()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    result["recorder_exit"] = recorder.returncode
    time.sleep(0.5)  # the reader threads reach the end of the output
    timed = logs["recorder"]
    log = [line for _, line in timed]
    result["recorder_log"] = [line for line in log if "ERROR" in line or "Traceback" in line][:5]
    # each traceback in full (up to 40 lines), split by whether it came before the SIGINT
    # that ends the run (the fault handling under test) or during the shutdown after it
    blocks = [(t, log[i : i + 40]) for i, (t, line) in enumerate(timed) if "Traceback" in line]
    result["recorder_tracebacks"] = [b for t, b in blocks if t < result["sigint_at"]]
    result["recorder_tracebacks_at_shutdown"] = [b for t, b in blocks if t >= result["sigint_at"]]
    result["recorder_log_tail"] = log[-30:]
    # what is left on the full disk: every committed episode readable, verify's verdict
    from robot_rl.data import EpisodeStore
    from robot_rl.data.verify import verify

    t0 = time.monotonic()
    s = EpisodeStore(store)
    result["episodes_in_store"] = len(s)
    result["readable"] = sum(len(s.episode(i)["action"]) == s.record(i)["length"] for i in range(len(s)))
    report = verify(store)
    result["verify_ok"], result["verify_errors"] = report.ok, report.errors[:3]
    result["read_s"] = time.monotonic() - t0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
