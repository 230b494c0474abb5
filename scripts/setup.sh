#!/usr/bin/env bash
# Set up robot_rl from a clean clone: find Python 3.12, create .venv/ at the repo root,
# install the Debian packages for headless rendering/video (as root; otherwise print the
# apt line), and install robot-rl with every extra at the known-good versions
# (requirements/constraints.txt), plus robosuite with --no-deps (see pyproject.toml).
# Re-running is cheap: the install is skipped while its inputs are unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

find_python() {
    local c
    for c in "${PYTHON:-}" python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 \
             "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
        [ -n "$c" ] || continue
        if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            echo "$c"; return 0
        fi
    done
    return 1
}

# Headless MuJoCo rendering (EGL or OSMesa, on the CPU) and the FFmpeg libraries
# torchcodec loads to decode LeRobot videos. Names are Debian 12's.
APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libavdevice59 libavfilter8 libavformat59 libavcodec59 libavutil57 libswscale6 libswresample4"
missing=""
if command -v dpkg >/dev/null 2>&1; then
    for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "setup: warning: missing system packages for headless rendering/video; run:" >&2
        echo "    sudo apt-get install -y --no-install-recommends$missing" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    if ! PY="$(find_python)"; then
        echo "setup: error: Python 3.12 not found. Install it (Ubuntu 24.04: apt install python3.12 python3.12-venv;" >&2
        echo "       elsewhere: pyenv install 3.12) or point PYTHON=/path/to/python3.12 at it." >&2
        exit 1
    fi
    echo "setup: creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

stamp="$VENV/.robot_rl-install"
want="$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c 'import robot_rl' 2>/dev/null; then
    echo "setup: .venv is up to date"
    exit 0
fi
echo "setup: installing robot-rl and its dependencies into .venv (first time: a few minutes, ~6.5 GB)"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24"
"${PIP[@]}" install -q -c requirements/constraints.txt -e ".[all,dev]"
"${PIP[@]}" install -q --no-deps -c requirements/constraints.txt robosuite
"$VENV/bin/python" -c 'import robot_rl, zarr, torch, mujoco, robosuite, rclpy, lerobot' 2>/dev/null \
    || "$VENV/bin/python" -c 'import robot_rl, zarr, torch, mujoco, robosuite, rclpy, lerobot'
echo "$want" > "$stamp"
echo "setup: done"
