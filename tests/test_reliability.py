"""Reliability of the robot node under bad input and clock faults (issue #10).

Fuzzed ``commands`` / ``cmd_vel`` messages, in process through the node's real callbacks
(exact counts) and over real DDS between processes; wall-clock jumps under libfaketime.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from fuzz_messages import fuzz_command, fuzz_twist
from test_ros import Probe, read_audit, start, stop

FUZZ = 10_000


def in_process_node(robot: str, audit: Path, extra: list | None = None):
    """The real RobotNode, configured but not spinning: the test calls its callbacks and
    its control tick directly, so every message is seen (no DDS history drops)."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from robot_rl.ros.robot_node import RobotNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = RobotNode(
        context=ctx,
        parameter_overrides=[Parameter("robot", value=robot), Parameter("audit_log", value=str(audit)), Parameter("autostart", value=False), *(extra or [])],
    )
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    return node, ctx


def check_sent(audit: Path, node, expected_rows: int) -> np.ndarray:
    """Every action that reached the robot is finite and inside its command bounds."""
    sent = np.array(list(read_audit(audit).values()))
    assert len(sent) == expected_rows
    limits = node.robot.config.safety_limits()
    assert np.all(np.isfinite(sent))
    tol = 1e-6  # actions are sent as float32: a bound such as -0.1 rounds to -0.10000000149
    assert np.all(sent >= np.array(limits.low) - tol) and np.all(sent <= np.array(limits.high) + tol)
    return sent


@pytest.mark.parametrize("robot", ["mock_arm", "mock_base"])
def test_fuzzed_messages_never_reach_the_robot(robot, tmp_path, capfd):
    import rclpy

    audit = tmp_path / "audit.txt"
    node, ctx = in_process_node(robot, audit)
    rng = np.random.default_rng(0)
    try:
        expected: dict[str, int] = {}
        for i in range(FUZZ):
            if robot == "mock_base" and i % 2:
                msg, verdict = fuzz_twist(rng)
                node._on_twist(msg)
            else:
                msg, verdict = fuzz_command(rng, node._action_names)
                node._on_commands(msg)
            if verdict is not None:
                expected[verdict] = expected.get(verdict, 0) + 1
            assert node.rejected_messages == sum(expected.values()), f"message {i}: {msg} should be {verdict}"
            node._tick()
        assert set(expected) >= {"wrong length", "non-finite value"} and min(expected.values()) > 300
        assert dict(node.rejected_by_reason) == expected
        assert node.received_messages == FUZZ
        sent = check_sent(audit, node, FUZZ)
        # the safety filter's own per-tick rate limit held on every accepted step
        limits = node.robot.config.safety_limits()
        steps = np.abs(np.diff(sent, axis=0))
        holds = [k for k, v in node.guard.filter.counts.items() if "timeout" in k or "holding" in k]
        if not holds:
            assert np.all(steps <= np.array(limits.max_delta) + 1e-6)
        # observations stay finite: nothing bad got through to the (simulated) hardware
        assert all(np.all(np.isfinite(v)) for v in node.robot.get_observation().values())
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    # each reason is logged once, with its first example, not once per message
    err = capfd.readouterr().err
    for reason in expected:
        assert len(re.findall(rf"rejected message \({reason}\)", err)) == 1, (reason, err[-2000:])


@pytest.mark.parametrize("rearm", [2, 1])
def test_a_lone_command_after_a_silence_does_not_move_the_robot(rearm, tmp_path):
    """What a frozen command source leaves behind is one sample delivered after the
    freeze (policy_faults.py): after a silence longer than the command timeout the robot
    moves again only on a stream of ``rearm_commands`` commands; 1 restores the old rule."""
    import rclpy
    from rclpy.parameter import Parameter

    node, ctx = in_process_node("mock_base", tmp_path / "audit.txt", [Parameter("rearm_commands", value=rearm)])
    try:
        timeout = node.robot.config.safety_limits().command_timeout
        msg = fuzz_twist(np.random.default_rng(0))[0]
        msg.linear.x, msg.angular.z = 0.3, 0.0
        for silence in range(2):  # from start-up, then after a timeout
            node._on_twist(msg)
            node._tick()
            assert (node.guard.last_sent[0] > 0) == (rearm == 1), f"after silence {silence}: {node.guard.last_sent}"
            node._on_twist(msg)  # within the timeout of the first: a stream
            node._tick()
            assert node.guard.last_sent[0] > 0
            time.sleep(timeout + 0.05)
            node._tick()
            assert np.all(node.guard.last_sent == 0.0), "the command timeout did not hold"
        assert node.rearm_waits == (2 if rearm == 2 else 0)
        # two commands further apart than the timeout are no stream
        if rearm == 2:
            node._on_twist(msg)
            time.sleep(timeout + 0.05)
            node._on_twist(msg)
            node._tick()
            assert np.all(node.guard.last_sent == 0.0)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("service", ["reset", "reset_estop"])
def test_a_command_pending_at_a_reset_is_dropped_not_sent_as_nothing(service, tmp_path):
    """A command that arrives between two control ticks, then a reset (or an e-stop reset):
    the next tick holds quietly. Before, it passed the dropped command on as None, which
    the safety filter counted and logged as a rejected action of shape () (seen in the
    demo's deploy log)."""
    import rclpy
    from std_srvs.srv import Trigger

    node, ctx = in_process_node("sim_base", tmp_path / "audit.txt", [])
    try:
        msg = fuzz_twist(np.random.default_rng(0))[0]
        msg.linear.x, msg.angular.z = 0.3, 0.0
        node._on_twist(msg)
        node._on_twist(msg)  # a stream: armed
        node._tick()
        assert node.guard.last_sent[0] > 0
        node._on_twist(msg)  # pending for the next tick
        getattr(node, f"_on_{service}")(Trigger.Request(), Trigger.Response())
        before = dict(node.guard.filter.counts)
        node._tick()
        rejected = {k: v - before.get(k, 0) for k, v in node.guard.filter.counts.items() if k.startswith("rejected")}
        assert not any(rejected.values()), rejected
        assert np.all(node.guard.last_sent == 0.0), node.guard.last_sent
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


WRONG_TYPES = """
import time, rclpy
from std_msgs.msg import Int32MultiArray, String
from robot_rl.ros.common import command_qos
rclpy.init()
node = rclpy.create_node("wrong_types")
a = node.create_publisher(String, "commands", command_qos(0.3))
b = node.create_publisher(Int32MultiArray, "cmd_vel", command_qos(0.3))
for i in range(100):
    a.publish(String(data="0.5,0.5"))
    b.publish(Int32MultiArray(data=[1, 1]))
    time.sleep(0.02)
print("published", 2 * (i + 1))
"""


def test_the_hold_watchdog_holds_the_robot_when_the_control_tick_stalls(tmp_path):
    """The executor stops running the control tick (blocked in a DDS call: ~1 s stalls
    were measured in benchmarks/reliability/policy_faults.py): the watchdog thread still
    holds the robot within the command timeout + one period of the last command."""
    import rclpy

    audit = tmp_path / "audit.txt"
    node, ctx = in_process_node("mock_base", audit)
    try:
        period, timeout = 1.0 / node.robot.config.fps, node.robot.config.safety_limits().command_timeout
        node.start_hold_watchdog()
        msg = fuzz_twist(np.random.default_rng(0))[0]
        msg.linear.x, msg.angular.z = 0.3, 0.0
        arrived = node.stamp_ns()
        node._on_twist(msg)
        node._on_twist(msg)  # a stream re-arms the robot, not one message
        node._tick()  # the command is applied; then the tick stops running
        time.sleep(timeout + 4 * period)
        lines = [(int(stamp), np.array(v, dtype=float)) for stamp, *v in (line.split() for line in audit.read_text().splitlines())]
        assert lines[0][1][0] > 0  # the command moved the base
        holds = [stamp for stamp, a in lines[1:] if np.all(a == 0.0)]
        assert holds, "the watchdog never held the robot"
        assert (holds[0] - arrived) / 1e9 <= timeout + period + 0.02  # 20 ms for thread scheduling
        assert node.watchdog_holds >= 1
        # the node's own measure of it, from the command's arrival (robot/status)
        assert len(node.timeout_hold_latency) == 1 and timeout <= node.timeout_hold_latency[0] <= timeout + period + 0.02
        node._tick()  # the tick runs again: it takes over (and keeps holding: no new command)
        assert np.all(node.guard.last_sent == 0.0)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.slow
def test_fuzz_over_dds_between_processes(tmp_path):
    """Fuzzed commands and twists from another process, plus publishers of the wrong type
    on the command topics: the robot node survives, counts what arrived, sends only safe
    actions, and still obeys a good command afterwards."""
    audit = tmp_path / "audit.txt"
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_base", "-p", f"audit_log:={audit}", name="robot")
    probe = Probe()
    try:
        probe.wait_for(lambda: min(p.get_subscription_count() for p in (probe.cmd_vel, probe.commands)) > 0, timeout=30)
        probe.drive(0.2, 0.3)
        probe.wait_for(lambda: any(a[0] > 0 for _, a in probe.sent) and "received_messages" in probe.status)
        received0 = probe.status["received_messages"]
        # wrong message types on the command topics, from another process (one DDS
        # participant cannot hold both types): DDS never matches them with the node
        wrong = subprocess.Popen([sys.executable, "-c", WRONG_TYPES], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rng = np.random.default_rng(1)
        sent = {"commands": 0, "twist": 0}
        invalid: dict[str, int] = {}
        for i in range(2000):
            if i % 2:
                msg, verdict = fuzz_twist(rng)
                probe.cmd_vel.publish(msg)
                sent["twist"] += 1
            else:
                msg, verdict = fuzz_command(rng, ["v", "omega"])
                probe.commands.publish(msg)
                sent["commands"] += 1
            if verdict:
                invalid[verdict] = invalid.get(verdict, 0) + 1
            probe.spin(0.001)
        probe.spin(1.0)
        assert wrong.wait(timeout=30) == 0, wrong.stdout.read()
        assert "published 200" in wrong.stdout.read()
        assert robot.poll() is None, "the robot node died"
        status = probe.status
        received = status["received_messages"] - received0
        # depth-1 command QoS keeps only the latest message: some may be replaced unseen
        assert 0.5 * 2000 <= received <= 2000, received
        for reason, n in status["rejected_by_reason"].items():
            assert reason in invalid and n <= invalid[reason], (reason, n, invalid)
        assert status["rejected_messages"] >= 0.3 * sum(invalid.values())
        actions = np.array([a for _, a in probe.sent])
        assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= np.array([0.5, 1.5]) + 1e-6)
        mark = time.monotonic()
        probe.drive(0.3, 0.5)
        assert any(a[0] > 0 for t, a in probe.sent if t > mark), "the robot no longer obeys a good command"
    finally:
        probe.close()
        stop(robot)
    out = robot.stdout.read()
    assert "Traceback" not in out, out[-3000:]
    for reason in status["rejected_by_reason"]:
        assert out.count(f"rejected message ({reason})") == 1, out[-3000:]
    assert np.all(np.isfinite(np.array(list(read_audit(audit).values()))))


# ---------------------------------------------------------------------------- disk full
@pytest.mark.slow
def test_disk_full_stops_recording_cleanly(tmp_path):
    """A 3 MB tmpfs (in a private mount namespace) fills while the recorder records camera
    episodes: the fault is reported within 1 s, recording stops and start is refused, the
    recorder stays up without a traceback, every committed episode reads back, verify
    passes, and the robot's control loop never notices."""
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(Path(__file__).parent / "disk_full_run.py"), str(tmp_path / "disk"), "--size", "3m"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(r["committed"]) >= 2 and "No space left on device" in (r["fault"] or ""), r
    assert r["fault_after_full_s"] is not None and r["fault_after_full_s"] < 1.0
    assert r["start_after_fault"][0] is False and "store failed" in r["start_after_fault"][1]
    # the recorder stays up after the fault and logs no traceback while it handles it. Its
    # shutdown on the SIGINT that ends the run is not judged here: in clean-clone CI runs it
    # once exited 1, and once printed a traceback (text not kept then; now printed below)
    assert r["robot_alive"] and r["recorder_alive"]
    assert not r["recorder_tracebacks"], "\n\n".join("\n".join(t) for t in r["recorder_tracebacks"]) + f"\nexit code {r['recorder_exit']}"
    for block in r["recorder_tracebacks_at_shutdown"]:  # a warning, so that a passing run's summary shows it
        warnings.warn("recorder traceback at shutdown (exit code %s):\n%s" % (r["recorder_exit"], "\n".join(block)), stacklevel=1)
    assert r["episodes_in_store"] == len(r["committed"]) == r["readable"]
    assert r["verify_ok"], r["verify_errors"]
    assert r["max_action_gap_s"] < 0.2  # mock arm: 50 Hz, command timeout 0.2 s


# ---------------------------------------------------------------------------- clock
def faketime_env(spec: Path) -> dict[str, str]:
    """LD_PRELOAD libfaketime (bundled by the libfaketime wheel) so that the process's
    wall clock follows ``spec`` (an offset such as ``+0`` / ``-3600``, re-read at most once
    a second: re-reading it at every call made the faked processes slow enough to fail
    rate checks on a loaded CI machine); monotonic clocks stay real."""
    import libfaketime

    lib = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    assert lib.exists(), lib
    return {
        "LD_PRELOAD": str(lib),
        "FAKETIME_TIMESTAMP_FILE": str(spec),
        "FAKETIME_CACHE_DURATION": "1",
        "DONT_FAKE_MONOTONIC": "1",
    }


def test_faketime_moves_the_wall_clock_only(tmp_path):
    spec = tmp_path / "faketime"
    spec.write_text("-7200\n")
    code = "import time; print(time.time(), time.monotonic())"
    env = {**os.environ, **faketime_env(spec)}
    faked = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    real = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(real[0]) - float(faked[0]) == pytest.approx(7200, abs=30)
    assert float(real[1]) - float(faked[1]) == pytest.approx(0, abs=30)


@pytest.mark.slow
# -3600 was out of the suite for a while: the faked robot node span at 190% CPU for minutes
# after the step, inside Fast DDS shared memory; on UDP only (robot_rl/ros/dds.py) it stays
# at 6-8% and passes in full-suite runs (benchmarks/RESULTS.md, clock step)
@pytest.mark.parametrize("jump", ["-3600", "+3600"])
def test_a_wall_clock_jump_trips_nothing_and_misses_nothing(jump, tmp_path):
    """The robot node's wall clock steps by an hour while commands flow: its control loop
    keeps its rate (ROS-time timers stall after a backward step), stamps keep increasing,
    commands keep being obeyed (no false timeout), and when commands stop after the step
    the robot still holds within the command timeout + one period (no missed trip)."""
    # the command timeout is 2 s, not mock_base's 0.3 s: a full suite on 2 cores paused this
    # test process (the command source) for over 0.3 s after the step (clean-clone CI), and
    # a real timeout then is no false trip. A clock bug still shows: a forward step read as
    # command age trips at once, a backward one never trips; both are far outside 2 s.
    timeout = 2.0
    spec = tmp_path / "faketime"
    spec.write_text("+0\n")
    env = {**os.environ, **faketime_env(spec)}
    audit = tmp_path / "audit.txt"
    robot = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.ros.robot_node", "--ros-args", "-r", "__node:=robot", "-p", "robot:=mock_base", "-p", f"robot_config:='{{\"command_timeout\": {timeout}}}'", "-p", f"audit_log:={audit}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
    )  # fmt: skip
    probe = Probe()
    try:
        probe.wait_for(lambda: probe.cmd_vel.get_subscription_count() > 0, timeout=30)
        started = time.monotonic()
        probe.drive(0.3, 1.5)
        before = [t for t, a in probe.sent if t > started + 0.5]  # actions in the last second
        assert any(a[0] > 0 for _, a in probe.sent), "no command got through before the jump"
        spec.write_text(f"{jump}\n")
        jumped = time.monotonic()
        # keep commanding until the robot node's own wall clock (its status) shows the step
        while abs(probe.status.get("time", time.time()) - time.time()) < 1800:
            assert time.monotonic() - jumped < 10, "the robot node's status never showed the step (its timers stalled, or its clock did not step)"
            probe.drive(0.3, 0.1)
        stepped = time.monotonic()
        stopped = probe.drive(0.3, 3.0)  # keeps commanding across the step
        during = [(t, a) for t, a in probe.sent if stepped < t <= stopped]
        # the control loop's own rate is checked on its audit log below (no tick gap over
        # 0.5 s; before the fix it sent nothing for the whole step): arrival times at this
        # process also carry its own pauses (a full suite's garbage collections, ~1 s seen)
        assert during, f"no action reached the probe in the {stopped - stepped:.2f} s after the step"
        assert all(a[0] > 0 for _, a in during), "a false timeout: the robot held while commands flowed"
        probe.spin(timeout + 1.0)
        after = [(t, a) for t, a in probe.sent if t > stopped]
        first_hold = next((t for t, a in after if a[0] == 0.0), None)
        assert first_hold is not None, "a missed trip: the robot never held after the commands stopped"
        # command timeout + one 0.05 s period, + 0.2 s for DDS and scheduling on a busy machine
        assert first_hold - stopped <= timeout + 0.05 + 0.2
        # and not early either: the 2 s timeout is the one in force, counted on a steady clock
        assert first_hold - stopped >= timeout - 0.1, f"held {first_hold - stopped:.2f} s after the last command"
        assert after, f"the robot node stopped publishing after the commands stopped ({len(before)} actions in 1 s before)"
    finally:
        probe.close()
        stop(robot)
    stamps = list(read_audit(audit))
    # consecutive stamps stay within 0.5 s of each other: they did not follow the 1 h step
    # (a hold from the watchdog thread, stamped when sent, may sit between two ticks)
    gaps = np.diff(stamps) / 1e9
    assert np.abs(gaps).max() < 0.5, f"a {gaps.max():.1f} s jump in the stamps: they followed the wall clock"
    out = robot.stdout.read()
    assert "Traceback" not in out, out[-3000:]
