#!/usr/bin/env bash
# Creates benchmarks/.venv-d3rlpy: the d3rlpy 2.8.1 peer for benchmarks/offline_throughput.py.
#
#   bash benchmarks/setup_d3rlpy.sh          # idempotent: does nothing when the venv already works
#
# Kept apart from the project's .venv because d3rlpy 2.8.1 pins gymnasium==1.0.0 (the
# project needs >= 1.1.1). Contents: Python 3.12, torch 2.11.0 (the project's version),
# d3rlpy 2.8.1 installed --no-deps, plus the packages d3rlpy imports at `import d3rlpy`
# (gym, gymnasium, h5py, tqdm, click, structlog, colorama, dataclasses-json,
# scikit-learn, typing-extensions).
#
# torch: PyPI's Linux torch 2.11.0 is a CUDA build (~4.5 GB with its nvidia-* wheels).
# When the project's .venv already holds torch 2.11.0, its installed files (torch,
# triton, nvidia-*, cuda-*) are hard-linked into this venv instead (no download, no
# extra disk; copied when hard links fail). D3RLPY_TORCH=pypi forces the download.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${D3RLPY_VENV:-$ROOT/benchmarks/.venv-d3rlpy}"
MAIN_VENV="${MAIN_VENV:-$ROOT/.venv}"
TORCH_VERSION=2.11.0
D3RLPY_VERSION=2.8.1
NUMPY_VERSION="${D3RLPY_NUMPY:-2.2.6}"   # what the project's .venv has (requirements/constraints.txt)
START=$(date +%s)

check() {
    "$VENV/bin/python" - <<EOF 2>/dev/null
import d3rlpy, torch
assert d3rlpy.__version__ == "$D3RLPY_VERSION", d3rlpy.__version__
assert torch.__version__.split("+")[0] == "$TORCH_VERSION", torch.__version__
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "d3rlpy venv ready: $VENV (d3rlpy $D3RLPY_VERSION, torch $TORCH_VERSION)"
    exit 0
fi

PY=""
for cand in python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        PY="$cand"
        break
    fi
done
if [ -z "$PY" ]; then
    echo "error: no Python 3.12 interpreter found (tried python3.12 on PATH and ~/.pyenv/versions/3.12.1)." >&2
    echo "Install Python 3.12 (e.g. 'pyenv install 3.12' or apt 'python3.12 python3.12-venv') and re-run." >&2
    exit 1
fi

echo "creating $VENV with $PY"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

mode="${D3RLPY_TORCH:-auto}"
if [ "$mode" != "pypi" ] && [ -x "$MAIN_VENV/bin/python" ] \
    && "$MAIN_VENV/bin/python" -c "import importlib.metadata as m; assert m.version('torch').split('+')[0] == '$TORCH_VERSION'" 2>/dev/null; then
    echo "linking torch $TORCH_VERSION (+ triton, nvidia-*, cuda-*) from $MAIN_VENV"
    "$MAIN_VENV/bin/python" - "$SITE" <<'EOF'
import importlib.metadata as md
import os
import re
import shutil
import sys

dest = sys.argv[1]
pattern = re.compile(r"^(torch|triton|nvidia[-_].*|cuda[-_].*)$", re.I)
n_files = n_copied = 0
names = []
for dist in md.distributions():
    name = dist.metadata["Name"]
    if not name or not pattern.match(name) or not dist.files:
        continue
    names.append(f"{name}=={dist.version}")
    for rel in dist.files:
        if str(rel).startswith(".."):  # console scripts in bin/: not needed here
            continue
        src = dist.locate_file(rel)
        if not os.path.isfile(src):
            continue
        dst = os.path.join(dest, str(rel))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(dst):
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
            n_copied += 1
        n_files += 1
print(f"  {len(names)} distributions, {n_files} files ({n_copied} copied): {', '.join(sorted(names))}")
EOF
elif [ "$mode" != "pypi" ]; then
    echo "note: $MAIN_VENV has no torch $TORCH_VERSION to link; pip will download it (a CUDA build, ~4.5 GB)"
fi

# pip's config here names find-links folders that may not exist: drop those warnings.
quiet_pip() { "$VPY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# torch's own small deps come in here (or all of torch when it was not linked).
quiet_pip install --disable-pip-version-check -q \
    "torch==$TORCH_VERSION" "numpy==$NUMPY_VERSION" \
    "gymnasium==1.0.0" "gym==0.26.2" h5py tqdm click structlog colorama dataclasses-json \
    scikit-learn typing-extensions
# --no-deps: d3rlpy's own pins (gymnasium==1.0.0, torch>=2.5) are met above without
# letting pip re-resolve torch.
quiet_pip install --disable-pip-version-check -q --no-deps "d3rlpy==$D3RLPY_VERSION"

if ! check; then
    echo "error: $VENV was built but 'import d3rlpy, torch' failed:" >&2
    "$VPY" -c "import d3rlpy, torch" >&2 || true
    exit 1
fi
"$VPY" -c "import d3rlpy, torch, numpy; print(f'd3rlpy {d3rlpy.__version__}, torch {torch.__version__}, numpy {numpy.__version__}')"
echo "d3rlpy venv ready: $VENV ($(( $(date +%s) - START )) s)"
