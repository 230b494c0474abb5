"""rosbag2 / MCAP import: topics of a bag -> episodes of a store, with no ROS install.

    robot-rl data import --from rosbag runs/session_0/ runs/session.zarr --namespace /robot
    robot-rl data import --from rosbag teleop.mcap teleop.zarr --mapping mapping.yaml --task pick_cube

Reads a rosbag2 directory (``metadata.yaml`` + ``.mcap`` or ``.db3`` files) or a bare
``.mcap`` file with ``rosbags`` (CDR deserialised from the message definitions stored in
the bag; rclpy is never imported), aligns every mapped topic to a step clock with the
recorder node's policy, cuts episodes, and writes them with :class:`EpisodeWriter`.

Mapping YAML (every field but ``keys`` is optional; docs/rosbag.md has the long form)::

    fps: 20                         # store fps; default: estimated from the step stamps (or `rate`)
    step: /robot/commands           # one store step per message on this topic (like the recorder's
                                    # `action_sent`); or `rate: 20` to sample on a 20 Hz clock
    stamp: header                   # header (default; the receive time when a message has no header) | receive
    keys:                           # store key -> {topic, field, dtype, units, names, stamp}
      action: {topic: /robot/commands, field: data}                 # std_msgs/Float64MultiArray
      obs.joint_pos: {topic: /robot/joint_states, field: position}  # sensor_msgs/JointState
      obs.joint_vel: {topic: /robot/joint_states, field: velocity}
      obs.image.wrist: {topic: /wrist/image_raw}                    # Image (rgb8/bgr8/mono8...) or CompressedImage
      obs.base_vel: {topic: /cmd_vel, field: [linear.x, angular.z]} # geometry_msgs/Twist
      obs.odom: {topic: /odom}      # nav_msgs/Odometry: x, y, yaw, v, omega (robot_rl's odom layout)
      reward: {topic: /robot/task, field: position.0}               # scalar float32
      done: {topic: /robot/task, field: [position.1, position.2]}   # true when any value is non-zero
    episodes: {gap: 1.0, min_steps: 2}    # cut where the step stamps jump by > 1 s ...
    # episodes: {topic: /recorder/recording}  # ... or at a marker topic (std_msgs/Bool: true = recording;
    #                                         #     std_msgs/String: start | stop | reset | JSON {"recording": bool})
    task: pick_cube
    robot: so101
    source: teleop

``field`` is a dotted path into the message (``pose.pose.position.x``; an integer part
indexes an array: ``position.0``; ``yaw`` of a quaternion is computed) or a list of them
(one element each). Without ``field``: JointState -> ``position``, ``*MultiArray`` ->
``data``, Twist -> all six components, Odometry -> x, y, yaw, v, omega, std_msgs scalars
-> ``data``, Image / CompressedImage -> the frame (only for ``obs.image.<cam>`` keys).
JointState names (and a Float64MultiArray's comma-separated ``layout.dim[0].label``)
become the key's ``KeySpec.names``.

Without a mapping file the robot_rl recorder's own mapping is used for a robot node
namespace (:func:`robot_rl_mapping`): step ``<ns>/action_sent``, ``obs.<k>`` from
``<ns>/state/<k>``, ``obs.image.<cam>`` from ``<ns>/<cam>/image_raw[/compressed]``, reward
and done from ``<ns>/task``, key specs and fps from ``<ns>/robot_spec`` when it is in the bag.

Alignment (the recorder node's, docs/ros.md): a step's stamp is its step message's stamp
(or a tick of the ``rate`` clock); every key takes its latest message with stamp <= the
step stamp (latest-before / hold). Steps before every key has had a message are skipped
and counted. A key whose message is older than the step is counted as ``held`` and, when
older than max(2 periods, 100 ms), also as ``stale`` (the recorder's camera drop rule).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data import SOURCES, EpisodeWriter, KeySpec, SchemaError, StoreSchema

INSTALL_HINT = "pip install 'robot-rl[interop]'"
_STAMP_MODES = ("header", "receive")
_IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "mono8": (1, False), "rgba8": (4, False), "bgra8": (4, True)}
_TWIST_FIELDS = ["linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z"]
_ODOM_FIELDS = [
    "pose.pose.position.x",
    "pose.pose.position.y",
    "pose.pose.orientation.yaw",
    "twist.twist.linear.x",
    "twist.twist.angular.z",
]
_DEFAULT_FIELDS: dict[str, str | list[str]] = {
    "sensor_msgs/msg/JointState": "position",
    "geometry_msgs/msg/Twist": _TWIST_FIELDS,
    "geometry_msgs/msg/TwistStamped": [f"twist.{f}" for f in _TWIST_FIELDS],
    "nav_msgs/msg/Odometry": _ODOM_FIELDS,
}
_DEFAULT_UNITS = {"position": "rad", "velocity": "rad/s", "effort": "N*m"}


class RosbagImportError(ValueError):
    """A bag or mapping that cannot be imported; the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------- config
@dataclass
class KeyMapping:
    """Where one store key comes from.

    Attributes:
        key: store key (``action``, ``obs.<name>``, ``obs.image.<cam>``, ``reward``, ``done`` or an extra).
        topic: bag topic, e.g. ``/robot/joint_states``.
        field: dotted path (or list of paths, one element each) into the message; None: the
            type's default (module docstring).
        dtype: store dtype; default float32 (uint8 for images, bool for ``done``).
        units: KeySpec units; default from the field (JointState position ``rad``...).
        names: KeySpec element names; default from the message (JointState ``name``...).
        stamp: ``header`` or ``receive``; None: the mapping's ``stamp``.
        spec: a complete KeySpec (the default robot_rl mapping takes it from ``robot_spec``).
    """

    key: str
    topic: str
    field: str | list[str] | None = None
    dtype: str | None = None
    units: str | None = None
    names: list[str] | None = None
    stamp: str | None = None
    spec: KeySpec | None = None

    @property
    def is_image(self) -> bool:
        return self.key.startswith("obs.image.")


@dataclass
class BagMapping:
    """A parsed mapping file (see the module docstring for the YAML form).

    Attributes:
        keys: store key -> :class:`KeyMapping`; must include ``action`` and one ``obs.*`` key.
        step: topic whose messages are the steps (one store step per message).
        rate: instead of ``step``: sample every key on a clock of this rate (Hz) that runs
            over each stretch of the ``action`` topic (split at ``gap``).
        fps: the store's fps; None: ``rate``, else 1 / median step interval.
        stamp: ``header`` (header stamp when the message has a header, else receive time) or ``receive``.
        gap: cut an episode where consecutive steps are more than this many seconds apart (None: no gap cut).
        episode_topic: marker topic (std_msgs/Bool or std_msgs/String) that starts/stops episodes.
        min_steps: episodes with fewer steps are dropped (counted in the summary).
        task, robot, source, success: episode record fields.
    """

    keys: dict[str, KeyMapping]
    step: str | None = None
    rate: float | None = None
    fps: float | None = None
    stamp: str = "header"
    gap: float | None = 1.0
    episode_topic: str | None = None
    min_steps: int = 2
    task: str | None = None
    robot: str | None = None
    source: str = "teleop"
    success: bool | None = None

    def check(self) -> None:
        if "action" not in self.keys:
            raise RosbagImportError(
                "the mapping has no 'action' key: map one, e.g. `action: {topic: /robot/commands, field: data}`"
            )
        if not any(k.startswith("obs.") for k in self.keys):
            raise RosbagImportError("the mapping has no observation key: map at least one `obs.<name>` key")
        if (self.step is None) == (self.rate is None):
            raise RosbagImportError(
                "the mapping needs exactly one of `step: <topic>` (one step per message) or `rate: <Hz>`"
            )
        if self.rate is not None and not (self.rate > 0):
            raise RosbagImportError(f"`rate` must be a positive number of Hz, got {self.rate!r}")
        if self.stamp not in _STAMP_MODES:
            raise RosbagImportError(f"`stamp` must be one of {_STAMP_MODES}, got {self.stamp!r}")
        if self.gap is not None and not (self.gap > 0):
            raise RosbagImportError(f"episodes `gap` must be a positive number of seconds, got {self.gap!r}")
        if self.source not in SOURCES:
            raise RosbagImportError(f"`source` {self.source!r} is not one of {SOURCES}")
        for km in self.keys.values():
            if km.stamp is not None and km.stamp not in _STAMP_MODES:
                raise RosbagImportError(f"key {km.key!r}: `stamp` must be one of {_STAMP_MODES}, got {km.stamp!r}")


def parse_mapping(data: Mapping[str, Any] | str | Path) -> BagMapping:
    """A :class:`BagMapping` from a YAML file path or an already-loaded mapping."""
    if isinstance(data, (str, Path)):
        import yaml

        try:
            data = yaml.safe_load(Path(data).read_text())
        except OSError as exc:
            raise RosbagImportError(f"cannot read mapping file {data}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise RosbagImportError(f"mapping file {data} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise RosbagImportError(f"a mapping must be a YAML mapping with a `keys` entry, got {type(data).__name__}")
    known = {"fps", "step", "rate", "stamp", "keys", "episodes", "task", "robot", "source", "success"}
    if unknown := sorted(set(data) - known):
        raise RosbagImportError(f"unknown mapping field(s) {unknown}; known: {sorted(known)}")
    raw_keys = data.get("keys")
    if not isinstance(raw_keys, Mapping) or not raw_keys:
        raise RosbagImportError("the mapping needs `keys:` mapping store keys to {topic: ..., field: ...}")
    keys: dict[str, KeyMapping] = {}
    for key, entry in raw_keys.items():
        if isinstance(entry, str):
            entry = {"topic": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("topic"), str):
            raise RosbagImportError(f"key {key!r}: expected {{topic: /some/topic, field: ...}}, got {entry!r}")
        extra = sorted(set(entry) - {"topic", "field", "dtype", "units", "names", "stamp"})
        if extra:
            raise RosbagImportError(f"key {key!r}: unknown field(s) {extra} (topic, field, dtype, units, names, stamp)")
        fld = entry.get("field")
        paths_ok = isinstance(fld, list) and fld and all(isinstance(f, str) for f in fld)
        if fld is not None and not (isinstance(fld, str) or paths_ok):
            raise RosbagImportError(f"key {key!r}: `field` must be a dotted path or a list of them, got {fld!r}")
        keys[str(key)] = KeyMapping(
            key=str(key),
            topic=entry["topic"],
            field=fld,
            dtype=entry.get("dtype"),
            units=entry.get("units"),
            names=list(entry["names"]) if entry.get("names") is not None else None,
            stamp=entry.get("stamp"),
        )
    episodes = data.get("episodes") or {}
    if not isinstance(episodes, Mapping) or (extra := sorted(set(episodes) - {"gap", "topic", "min_steps"})):
        raise RosbagImportError(
            f"`episodes` must be {{gap: <s>}} and/or {{topic: <marker topic>}} (+ min_steps), got {episodes!r}"
        )
    mapping = BagMapping(
        keys=keys,
        step=data.get("step"),
        rate=float(data["rate"]) if data.get("rate") is not None else None,
        fps=float(data["fps"]) if data.get("fps") is not None else None,
        stamp=data.get("stamp", "header"),
        # with a marker topic and no gap, the markers alone cut; otherwise 1 s gaps cut
        gap=episodes.get("gap", None if "topic" in episodes else 1.0),
        episode_topic=episodes.get("topic"),
        min_steps=int(episodes.get("min_steps", 2)),
        task=data.get("task"),
        robot=data.get("robot"),
        source=data.get("source", "teleop"),
        success=data.get("success"),
    )
    mapping.check()
    return mapping


def robot_rl_mapping(namespace: str, topics: Mapping[str, str], spec: Mapping[str, Any] | None = None) -> BagMapping:
    """The mapping robot_rl's recorder node uses, for the robot node in ``namespace``.

    ``topics``: the bag's topics -> message types. With the robot node's ``robot_spec``
    (``spec``), keys, KeySpecs and fps are the recorder's exactly; without it the keys are
    found from the topics (``state/<k>`` -> ``obs.<k>``, ``<cam>/image_raw`` -> ``obs.image.<cam>``).
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    step = f"{ns}/action_sent"
    keys: dict[str, KeyMapping] = {}
    if spec is not None:
        for name, raw in spec["observation_spec"].items():
            ks = KeySpec.from_json(raw)
            if ks.is_image:
                cam = name.removeprefix("image.")
                topic = f"{ns}/{cam}/image_raw"
                if topic not in topics and f"{topic}/compressed" in topics:
                    topic += "/compressed"
                keys[f"obs.{name}"] = KeyMapping(f"obs.{name}", topic, spec=ks)
            else:
                keys[f"obs.{name}"] = KeyMapping(f"obs.{name}", f"{ns}/state/{name}", field="position", spec=ks)
        keys["action"] = KeyMapping("action", step, field="position", spec=KeySpec.from_json(spec["action_spec"]))
    else:
        for topic, msgtype in sorted(topics.items()):
            rest = topic[len(ns) :] if topic.startswith(f"{ns}/") else None
            if rest is None:
                continue
            if rest.startswith("/state/") and msgtype == "sensor_msgs/msg/JointState":
                name = rest.removeprefix("/state/")
                keys[f"obs.{name}"] = KeyMapping(f"obs.{name}", topic, field="position")
            elif rest.endswith("/image_raw") and msgtype == "sensor_msgs/msg/Image" and rest.count("/") == 2:
                keys[f"obs.image.{rest.split('/')[1]}"] = KeyMapping(f"obs.image.{rest.split('/')[1]}", topic)
            elif rest.endswith("/image_raw/compressed") and msgtype == _IMAGE_TYPES[1] and rest.count("/") == 3:
                keys.setdefault(f"obs.image.{rest.split('/')[1]}", KeyMapping(f"obs.image.{rest.split('/')[1]}", topic))
        if "obs.joint_pos" not in keys and f"{ns}/joint_states" in topics:
            keys["obs.joint_pos"] = KeyMapping("obs.joint_pos", f"{ns}/joint_states", field="position")
        if "obs.odom" not in keys and f"{ns}/odom" in topics:
            keys["obs.odom"] = KeyMapping("obs.odom", f"{ns}/odom")
        keys["action"] = KeyMapping("action", step, field="position")
    if f"{ns}/task" in topics:  # sim twins: (reward, success, failure) per step
        keys["reward"] = KeyMapping("reward", f"{ns}/task", field="position.0")
        keys["done"] = KeyMapping("done", f"{ns}/task", field=["position.1", "position.2"])
    mapping = BagMapping(
        keys=keys,
        step=step,
        fps=float(spec["fps"]) if spec is not None else None,
        robot=spec.get("name") if spec is not None else None,
    )
    return mapping


@dataclass
class RosbagImportConfig:
    """Import a rosbag2 directory or a bare .mcap file into an episode store.

    Example: robot-rl data import --from rosbag runs/session_0/ runs/session.zarr --namespace /robot
    """

    bag: Path = field(
        metadata={"help": "rosbag2 directory (metadata.yaml + .mcap/.db3) or a bare .mcap file", "positional": True}
    )
    out: Path = field(metadata={"help": "episode store to write (appended to when it exists, same schema)"})
    mapping: Path | None = field(
        default=None,
        metadata={"help": "mapping YAML (docs/rosbag.md); default: the robot_rl recorder's mapping for --namespace"},
    )
    namespace: str = field(default="", metadata={"help": "robot node namespace for the default mapping, e.g. /robot"})
    task: str | None = field(default=None, metadata={"help": "task name of every episode (overrides the mapping's)"})
    source: str | None = field(
        default=None,
        metadata={"help": "episode source: teleop | policy | intervention | scripted (overrides the mapping's)"},
    )
    fps: float | None = field(
        default=None, metadata={"help": "store fps (Hz); default: the mapping's, else estimated from the steps"}
    )
    gap: float | None = field(
        default=None, metadata={"help": "cut episodes where the steps pause for more than this many seconds"}
    )
    episode_topic: str | None = field(
        default=None,
        metadata={"help": "marker topic that starts/stops episodes (std_msgs/Bool or String start/stop/reset)"},
    )
    min_steps: int | None = field(
        default=None, metadata={"help": "drop episodes with fewer steps (default: the mapping's, else 2)"}
    )
    stamp: str | None = field(
        default=None,
        metadata={"help": "message time: header (header stamp, else receive time) or receive", "choices": _STAMP_MODES},
    )
    overwrite: bool = field(default=False, metadata={"help": "delete an existing store at --out first"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


# ---------------------------------------------------------------------------------------------- reading bags
def _need_rosbags() -> Any:
    try:
        from rosbags import typesys
    except ImportError as exc:
        raise ImportError(f"reading rosbag2/MCAP files needs rosbags and mcap: {INSTALL_HINT}") from exc
    return typesys


class BagReader:
    """Messages of a rosbag2 directory or a bare .mcap file, deserialised with rosbags.

    ``topics``: topic -> message type (``sensor_msgs/msg/JointState``); ``counts``: topic ->
    message count; :meth:`messages` yields ``(topic, receive time ns, message)`` in receive order.
    """

    def __init__(self, path: str | Path) -> None:
        typesys = _need_rosbags()
        self.path = Path(path)
        if not self.path.exists():
            raise RosbagImportError(f"bag {self.path} does not exist")
        self._default_types = typesys.get_typestore(typesys.Stores.LATEST)
        if self.path.is_dir():
            if not (self.path / "metadata.yaml").is_file():
                raise RosbagImportError(
                    f"{self.path} is a directory without metadata.yaml: pass a rosbag2 directory or a .mcap file"
                )
            from rosbags.highlevel import AnyReader

            self._any = AnyReader([self.path], default_typestore=self._default_types)
            try:
                self._any.open()
            except Exception as exc:
                raise RosbagImportError(f"cannot open rosbag2 directory {self.path}: {exc}") from exc
            self.topics = {c.topic: c.msgtype for c in self._any.connections}
            self.counts: dict[str, int] = {}
            for c in self._any.connections:
                self.counts[c.topic] = self.counts.get(c.topic, 0) + c.msgcount
        elif self.path.suffix == ".mcap":
            self._any = None
            self._open_mcap(typesys)
        else:
            raise RosbagImportError(f"{self.path}: expected a rosbag2 directory or a .mcap file")

    def _open_mcap(self, typesys: Any) -> None:
        try:
            from mcap.reader import make_reader
        except ImportError as exc:
            raise ImportError(f"reading bare .mcap files needs mcap: {INSTALL_HINT}") from exc

        self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._mcap = make_reader(self._file)
            summary = self._mcap.get_summary()
        except Exception as exc:
            self._file.close()
            raise RosbagImportError(f"{self.path} is not a readable MCAP file: {exc}") from exc
        if summary is None:
            self._file.close()
            raise RosbagImportError(
                f"{self.path} has no MCAP summary (an unfinished recording?): re-index it with `mcap recover`"
            )
        types: dict[str, Any] = {}
        self.topics, self.counts = {}, {}
        self._typestore = typesys.get_typestore(typesys.Stores.EMPTY)
        counts = summary.statistics.channel_message_counts if summary.statistics else {}
        for cid, channel in summary.channels.items():
            schema = summary.schemas.get(channel.schema_id)
            if schema is None or channel.message_encoding != "cdr":
                continue  # not a ROS 2 channel
            self.topics[channel.topic] = schema.name
            self.counts[channel.topic] = self.counts.get(channel.topic, 0) + int(counts.get(cid, 0))
            text = schema.data.decode()
            if not text.strip():
                continue
            if schema.encoding == "ros2msg":
                types.update(typesys.get_types_from_msg(text, schema.name))
            elif schema.encoding == "ros2idl":
                for part in text.split("=" * 80 + "\n"):
                    body = part.split("\n", 1)[1] if part.startswith("IDL: ") else part
                    if body.strip():
                        types.update(typesys.get_types_from_idl(body))
        self._typestore.register({**self._default_types.fielddefs, **types})

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, Any]]:
        wanted = set(topics)
        if self._any is not None:
            conns = [c for c in self._any.connections if c.topic in wanted]
            for conn, t, raw in self._any.messages(connections=conns):
                yield conn.topic, int(t), self._any.deserialize(raw, conn.msgtype)
        else:
            for schema, channel, message in self._mcap.iter_messages(topics=list(wanted)):
                assert schema is not None
                yield channel.topic, int(message.log_time), self._typestore.deserialize_cdr(message.data, schema.name)

    def close(self) -> None:
        if self._any is not None:
            self._any.close()
        else:
            self._file.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- messages -> values
def message_stamp(msg: Any, receive_ns: int, mode: str) -> int:
    """Stamp (ns) of a message: its ``header.stamp`` in ``header`` mode when it has one (and it
    is not zero, as from a driver that never stamps), else ``receive_ns``."""
    header = getattr(msg, "header", None)
    if mode == "header" and header is not None:
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if stamp:
            return stamp
    return receive_ns


def _fields_of(obj: Any) -> list[str]:
    return [f for f in getattr(obj, "__dataclass_fields__", {}) if f != "__msgtype__"]


def resolve_field(msg: Any, path: str) -> Any:
    """The value at a dotted ``path`` of a message (``pose.pose.position.x``, ``position.0``,
    ``pose.pose.orientation.yaw``); KeyError naming the missing part and the fields there are."""
    obj = msg
    for part in path.split("."):
        if part.isdigit() and not hasattr(obj, part):
            try:
                obj = obj[int(part)]
            except (IndexError, TypeError) as exc:
                raise KeyError(f"element {part} of {path!r} does not exist ({exc})") from None
        elif hasattr(obj, part) and part in _fields_of(obj):
            obj = getattr(obj, part)
        elif part == "yaw" and all(hasattr(obj, a) for a in "xyzw"):
            x, y, z, w = (float(getattr(obj, a)) for a in "xyzw")
            obj = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        else:
            raise KeyError(f"no field {part!r} in {path!r} (fields there: {_fields_of(obj) or 'none'})")
    return obj


def _numbers(value: Any, what: str) -> np.ndarray:
    if isinstance(value, (bytes, bytearray)):
        return np.frombuffer(value, np.uint8).astype(np.float64)
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return np.asarray([value], dtype=np.float64)
    arr = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if arr is None or arr.dtype.kind not in "biuf":
        kind = getattr(value, "__msgtype__", None)
        raise TypeError(f"{what} is {'a ' + kind + ' message' if kind else type(value).__name__}, not numbers")
    return arr.astype(np.float64).ravel()


class _KeyReader:
    """Turns one topic's messages into one key's values; checks the type and the shape."""

    def __init__(self, km: KeyMapping, msgtype: str, default_stamp: str) -> None:
        self.km, self.msgtype = km, msgtype
        self.stamp_mode = km.stamp or default_stamp
        self.shape: tuple[int, ...] | None = km.spec.shape if km.spec is not None else None
        self.names: list[str] | None = None
        if km.is_image:
            if msgtype not in _IMAGE_TYPES:
                raise RosbagImportError(
                    f"key {km.key!r}: topic {km.topic} carries {msgtype}, which cannot map to an image key; "
                    f"image keys take {' or '.join(_IMAGE_TYPES)} (map this topic to a non-image key with a `field`)"
                )
            return
        if msgtype in _IMAGE_TYPES:
            raise RosbagImportError(
                f"key {km.key!r}: topic {km.topic} carries {msgtype}; images map only to obs.image.<cam> keys"
            )
        fld = km.field
        if fld is None:
            fld = _DEFAULT_FIELDS.get(msgtype)
            plain = msgtype.startswith("std_msgs/msg/") and msgtype.split("/")[-1] not in ("String", "Header")
            if fld is None and plain:
                fld = "data"  # Float64MultiArray, Float64, Bool, Int32...
            if fld is None:
                raise RosbagImportError(
                    f"key {km.key!r}: topic {km.topic} carries {msgtype}, which has no default field; "
                    "add `field: <dotted.path>` (or a list of paths) to the key's mapping"
                )
        self.field = fld
        self.scalar = km.key in ("reward", "done")

    def value(self, msg: Any, t_ns: int) -> np.ndarray:
        """Per-key value of one message: float64 vector (or scalar) or a uint8 HWC frame."""
        if self.km.is_image:
            raise AssertionError("images are decoded by decode_image")
        paths = [self.field] if isinstance(self.field, str) else list(self.field)
        parts = []
        for path in paths:
            try:
                raw = resolve_field(msg, path)
                part = _numbers(raw, f"field {path!r}")
            except (KeyError, TypeError) as exc:
                raise RosbagImportError(
                    f"key {self.km.key!r}: message type {self.msgtype} on {self.km.topic} cannot map to the key: "
                    f"{exc}; fix the key's `field` in the mapping"
                ) from None
            if isinstance(self.field, list) and part.size != 1:
                raise RosbagImportError(
                    f"key {self.km.key!r}: field {path!r} of {self.msgtype} holds {part.size} values; "
                    "in a list of fields each must be one number (index arrays: `position.0`)"
                )
            parts.append(part)
        values = np.concatenate(parts)
        if self.names is None and isinstance(self.field, str):
            self.names = self._element_names(msg, values.size)
        if self.scalar:
            if values.size != 1 and self.km.key == "reward":
                raise RosbagImportError(
                    f"key 'reward' takes one number, field {self.field!r} of {self.km.topic} has {values.size}"
                )
            return np.asarray(bool(np.any(values != 0)) if self.km.key == "done" else values[0])
        if values.size == 0:
            raise RosbagImportError(
                f"key {self.km.key!r}: field {self.field!r} of {self.km.topic} is empty at t={t_ns / 1e9:.3f} s "
                "(e.g. a driver that publishes no velocities): drop the key or map another field"
            )
        want = self.shape
        if want is None:
            self.shape = want = (values.size,)
        if int(np.prod(want)) != values.size:
            raise RosbagImportError(
                f"key {self.km.key!r}: shape changes mid-bag on {self.km.topic} at t={t_ns / 1e9:.3f} s: "
                f"{values.size} values, earlier messages had {int(np.prod(want))}; a key's shape must stay fixed: "
                "map fixed elements (`field: [position.0, position.1]`) or split the bag"
            )
        return values.reshape(want)

    def _element_names(self, msg: Any, size: int) -> list[str] | None:
        if self.msgtype == "sensor_msgs/msg/JointState" and self.field in ("position", "velocity", "effort"):
            names = [str(n) for n in msg.name]
        elif "MultiArray" in self.msgtype and self.field == "data" and msg.layout.dim:
            names = [n.strip() for n in str(msg.layout.dim[0].label).split(",")]
        else:
            return None
        return names if len(names) == size and len(set(names)) == size and all(names) else None

    def spec(self) -> KeySpec:
        km = self.km
        if km.spec is not None:
            return km.spec
        if km.key == "done":
            return KeySpec((), "bool")
        if km.key == "reward":
            return KeySpec((), "float32", units=km.units or "")
        assert self.shape is not None
        if km.is_image:
            return KeySpec(self.shape, km.dtype or "uint8", units=km.units or "")
        if isinstance(self.field, str):
            units = _DEFAULT_UNITS.get(self.field, "") if self.msgtype == "sensor_msgs/msg/JointState" else ""
            names = km.names or self.names
        else:
            units = ""
            if all(f.split(".")[-2:-1] == ["linear"] for f in self.field):
                units = "m/s"
            elif all(f.split(".")[-2:-1] == ["angular"] for f in self.field):
                units = "rad/s"
            names = km.names or list(self.field)
        if names is not None and len(names) != self.shape[0]:
            raise RosbagImportError(f"key {km.key!r}: {len(names)} names for {self.shape[0]} values")
        units = km.units if km.units is not None else units
        return KeySpec(self.shape, km.dtype or "float32", units=units, names=names)


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """A sensor_msgs Image (rgb8, bgr8, mono8, rgba8, bgra8) or CompressedImage as (H, W, C) uint8 RGB."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        import cv2

        frame = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
        if frame is None:
            raise ValueError(f"undecodable {msg.format!r} image")
        if frame.ndim == 2:
            return frame[..., None]
        return np.ascontiguousarray(frame[..., ::-1] if frame.shape[2] == 3 else frame[..., [2, 1, 0, 3]])
    enc = str(msg.encoding).lower()
    if enc not in _ENCODINGS:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (use {', '.join(_ENCODINGS)})")
    channels, bgr = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    raw = msg.data
    data = raw.view(np.uint8).ravel() if isinstance(raw, np.ndarray) else np.frombuffer(bytes(raw), np.uint8)
    if step < w * channels or data.size < h * step:
        raise ValueError(f"image {w}x{h} {enc} has {data.size} bytes with row step {step}")
    frame = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if bgr:
        frame = frame[..., [2, 1, 0, 3]] if channels == 4 else frame[..., ::-1]
    return np.ascontiguousarray(frame)


# ---------------------------------------------------------------------------------------------- alignment
def latest_before(step_stamps: np.ndarray, msg_stamps: np.ndarray) -> np.ndarray:
    """The recorder's alignment, for whole arrays: for each step stamp, the index of the
    latest message with stamp <= it, or -1 when there is none yet.

    Args:
        step_stamps: (S,) int64 ns, any order.
        msg_stamps: (M,) int64 ns, sorted ascending (ties: the later-received message last).
    Returns:
        (S,) int64 indices into ``msg_stamps``.
    """
    return np.searchsorted(msg_stamps, step_stamps, side="right").astype(np.int64) - 1


def cut_episodes(
    stamps: np.ndarray, gap_s: float | None, markers: Sequence[tuple[int, str]] = (), min_steps: int = 1
) -> tuple[list[tuple[int, int]], int]:
    """Episodes as ``[(first step, end step exclusive)]`` over sorted step ``stamps`` (ns).

    ``markers``: ``(stamp, 'start' | 'stop' | 'reset')`` sorted by stamp; a marker applies to
    steps at or after its stamp; without markers every step is in. A step more than ``gap_s``
    after the previous one starts a new episode. Returns the episodes with >= ``min_steps``
    steps and how many shorter ones were dropped.
    """
    n = len(stamps)
    if markers:
        times = np.array([m[0] for m in markers], dtype=np.int64)
        idx = np.searchsorted(times, stamps, side="right") - 1  # latest marker at or before each step
        state, epoch, states, epochs = False, 0, [], []
        for _, kind in markers:
            if kind == "start" and not state or kind == "reset":
                epoch += 1
            state = kind in ("start", "reset")
            states.append(state)
            epochs.append(epoch)
        inside = np.array([states[i] if i >= 0 else False for i in idx], dtype=bool)
        label = np.array([epochs[i] if i >= 0 else 0 for i in idx], dtype=np.int64)
    else:
        inside, label = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64)
    if gap_s is not None and n:
        jumps = np.concatenate([[0], np.cumsum(np.diff(stamps) > int(gap_s * 1e9))])
        label = label * (n + 1) + jumps
    episodes: list[tuple[int, int]] = []
    start = None
    for i in range(n + 1):
        boundary = i == n or not inside[i] or (start is not None and label[i] != label[start])
        if start is not None and boundary:
            episodes.append((start, i))
            start = None
        if i < n and inside[i] and start is None:
            start = i
    kept = [e for e in episodes if e[1] - e[0] >= min_steps]
    return kept, len(episodes) - len(kept)


def marker_events(msgtype: str, msg: Any) -> str | None:
    """``start`` / ``stop`` / ``reset`` for one marker message, or None when it says nothing."""
    if msgtype == "std_msgs/msg/Bool":
        return "start" if msg.data else "stop"
    if msgtype == "std_msgs/msg/String":
        text = str(msg.data).strip()
        if text.lower() in ("start", "stop", "reset"):
            return text.lower()
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if isinstance(obj, dict) and isinstance(obj.get("recording"), bool):  # robot_rl recorder/status
            return "start" if obj["recording"] else "stop"
        if isinstance(obj, dict) and obj.get("event") in ("start", "stop", "reset"):  # robot_rl events
            return str(obj["event"])
        return None
    raise RosbagImportError(
        f"episode marker topic carries {msgtype}; use std_msgs/Bool (true = recording) or std_msgs/String "
        "(start / stop / reset, or JSON {\"recording\": bool})"
    )


# ---------------------------------------------------------------------------------------------- import
@dataclass
class KeyStats:
    topic: str
    msgtype: str
    messages: int = 0
    exact: int = 0
    held: int = 0
    stale: int = 0


@dataclass
class RosbagImportSummary:
    """What an import did. ``episodes``: (store index, steps, start s since epoch, duration s)."""

    bag: str
    out: str
    fps: float
    episodes: list[tuple[int, int, float, float]] = field(default_factory=list)
    keys: dict[str, KeyStats] = field(default_factory=dict)
    steps_total: int = 0
    skipped_missing: int = 0
    dropped_short: int = 0
    outside_episodes: int = 0
    specs: dict[str, KeySpec] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def steps_written(self) -> int:
        return sum(e[1] for e in self.episodes)

    def table(self) -> str:
        rows = [
            [k, s.topic, s.msgtype.split("/")[-1], s.messages, s.exact, s.held, s.stale] for k, s in self.keys.items()
        ]
        lines = [
            f"{self.bag} -> {self.out}: {len(self.episodes)} episodes, {self.steps_written} steps at {self.fps:g} fps",
            f"step messages {self.steps_total}; skipped before every key had a message: {self.skipped_missing}; "
            f"outside episodes: {self.outside_episodes}; episodes dropped as too short: {self.dropped_short}",
            "",
            _format_table(["key", "topic", "type", "messages", "exact", "held", "stale"], rows),
        ]
        if self.episodes:
            lines += ["", _format_table(["episode", "steps", "start (s)", "duration (s)"], [
                [i, n, f"{t0:.3f}", f"{d:.2f}"] for i, n, t0, d in self.episodes
            ])]
        return "\n".join(lines)


    def to_conversion_summary(self) -> Any:
        """The same as a :class:`robot_rl.interop.summary.ConversionSummary` (what ``robot-rl data
        import`` prints for every format): one row per key with its alignment counts."""
        from robot_rl.interop.summary import ConversionSummary

        rows = []
        for k, s in self.keys.items():
            spec = self.specs.get(k)
            how = f"latest-before: {s.exact} exact, {s.held} held ({s.stale} stale) of {s.messages} msgs"
            rows.append((s.topic, k, str(spec.shape) if spec else "?", spec.dtype if spec else "?", how))
        notes = [
            f"{self.steps_total} step messages at {self.fps:g} fps; skipped before every key had a message: "
            f"{self.skipped_missing}; outside episodes: {self.outside_episodes}; "
            f"episodes dropped as too short: {self.dropped_short}"
        ]
        return ConversionSummary(
            source=self.bag, target=self.out, episodes=len(self.episodes), steps=self.steps_written,
            keys=rows, seconds=self.seconds, notes=notes,
        )


def _format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *([str(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _resolve_mapping(config: RosbagImportConfig, bag: BagReader, parsed: BagMapping | None) -> BagMapping:
    if parsed is not None:
        mapping = parsed
    else:
        ns = "/" + config.namespace.strip("/") if config.namespace.strip("/") else ""
        spec = None
        if bag.topics.get(f"{ns}/robot_spec") == "std_msgs/msg/String":
            for _, _, msg in bag.messages([f"{ns}/robot_spec"]):
                try:
                    spec = json.loads(msg.data)
                    break
                except ValueError:
                    continue
        mapping = robot_rl_mapping(config.namespace, bag.topics, spec)
        if f"{ns}/action_sent" not in bag.topics:
            raise RosbagImportError(
                f"{bag.path} has no {ns}/action_sent topic, so it is not a robot_rl session of namespace "
                f"{ns or '/'!r}: pass --namespace, or a --mapping YAML (docs/rosbag.md). "
                f"Topics in the bag: {_topic_list(bag)}"
            )
    if config.task is not None:
        mapping.task = config.task
    if config.source is not None:
        mapping.source = config.source
    if config.fps is not None:
        mapping.fps = config.fps
    if config.gap is not None:
        mapping.gap = config.gap
    if config.episode_topic is not None:
        mapping.episode_topic = config.episode_topic
        if config.gap is None and config.mapping is None:
            mapping.gap = None
    if config.min_steps is not None:
        mapping.min_steps = config.min_steps
    if config.stamp is not None:
        mapping.stamp = config.stamp
    mapping.check()
    return mapping


def _topic_list(bag: BagReader) -> str:
    listed = [f"{t} ({m.split('/')[-1]}, {bag.counts.get(t, 0)})" for t, m in sorted(bag.topics.items())]
    return ", ".join(listed) or "none"


def import_rosbag(config: RosbagImportConfig) -> RosbagImportSummary:
    """Import ``config.bag`` into the store ``config.out``; returns the summary (``.table()``).

    Two passes over the bag: the first decodes the vector keys, the step and marker
    topics and only the stamps of image topics; the second decodes just the frames that
    some step uses, streaming them into the writer (memory: a few frames per camera).
    Raises :class:`RosbagImportError` naming what is wrong (topic, key, field, time).
    """
    t0 = time.monotonic()
    parsed = parse_mapping(config.mapping) if config.mapping is not None else None  # a bad mapping fails first
    with BagReader(config.bag) as bag:
        if not any(bag.counts.values()):
            raise RosbagImportError(f"bag {bag.path} is empty (no messages); topics: {_topic_list(bag)}")
        mapping = _resolve_mapping(config, bag, parsed)
        needed = {km.topic for km in mapping.keys.values()} | {t for t in (mapping.step, mapping.episode_topic) if t}
        if missing := sorted(t for t in needed if t not in bag.topics):
            users = [f"{k} -> {km.topic}" for k, km in mapping.keys.items() if km.topic in missing]
            raise RosbagImportError(
                f"topic(s) {missing} of the mapping ({'; '.join(users) or 'step/episodes'}) are not in {bag.path}; "
                f"topics in the bag: {_topic_list(bag)}. Fix the topic names in the mapping (or --namespace)"
            )
        readers = {k: _KeyReader(km, bag.topics[km.topic], mapping.stamp) for k, km in mapping.keys.items()}
        rec = _first_pass(bag, mapping, readers, sorted(needed), config.progress)
        plan = _plan_steps(bag, mapping, rec)
        summary = RosbagImportSummary(
            bag=str(bag.path), out=str(config.out), fps=plan.fps, steps_total=plan.steps_total,
            skipped_missing=plan.skipped_missing, dropped_short=plan.dropped_short,
            outside_episodes=int(plan.steps.size - plan.in_episode.sum()),
        )
        stale_ns = max(2 * int(1e9 / plan.fps), 100_000_000)  # the recorder's camera drop rule
        for k in readers:
            age = plan.steps[plan.in_episode] - rec.sorted_stamps[k][plan.idx[k][plan.in_episode]]
            summary.keys[k] = KeyStats(
                topic=mapping.keys[k].topic,
                msgtype=bag.topics[mapping.keys[k].topic],
                messages=len(rec.stamps[k]),
                exact=int((age == 0).sum()),
                held=int((age > 0).sum()),
                stale=int((age > stale_ns).sum()),
            )
        schema = _schema(mapping, readers, plan.fps)
        summary.specs = dict(schema.keys)
        _write_episodes(config, bag, mapping, rec, plan, schema, summary)
    summary.seconds = time.monotonic() - t0
    return summary


@dataclass
class _Recorded:
    """What the first pass read. Per key: message stamps (ns, bag order), the permutation that
    sorts them, the sorted stamps, and vector values sorted by stamp (images: only stamps)."""

    stamps: dict[str, np.ndarray]
    order: dict[str, np.ndarray]
    sorted_stamps: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    image_shape: dict[str, tuple[int, ...]]
    clock: np.ndarray
    markers: list[tuple[int, str]]


def _first_pass(
    bag: BagReader, mapping: BagMapping, readers: dict[str, _KeyReader], topics: list[str], progress: bool
) -> _Recorded:
    from tqdm.auto import tqdm

    by_topic: dict[str, list[str]] = {}
    for k, km in mapping.keys.items():
        by_topic.setdefault(km.topic, []).append(k)
    stamps: dict[str, list[int]] = {k: [] for k in readers}
    values: dict[str, list[np.ndarray]] = {k: [] for k in readers if not mapping.keys[k].is_image}
    image_shape: dict[str, tuple[int, ...]] = {}
    clock: list[int] = []
    markers: list[tuple[int, str]] = []
    clock_topic = mapping.step or mapping.keys["action"].topic
    total = sum(bag.counts.get(t, 0) for t in topics)
    with tqdm(total=total, desc=f"read {bag.path.name}", unit="msg", disable=not progress) as bar:
        for topic, t, msg in bag.messages(topics):
            bar.update()
            msgtype = bag.topics[topic]
            if topic == clock_topic:
                clock.append(message_stamp(msg, t, mapping.stamp))
            if topic == mapping.episode_topic and (kind := marker_events(msgtype, msg)) is not None:
                markers.append((message_stamp(msg, t, mapping.stamp), kind))
            for k in by_topic.get(topic, ()):
                r = readers[k]
                stamps[k].append(message_stamp(msg, t, r.stamp_mode))
                if k in values:
                    values[k].append(r.value(msg, t))
                elif k not in image_shape:  # the first frame fixes the key's shape
                    try:
                        image_shape[k] = decode_image(msg, msgtype).shape
                    except ValueError as exc:
                        raise RosbagImportError(f"key {k!r}: {topic} at t={t / 1e9:.3f} s: {exc}") from None
                    if r.shape is not None and r.shape != image_shape[k]:
                        raise RosbagImportError(
                            f"key {k!r}: frames on {topic} are {image_shape[k]}, the robot_spec says {r.shape}"
                        )
                    r.shape = image_shape[k]
                elif msgtype == _IMAGE_TYPES[0] and (int(msg.height), int(msg.width)) != image_shape[k][:2]:
                    raise RosbagImportError(
                        f"key {k!r}: shape changes mid-bag on {topic} at t={t / 1e9:.3f} s: "
                        f"{msg.width}x{msg.height} after {image_shape[k][1]}x{image_shape[k][0]}; "
                        "a key's shape must stay fixed (split the bag)"
                    )
    if not clock:
        raise RosbagImportError(
            f"no messages on the step topic {clock_topic} in {bag.path}; topics in the bag: {_topic_list(bag)}"
        )
    if empty := [f"{k} ({mapping.keys[k].topic})" for k in readers if not stamps[k]]:
        raise RosbagImportError(f"no messages for key(s) {empty} in {bag.path}: remove them from the mapping")
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in stamps.items()}
    order = {k: np.argsort(v, kind="stable") for k, v in arr.items()}  # ties keep bag (receive) order
    return _Recorded(
        stamps=arr,
        order=order,
        sorted_stamps={k: arr[k][order[k]] for k in arr},
        values={k: np.stack(v)[order[k]] for k, v in values.items()},
        image_shape=image_shape,
        clock=np.sort(np.asarray(clock, dtype=np.int64), kind="stable"),
        markers=sorted(markers, key=lambda m: m[0]),
    )


@dataclass
class _Plan:
    """The aligned steps: stamps (ns), per key the sorted-message index of each step, the episodes."""

    steps: np.ndarray
    idx: dict[str, np.ndarray]
    episodes: list[tuple[int, int]]
    in_episode: np.ndarray
    fps: float
    steps_total: int
    skipped_missing: int
    dropped_short: int


def _plan_steps(bag: BagReader, mapping: BagMapping, rec: _Recorded) -> _Plan:
    steps = rec.clock
    if mapping.rate is not None:  # ticks over each stretch of the action topic
        period = int(round(1e9 / mapping.rate))
        stretches = cut_episodes(steps, mapping.gap, min_steps=1)[0]
        steps = np.concatenate([np.arange(steps[a], steps[b - 1] + 1, period, dtype=np.int64) for a, b in stretches])
    idx = {k: latest_before(steps, s) for k, s in rec.sorted_stamps.items()}
    complete = np.all(np.stack([i >= 0 for i in idx.values()]), axis=0)  # every key has had a message
    total, keep = int(steps.size), np.flatnonzero(complete)
    steps, idx = steps[keep], {k: i[keep] for k, i in idx.items()}
    if mapping.episode_topic is not None and not rec.markers:
        raise RosbagImportError(
            f"the episode marker topic {mapping.episode_topic} has no start/stop messages "
            "(std_msgs/Bool, or String start/stop/reset or JSON {\"recording\": bool})"
        )
    episodes, dropped = cut_episodes(steps, mapping.gap, rec.markers, mapping.min_steps)
    if not episodes:
        raise RosbagImportError(
            f"no episode with >= {mapping.min_steps} steps in {bag.path} ({steps.size} aligned steps, "
            f"{dropped} shorter episodes): lower `min_steps`, or check the gap / marker settings"
        )
    fps = mapping.fps or mapping.rate
    if fps is None:
        diffs = np.concatenate([np.diff(steps[a:b]) for a, b in episodes])
        diffs = diffs[diffs > 0]
        if not diffs.size:
            raise RosbagImportError("cannot estimate fps (every step has the same stamp): set `fps` in the mapping")
        fps = round(1e9 / float(np.median(diffs)), 3)
    in_episode = np.zeros(steps.size, dtype=bool)
    for a, b in episodes:
        in_episode[a:b] = True
    return _Plan(steps, idx, episodes, in_episode, float(fps), total, total - keep.size, dropped)


def _schema(mapping: BagMapping, readers: dict[str, _KeyReader], fps: float) -> StoreSchema:
    specs = {k: r.spec() for k, r in readers.items()}
    obs = {k.removeprefix("obs."): s for k, s in specs.items() if k.startswith("obs.")}
    extras = {k: s for k, s in specs.items() if not k.startswith("obs.") and k not in ("action", "reward", "done")}
    try:
        return StoreSchema.build(
            obs=obs,
            action=specs["action"],
            fps=fps,
            extras=extras,
            robot={"name": mapping.robot} if mapping.robot else None,
        )
    except SchemaError as exc:
        raise RosbagImportError(f"the mapped keys do not make a store schema: {exc}") from exc


def _write_episodes(
    config: RosbagImportConfig,
    bag: BagReader,
    mapping: BagMapping,
    rec: _Recorded,
    plan: _Plan,
    schema: StoreSchema,
    summary: RosbagImportSummary,
) -> None:
    from tqdm.auto import tqdm

    defaults: dict[str, Any] = {"source": mapping.source}
    if mapping.task:
        defaults["task"] = mapping.task
    if mapping.robot:
        defaults["robot"] = mapping.robot
    topics_record = {k: km.topic for k, km in mapping.keys.items()}
    image_keys = [k for k in mapping.keys if mapping.keys[k].is_image]
    # per image key and step: the message's ordinal in bag order on its topic
    frame_of = {k: rec.order[k][plan.idx[k]] for k in image_keys}
    topics = {k: mapping.keys[k].topic for k in image_keys}
    frames = _FrameStream(bag, topics, frame_of, plan.in_episode, rec.image_shape)
    steps, idx = plan.steps, plan.idx
    writer = EpisodeWriter(config.out, schema, defaults=defaults, overwrite=config.overwrite)
    bar = tqdm(total=int(plan.in_episode.sum()), desc=f"write {Path(config.out).name}", unit="step",
               disable=not config.progress)
    try:
        for a, b in plan.episodes:
            for i in range(a, b):
                step: dict[str, Any] = {k: v[idx[k][i]] for k, v in rec.values.items()}
                for k in image_keys:
                    step[k] = frames.get(k, i)
                step["timestamp"] = int(steps[i]) / 1_000_000_000  # int / int: correctly rounded
                writer.add_step_dict(step)
                bar.update()
            meta: dict[str, Any] = {
                "start_time": datetime.fromtimestamp(int(steps[a]) / 1e9, tz=timezone.utc).isoformat(),
                "import": {
                    "format": "rosbag2",
                    "bag": str(bag.path),
                    "topics": topics_record,
                    "start_ns": int(steps[a]),
                    "end_ns": int(steps[b - 1]),
                },
            }
            if mapping.success is not None:
                meta["success"] = bool(mapping.success)
            index = writer.end_episode(meta)
            summary.episodes.append((index, b - a, int(steps[a]) / 1e9, int(steps[b - 1] - steps[a]) / 1e9))
    finally:
        bar.close()
        frames.close()
        writer.close()  # an episode in progress (an error mid-episode) is discarded; committed ones stay


class _FrameStream:
    """Frames used by the written steps, decoded in a second pass over the image topics in
    bag order; each is kept only until the last step that uses it is written."""

    def __init__(self, bag: BagReader, topics: dict[str, str], frame_of: dict[str, np.ndarray],
                 used: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> None:
        self.bag, self.topics, self.frame_of, self.shapes = bag, topics, frame_of, shapes
        self.last_use: dict[str, dict[int, int]] = {}
        for k, ordinals in frame_of.items():
            last: dict[int, int] = {}
            for step, o in enumerate(ordinals):
                if used[step]:
                    last[int(o)] = step
            self.last_use[k] = last
        self.cache: dict[str, dict[int, np.ndarray]] = {k: {} for k in topics}
        self.seen: dict[str, int] = {t: 0 for t in set(topics.values())}
        self._keys_of: dict[str, list[str]] = {}
        for k, t in topics.items():
            self._keys_of.setdefault(t, []).append(k)
        self._it = bag.messages(sorted(set(topics.values()))) if topics else iter(())

    def get(self, key: str, step: int) -> np.ndarray:
        ordinal = int(self.frame_of[key][step])
        cache = self.cache[key]
        while ordinal not in cache:
            try:
                topic, t, msg = next(self._it)
            except StopIteration:
                raise RosbagImportError(
                    f"key {key!r}: frame {ordinal} of {self.topics[key]} vanished on the second read"
                ) from None
            n = self.seen[topic]
            self.seen[topic] = n + 1
            for k in self._keys_of[topic]:
                if n in self.last_use[k]:
                    try:
                        frame = decode_image(msg, self.bag.topics[topic])
                    except ValueError as exc:
                        raise RosbagImportError(f"key {k!r}: {topic} at t={t / 1e9:.3f} s: {exc}") from None
                    if frame.shape != self.shapes[k]:
                        raise RosbagImportError(
                            f"key {k!r}: shape changes mid-bag on {topic} at t={t / 1e9:.3f} s: {frame.shape} after "
                            f"{self.shapes[k]}; a key's shape must stay fixed (split the bag)"
                        )
                    self.cache[k][n] = frame
        frame = cache[ordinal]
        if self.last_use[key].get(ordinal) == step:
            del cache[ordinal]
        return frame

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
