"""robot-rl's launcher for the ROS 2 YAML launch subset: parsing, errors, supervision."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robot_rl.launcher import LaunchError, Supervisor, parse_cli_args, plan, resolve_launch_file


def write(tmp_path: Path, name: str, actions: list) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"launch": actions}))
    return path


def test_record_launch_plan():
    procs = plan(resolve_launch_file("record.launch.yaml"), {"robot": "mock_arm", "out": "/tmp/x.zarr", "namespace": "arm1"})
    names = [p.name for p in procs]
    assert names == ["robot", "recorder", "teleop"]
    robot = procs[0]
    assert "__ns:=/arm1" in robot.cmd and robot.shutdown_on_exit
    params = yaml.safe_load(Path(robot.cmd[robot.cmd.index("--params-file") + 1]).read_text())["/**"]["ros__parameters"]
    assert params == {"robot": "mock_arm", "robot_config": "{}", "audit_log": "", "seed": 0}
    teleop = procs[2]
    tparams = yaml.safe_load(Path(teleop.cmd[teleop.cmd.index("--params-file") + 1]).read_text())["/**"]["ros__parameters"]
    assert tparams["episodes"] == 5 and tparams["noise"] == 0.0 and tparams["device"] == "scripted"  # typed like ROS


def params_of(proc) -> dict:
    return yaml.safe_load(Path(proc.cmd[proc.cmd.index("--params-file") + 1]).read_text())["/**"]["ros__parameters"]


def test_record_launch_camera_entries():
    path = resolve_launch_file("record.launch.yaml")
    off = {p.name: p for p in plan(path, {"out": "/tmp/x.zarr", "cameras": "front:320x240"})}
    assert list(off) == ["robot", "recorder", "teleop"]  # no camera node unless camera:=true
    assert params_of(off["recorder"])["cameras"] == "front:320x240"
    args = {"out": "/tmp/x.zarr", "camera": "true", "camera_name": "wrist", "camera_source": "opencv:0", "camera_width": "320", "camera_height": "240", "camera_fps": "15.0", "compressed": "true", "namespace": "arm1"}
    procs = {p.name: p for p in plan(path, args)}
    assert list(procs) == ["robot", "wrist", "recorder", "teleop"]
    camera = procs["wrist"]
    assert camera.cmd[camera.cmd.index("-m") + 1] == "robot_rl.ros.camera_node" and "__ns:=/arm1" in camera.cmd
    assert params_of(camera) == {"source": "opencv:0", "width": 320, "height": 240, "fps": 15.0, "compressed": True, "calibration_id": ""}
    recorder = params_of(procs["recorder"])
    assert recorder["compressed"] is True
    assert [c for c in recorder["cameras"].split(",") if c] == ["wrist:320x240"]  # the recorder skips empty items
    assert params_of(procs["teleop"])["device_config"] == "{}"


def test_deploy_launch_plan():
    path = resolve_launch_file("deploy.launch.yaml")
    with pytest.raises(LaunchError, match="checkpoint"):
        plan(path, {})  # the checkpoint has no default
    procs = {p.name: p for p in plan(path, {"checkpoint": "/ck", "episodes": "20", "seed": "1000"})}
    assert list(procs) == ["robot", "policy"]  # no recorder unless record:=true
    policy = params_of(procs["policy"])
    assert procs["policy"].shutdown_on_exit and procs["policy"].cmd[procs["policy"].cmd.index("-m") + 1] == "robot_rl.ros.policy_node"
    assert policy["checkpoint"] == "/ck" and policy["episodes"] == 20 and policy["recorder"] == "" and policy["enabled"] is True
    assert params_of(procs["robot"])["seed"] == 1000
    procs = {p.name: p for p in plan(path, {"checkpoint": "/ck", "record": "true", "out": "/tmp/d.zarr", "namespace": "arm1"})}
    assert list(procs) == ["robot", "recorder", "policy"]
    recorder = params_of(procs["recorder"])
    assert recorder["source"] == "policy" and recorder["policy_checkpoint"] == "/ck" and recorder["out"] == "/tmp/d.zarr"
    assert params_of(procs["policy"])["recorder"] == "recorder" and "__ns:=/arm1" in procs["policy"].cmd


def test_finetune_launch_plan():
    path = resolve_launch_file("finetune.launch.yaml")
    procs = {p.name: p for p in plan(path, {"checkpoint": "/ck", "out": "/tmp/ft", "method": "wsrl", "online_steps": "800", "learner_config": '{"subset_size": 3}'})}
    assert list(procs) == ["robot", "recorder", "policy", "learner"]
    assert procs["learner"].shutdown_on_exit and procs["policy"].shutdown_on_exit
    actor, learner = params_of(procs["policy"]), params_of(procs["learner"])
    assert actor["actor"] is True and actor["method"] == "wsrl" and actor["recorder"] == "recorder"
    assert learner["method"] == "wsrl" and learner["online_steps"] == 800 and learner["learner_config"] == '{"subset_size": 3}'
    assert learner["offline_ratio"] == -1.0 and actor["learner_config"] == learner["learner_config"]  # the actor builds the learner's networks
    assert params_of(procs["recorder"])["out"] == "/tmp/ft/online.zarr"
    procs = {p.name: p for p in plan(path, {"checkpoint": "/ck", "out": "/tmp/ft", "intervene": "true"})}
    assert list(procs) == ["robot", "recorder", "policy", "learner", "teleop"]
    assert params_of(procs["teleop"])["mode"] == "intervene" and params_of(procs["teleop"])["device"] == "keyboard"


@pytest.mark.parametrize(
    "actions, args, message",
    [
        ([{"nodee": {}}], {}, "unknown action 'nodee'"),
        ([{"arg": {"name": "out"}}, {"executable": {"cmd": "echo $(var out)"}}], {}, "argument 'out' is required: pass out:=VALUE"),
        ([{"executable": {"cmd": "echo"}}], {"bogus": "1"}, "unknown argument(s) ['bogus']"),
        ([{"executable": {"cmd": "echo $(var nope)"}}], {}, "$(var nope) is not a declared argument"),
        ([{"executable": {"cmd": "echo $(eval 1+1)"}}], {}, "unsupported substitution $(eval"),
        ([{"node": {"pkg": "robot_rl", "exec": "nope"}}], {}, "robot_rl has no executable 'nope'"),
        ([{"node": {"pkg": "turtlesim", "exec": "turtlesim_node"}}], {}, "only robot_rl nodes run without ROS 2"),
        ([{"include": {"file": "missing.launch.yaml"}}], {}, "included file missing.launch.yaml not found"),
        ([{"executable": {"cmd": "echo", "on_exit": "restart"}}], {}, "on_exit supports only 'shutdown'"),
        ([{"executable": {"cmd": "echo", "if": "maybe"}}], {}, "'if' must be true or false"),
        ([{"node": {"pkg": "robot_rl", "exec": "robot_node", "param": [{"name": "x"}]}}], {}, "each param needs 'name' and 'value'"),
        ([{"arg": {"name": "a", "default": "1"}}], {}, "nothing to launch"),
    ],
)
def test_bad_files_fail_before_anything_starts(tmp_path, actions, args, message):
    with pytest.raises(LaunchError) as info:
        plan(write(tmp_path, "bad.launch.yaml", actions), args)
    assert message in str(info.value) and "bad.launch.yaml" in str(info.value)


def test_malformed_yaml_and_args(tmp_path):
    bad = tmp_path / "broken.launch.yaml"
    bad.write_text("launch: [ {arg: ")
    with pytest.raises(LaunchError, match="not valid YAML"):
        plan(bad, {})
    bad.write_text("nodes: []")
    with pytest.raises(LaunchError, match="'launch' list"):
        plan(bad, {})
    with pytest.raises(LaunchError, match="name:=value"):
        parse_cli_args(["robot=sim_lift"])
    with pytest.raises(LaunchError, match="not found"):
        resolve_launch_file("nope.launch.yaml")


def test_includes_groups_conditions_and_env(tmp_path):
    write(tmp_path, "child.launch.yaml", [{"arg": {"name": "who"}}, {"executable": {"cmd": "echo $(var who)", "name": "child"}}])
    top = write(
        tmp_path,
        "top.launch.yaml",
        [
            {"arg": {"name": "flag", "default": "false"}},
            {"set-env": {"name": "ROBOT_RL_X", "value": "1"}},
            {"group": {"children": [{"let": {"name": "w", "value": "inner"}}, {"include": {"file": "child.launch.yaml", "arg": [{"name": "who", "value": "$(var w)"}]}}]}},
            {"executable": {"cmd": "echo skipped", "name": "skipped", "if": "$(var flag)"}},
            {"executable": {"cmd": "echo $(env HOME)", "name": "home", "unless": "$(var flag)"}},
        ],
    )
    procs = plan(top, {})
    assert [p.name for p in procs] == ["child", "home"]
    assert procs[0].cmd == ["echo", "inner"] and procs[0].env == {"ROBOT_RL_X": "1"}


def test_supervisor_shuts_down_when_a_required_process_exits(tmp_path):
    procs = plan(
        write(
            tmp_path,
            "s.launch.yaml",
            [
                {"executable": {"cmd": f"{sys.executable} -c 'import time; time.sleep(60)'", "name": "sleeper"}},
                {"executable": {"cmd": f"{sys.executable} -c 'import sys; print(\"bye\"); sys.exit(3)'", "name": "quitter", "on_exit": "shutdown"}},
            ],
        ),
        {},
    )
    sup = Supervisor(procs, grace_s=2.0)
    t0 = time.monotonic()
    sup.start()
    assert sup.wait() == 3
    assert time.monotonic() - t0 < 10
    assert all(p.poll() is not None for p in sup.popen.values())


def test_launch_forwards_sigint_to_children(tmp_path):
    marker = tmp_path / "got_sigint"
    child = f"import signal, sys, time, pathlib; signal.signal(signal.SIGINT, lambda *a: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0))); time.sleep(60)"
    path = write(tmp_path, "f.launch.yaml", [{"executable": {"cmd": f"{sys.executable} -c \"{child}\"", "name": "child"}}])
    bin_ = Path(sys.executable).parent / "robot-rl"
    proc = subprocess.Popen([str(bin_), "launch", str(path)], stdout=subprocess.PIPE, text=True)
    assert "[launch] starting child" in proc.stdout.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    assert marker.exists()
