"""The robot node's DDS transport: UDP only, so a frozen peer cannot block its publishes
(robot_rl/ros/dds.py), and under LOCALHOST discovery nothing of it leaves the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_ros import Probe, start, stop

from robot_rl.ros.dds import LOOPBACK_PROFILE, udp_only_transport


def test_localhost_discovery_gets_the_loopback_udp_profile():
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert "loopback" in udp_only_transport(env)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LOOPBACK_PROFILE) and LOOPBACK_PROFILE.is_file()
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"  # rmw_fastrtps would add shared memory itself
    text = LOOPBACK_PROFILE.read_text()
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in text and "SHM" not in text.split("-->")[-1]


@pytest.mark.parametrize("discovery", ["", "SUBNET", "SYSTEM_DEFAULT"])
def test_other_ranges_keep_their_discovery_without_shared_memory(discovery):
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": discovery} if discovery else {}
    udp_only_transport(env)
    assert env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "") == discovery
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env


@pytest.mark.parametrize(
    "env",
    [
        {"ROBOT_RL_DDS_SHM": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": "192.168.1.7"},
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"},
    ],
)
def test_the_users_own_settings_are_left_alone(env):
    before = dict(env)
    assert udp_only_transport(env)  # says what it left in place
    assert env == before


def _udp_sockets(pid: int) -> list[str]:
    """Local addresses (hex ip:port, as /proc/net/udp writes them) of the process's UDP sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = []
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                addresses.append(fields[1])
    return addresses


@pytest.mark.slow
def test_the_robot_node_uses_no_shared_memory_and_stays_on_loopback():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"  # tests/conftest.py
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_base", name="robot")
    probe = Probe()  # this process: Fast DDS defaults under LOCALHOST (shared memory + UDP)
    try:
        probe.wait_for(lambda: probe.cmd_vel.get_subscription_count() > 0, timeout=30)
        probe.drive(0.3, 0.5)
        assert any(a[0] > 0 for _, a in probe.sent), (
            "a peer with shared memory could not command the UDP-only robot node"
        )
        maps = Path(f"/proc/{robot.pid}/maps").read_text()
        assert "fastdds" in maps  # the library is loaded ...
        assert (
            "/dev/shm/fastdds" not in maps and "/dev/shm/fast_datasharing" not in maps
        )  # ... its shared memory is not
        own = Path(f"/proc/{os.getpid()}/maps").read_text()
        assert "/dev/shm/fastdds" in own, "the check above cannot fail: this process maps no Fast DDS segment either"
        sockets = _udp_sockets(robot.pid)
        assert sockets, "the robot node has no UDP socket"
        loopback = "0100007F:"  # 127.0.0.1, little-endian hex
        assert all(a.startswith(loopback) for a in sockets), f"a socket off loopback: {sockets}"
    finally:
        probe.close()
        stop(robot)
    out = robot.stdout.read()
    assert "DDS transport: UDPv4 on loopback" in out, out[-2000:]
    assert "Traceback" not in out and "[ERROR]" not in out, out[-2000:]

