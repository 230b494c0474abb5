"""Fuzzing of everything that parses outside input (issue #10): the episode-store reader,
the launch-file parser and the config parsers.

Each test is a bounded, derandomized Hypothesis run (CI-reproducible); every example runs
under a wall-clock alarm so that a hang fails the test instead of stalling it. The rule
is the same everywhere: a parser either returns a result or raises its own typed error
with a message that says what is wrong and where; any other exception is a bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from robot_rl.data import CorruptStoreError, EpisodeStore, StoreError
from robot_rl.data.schema import KeySpec, SchemaError, StoreSchema
from robot_rl.data.verify import verify
from robot_rl.launcher import LaunchError, Process, parse_cli_args, plan, resolve_launch_file
from robot_rl.robots import GuardedRobot, SimRobot, make_robot
from robot_rl.robots.registry import make_robot_config, robot_classes
from robot_rl.safety import MODES, SafetyLimits, apply_limits
from store_fixtures import episode_data, write_store

N_EPISODES = 3
# No explain phase: it traces execution, which slows examples past their time bounds.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)


# ROBOT_RL_FUZZ_SCALE=20 runs 20x the examples with fresh random inputs (a longer,
# non-reproducible search); the default is the bounded, derandomized CI run.
SCALE = float(os.environ.get("ROBOT_RL_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(examples * SCALE)), derandomize=SCALE == 1)


class Hang(AssertionError):
    """An example ran past its wall-clock budget."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""

    def fire(signum: int, frame: object) -> None:
        raise Hang(f"example still running after {seconds} s: hang")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ====================================================================== store reader
class ScratchStore:
    """A store that each example damages and that is put back byte for byte afterwards
    (rewriting only what changed: much faster than copying the whole tree each time)."""

    def __init__(self, path: Path) -> None:
        write_store(path, N_EPISODES)
        self.path = path
        self.files = {rel: (path / rel).read_bytes() for rel in store_files(path)}

    def restore(self) -> None:
        present = set(store_files(self.path)) if self.path.exists() else set()
        for rel in present - self.files.keys():
            (self.path / rel).unlink()
        for rel, data in self.files.items():
            target = self.path / rel
            if rel not in present or target.read_bytes() != data:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> ScratchStore:
    return ScratchStore(tmp_path_factory.mktemp("fuzz_store") / "s.zarr")


def store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def owner(rel: str) -> str | None:
    """The array (``data/<key>``, ``meta/episodes``...) a file belongs to, if any."""
    parts = Path(rel).parts
    if "c" in parts:
        return "/".join(parts[: parts.index("c")])
    if parts[-1] == "zarr.json" and len(parts) >= 3:
        return "/".join(parts[:-1])
    return None


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**64, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["float32", "int64", "bool", "uint8", "string", "complex64", "<f4", "object", "V8", "", "c"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
shape_like = st.one_of(
    st.lists(st.integers(min_value=-3, max_value=2**62), min_size=0, max_size=4),
    st.lists(st.sampled_from([0, -1, 10**15, 2**63, 1.5, "7", None]), min_size=1, max_size=3),
    json_values,
)

# JSON paths inside an array's zarr.json, with values that are plausibly wrong.
ARRAY_FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("shape",): shape_like,
    ("chunk_grid", "configuration", "chunk_shape"): shape_like,
    ("chunk_grid", "name"): st.sampled_from(["rectilinear", "", "regular "]),
    ("data_type",): json_values,
    ("fill_value",): json_values,
    ("node_type",): st.sampled_from(["group", "array ", "", "Array"]),
    ("zarr_format",): st.sampled_from([2, 4, "3", None]),
    ("chunk_key_encoding", "configuration", "separator"): st.sampled_from([".", "", "//", "/"]),
    ("chunk_key_encoding", "name"): st.sampled_from(["v2", "weird"]),
    ("attributes",): json_values,
    ("dimension_names",): json_values,
    ("storage_transformers",): json_values,
}
# Fields of the robot_rl schema in the root group's attributes.
SCHEMA_FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("attributes", "robot_rl", "schema_version"): json_values,
    ("attributes", "robot_rl", "fps"): json_values,
    ("attributes", "robot_rl", "keys"): json_values,
    ("attributes", "robot_rl", "keys", "action", "shape"): shape_like,
    ("attributes", "robot_rl", "keys", "action", "dtype"): json_values,
    ("attributes", "robot_rl", "keys", "obs.image.wrist", "shape"): shape_like,
    ("attributes", "robot_rl", "keys", "obs.joint_pos", "names"): json_values,
    ("attributes", "robot_rl", "keys", "reward"): json_values,
    ("attributes", "robot_rl", "robot"): json_values,
    ("attributes", "robot_rl"): json_values,
    ("attributes", "stats"): json_values,
    ("attributes", "stats", "fingerprint"): json_values,
    ("attributes", "stats", "keys"): json_values,
    ("attributes",): json_values,
    ("node_type",): st.sampled_from(["array", "", None]),
    ("zarr_format",): st.sampled_from([2, 4, "3", None]),
}


@st.composite
def mutations(draw: st.DrawFn) -> tuple:
    kind = draw(
        st.sampled_from(
            ["flip", "truncate", "delete", "garble_json", "json_field", "schema_field", "random_json", "partial", "record", "ends", "rmtree"]
        )
    )
    pick = draw(st.integers(min_value=0, max_value=10**6))  # index into the store's files, modulo
    if kind == "flip":
        return (kind, pick, draw(st.floats(0, 1, exclude_max=True)), draw(st.integers(1, 255)), draw(st.booleans()))
    if kind == "truncate":
        return (kind, pick, draw(st.floats(0, 1, exclude_max=True)))
    if kind == "delete":
        return (kind, pick, draw(st.booleans()))  # True: a chunk file, False: a zarr.json
    if kind == "garble_json":
        return (kind, pick, draw(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode))))
    if kind == "json_field":
        path = draw(st.sampled_from(sorted(ARRAY_FIELDS)))
        return (kind, pick, path, draw(ARRAY_FIELDS[path]), draw(st.booleans()))
    if kind == "schema_field":
        path = draw(st.sampled_from(sorted(SCHEMA_FIELDS)))
        return (kind, path, draw(SCHEMA_FIELDS[path]), draw(st.booleans()))
    if kind == "random_json":
        return (kind, pick, draw(json_values))
    if kind == "partial":
        return (kind, pick, draw(st.binary(max_size=16)))
    if kind == "record":
        text = draw(st.one_of(st.text(max_size=30), json_values.map(json.dumps), st.just("")))
        return (kind, draw(st.integers(0, N_EPISODES - 1)), text)
    if kind == "ends":
        return (kind, draw(st.integers(0, N_EPISODES - 1)), draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 200))), draw(st.booleans()))
    return (kind, draw(st.sampled_from(["data/action", "data/obs.image.wrist", "meta/episodes", "meta/episode_ends", "data", "meta"])))


def _set_path(doc: Any, path: tuple[str, ...], value: Any, delete: bool) -> Any:
    node = doc
    for part in path[:-1]:
        if not isinstance(node, dict):
            return doc
        node = node.setdefault(part, {})
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return doc


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def apply_mutation(root: Path, m: tuple) -> str | None:
    """Damage the store at ``root``; returns the array (``data/<key>``...) hit, if one."""
    files = store_files(root)
    chunks = [f for f in files if "/c/" in f or f.endswith("/c")]
    metas = [f for f in files if f.endswith("zarr.json")]
    kind = m[0]
    if kind == "flip":
        rel = chunks[m[1] % len(chunks)] if m[4] else files[m[1] % len(files)]
        raw = bytearray((root / rel).read_bytes())
        if raw:
            raw[int(m[2] * len(raw))] ^= m[3]
            (root / rel).write_bytes(bytes(raw))
        return owner(rel)
    if kind == "truncate":
        rel = chunks[m[1] % len(chunks)]
        raw = (root / rel).read_bytes()
        (root / rel).write_bytes(raw[: int(m[2] * len(raw))])
        return owner(rel)
    if kind == "delete":
        rel = chunks[m[1] % len(chunks)] if m[2] else metas[m[1] % len(metas)]
        (root / rel).unlink()
        return owner(rel)
    if kind == "garble_json":
        rel = metas[m[1] % len(metas)]
        (root / rel).write_bytes(m[2])
        return owner(rel)
    if kind == "json_field":
        arrays = [f for f in metas if owner(f)]
        rel = arrays[m[1] % len(arrays)]
        doc = json.loads((root / rel).read_text())
        (root / rel).write_text(_dump(_set_path(doc, m[2], m[3], m[4])))
        return owner(rel)
    if kind == "schema_field":
        doc = json.loads((root / "zarr.json").read_text())
        (root / "zarr.json").write_text(_dump(_set_path(doc, m[1], m[2], m[3])))
        return None
    if kind == "random_json":
        rel = metas[m[1] % len(metas)]
        (root / rel).write_text(_dump(m[2]))
        return owner(rel)
    if kind == "partial":
        rel = chunks[m[1] % len(chunks)]
        (root / f"{rel}.{m[1]:08x}.partial").write_bytes(m[2])
        return None
    if kind == "record":
        arr = zarr.open_array(str(root / "meta" / "episodes"), mode="r+")
        arr[m[1]] = m[2]
        return "meta/episodes"
    if kind == "ends":
        arr = zarr.open_array(str(root / "meta" / "episode_ends"), mode="r+")
        if m[3]:
            arr[m[1]] = m[2]
        else:
            arr.resize((m[1],))
        return "meta/episode_ends"
    shutil.rmtree(root / m[1])
    return m[1]


def read_everything(path: Path) -> tuple[list[int], dict[int, Exception]]:
    """Open the store and read every episode: (episodes equal to the fixture, errors by episode)."""
    store = EpisodeStore(path)
    good, bad = [], {}
    for i in range(len(store)):
        try:
            data = store.episode(i)
        except CorruptStoreError as exc:
            bad[i] = exc
            continue
        store.record(i)
        want = episode_data(i)
        if all(k in data and np.array_equal(data[k], want[k]) for k in want):
            good.append(i)
    store.stats()
    store.fingerprint()
    return good, bad


def check_store_error(exc: BaseException, hit: str | None) -> None:
    """Only the store's typed errors, with a message; one that names a key or chunk says
    so in the message too. ``hit``: the one array a single mutation damaged, if any."""
    assert isinstance(exc, StoreError), f"untyped error {type(exc).__name__}: {exc}"
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    if isinstance(exc, CorruptStoreError) and exc.key is not None:
        assert f"key '{exc.key}'" in message
    if isinstance(exc, CorruptStoreError) and exc.chunk is not None:
        assert exc.key is not None and f"chunk {exc.chunk}" in message
    if hit is not None and hit.startswith(("data/", "meta/")):
        name = hit.removeprefix("data/")
        assert name in message, f"the error does not name the damaged array {hit}: {message}"


@fuzz(160)
@given(ms=st.lists(mutations(), min_size=1, max_size=3))
def test_store_reader_survives_corruption(scratch: ScratchStore, ms: list[tuple]) -> None:
    """Damage a store, then open it, read every episode and verify it: each episode
    either reads exactly what was written or raises a typed error naming episode, key and
    chunk, within a second; verify fails whenever a read failed or returned other data."""
    scratch.restore()
    path = scratch.path
    hits = []
    for m in ms:
        try:
            hits.append(apply_mutation(path, m))
        except Exception:  # noqa: BLE001 - an earlier mutation removed what this one edits
            hits.append(None)
    hit = hits[0] if len(hits) == 1 else None
    t0 = time.monotonic()
    with time_limit(10):
        try:
            good, bad = read_everything(path)
        except Exception as exc:  # noqa: BLE001 - the point: only typed errors may escape
            event(f"open failed: {type(exc).__name__}")
            check_store_error(exc, hit)
            assert time.monotonic() - t0 < 1.0, f"error took {time.monotonic() - t0:.2f} s: {exc}"
            opened = False
        else:
            opened = True
            event(f"opened: {len(good)} good, {len(bad)} failing episode(s)")
            for exc in bad.values():
                check_store_error(exc, hit)
                assert exc.key is not None and exc.episode is not None and exc.chunk is not None, str(exc)
        report = verify(path)
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, f"read + verify took {elapsed:.2f} s"
    if not opened or bad:
        assert not report.ok, f"the reader failed but verify passed ({ms})"
    if opened and report.episodes - len(good) - len(bad):
        # data that loads but differs from what was written never passes verify
        # (a missing or damaged chunk is never zero-filled)
        assert not report.ok, f"episodes load other data than was written and verify passes ({ms})"


# ====================================================================== launch files

SUBST_TOKENS = [
    "$(", ")", "(", "var ", "env ", "find-pkg-share ", "eval ", "robot_rl", "x", "y", "HOME", " ", "/", "'", '"',
    "$(var x)", "$(var y)", "$(env HOME)", "$(env NOPE_ROBOT_RL fallback)", "$(find-pkg-share robot_rl)", "true", "false",
    "1", "robot_node", "robot_rl", "a:=b", "self.launch.yaml", "other.launch.yaml", "[" * 300, "{a: [1, 2]}",
]
subst_text = st.lists(st.sampled_from(SUBST_TOKENS), max_size=6).map("".join)
launch_scalar = st.one_of(subst_text, st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none(), st.floats(allow_nan=True))
name_value = st.fixed_dictionaries({}, optional={"name": launch_scalar, "value": launch_scalar, "from": launch_scalar, "to": launch_scalar})
LAUNCH_FIELDS = {
    "name": st.one_of(st.sampled_from(["x", "y", "robot", "a/b", "", "1st", "ok_name"]), launch_scalar),
    "default": launch_scalar,
    "value": launch_scalar,
    "description": launch_scalar,
    "pkg": st.one_of(st.just("robot_rl"), launch_scalar),
    "exec": st.one_of(st.sampled_from(["robot_node", "recorder_node", "nope"]), launch_scalar),
    "namespace": launch_scalar,
    "cmd": st.one_of(st.sampled_from(["echo hi", "echo 'unbalanced", "", "  ", "echo $(var x)"]), launch_scalar),
    "args": launch_scalar,
    "output": launch_scalar,
    "on_exit": st.one_of(st.sampled_from(["shutdown", "", "restart"]), launch_scalar),
    "file": st.one_of(st.sampled_from(["self.launch.yaml", "other.launch.yaml", "missing.launch.yaml", "bytes.launch.yaml", "."]), launch_scalar),
    "if": st.one_of(st.sampled_from(["true", "false", "$(var x)", "maybe"]), launch_scalar),
    "unless": st.one_of(st.sampled_from(["true", "false", "$(var y)"]), launch_scalar),
    "scoped": st.one_of(st.booleans(), launch_scalar),
    "param": st.one_of(st.lists(name_value, max_size=3), launch_scalar),
    "remap": st.one_of(st.lists(name_value, max_size=2), launch_scalar),
    "env": st.one_of(st.lists(name_value, max_size=2), launch_scalar),
    "arg": st.one_of(st.lists(name_value, max_size=2), launch_scalar),
    "ros_args": launch_scalar,
}


NAMES = st.sampled_from(["x", "y", "z", "ok_name"])
TEXT = st.sampled_from(["plain", "$(var x)", "a b", "$(env HOME)", "$(env NOPE_ROBOT_RL fallback)", "$(find-pkg-share robot_rl)/launch", ""])
KV = st.lists(st.fixed_dictionaries({"name": NAMES, "value": st.one_of(TEXT, st.sampled_from(["1", "true", "[1, 2]", "2.5"]))}), max_size=2)
# Plausible values of every field (the "good" half of each action's fields).
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "name": NAMES,
    "value": TEXT,
    "default": TEXT,
    "description": TEXT,
    "pkg": st.just("robot_rl"),
    "exec": st.sampled_from(["robot_node", "policy_node"]),
    "namespace": st.sampled_from(["arm", "/a/b/", "$(var x)", ""]),
    "cmd": st.sampled_from(["echo hi", "echo $(var x)", "sleep 1"]),
    "args": st.sampled_from(["", "--flag", "$(var x)"]),
    "ros_args": st.sampled_from(["", "--enclave /x"]),
    "output": st.sampled_from(["screen", "log"]),
    "on_exit": st.sampled_from(["shutdown", ""]),
    "file": st.sampled_from(["child.launch.yaml", "child.launch.yaml", "child.launch.yaml", "other.launch.yaml", "self.launch.yaml"]),
    "if": st.sampled_from(["true", "false", "$(var y)", "1"]),
    "unless": st.sampled_from(["true", "false", "$(var y)", "0"]),
    "scoped": st.booleans(),
    "param": KV,
    "remap": st.lists(st.fixed_dictionaries({"from": TEXT, "to": TEXT}), max_size=2),
    "env": KV,
    "arg": st.lists(st.fixed_dictionaries({"name": st.just("who"), "value": TEXT}), max_size=1),
}
REQUIRED = {
    "arg": ("name",),
    "let": ("name", "value"),
    "node": ("pkg", "exec"),
    "executable": ("cmd",),
    "include": ("file",),
    "group": (),
    "push-ros-namespace": ("namespace",),
    "set-env": ("name", "value"),
    "set_env": ("name", "value"),
}
OPTIONAL = {
    "arg": ("default", "description"),
    "node": ("name", "namespace", "param", "remap", "env", "args", "output", "on_exit", "ros_args"),
    "executable": ("name", "env", "output", "on_exit"),
    "include": ("arg",),
    "group": ("scoped",),
}


def launch_actions(broken: bool, depth: int = 2) -> st.SearchStrategy[list[Any]]:
    """Lists of actions with the fields each kind takes. ``broken``: some fields take any
    value, some are missing or unknown, some actions are not actions at all."""
    field_value = (lambda k: st.one_of(GOOD[k], GOOD[k], LAUNCH_FIELDS[k])) if broken else (lambda k: GOOD[k])
    children = launch_actions(broken, depth - 1) if depth > 0 else st.just([])

    def body(kind: str) -> st.SearchStrategy[Any]:
        required = REQUIRED[kind]
        if broken:  # sometimes drop a required field
            required = tuple(f for f in required if f != "value")
        fields = {k: field_value(k) for k in required}
        optional = {k: field_value(k) for k in (*OPTIONAL.get(kind, ()), "if", "unless")}
        shaped = st.fixed_dictionaries(fields, optional=optional)
        if kind == "group":
            shaped = st.builds(lambda b, c: {**b, "children": c}, shaped, children)
        if not broken:
            return shaped
        loose = st.dictionaries(st.sampled_from(sorted(LAUNCH_FIELDS)), st.none(), max_size=4).flatmap(
            lambda d: st.fixed_dictionaries({k: LAUNCH_FIELDS[k] for k in d})
        )
        return st.one_of(shaped, shaped, shaped, shaped, loose, launch_scalar)

    kinds = [*sorted(REQUIRED), "node", "node", "executable", "executable"]  # something to launch, mostly
    action = st.sampled_from(kinds).flatmap(lambda k: body(k).map(lambda b: {k: b}))
    if broken:
        junk = st.one_of(st.builds(lambda k, b: {k: b}, st.sampled_from(["nodee", "launch", "param"]), launch_scalar), json_values)
        action = st.one_of(*[action] * 8, junk)
    return st.lists(action, max_size=5)


DECLARE = [{"arg": {"name": "x", "default": "1"}}, {"arg": {"name": "y", "default": "true"}}, {"let": {"name": "z", "value": "zz"}}]
launch_docs = st.one_of(
    st.builds(lambda a: {"launch": DECLARE + a}, launch_actions(broken=False)),
    st.builds(lambda a: {"launch": DECLARE + a}, launch_actions(broken=False)),
    st.builds(lambda a: {"launch": DECLARE + a}, launch_actions(broken=True)),
    st.builds(lambda a: {"launch": a}, launch_actions(broken=True)),
    st.builds(lambda a, extra: {"launch": a, **extra}, launch_actions(broken=True), st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
    json_values,
)
XML_DOCS = [
    '<launch><arg name="x" default="1"/><node pkg="robot_rl" exec="robot_node"/></launch>',
    "<?xml version='1.0'?><launch><include file='self.launch.yaml'/></launch>",
    "<launch><node pkg='robot_rl' exec='robot_node' name='$(var x'/>",
]
def _deep_groups(n: int) -> list[Any]:
    actions: list[Any] = [{"executable": {"cmd": "echo"}}]
    for _ in range(n):
        actions = [{"group": {"children": actions}}]
    return actions


# YAML features that make a small file a large or infinite structure, or deep nesting
YAML_TRAPS = [
    "launch: &l\n- group: {children: *l}\n",
    "launch:\n- group: &g {children: [*g]}\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\nlaunch: [{executable: {cmd: *f}}]\n",
    "launch: " + "[" * 3000 + "]" * 3000 + "\n",
    yaml.safe_dump({"launch": _deep_groups(60)}),
    "launch: [{executable: {cmd: !!python/object/apply:os.system [echo pwned]}}]\n",
]


def check_plan(path: Path, args: dict[str, str]) -> None:
    t0 = time.monotonic()
    with time_limit(5):
        try:
            procs = plan(path, args)
        except LaunchError as exc:
            event("LaunchError")
            assert str(exc).strip()
        else:
            event("planned")
            assert procs and all(isinstance(p, Process) and p.cmd and all(isinstance(c, str) for c in p.cmd) for p in procs)
    assert time.monotonic() - t0 < 2.0


@contextlib.contextmanager
def launch_dir() -> Iterator[Path]:
    """A folder for the launch files of one example; node params files go there too."""
    with tempfile.TemporaryDirectory() as tmp:
        old, tempfile.tempdir = tempfile.tempdir, tmp
        try:
            root = Path(tmp)
            (root / "bytes.launch.yaml").write_bytes(b"\xff\xfe\x00launch")
            (root / "other.launch.yaml").write_text(yaml.safe_dump({"launch": [{"include": {"file": "self.launch.yaml"}}]}))
            child = [{"arg": {"name": "who", "default": "me"}}, {"executable": {"cmd": "echo $(var who)", "name": "child"}}]
            (root / "child.launch.yaml").write_text(yaml.safe_dump({"launch": child}))
            yield root
        finally:
            tempfile.tempdir = old


launch_args = st.one_of(st.just({}), st.dictionaries(st.sampled_from(["x", "y"]), subst_text, max_size=2), st.dictionaries(st.sampled_from(["x", "", "nope"]), subst_text, max_size=2))


@fuzz(400)
@given(doc=launch_docs, args=launch_args)
def test_launch_parser_on_random_documents(doc: Any, args: dict[str, str]) -> None:
    with launch_dir() as root:
        path = root / "self.launch.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        check_plan(path, args)


@fuzz(80)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200), st.sampled_from(XML_DOCS + YAML_TRAPS)), args=launch_args)
def test_launch_parser_on_random_bytes(raw: bytes | str, args: dict[str, str]) -> None:
    with launch_dir() as root:
        path = root / "self.launch.yaml"
        path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
        check_plan(path, args)


@pytest.mark.parametrize("trap", YAML_TRAPS + XML_DOCS)
def test_launch_yaml_traps_fail_cleanly(trap: str) -> None:
    with launch_dir() as root:
        path = root / "self.launch.yaml"
        path.write_text(trap)
        with time_limit(5), pytest.raises(LaunchError):
            plan(path, {})


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.launch.yaml").write_text(yaml.safe_dump({"launch": [{"include": {"file": "b.launch.yaml"}}]}))
    (tmp_path / "b.launch.yaml").write_text(yaml.safe_dump({"launch": [{"group": {"children": [{"include": {"file": "a.launch.yaml"}}]}}]}))
    with time_limit(5), pytest.raises(LaunchError, match=r"include cycle: .*a\.launch\.yaml -> .*b\.launch\.yaml -> .*a\.launch\.yaml"):
        plan(tmp_path / "a.launch.yaml", {})


@pytest.mark.parametrize(
    "args, expect",
    [
        ({"x": "$(var x)$(var x)"}, "echo $(var x)$(var x)"),  # a value is not expanded again: no runaway growth
        ({"x": "$(env HOME"}, "echo $(env HOME"),
        ({"x": "a"}, "echo a"),
    ],
)
def test_substituted_values_are_literal(tmp_path: Path, args: dict[str, str], expect: str) -> None:
    path = tmp_path / "s.launch.yaml"
    path.write_text(yaml.safe_dump({"launch": [{"arg": {"name": "x"}}, {"executable": {"cmd": "echo '$(var x)'", "name": "e"}}]}))
    with time_limit(5):
        (proc,) = plan(path, args)
    assert " ".join(proc.cmd) == expect


@pytest.mark.parametrize(
    "text, message",
    [
        ("$(var x", "without a closing ')'"),
        ("$(env (x))", "'(' inside"),
        ("$()", "empty $()"),
        ("$(" * 200 + "var x" + ")" * 200, "nested more than"),
        ("$(env $(var name) default)", None),
    ],
)
def test_substitution_syntax(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "s.launch.yaml"
    path.write_text(yaml.safe_dump({"launch": [{"let": {"name": "name", "value": "NOPE_ROBOT_RL"}}, {"executable": {"cmd": f"echo {text}", "name": "e"}}]}))
    with time_limit(5):
        if message is None:
            assert plan(path, {})[0].cmd == ["echo", "default"]
        else:
            with pytest.raises(LaunchError, match=re.escape(message)):
                plan(path, {})


@fuzz(150)
@given(items=st.lists(st.one_of(subst_text, st.text(max_size=10)), max_size=4), name=st.one_of(st.text(max_size=20), st.sampled_from(["sim.launch.yaml", "", ".", "/", "\x00"])))
def test_launch_cli_args_and_file_names(items: list[str], name: str) -> None:
    with time_limit(5):
        try:
            out = parse_cli_args(items)
        except LaunchError as exc:
            assert "name:=value" in str(exc)
        else:
            assert all(isinstance(k, str) and k for k in out)
        try:
            assert resolve_launch_file(name).is_file()
        except LaunchError as exc:
            assert "not found" in str(exc)


# ====================================================================== config parsers

CONFIG_ERRORS = (KeyError, TypeError, ValueError)  # what the CLI and robot_node.on_configure catch
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 10),
    st.integers(-3, 100),
    st.sampled_from([0, 0.0, -0.0, 1e-300, 2**64, 10**400]),
)
vectors = st.one_of(st.lists(numbers, max_size=8), st.lists(st.floats(-4, 4), min_size=1, max_size=8))
config_values = st.one_of(numbers, vectors, json_values, st.lists(st.sampled_from(["agentview", "wrist", "x"]), max_size=3))


def plausible(default: Any) -> st.SearchStrategy[Any]:
    """Values near a field's default, of its type (a list for a tuple, as JSON gives)."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(max(1, default // 4), max(2, default * 4))
    if isinstance(default, float):
        return st.floats(*sorted((default * 0.25, default * 4))) if default else st.floats(-1, 1)
    if isinstance(default, (tuple, list)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
        return st.tuples(*[plausible(v) for v in default]).map(list) if default else st.just([])
    if isinstance(default, (tuple, list)):
        return st.lists(st.sampled_from(["agentview", "wrist"]), max_size=2, unique=True)
    if isinstance(default, str):
        return st.sampled_from([default, "ee_delta", "joint_position", "ddim", "ddpm", "iql", "mean", "min"])
    return st.just(default)


def field_overrides(config_cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Overrides of a config dataclass: mostly plausible values, some of anything."""
    defaults = {f.name: getattr(config_cls(), f.name) for f in dataclasses.fields(config_cls)}
    value = {k: st.one_of(plausible(v), plausible(v), plausible(v), config_values) for k, v in defaults.items()}
    value["no_such_field"] = config_values
    keys = st.lists(st.sampled_from(sorted(value)), max_size=3, unique=True)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: value[k] for k in ks}))


def exercise(robot: Any) -> None:
    """What robot_node does after make_robot: connect, reset, specs, guarded commands."""
    robot.connect()
    if isinstance(robot, SimRobot):
        robot.reset(0)
    json.dumps({k: s.to_json() for k, s in robot.observation_spec.items()})
    robot.action_spec.to_json()
    guard = GuardedRobot(robot)
    obs = robot.get_observation()
    for request in (robot.hold_action(obs), np.zeros(robot.action_spec.shape), np.full(robot.action_spec.shape, 1e9)):
        sent, _ = guard.command(request)
        assert np.all(np.isfinite(sent))
    robot.disconnect()


@fuzz(200)
@given(data=st.data(), name=st.sampled_from(["mock_arm", "mock_base"]))
def test_make_robot_with_random_overrides(data: st.DataObject, name: str) -> None:
    overrides = data.draw(field_overrides(robot_classes(name)[0]))
    with time_limit(5):
        try:
            robot = make_robot(name, **overrides)
        except CONFIG_ERRORS as exc:
            event(f"rejected: {type(exc).__name__}")
            assert str(exc).strip()
            return
        event("robot built")
        exercise(robot)
        # the recorded form (robot_node's describe(): JSON of the config) builds the same robot
        recorded = json.loads(json.dumps(dataclasses.asdict(robot.config), default=list))
        assert make_robot(name, **recorded).config == robot.config


@fuzz(60)
@given(data=st.data(), name=st.sampled_from(["sim_base", "sim_lift"]))
def test_sim_robot_configs_with_random_overrides(data: st.DataObject, name: str) -> None:
    overrides = data.draw(field_overrides(robot_classes(name)[0]))  # imports the sim module once
    with time_limit(5):
        try:
            config = make_robot_config(name, **overrides)
        except CONFIG_ERRORS as exc:
            event(f"rejected: {type(exc).__name__}")
            assert str(exc).strip()
        else:
            event("config built")
            assert config.safety_limits().size > 0


@st.composite
def limit_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """SafetyLimits arguments: consistent ones with, sometimes, a field replaced by anything."""
    n = draw(st.integers(1, 8))
    low = draw(st.lists(st.floats(-3, 0), min_size=n, max_size=n))
    high = [lo + draw(st.floats(0, 3)) for lo in low]
    positive = st.floats(1e-3, 2)
    kwargs: dict[str, Any] = {
        "mode": draw(st.sampled_from(MODES)),
        "low": low,
        "high": high,
        "max_delta": draw(st.one_of(st.none(), st.lists(positive, min_size=n, max_size=n))),
        "dt": draw(positive),
        "command_timeout": draw(positive),
        "joint_velocity": draw(st.one_of(st.none(), st.lists(positive, min_size=1, max_size=n))),
        "workspace_low": [-1.0, -1.0, 0.0],
        "workspace_high": [1.0, 1.0, 2.0],
    }
    for key in draw(st.lists(st.sampled_from([*kwargs, "ee_delta_scale", "joint_pos_key"]), max_size=2, unique=True)):
        kwargs[key] = draw(st.one_of(numbers, vectors, json_values, st.just(None)))
    return kwargs


@fuzz(300)
@given(kwargs=limit_kwargs(), action=vectors, q=st.lists(st.floats(-3, 3), min_size=8, max_size=8))
def test_safety_limits_from_random_values(kwargs: dict[str, Any], action: list[float], q: list[float]) -> None:
    with time_limit(5):
        try:
            limits = SafetyLimits(**kwargs)
        except ValueError as exc:
            event("rejected")
            assert str(exc).strip()
            return
        event("limits built")
        obs = {limits.joint_pos_key: np.array(q), limits.ee_pos_key: np.array(q[:3])}
        safe, reasons = apply_limits(action, obs, None, limits)
        if safe is not None:
            assert safe.shape == (limits.size,) and np.all(safe >= np.array(limits.low)) and np.all(safe <= np.array(limits.high))
        else:
            assert reasons and reasons[0].startswith("rejected")


@fuzz(150)
@given(data=st.data(), algo=st.sampled_from(["bc", "iql", "cql", "td3bc", "diffusion", "ensemble_sac", "saq_iql", "nope"]))
def test_learner_config_overrides(data: st.DataObject, algo: str) -> None:
    from robot_rl.algos import learner_class, make_config

    try:
        overrides = data.draw(field_overrides(learner_class(algo).config_class))
    except KeyError:
        overrides = {}
    with time_limit(5):
        try:
            config = make_config(algo, overrides)
        except CONFIG_ERRORS as exc:
            event(f"rejected: {type(exc).__name__}")
            assert str(exc).strip()
            return
        event("config built")
        for key, value in overrides.items():
            got = getattr(config, key)
            assert got == value or isinstance(value, str) or isinstance(value, tuple), (key, value, got)


@fuzz(150)
@given(items=st.lists(st.one_of(st.text(max_size=20), st.builds("{}={}".format, st.sampled_from(["fps", "hidden", "max_delta", "cameras", ""]), st.text(max_size=12))), max_size=3))
def test_cli_set_overrides(items: list[str]) -> None:
    from robot_rl.cli.sim import parse_overrides
    from robot_rl.cli.train import parse_learner_overrides

    with time_limit(5):
        for parse in (parse_learner_overrides, lambda i: parse_overrides("mock_arm", i)):
            try:
                parsed = parse(items)
            except ValueError as exc:
                assert "--set" in str(exc)
                continue
            assert isinstance(parsed, dict)
        try:
            overrides = parse_overrides("mock_arm", items)
            make_robot("mock_arm", **overrides)
        except CONFIG_ERRORS as exc:
            assert str(exc).strip()


@st.composite
def key_specs(draw: st.DrawFn) -> Any:
    """Key specs as JSON: valid ones with, sometimes, a field replaced, dropped or added."""
    shape = draw(st.lists(st.integers(1, 64), max_size=3))
    spec: dict[str, Any] = {"shape": shape, "dtype": draw(st.sampled_from(["float32", "uint8", "bool", "int64", "float16"])), "units": "rad"}
    if len(shape) == 1:
        n = shape[0]
        spec.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "names": st.lists(st.text(max_size=3), min_size=n, max_size=n),
                        "low": st.lists(st.floats(-5, 0), min_size=n, max_size=n),
                        "high": st.lists(st.floats(0, 5), min_size=n, max_size=n),
                    },
                )
            )
        )
    for key in draw(st.lists(st.sampled_from(["shape", "dtype", "units", "names", "low", "high", "extra"]), max_size=2, unique=True)):
        if draw(st.booleans()):
            spec.pop(key, None)
        else:
            spec[key] = draw(shape_like if key == "shape" else json_values)
    return spec


GOOD_SCHEMA = {
    "schema_version": 1,
    "fps": 20.0,
    "keys": {
        "obs.x": {"shape": [2], "dtype": "float32", "names": ["a", "b"], "low": [0, 0], "high": [1, 1]},
        "action": {"shape": [2], "dtype": "float32"},
        "reward": {"shape": [], "dtype": "float32"},
        "done": {"shape": [], "dtype": "bool"},
        "timestamp": {"shape": [], "dtype": "float64"},
    },
    "robot": {"name": "r"},
}
schema_docs = st.one_of(
    json_values,
    st.builds(
        lambda key, spec, fps, version, robot: {**GOOD_SCHEMA, "keys": {**GOOD_SCHEMA["keys"], key: spec}, "fps": fps, "schema_version": version, "robot": robot},
        st.sampled_from(["obs.x", "action", "reward", "extra", "bad key", ""]),
        st.one_of(key_specs(), key_specs(), json_values),
        st.one_of(st.just(20.0), st.just(20.0), numbers, json_values),
        st.one_of(st.just(1), st.just(1), st.just(1), json_values),
        st.one_of(st.just({}), st.just({}), json_values),
    ),
)


@fuzz(400)
@given(doc=schema_docs, spec=st.one_of(key_specs(), key_specs(), json_values))
def test_schema_from_random_json(doc: Any, spec: Any) -> None:
    with time_limit(5):
        try:
            schema = StoreSchema.from_json(doc)
        except SchemaError as exc:
            assert str(exc).strip()
        else:
            event("schema built")
            assert StoreSchema.from_json(json.loads(json.dumps(schema.to_json()))) == schema
        try:
            ks = KeySpec.from_json(spec)
        except SchemaError as exc:
            assert str(exc).strip()
        else:
            event("key spec built")
            assert KeySpec.from_json(ks.to_json()) == ks and all(s > 0 for s in ks.shape)
