"""Process and probe helpers shared by the reliability benchmarks (real nodes, real DDS,
discovery on localhost, a ROS domain of their own)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(120, 200)))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def start(module: str, name: str, *params: str, log: Path | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", *(x for p in params for x in ("-p", p))]
    out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(*procs: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, sig)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def read_audit(path: Path) -> dict[int, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        stamp, *values = line.split()
        out[int(stamp)] = np.array([float(v) for v in values])
    return out


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


class Probe:
    """The benchmark's own node: robot spec, sent actions, statuses, service calls."""

    def __init__(self, name: str = "reliability_probe") -> None:
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        from robot_rl.ros.common import LATCHED_QOS, RELIABLE_QOS, command_qos

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node(name)
        self.spec: dict[str, Any] = {}
        self.sent: list[tuple[float, int, np.ndarray]] = []  # (arrival monotonic, stamp ns, action)
        self.status: dict[str, dict[str, Any]] = {}
        self.node.create_subscription(String, "robot_spec", lambda m: self.spec.update(json.loads(m.data)), LATCHED_QOS)
        self.node.create_subscription(
            JointState, "action_sent",
            lambda m: self.sent.append((time.monotonic(), m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, np.array(m.position))),
            RELIABLE_QOS,
        )  # fmt: skip
        for topic in ("robot/status", "recorder/status", "policy/status"):
            self.node.create_subscription(String, topic, lambda m, t=topic: self.status.__setitem__(t, json.loads(m.data)), RELIABLE_QOS)
        self.commands = self.node.create_publisher(Float64MultiArray, "commands", command_qos(0.25))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.005, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            self.spin(0.02)
        raise TimeoutError(f"timed out waiting for {what or predicate}")

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            future = client.call_async(request)
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                self.spin(0.01)
            return future.result() if future.done() else None
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.shutdown()
