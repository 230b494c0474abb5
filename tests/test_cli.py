from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robot_rl.cli import COMMANDS, main
from store_fixtures import write_store

BIN = Path(sys.executable).parent / "robot-rl"


def test_console_script_help():
    out = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, check=True).stdout
    assert "demo" in out and "data" in out


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*verb.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: robot-rl " + verb in out
    assert "Example:" in out  # every verb's help carries a command to paste


def test_info_summary(store_path, capsys):
    write_store(store_path, 3)
    assert main(["data", "info", str(store_path), "--episodes"]) == 0
    out = capsys.readouterr().out
    assert "3 committed" in out
    assert "66.7% of 3 labelled" in out  # fixture: episode 0 fails, 1 and 2 succeed
    assert "teleop: 3" in out and "lift: " in out
    assert "obs.image.wrist  (24, 32, 3)" in out and "image" in out
    assert "size on disk" in out and "KiB" in out


def test_verify_exit_codes(store_path, capsys):
    write_store(store_path, 2)
    assert main(["data", "verify", str(store_path), "--no-progress"]) == 0
    assert "OK: 2 episodes" in capsys.readouterr().out
    chunk = store_path / "data" / "obs.image.wrist" / "c" / "5" / "0" / "0" / "0"
    chunk.unlink()
    assert main(["data", "verify", str(store_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "episode 0, key 'obs.image.wrist', chunk 5: chunk file is missing" in err and "CORRUPT" in err
    proc = subprocess.run([str(BIN), "data", "verify", str(store_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "chunk 5" in proc.stderr


def test_recover_and_errors(store_path, tmp_path, capsys):
    write_store(store_path, 1)
    assert main(["data", "recover", str(store_path), "--salvage"]) == 0
    assert "clean: 1 committed episodes" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "missing.zarr")]) == 2
    assert "not an episode store" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    """Through ROS 2 (robot, teleop and recorder nodes over DDS), then in-process."""
    args = ["demo", "--task", "mock_arm", "--out", str(tmp_path / "ros"), "--episodes", "2", "--train-steps", "40", "--eval-episodes", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "via ros" in out and "2 committed" in out and "OK:" in out and "[4/7] sampling" in out
    assert "[5/7] training bc" in out and "scripted expert" in out and "bc (40 updates, 2 episodes)" in out
    assert "[7/7] deploying" in out and "bc (mock_arm)" in out and "/3 = " in out  # the deploy launch's success table
    assert (tmp_path / "ros" / "mock_arm_bc" / "checkpoint" / "model.safetensors").is_file()
    assert main(["demo", "--task", "mock_arm", "--via", "direct", "--out", str(tmp_path / "direct"), "--episodes", "4", "--noise", "0", "0.5", "--train-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "noise 0: 2/2 successful" in out and "4 committed" in out and "[4/4] sampling" in out
