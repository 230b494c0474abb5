"""The editable install and a built wheel both import every package and find the
launch files (drivers/, sim/, calibration/, launch/ are mapped into robot_rl)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"drivers": "robot_rl.drivers", "sim": "robot_rl.sim", "calibration": "robot_rl.calibration", "launch": "robot_rl.launch"}

PROBE = """
import json, robot_rl, robot_rl.cli, robot_rl.data, robot_rl.drivers, robot_rl.sim, robot_rl.calibration
from robot_rl.launch import launch_files
print(json.dumps({"robot_rl": robot_rl.__file__, "sim": robot_rl.sim.__file__,
                  "launch": [str(p) for p in launch_files()]}))
"""


def repo_packages() -> set[str]:
    found = set()
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts[0] in ("tests", "benchmarks", ".venv", "build") or rel.parts[0].startswith("."):
            continue
        top = MAPPED.get(rel.parts[0], rel.parts[0])
        found.add(".".join([top, *rel.parts[1:]]))
    return found


def run_probe(cwd: Path, env: dict | None = None) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_editable_install(tmp_path):
    got = run_probe(tmp_path)
    assert Path(got["sim"]) == REPO / "sim" / "__init__.py"
    assert str(REPO / "launch" / "demo.launch.yaml") in got["launch"]


@pytest.mark.slow
def test_built_wheel(tmp_path):
    # build from a copy of the source: setuptools' in-tree build/ would otherwise litter the
    # checkout and could carry stale modules into later wheels
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "*.egg-info", "__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("robot_rl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n[: -len("/__init__.py")].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert repo_packages() <= in_wheel, f"packages missing from the wheel: {repo_packages() - in_wheel}"
    assert "robot_rl/launch/demo.launch.yaml" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    got = run_probe(tmp_path, env)
    assert Path(got["robot_rl"]).is_relative_to(site)
    assert Path(got["sim"]) == site / "robot_rl" / "sim" / "__init__.py"
    assert str(site / "robot_rl" / "launch" / "demo.launch.yaml") in got["launch"]
    out = subprocess.run([str(site / "bin" / "robot-rl"), "--version"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("robot-rl ")


def test_launch_files_are_yaml_launch_format():
    import yaml

    from robot_rl.launch import launch_files

    files = launch_files()
    assert files
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, dict) and isinstance(doc.get("launch"), list), path
        for action in doc["launch"]:
            (kind,) = action.keys()
            assert kind in {"arg", "let", "node", "executable", "include", "group", "set_env"}, (path, kind)  # all ros2 launch YAML actions


def test_data_layer_imports_no_ros_sim_or_torch(tmp_path):
    """DESIGN.md's dependency direction: robot_rl.data never pulls in rclpy, MuJoCo or torch."""
    code = (
        "import sys, robot_rl.data, robot_rl.data.sampler, robot_rl.data.verify, robot_rl.cli\n"
        "bad = [m for m in ('rclpy', 'mujoco', 'robosuite', 'torch', 'cv2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_ament_package_manifest():
    """package.xml makes the repo an ament_python package named robot_rl, at pyproject's version."""
    import tomllib
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "robot_rl"
    assert root.findtext("export/build_type") == "ament_python"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert root.findtext("version") == version
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs", "nav_msgs"} <= deps
    assert (REPO / "resource" / "robot_rl").is_file()  # the ament index marker colcon installs
