"""Fast DDS transport of the nodes on the control path (robot, policy): UDP only.

Fast DDS's shared-memory transport delivers a sample by pushing it into the reader's port,
a queue in shared memory guarded by an interprocess mutex. A reader process that is
stopped (SIGSTOP, a debugger, a swapped-out machine) or killed while it holds that mutex
makes every writer that pushes to it block in ``interprocess_mutex::lock`` until Fast DDS
gives up on the port, about 1 s later. rclpy's ``Publisher.publish`` keeps the GIL through
that call, so a robot node publishing its state to a frozen policy node stopped *all* its
Python threads, the hold watchdog included, for 1 s: the robot held ~1.07 s after the last
command instead of within timeout + one period (benchmarks/RESULTS.md, policy faults; the
native stack was taken with py-spy during the stall). The same transport's timed waits
span at 80-180% CPU in a process whose wall clock was stepped back an hour (libfaketime);
over UDP the node stayed at 6-8%.

So nodes whose class sets ``udp_only = True`` talk UDP only (``run_node`` calls
:func:`udp_only_transport` before ``rclpy.init``: Fast DDS reads the environment when the
participant is made). Their peers keep shared memory between themselves and fall back to
UDP with them; a UDP send never waits on the receiver.

- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (the tests and the docs' default): rmw_fastrtps
  would add shared memory itself, so the node uses the packaged profile
  ``fastdds_loopback_udp.xml`` instead: the same localhost-only discovery, UDPv4 bound to
  127.0.0.1; the range is handed to the profile (``SYSTEM_DEFAULT``).
- Other ranges: ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4`` (Fast DDS's builtin transports, no
  shared memory); discovery is as the range says.
- Left alone: ``ROBOT_RL_DDS_SHM=1``, a Fast DDS profile of the user's own
  (``FASTDDS_DEFAULT_PROFILES_FILE``), ``FASTDDS_BUILTIN_TRANSPORTS`` already set, static
  peers under LOCALHOST, the OFF range, and another RMW.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

LOOPBACK_PROFILE = Path(__file__).with_name("fastdds_loopback_udp.xml")
FASTDDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def udp_only_transport(environ: MutableMapping[str, str] | None = None) -> str:
    """Make this process's Fast DDS participant UDP-only (see the module docstring); call it
    before ``rclpy.init``. Returns what was done, for the node's log."""
    env = os.environ if environ is None else environ
    if env.get("ROBOT_RL_DDS_SHM", "") == "1":
        return "Fast DDS default transports (ROBOT_RL_DDS_SHM=1)"
    rmw = env.get("RMW_IMPLEMENTATION", "") or "rmw_fastrtps_cpp"  # the default RMW
    if rmw not in FASTDDS_RMWS:
        return f"transports left to {rmw}"
    for own in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        if env.get(own):
            return f"transports from {own}={env[own]}"
    discovery = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    if discovery == "OFF":
        return "Fast DDS default transports (ROS_AUTOMATIC_DISCOVERY_RANGE=OFF)"
    if discovery == "LOCALHOST":
        if env.get("ROS_STATIC_PEERS", "").strip():
            return "Fast DDS default transports (static peers under LOCALHOST discovery)"
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LOOPBACK_PROFILE)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
        return "UDPv4 on loopback, no shared memory (localhost discovery by fastdds_loopback_udp.xml)"
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"
    return "UDPv4, no shared memory (FASTDDS_BUILTIN_TRANSPORTS=UDPv4)"
