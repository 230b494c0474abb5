"""End-to-end recording over ROS 2 on this machine: robot node streaming joint states at
a high rate plus 0-2 camera nodes, into the recorder; real DDS on loopback.

    .venv/bin/python benchmarks/ros_recording.py [--rate 500 --seconds 10 --sizes 320x240 640x480]

Per configuration (cameras x raw/JPEG x size) the robot node (``mock_arm`` at --rate Hz,
no commands: it holds and streams) and the camera nodes (fake device, 30 Hz) run for
--seconds while the recorder records one episode. Reported:

- steps: recorded steps / actions the robot node sent in the window (its audit log):
  the delivered fraction of control steps (``action_sent`` is reliable);
- robot rate: actions sent per second (can the node keep --rate?);
- held %: steps whose observation key was held from an older message, for the worst
  key (recorder drop counter / steps);
- frames delivered: by sequence number, frames a subscriber (this script) received /
  frame indices spanned (the fake device stamps its index into every frame);
- latency p50/p99: probe receive time - header stamp, for joint states and frames;
- recorder CPU: % of one core over the window (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))


def start(module: str, name: str, *params: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_config(rate: float, cams: int, compressed: bool, size: tuple[int, int], seconds: float, work: Path) -> dict:
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import SetBool, Trigger

    from robot_rl.data import EpisodeStore
    import cv2

    from robot_rl.drivers.opencv_camera import frame_index
    from robot_rl.ros.common import RELIABLE_QOS, SENSOR_QOS, stamp_to_ns

    w, h = size
    names = [f"cam{i}" for i in range(cams)]
    out, audit = work / f"rec_{cams}_{int(compressed)}_{w}.zarr", work / f"audit_{cams}_{int(compressed)}_{w}.txt"
    flag = "true" if compressed else "false"
    procs = [start("robot_rl.ros.robot_node", "robot", "robot:=mock_arm", f"robot_config:='{json.dumps({"fps": rate})}'", f"audit_log:={audit}")]
    procs += [start("robot_rl.ros.camera_node", n, "source:=fake", f"width:={w}", f"height:={h}", "fps:=30.0", f"compressed:={flag}") for n in names]
    cam_params = [f"cameras:={','.join(f'{n}:{w}x{h}' for n in names)}", f"compressed:={flag}"] if names else []
    recorder = start("robot_rl.ros.recorder_node", "recorder", f"out:={out}", "source:=teleop", *cam_params)
    procs.append(recorder)
    node = rclpy.create_node("bench_probe")
    lat: dict[str, list[float]] = {"joint": [], "frame": []}
    seen: dict[str, set[int]] = {n: set() for n in names}
    status: dict[str, dict] = {}

    def on_joint(m: JointState) -> None:
        lat["joint"].append((time.time_ns() - stamp_to_ns(m.header.stamp)) / 1e6)

    def on_frame(n: str, m) -> None:
        lat["frame"].append((time.time_ns() - stamp_to_ns(m.header.stamp)) / 1e6)
        if compressed:
            frame = cv2.imdecode(np.frombuffer(bytes(m.data), np.uint8), cv2.IMREAD_COLOR)
        else:
            frame = np.frombuffer(bytes(m.data), np.uint8).reshape(h, w, 3)
        seen[n].add(frame_index(frame))

    node.create_subscription(JointState, "state/joint_pos", on_joint, SENSOR_QOS)
    for n in names:
        if compressed:
            node.create_subscription(CompressedImage, f"{n}/image_raw/compressed", lambda m, n=n: on_frame(n, m), SENSOR_QOS)
        else:
            node.create_subscription(Image, f"{n}/image_raw", lambda m, n=n: on_frame(n, m), SENSOR_QOS)
        node.create_subscription(String, f"{n}/status", lambda m, n=n: status.__setitem__(n, json.loads(m.data)), RELIABLE_QOS)
    node.create_subscription(String, "recorder/status", lambda m: status.__setitem__("recorder", json.loads(m.data)), RELIABLE_QOS)
    start_cli, stop_cli = node.create_client(Trigger, "recorder/start"), node.create_client(SetBool, "recorder/stop")

    def call(client, request):
        future = client.call_async(request)
        while not future.done():
            rclpy.spin_once(node, timeout_sec=0.05)
        return future.result()

    try:
        deadline = time.monotonic() + 60
        while not (start_cli.service_is_ready() and "recorder" in status and all(n in status for n in names)):
            dead = [p.args[2] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not come up (exited: {dead})")
            rclpy.spin_once(node, timeout_sec=0.1)
        for _ in range(100):  # the recorder opens its store once the robot's spec arrives
            if call(start_cli, Trigger.Request()).success:
                break
            time.sleep(0.2)
        cpu0, t0 = cpu_seconds(recorder.pid), time.monotonic()
        for n in names:
            seen[n].clear()
        lat["joint"].clear()
        lat["frame"].clear()
        while time.monotonic() - t0 < seconds:
            rclpy.spin_once(node, timeout_sec=0.05)
        cpu = (cpu_seconds(recorder.pid) - cpu0) / (time.monotonic() - t0)
        result = call(stop_cli, SetBool.Request(data=True))
        rec_status = dict(status["recorder"])
    finally:
        node.destroy_node()
        stop(procs)
    assert result.success, result.message
    store = EpisodeStore(out)
    ep = store.episode(len(store) - 1)
    ts = ep["timestamp"]
    sent = [int(line.split()[0]) for line in audit.read_text().splitlines()]
    in_window = [s for s in sent if ts[0] * 1e9 - 1000 <= s <= ts[-1] * 1e9 + 1000]
    steps = len(ts)
    held = max(rec_status["dropped"].values(), default=0)
    return {
        "rate": rate,
        "cams": cams,
        "mode": "jpeg" if compressed else "raw",
        "size": f"{w}x{h}",
        "steps_fraction": steps / max(len(in_window), 1),
        "robot_hz": len(in_window) / max(ts[-1] - ts[0], 1e-9),
        "held_pct": 100.0 * held / max(steps, 1),
        "frames_delivered": {n: len(seen[n]) / max(max(seen[n]) - min(seen[n]) + 1, 1) if seen[n] else 0.0 for n in names},
        "joint_p50": float(np.percentile(lat["joint"], 50)) if lat["joint"] else float("nan"),
        "joint_p99": float(np.percentile(lat["joint"], 99)) if lat["joint"] else float("nan"),
        "frame_p50": float(np.percentile(lat["frame"], 50)) if lat["frame"] else float("nan"),
        "frame_p99": float(np.percentile(lat["frame"], 99)) if lat["frame"] else float("nan"),
        "recorder_cpu": 100.0 * cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="robot node rate (Hz)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sizes", nargs="*", default=["320x240", "640x480"])
    ap.add_argument("--cams", nargs="*", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    import rclpy

    rclpy.init()
    work = Path(tempfile.mkdtemp(prefix="robot_rl_rosbench_"))
    rows = []
    try:
        configs = [(0, False, (320, 240))] if 0 in args.cams else []
        for cams in [c for c in args.cams if c > 0]:
            for size in args.sizes:
                w, h = (int(v) for v in size.split("x"))
                for compressed in (False, True):
                    configs.append((cams, compressed, (w, h)))
        for cams, compressed, size in configs:
            r = run_config(args.rate, cams, compressed, size, args.seconds, work)
            rows.append(r)
            print(json.dumps(r), flush=True)
    finally:
        rclpy.shutdown()
    print(f"\ncommand: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    print("| cameras | mode | size | steps recorded / sent | robot Hz | held % | frames delivered | joint p50/p99 ms | frame p50/p99 ms | recorder CPU % |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |")
    for r in rows:
        fd = statistics.mean(r["frames_delivered"].values()) if r["frames_delivered"] else float("nan")
        print(
            f"| {r['cams']} | {r['mode']} | {r['size'] if r['cams'] else '-'} | {r['steps_fraction']:.3f} | {r['robot_hz']:.0f} | {r['held_pct']:.1f} | "
            f"{fd:.3f} | {r['joint_p50']:.1f} / {r['joint_p99']:.1f} | {r['frame_p50']:.1f} / {r['frame_p99']:.1f} | {r['recorder_cpu']:.0f} |"
        )


if __name__ == "__main__":
    main()
