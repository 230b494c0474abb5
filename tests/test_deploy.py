"""Deploying checkpoints through ROS 2: the policy node and deploy.launch.yaml on the Lift
twin, over real DDS on loopback (conftest gives the run its own domain, localhost only)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from test_ros import Probe, start, stop

from robot_rl.data import EpisodeStore

BIN = Path(sys.executable).parent / "robot-rl"
TIMEOUT, PERIOD = 0.25, 0.05  # sim_lift's command timeout and control period


@pytest.fixture(scope="module")
def lift_checkpoint(tmp_path_factory) -> Path:
    """BC on 12 scripted Lift episodes: enough to lift the cube most of the time."""
    from robot_rl.cli.train import TrainConfig, train
    from robot_rl.envs import collect_episodes
    from robot_rl.robots import make_robot

    root = tmp_path_factory.mktemp("deploy")
    with make_robot("sim_lift") as robot:
        collect_episodes(robot, "sim_lift", "lift", root / "lift.zarr", 12, [0.0], 0)
    low_dim = ["joint_pos", "eef_pos", "eef_quat", "gripper_qpos", "object"]
    code = train(TrainConfig(algo="bc", data=root / "lift.zarr", out=root / "bc", steps=1500, seed=0, obs_keys=low_dim, eval_episodes=0, save_every=0, log_every=500))
    assert code == 0
    return root / "bc" / "checkpoint"


def test_deploy_launch_drives_the_twin_to_success(lift_checkpoint, tmp_path):
    summary, out, audit = tmp_path / "summary.json", tmp_path / "deploy.zarr", tmp_path / "audit.txt"
    proc = subprocess.run(
        [str(BIN), "launch", "deploy.launch.yaml", "robot:=sim_lift", f"checkpoint:={lift_checkpoint}", "episodes:=3",
         f"summary:={summary}", "record:=true", f"out:={out}", f"audit_log:={audit}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = json.loads(summary.read_text())
    episodes = result["episodes"]
    assert len(episodes) == 3
    assert sum(e["success"] for e in episodes) >= 2, episodes
    assert result["loop"]["steps"] == sum(e["steps"] for e in episodes)
    assert result["loop"]["latency_p99_ms"] < 50  # BC on CPU: far inside the 50 ms period
    # the autonomous episodes are logged as such, with the checkpoint that drove them
    store = EpisodeStore(out)
    sha = json.loads((lift_checkpoint / "config.json").read_text())["model_sha256"]
    assert len(store) == 3
    assert [r["success"] for r in store.records] == [e["success"] for e in episodes]
    assert all(r["source"] == "policy" and r["policy_checkpoint"] == sha for r in store.records)
    assert store.verify().ok
    # every recorded action is one the robot node sent
    from test_ros import check_store_against_audit, read_audit

    assert check_store_against_audit(store, read_audit(audit)) == store.n_steps


def test_deploy_command_prints_a_success_table(lift_checkpoint, tmp_path):
    proc = subprocess.run([str(BIN), "deploy", str(lift_checkpoint), "--robot", "sim_lift", "--episodes", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("policy  "):]
    assert "bc (sim_lift)" in table and ("1/1 = 100%" in table or "0/1 = 0%" in table)
    assert "inference p50/p99 ms" in table
    missing = subprocess.run([str(BIN), "deploy", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "not a checkpoint directory" in missing.stderr  # before anything starts


class DeployProbe(Probe):
    """The test-side node, also watching the policy's commands and status."""

    def __init__(self) -> None:
        super().__init__()
        from std_msgs.msg import Float64MultiArray, String

        from robot_rl.ros.common import RELIABLE_QOS, command_qos

        self.commanded: list[float] = []
        self.policy_status: dict = {}
        self.node.create_subscription(Float64MultiArray, "commands", lambda m: self.commanded.append(time.monotonic()), command_qos(TIMEOUT))
        self.node.create_subscription(String, "policy/status", lambda m: self.policy_status.update(json.loads(m.data)), RELIABLE_QOS)

    def enable(self, on: bool = True) -> bool:
        from std_srvs.srv import SetBool

        client = self.node.create_client(SetBool, "policy/enable")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=on))
        self.wait_for(future.done)
        return future.result().success

    def holds_after(self, t: float) -> list[tuple[float, np.ndarray]]:
        return [(s, a) for s, a in self.sent if s > t]


def is_hold(action: np.ndarray) -> bool:
    return bool(np.all(action[:6] == 0.0))  # ee_delta hold: no motion, the gripper as it was


def assert_holds(probe: DeployProbe, what: str) -> None:
    last_cmd = probe.commanded[-1]
    probe.spin(1.0)
    after = probe.holds_after(last_cmd)
    assert after, f"{what}: the robot node stopped publishing"
    first_hold = next((t for t, a in after if is_hold(a)), None)
    assert first_hold is not None, f"{what}: the robot never held"
    # command timeout + one period, with 0.1 s for DDS delivery on a loaded 2-core machine
    assert first_hold - last_cmd <= TIMEOUT + PERIOD + 0.1, f"{what}: held {first_hold - last_cmd:.3f} s after the last command"
    assert all(is_hold(a) for t, a in after if t >= first_hold), f"{what}: moved again after holding"


@pytest.mark.slow
def test_a_stopped_or_killed_policy_makes_the_robot_hold(lift_checkpoint):
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=sim_lift", "-p", "seed:=3", name="robot")
    policy = start("robot_rl.ros.policy_node", "-p", f"checkpoint:={lift_checkpoint}", name="policy")
    probe = DeployProbe()
    try:
        probe.wait_for(lambda: len(probe.commanded) > 20, timeout=60)
        # SIGSTOP: the process is frozen mid-loop, its publishers silent
        os.kill(policy.pid, signal.SIGSTOP)
        assert_holds(probe, "SIGSTOP")
        # SIGCONT: the node notices its own stall and stays disabled: no auto-resume
        os.kill(policy.pid, signal.SIGCONT)
        resumed = time.monotonic()
        probe.spin(1.5)
        assert not [t for t in probe.commanded if t > resumed], "the policy resumed commanding without an enable"
        probe.wait_for(lambda: probe.policy_status.get("stale_events", 0) >= 1 and probe.policy_status.get("enabled") is False)
        # an explicit enable brings it back
        assert probe.enable(True)
        probe.wait_for(lambda: len([t for t in probe.commanded if t > resumed]) > 10)
        # SIGKILL: the same hold
        os.kill(policy.pid, signal.SIGKILL)
        policy.wait()
        assert_holds(probe, "SIGKILL")
        assert robot.poll() is None
    finally:
        probe.close()
        stop(policy, robot)


@pytest.mark.slow
def test_a_wall_clock_step_under_the_policy_trips_nothing(lift_checkpoint, tmp_path):
    """Robot and policy nodes both see their wall clock step back an hour mid-run: the
    policy keeps commanding (no false stale trip), and a SIGSTOP after the step still
    makes the robot hold within the command timeout + one period (no missed trip).
    (Out of the suite while both nodes used Fast DDS shared memory: its waits span at
    80-180% CPU after the step under libfaketime; both nodes now talk UDP, ros/dds.py.)"""
    from test_reliability import faketime_env

    spec = tmp_path / "faketime"
    spec.write_text("+0\n")
    env = {**os.environ, **faketime_env(spec)}
    procs = []
    for module, name, params in [("robot_node", "robot", ["robot:=sim_lift", "seed:=3"]), ("policy_node", "policy", [f"checkpoint:={lift_checkpoint}"])]:
        cmd = [sys.executable, "-m", f"robot_rl.ros.{module}", "--ros-args", "-r", f"__node:={name}", *(x for p in params for x in ("-p", p))]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env))
    robot, policy = procs
    probe = DeployProbe()
    try:
        probe.wait_for(lambda: len(probe.commanded) > 20, timeout=90)
        written = time.monotonic()
        spec.write_text("-3600\n")
        # the robot node's status carries its wall clock: wait until it shows the step, and
        # a second more for the policy process (each re-reads the clock spec once a second)
        probe.wait_for(lambda: abs(probe.status.get("time", time.time()) - time.time()) > 1800, timeout=10)
        probe.spin(1.1)
        stepped = time.monotonic()
        probe.spin(1.7)
        before = [t for t in probe.commanded if written - 1.7 < t <= written]
        during = [t for t in probe.commanded if t > stepped]
        # compared with its own rate just before (the machine may be busy): no stall
        assert len(during) >= 0.6 * len(before) > 0, f"the policy slowed after the step: {len(during)} commands in 1.7 s, {len(before)} before"
        probe.wait_for(lambda: "stale_events" in probe.policy_status)
        assert probe.policy_status["stale_events"] == 0 and probe.policy_status["enabled"] is True
        os.kill(policy.pid, signal.SIGSTOP)
        assert_holds(probe, "SIGSTOP after a wall-clock step")
        os.kill(policy.pid, signal.SIGCONT)
    finally:
        probe.close()
        stop(policy, robot)


def test_an_action_ready_after_the_stale_timeout_is_never_sent(lift_checkpoint, tmp_path):
    """The policy process stops (SIGSTOP, a blocked call) in the middle of an inference: the
    action computed from the old observation is dropped, not published after the resume,
    and the policy stays disabled (found by benchmarks/reliability/policy_faults.py: 3 of
    50 SIGSTOPs let one such command through). In process, through the node's callbacks."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from std_msgs.msg import String
    from test_reliability import in_process_node

    from robot_rl.ros.common import vector_msg
    from robot_rl.ros.policy_node import PolicyNode

    robot, robot_ctx = in_process_node("sim_lift", tmp_path / "audit.txt")
    spec, obs = json.dumps(robot.describe()), robot.guard.observe()
    robot.destroy_node()
    rclpy.shutdown(context=robot_ctx)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = PolicyNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(lift_checkpoint)), Parameter("autostart", value=False)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        node._on_spec(String(data=spec))
        assert node.enabled
        published = []
        node._cmd_pub.publish = published.append
        act = node.policy.act

        def feed(stamp: int) -> None:
            for key in node._robot_keys:
                node._on_vector(key, vector_msg(obs[key], [f"{key}_{i}" for i in range(obs[key].size)], stamp))

        feed(1)
        assert len(published) == 1  # a normal step commands
        node.policy.act = lambda o: (time.sleep(node.stale_timeout + 0.05), act(o))[1]  # frozen mid-inference
        feed(2)
        assert len(published) == 1, "an action computed from a stale observation was published"
        assert not node.enabled and node.stale_events == 1
        node.policy.act = act
        feed(3)
        assert len(published) == 1  # and it does not resume on its own
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.slow
def test_nan_weights_are_refused_before_any_command(lift_checkpoint, tmp_path):
    from robot_rl.algos.checkpoint import CheckpointError, _sha256, load_checkpoint

    bad = tmp_path / "nan_ckpt"
    shutil.copytree(lift_checkpoint, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    name = sorted(k for k in tensors if k.startswith("actor"))[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(bad / "model.safetensors"))
    config = json.loads((bad / "config.json").read_text())
    config["model_sha256"] = _sha256(bad / "model.safetensors")  # intact file, poisoned weights
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"weight '{name}' has 1 non-finite"):
        load_checkpoint(bad)

    robot = start("robot_rl.ros.robot_node", "-p", "robot:=sim_lift", name="robot")
    probe = DeployProbe()
    try:
        probe.wait_for(lambda: bool(probe.status), timeout=60)  # the robot node is up
        policy = start("robot_rl.ros.policy_node", "-p", f"checkpoint:={bad}", name="policy")
        assert policy.wait(timeout=60) == 1
        out = policy.stdout.read()
        assert "refusing checkpoint" in out and "non-finite" in out, out[-2000:]
        probe.spin(0.5)
        # not one command was published; the robot node only ever sent its hold action
        assert probe.commanded == [] and all(is_hold(a) for _, a in probe.sent)
    finally:
        probe.close()
        stop(robot)


@pytest.mark.slow
def test_a_checkpoint_for_another_robot_is_refused(lift_checkpoint):
    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", "-r", "__ns:=/other", name="robot")
    policy = start("robot_rl.ros.policy_node", "-p", f"checkpoint:={lift_checkpoint}", "-r", "__ns:=/other", name="policy")
    try:
        assert policy.wait(timeout=60) == 1
        out = policy.stdout.read()
        assert "checkpoint does not match this robot" in out and "obs.object" in out, out[-2000:]
    finally:
        stop(policy, robot)


# ---------------------------------------------------------------------------- online fine-tuning over ROS


@pytest.fixture(scope="module")
def mock_cql(tmp_path_factory) -> Path:
    from robot_rl.cli import main

    root = tmp_path_factory.mktemp("ft_ros")
    store = root / "mock.zarr"
    assert main(["sim", "collect", "--task", "mock_arm", "--episodes", "8", "--noise", "0.0", "0.8", "--out", str(store)]) == 0
    args = ["train", "--algo", "cql", "--data", str(store), "--out", str(root / "cql"), "--steps", "100", "--batch-size", "64", "--save-every", "0",
            "--no-tensorboard", "--threads", "1", "--set", "n_critics=4", "--set", "critic_layer_norm=true", "--set", "hidden=[64,64]"]  # fmt: skip
    assert main(args) == 0
    return root / "cql" / "checkpoint"


@pytest.mark.slow
def test_finetune_launch_actor_and_learner_exchange_transitions_and_weights(mock_cql, tmp_path):
    out = tmp_path / "ft"
    launch = subprocess.Popen(
        [str(BIN), "launch", "finetune.launch.yaml", "robot:=mock_arm", f"checkpoint:={mock_cql}", "method:=rlpd", "online_steps:=300",
         "max_steps:=60", "utd:=1", "batch_size:=32", "publish_every:=25", "sanity_steps:=10", f"out:={out}",
         "intervene:=true", "teleop:=scripted_rescue", 'device_config:={"after": 20}'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    probe = DeployProbe()
    try:
        end = time.monotonic() + 240
        while launch.poll() is None and time.monotonic() < end:
            probe.spin(0.1)
        assert launch.wait(timeout=30) == 0, launch.stdout.read()[-3000:]
    finally:
        probe.close()
        stop(launch)
    learner = json.loads((out / "learner.json").read_text())
    assert learner["online_steps"] == 300 and learner["updates"] == 300 and learner["rejected_transitions"] == 0
    assert learner["interventions"] > 0  # the stand-in supervisor took over episodes stuck for 20 steps
    status = probe.policy_status
    assert status["weights_accepted"] >= 3 and status["weights_rejected"] == 0, status  # validated, incl. the sanity rollout
    assert status["swap_ms_max"] < 20.0  # a reference swap: far inside one 20 ms control period
    assert status["transitions"] >= 300
    store = EpisodeStore(out / "online.zarr")  # the run is a dataset
    assert len(store) >= 3 and store.verify().ok
    assert {r["source"] for r in store.records} <= {"policy", "intervention"}
    rescued = [r for r in store.records if r["source"] == "intervention"]
    assert rescued and all(r["interventions"] > 0 for r in rescued)
    from robot_rl.algos.checkpoint import load_checkpoint

    tuned = load_checkpoint(out / "checkpoint")
    assert tuned.config["algo"] == "ensemble_sac" and tuned.step == 300


@pytest.mark.slow
def test_the_actor_refuses_bad_weights_and_keeps_commanding(mock_cql):
    from safetensors.torch import save
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.algos.checkpoint import load_checkpoint
    from robot_rl.algos.finetune import FinetuneConfig, build_learner
    from robot_rl.ros.common import RELIABLE_QOS

    robot = start("robot_rl.ros.robot_node", "-p", "robot:=mock_arm", name="robot")
    policy = start("robot_rl.ros.policy_node", "-p", f"checkpoint:={mock_cql}", "-p", "actor:=true", "-p", "method:=rlpd", name="policy")
    probe = DeployProbe()
    weights = probe.node.create_publisher(UInt8MultiArray, "weights", RELIABLE_QOS)
    good = build_learner(load_checkpoint(mock_cql).learner, FinetuneConfig(method="rlpd")).state_dict()

    def send_until(tensors: dict, done) -> None:
        """Publish until the actor's status shows ``done``: a match seen by our publisher can
        precede the actor's reader matching it, and a message sent in between is lost."""
        msg = UInt8MultiArray()
        msg.data = save(tensors)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            weights.publish(msg)
            try:
                return probe.wait_for(lambda: done(probe.policy_status), timeout=3)
            except AssertionError:
                continue
        raise AssertionError(f"the actor never reported {done}: {probe.policy_status}")

    try:
        probe.wait_for(lambda: len(probe.commanded) > 10 and weights.get_subscription_count() > 0, timeout=60)
        poisoned = dict(good)
        poisoned["actor.net.0.weight"] = good["actor.net.0.weight"].clone().fill_(float("nan"))
        send_until(poisoned, lambda s: s.get("weights_rejected", 0) >= 1)
        assert "non-finite" in probe.policy_status["last_rejection"]
        resized = {k: v for k, v in good.items() if not k.startswith("critic.")}
        send_until(resized, lambda s: "missing" in s.get("last_rejection", ""))
        mark = time.monotonic()
        probe.spin(0.5)
        assert len([t for t in probe.commanded if t > mark]) > 10  # the control loop never stopped
        assert probe.policy_status["weights_accepted"] == 0
        send_until(good, lambda s: s.get("weights_accepted", 0) >= 1)
        assert policy.poll() is None and robot.poll() is None
    finally:
        probe.close()
        stop(policy, robot)


@pytest.mark.slow
def test_finetune_command_via_ros(mock_cql, tmp_path):
    out = tmp_path / "ft_ros"
    args = [str(BIN), "finetune", str(mock_cql), "--method", "wsrl", "--via", "ros", "--online-steps", "120", "--warmup-steps", "40",
            "--utd", "1", "--batch-size", "32", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((out / "learner.json").read_text())
    assert summary["method"] == "wsrl" and summary["online_steps"] == 120
    assert summary["updates"] == 120 - 40  # no updates during the warm-up, then one per transition
    assert "wsrl via ROS" in proc.stdout and "robot-rl deploy" in proc.stdout
