"""``robot-rl launch FILE key:=value``: run ROS 2 YAML launch files without ROS 2 installed.

Supports the subset robot_rl's launch files use (the same files run with
``ros2 launch robot_rl FILE`` where ROS 2 is installed):

- actions: ``arg`` (name, default, description), ``let`` (name, value), ``node`` (pkg,
  exec, name, namespace, param, remap, env, output, on_exit, args, ros_args), ``executable`` (cmd,
  name, env, output, on_exit), ``include`` (file, arg), ``group`` (scoped, children),
  ``push-ros-namespace`` (namespace), ``set_env`` / ``set-env`` (name, value); any action may carry
  ``if`` / ``unless``;
- substitutions: ``$(var NAME)``, ``$(env NAME [DEFAULT])``, ``$(find-pkg-share robot_rl)``.

The launcher supervises the processes: it prefixes their output with their names,
forwards SIGINT/SIGTERM (then escalates after a grace period), and shuts everything
down when a process with ``on_exit: shutdown`` ends (its exit code becomes the
launcher's). Bad files fail before anything starts, with the file and the reason.
This module does not import rclpy: it only starts processes.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTIONS = ("arg", "let", "node", "executable", "include", "group", "push-ros-namespace", "set-env", "set_env")

NODE_MODULES = {
    "robot_node": "robot_rl.ros.robot_node",
    "recorder_node": "robot_rl.ros.recorder_node",
    "teleop_node": "robot_rl.ros.teleop_node",
    "camera_node": "robot_rl.ros.camera_node",
    "policy_node": "robot_rl.ros.policy_node",
    "learner_node": "robot_rl.ros.learner_node",
}
"""Executables of package robot_rl (also the ``ros2 run robot_rl <exec>`` names)."""

MAX_NESTING = 32
"""Deepest group / include / substitution nesting a launch file may use (a cycle or a
recursive YAML alias would otherwise recurse without end)."""
MAX_FLOW_DEPTH = 200
"""Deepest ``[ ]`` / ``{ }`` nesting a launch file may use (PyYAML recurses per level)."""
_NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LaunchError(Exception):
    """A launch file is malformed or refers to something that does not exist."""


@dataclass
class Process:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    shutdown_on_exit: bool = False
    output: str = "screen"


@dataclass
class _Context:
    file: Path
    vars: dict[str, str]
    namespace: str = ""
    env: dict[str, str] = field(default_factory=dict)
    includes: tuple[Path, ...] = ()  # the chain of files including this one (cycle check)
    depth: int = 0  # group / include nesting


def _short(value: Any, limit: int = 120) -> str:
    """``repr`` of a value from a launch file, bounded (YAML aliases can make a small
    file describe a huge or self-referencing structure)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlist, r.maxdict = 3, limit, limit, 6, 6
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split(text: str, ctx: _Context, what: str) -> list[str]:
    """Shell-like splitting of a command line, with a LaunchError on unbalanced quotes."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise LaunchError(f"{ctx.file}: {what} {_short(text)}: {exc}") from exc


def _items(body: dict[str, Any], key: str, fields: tuple[str, ...], ctx: _Context, what: str) -> list[dict[str, Any]]:
    """``body[key]``: a list of mappings that each have ``fields`` (param, env, remap, arg)."""
    items = body.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and all(f in i for f in fields) for i in items):
        raise LaunchError(f"{ctx.file}: {what}: '{key}' must be a list of mappings with {', '.join(repr(f) for f in fields)}")
    return items


def launch_share() -> Path:
    from robot_rl.launch import launch_dir

    return launch_dir().parent


def resolve_launch_file(name: str | os.PathLike[str]) -> Path:
    """A path, or the name of a file shipped in robot_rl's launch directory."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = launch_share() / "launch" / path.name
    if shipped.is_file():
        return shipped
    raise LaunchError(f"launch file {name} not found (neither a path nor one of robot_rl's launch files)")


def parse_cli_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition(":=")
        if not sep or not key:
            raise LaunchError(f"launch argument {item!r} must look like name:=value")
        out[key] = value
    return out


def plan(file: Path, args: dict[str, str]) -> list[Process]:
    """Parse a launch file (and its includes) into the processes to start."""
    ctx = _Context(file=file, vars={})
    processes: list[Process] = []
    _run_file(file, args, ctx, processes)
    if not processes:
        raise LaunchError(f"{file}: nothing to launch")
    return processes


def _load(file: Path) -> list[dict[str, Any]]:
    try:
        text = file.read_text()
        if _flow_depth(text) > MAX_FLOW_DEPTH:  # PyYAML recurses per level: slow, then RecursionError
            raise LaunchError(f"{file}: not valid YAML: [ ] / {{ }} nested more than {MAX_FLOW_DEPTH} deep")
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LaunchError(f"{file}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise LaunchError(f"{file}: not a text file (not UTF-8): {exc}") from exc
    except RecursionError as exc:
        raise LaunchError(f"{file}: not valid YAML: nested too deeply") from exc
    except OSError as exc:
        raise LaunchError(f"{file}: cannot read: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("launch"), list):
        raise LaunchError(f"{file}: a launch file is a mapping with a 'launch' list of actions")
    _check_size(doc, file)
    return doc["launch"]


def _flow_depth(text: str) -> int:
    """Deepest nesting of YAML flow brackets (a cheap upper bound: quotes are ignored)."""
    depth = deepest = 0
    for c in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if c in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


MAX_NODES = 100_000
"""Most YAML nodes a launch file may expand to (aliases can make a few lines expand
to billions, and a self-referencing alias to an infinite structure)."""


def _check_size(doc: Any, file: Path) -> None:
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(x: Any) -> int:
        if not isinstance(x, (list, dict)):
            return 1
        if id(x) in sizes:
            return sizes[id(x)]
        if id(x) in active:
            raise LaunchError(f"{file}: a YAML alias refers to itself (an infinite structure)")
        active.add(id(x))
        children = [*x.keys(), *x.values()] if isinstance(x, dict) else x
        total = 1 + sum(size(c) for c in children)
        active.discard(id(x))
        if total > MAX_NODES:
            raise LaunchError(f"{file}: expands to more than {MAX_NODES} YAML nodes (aliases?)")
        sizes[id(x)] = total
        return total

    try:
        size(doc)
    except RecursionError as exc:
        raise LaunchError(f"{file}: nested too deeply") from exc


def _run_file(file: Path, given: dict[str, str], ctx: _Context, out: list[Process]) -> None:
    chain = (*ctx.includes, file)
    if file.resolve() in {f.resolve() for f in ctx.includes}:
        raise LaunchError(f"{ctx.file}: include cycle: {' -> '.join(str(f) for f in chain)}")
    if ctx.depth > MAX_NESTING:
        raise LaunchError(f"{ctx.file}: groups and includes nested more than {MAX_NESTING} deep")
    actions = _load(file)
    declared = {str(a["arg"]["name"]) for a in actions if isinstance(a, dict) and isinstance(a.get("arg"), dict) and "name" in a["arg"]}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise LaunchError(f"{file}: unknown argument(s) {unknown}; it declares {sorted(declared)}")
    inner = _Context(file=file, vars=dict(given), namespace=ctx.namespace, env=dict(ctx.env), includes=chain, depth=ctx.depth + 1)
    _run_actions(actions, inner, out)


def _run_actions(actions: list[Any], ctx: _Context, out: list[Process]) -> None:
    for action in actions:
        if not isinstance(action, dict) or len(action) != 1:
            raise LaunchError(f"{ctx.file}: each action is a one-key mapping, got {_short(action)}")
        ((kind, body),) = action.items()
        if kind not in ACTIONS:
            raise LaunchError(f"{ctx.file}: unknown action {_short(kind)} (supported: {', '.join(ACTIONS)})")
        body = body or {}
        if not isinstance(body, dict):
            raise LaunchError(f"{ctx.file}: '{kind}' needs a mapping, got {_short(body)}")
        if not _condition(body, ctx):
            continue
        getattr(sys.modules[__name__], f"_do_{kind.replace('-', '_')}")(body, ctx, out)


def _condition(body: dict[str, Any], ctx: _Context) -> bool:
    for key, want in (("if", True), ("unless", False)):
        if key in body:
            value = _subst(str(body[key]), ctx).strip().lower()
            if value not in ("true", "false", "1", "0"):
                raise LaunchError(f"{ctx.file}: '{key}' must be true or false, got {value!r}")
            if (value in ("true", "1")) != want:
                return False
    return True


def _require(body: dict[str, Any], key: str, kind: str, ctx: _Context) -> Any:
    if key not in body:
        raise LaunchError(f"{ctx.file}: '{kind}' needs '{key}'")
    return body[key]


def _do_arg(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    name = str(_require(body, "name", "arg", ctx))
    if name not in ctx.vars:
        if "default" not in body:
            raise LaunchError(f"{ctx.file}: argument '{name}' is required: pass {name}:=VALUE" + (f" ({body['description']})" if body.get("description") else ""))
        ctx.vars[name] = _subst(str(body["default"]), ctx)


def _do_let(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    ctx.vars[str(_require(body, "name", "let", ctx))] = _subst(str(_require(body, "value", "let", ctx)), ctx)


def _do_set_env(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    ctx.env[str(_require(body, "name", "set-env", ctx))] = _subst(str(_require(body, "value", "set-env", ctx)), ctx)


def _do_push_ros_namespace(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    ns = _subst(str(_require(body, "namespace", "push-ros-namespace", ctx)), ctx).strip("/")
    ctx.namespace = f"{ctx.namespace}/{ns}".strip("/") if ns else ctx.namespace


def _do_group(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    children = body.get("children") or []
    if not isinstance(children, list):
        raise LaunchError(f"{ctx.file}: group 'children' must be a list")
    if ctx.depth > MAX_NESTING:
        raise LaunchError(f"{ctx.file}: groups and includes nested more than {MAX_NESTING} deep")
    scoped = str(body.get("scoped", True)).lower() != "false"
    if scoped:
        _run_actions(children, _Context(ctx.file, dict(ctx.vars), ctx.namespace, dict(ctx.env), ctx.includes, ctx.depth + 1), out)
        return
    ctx.depth += 1
    try:
        _run_actions(children, ctx, out)
    finally:
        ctx.depth -= 1


def _do_include(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    target = _subst(str(_require(body, "file", "include", ctx)), ctx)
    path = Path(target) if Path(target).is_absolute() else (ctx.file.parent / target)
    if not path.is_file():
        raise LaunchError(f"{ctx.file}: included file {target} not found")
    given = {str(a["name"]): _subst(str(a["value"]), ctx) for a in _items(body, "arg", ("name", "value"), ctx, f"include {target}")}
    _run_file(path, given, ctx, out)


def _env_items(body: dict[str, Any], ctx: _Context) -> dict[str, str]:
    env = dict(ctx.env)
    for item in _items(body, "env", ("name", "value"), ctx, "env"):
        env[str(item["name"])] = _subst(str(item["value"]), ctx)
    return env


def _on_exit(body: dict[str, Any], ctx: _Context) -> bool:
    value = str(body.get("on_exit", "")).strip()
    if value not in ("", "shutdown"):
        raise LaunchError(f"{ctx.file}: on_exit supports only 'shutdown', got {value!r}")
    return value == "shutdown"


def _do_executable(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    cmd = _split(_subst(str(_require(body, "cmd", "executable", ctx)), ctx), ctx, "executable cmd")
    if not cmd:
        raise LaunchError(f"{ctx.file}: executable has an empty 'cmd'")
    name = str(body.get("name") or Path(cmd[0]).name)
    out.append(Process(name, cmd, _env_items(body, ctx), _on_exit(body, ctx), str(body.get("output", "screen"))))


def _do_node(body: dict[str, Any], ctx: _Context, out: list[Process]) -> None:
    pkg = _subst(str(_require(body, "pkg", "node", ctx)), ctx)
    exe = _subst(str(_require(body, "exec", "node", ctx)), ctx)
    if pkg != "robot_rl":
        raise LaunchError(f"{ctx.file}: node {pkg}/{exe}: only robot_rl nodes run without ROS 2 installed (use ros2 launch)")
    if exe not in NODE_MODULES:
        raise LaunchError(f"{ctx.file}: robot_rl has no executable {exe!r} (available: {', '.join(NODE_MODULES)})")
    name = _subst(str(body.get("name") or exe), ctx)
    if not _NODE_NAME.match(name):
        raise LaunchError(f"{ctx.file}: node name {name!r} is not a valid ROS name (letters, digits, '_'; not starting with a digit)")
    ns = _subst(str(body.get("namespace") or ""), ctx).strip("/")
    namespace = "/" + "/".join(p for p in (ctx.namespace, ns) if p)
    params: dict[str, Any] = {}
    for item in body.get("param") or []:
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise LaunchError(f"{ctx.file}: node {name}: each param needs 'name' and 'value'")
        params[str(item["name"])] = _typed(_subst(str(item["value"]), ctx))
    ros_args = ["--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={namespace}"]
    for item in _items(body, "remap", ("from", "to"), ctx, f"node {name}"):
        ros_args += ["-r", f"{_subst(str(item['from']), ctx)}:={_subst(str(item['to']), ctx)}"]
    if params:
        fd, path = tempfile.mkstemp(prefix=f"robot_rl_{name}_", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"/**": {"ros__parameters": params}}, f)
        ros_args += ["--params-file", path]
    ros_args += _split(_subst(str(body.get("ros_args", "")), ctx), ctx, f"node {name} ros_args")  # e.g. --enclave (docs/security.md)
    extra = _split(_subst(str(body.get("args", "")), ctx), ctx, f"node {name} args")
    cmd = [sys.executable, "-m", NODE_MODULES[exe], *extra, *ros_args]
    out.append(Process(name, cmd, _env_items(body, ctx), _on_exit(body, ctx), str(body.get("output", "screen"))))


def _typed(value: str) -> Any:
    """Parameter values are typed like ROS does (YAML scalars); structures stay strings."""
    if _flow_depth(value) > MAX_FLOW_DEPTH:
        return value  # a structure (stays a string), and too deep for PyYAML
    try:
        parsed = yaml.safe_load(value)
    except (yaml.YAMLError, RecursionError):
        return value
    if parsed is None or isinstance(parsed, (dict, list)):
        return value
    return parsed


def _subst(text: str, ctx: _Context) -> str:
    """Expand ``$(...)`` substitutions, innermost first (``$(env $(var name))``).

    What a substitution expands to is used as is: a value that itself contains ``$(``
    is not expanded again (so ``x:='$(var x)'`` cannot recurse).
    """
    value, _ = _scan(text, 0, ctx, inside=False, depth=0)
    return value


def _scan(text: str, i: int, ctx: _Context, inside: bool, depth: int) -> tuple[str, int]:
    """Expand ``text`` from ``i``; inside a substitution, up to its closing ``)``
    (returns the text and the index after what was consumed)."""
    parts: list[str] = []
    n = len(text)
    while i < n:
        if text.startswith("$(", i):
            if depth >= MAX_NESTING:
                raise LaunchError(f"{ctx.file}: malformed substitution: nested more than {MAX_NESTING} deep in {_short(text)}")
            inner, i = _scan(text, i + 2, ctx, inside=True, depth=depth + 1)
            parts.append(_resolve(inner, ctx))
            continue
        if inside and text[i] == ")":
            return "".join(parts), i + 1
        if inside and text[i] == "(":
            raise LaunchError(f"{ctx.file}: malformed substitution: '(' inside $(...) in {_short(text)}")
        stops = [j for j in (text.find("$(", i), *((text.find(")", i), text.find("(", i)) if inside else ())) if j >= 0]
        stop = min(stops) if stops else n
        parts.append(text[i:stop])
        i = stop
    if inside:
        raise LaunchError(f"{ctx.file}: malformed substitution: '$(' without a closing ')' in {_short(text)}")
    return "".join(parts), i


def _resolve(inner: str, ctx: _Context) -> str:
    """The value of one substitution ``$(inner)`` (its arguments already expanded)."""
    words = inner.split()
    if not words:
        raise LaunchError(f"{ctx.file}: malformed substitution: empty $()")
    kind, rest = words[0], words[1:]
    if kind == "var":
        if len(rest) != 1:
            raise LaunchError(f"{ctx.file}: $(var NAME) takes one name, got {_short('$(' + inner + ')')}")
        if rest[0] not in ctx.vars:
            raise LaunchError(f"{ctx.file}: $(var {rest[0]}) is not a declared argument or let")
        return ctx.vars[rest[0]]
    if kind == "env":
        if not rest:
            raise LaunchError(f"{ctx.file}: $(env NAME [DEFAULT]) needs a name")
        if rest[0] in os.environ:
            return os.environ[rest[0]]
        if len(rest) > 1:
            return " ".join(rest[1:])
        raise LaunchError(f"{ctx.file}: environment variable {rest[0]} is not set")
    if kind == "find-pkg-share":
        if rest != ["robot_rl"]:
            raise LaunchError(f"{ctx.file}: $(find-pkg-share {_short(' '.join(rest))}): only robot_rl is known without ROS 2")
        return str(launch_share())
    raise LaunchError(f"{ctx.file}: unsupported substitution $({kind[:40]} ...)")


# ---------------------------------------------------------------------- supervision
class Supervisor:
    """Start processes, stream their output with name prefixes, stop them cleanly."""

    def __init__(self, processes: list[Process], grace_s: float = 5.0) -> None:
        self.processes = processes
        self.grace_s = grace_s
        self.popen: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for proc in self.processes:
            env = dict(os.environ, PYTHONUNBUFFERED="1", **proc.env)
            p = subprocess.Popen(proc.cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            self.popen[proc.name] = p
            t = threading.Thread(target=self._pump, args=(proc.name, p), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _pump(name: str, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        for raw in iter(p.stdout.readline, b""):
            sys.stdout.write(f"[{name}] {raw.decode(errors='replace')}")
            sys.stdout.flush()

    def stop(self, sig: int = signal.SIGINT) -> None:
        self._stopping = True
        for p in self.popen.values():
            if p.poll() is None:
                _signal_group(p, sig)
        deadline = time.monotonic() + self.grace_s
        for escalate in (signal.SIGTERM, signal.SIGKILL):
            while time.monotonic() < deadline and any(p.poll() is None for p in self.popen.values()):
                time.sleep(0.05)
            for p in self.popen.values():
                if p.poll() is None:
                    _signal_group(p, escalate)
            deadline = time.monotonic() + 2.0
        for p in self.popen.values():
            p.wait()

    def wait(self) -> int:
        """Run until every process ended, or a shutdown-on-exit process ended."""
        by_name = {p.name: p for p in self.processes}
        while True:
            alive = [n for n, p in self.popen.items() if p.poll() is None]
            for name, p in self.popen.items():
                if p.poll() is not None and by_name[name].shutdown_on_exit:
                    code = p.returncode
                    print(f"[launch] {name} exited with code {code}: shutting down", flush=True)
                    self.stop()
                    return code
            if not alive:
                codes = [p.returncode for p in self.popen.values()]
                return next((c for c in codes if c), 0)
            time.sleep(0.05)


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def isolate_on_this_host(robot: str | None = None) -> str:
    """For a twin (``sim_*``, ``mock_*``; or any launch when ``robot`` is None): keep DDS
    discovery on this host and on a domain of its own, unless the caller set them — a
    second launch on this host (another demo, a robot already recording) would otherwise
    answer its services and mix its topics in. Returns the domain id in use."""
    if robot is None or robot.startswith(("sim_", "mock_")):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    return os.environ.get("ROS_DOMAIN_ID", "0")


def run(file: str | os.PathLike[str], args: dict[str, str], grace_s: float = 5.0) -> int:
    processes = plan(resolve_launch_file(file), args)
    sup = Supervisor(processes, grace_s)
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        print(f"[launch] received {signal.Signals(signum).name}: stopping {len(processes)} process(es)", flush=True)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"[launch] starting {', '.join(p.name for p in processes)}", flush=True)
        sup.start()
        return sup.wait()
    except KeyboardInterrupt:
        sup.stop(received[-1] if received else signal.SIGINT)
        return 130 if not received or received[-1] == signal.SIGINT else 143
    finally:
        for s, h in old.items():
            signal.signal(s, h)
