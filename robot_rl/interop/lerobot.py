"""LeRobotDataset v3 <-> episode store, through the real ``lerobot`` library (0.6.x).

Export writes with ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` /
``finalize`` (parquet + mp4 videos, ``meta/info.json``, ``meta/stats.json``,
``meta/tasks.parquet``, ``meta/episodes/``); import reads any local v3 dataset with
``LeRobotDataset(repo_id, root=ROOT)`` (offline: nothing is downloaded)::

    robot-rl data export --to lerobot lift.zarr out/lift_lerobot --repo-id me/lift
    robot-rl data import --from lerobot out/lift_lerobot lift_again.zarr

Mapping (store key <-> LeRobot feature):

============================  =====================================  ================================
store                         LeRobot                                 notes
============================  =====================================  ================================
``obs.image.<cam>`` uint8     ``observation.images.<cam>``            ``video`` (lossy) or ``image``
HWC, 3 channels                                                       (PNG, exact) with ``videos=False``
low-dim ``obs.<name>``        ``observation.state`` float32 (D,)      the low-dim obs keys concatenated
                                                                      in schema order, ``names`` per
                                                                      element (``joint_pos.j0``...)
``obs.<name>`` not float32    also ``observation.<name>``             exact copy (state holds a float32
or not 1-D (and uint8 images                                          cast); images of 1/4 channels
of 1 or 4 channels)                                                   are exported only here
``action``                    ``action``                              dtype and names kept
``reward``                    ``next.reward`` float32
``done``                      ``next.done`` bool
``timestamp`` (float64 s)     ``robot_rl.timestamp`` float64          LeRobot's own ``timestamp`` is
                                                                      ``frame_index / fps``
extras ``<key>``              ``<key>``
episode record ``task``       the frame's ``task`` (tasks.parquet)    ``""`` when the record has none
schema ``fps``                ``fps`` (int)                           non-integer fps is refused
schema ``robot["name"]``      ``robot_type``
============================  =====================================  ================================

Everything LeRobot has no field for (per-key units/limits, the full schema, every
episode record: success, source, operator, tags, ...) goes to ``meta/robot_rl.json``,
a file LeRobot ignores; import uses it (when its episode lengths still match the
dataset) to restore the store exactly: every numeric key bit for bit, frame counts,
episode boundaries and records; camera frames exactly with ``videos=False`` and within
video-codec error otherwise.

Datasets made elsewhere (no ``meta/robot_rl.json``) import generically:
``observation.state`` -> ``obs.state``, ``observation.images.<cam>`` (and any other
image/video ``observation.<cam>``) -> ``obs.image.<cam>``, other ``observation.<name>``
-> ``obs.<name>``, ``action`` -> ``action``, ``next.reward`` / ``next.done`` ->
``reward`` / ``done`` (0 / false when absent), ``timestamp`` -> ``timestamp``, other
numeric columns -> extras of the same name; ``frame_index``, ``index``,
``episode_index``, ``task_index`` become the episode boundaries and each episode's
``task`` (``robot_rl.timestamp``, when present, is the recorded clock and becomes ``timestamp``). Depth videos and string/language columns are not supported (an error names
them; ``skip_keys`` leaves them out).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data import EpisodeStore, EpisodeWriter, KeySpec, StoreSchema
from robot_rl.interop.summary import ConversionSummary

log = logging.getLogger(__name__)

ROBOT_RL_META = "meta/robot_rl.json"
"""Side file that makes an exported dataset import back exactly (LeRobot ignores it)."""
BLOCK_FORMAT = "robot_rl.lerobot_export"
BLOCK_VERSION = 1
STATE = "observation.state"
IMAGES_PREFIX = "observation.images."
TIMESTAMP_FEATURE = "robot_rl.timestamp"
LEROBOT_DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_INSTALL = "pip install 'robot-rl[lerobot]'"


class LeRobotFormatError(ValueError):
    """A LeRobot dataset (or a store to export) that cannot be converted; the message says why and what to do."""


def _lerobot() -> Any:
    try:
        from lerobot.datasets import lerobot_dataset
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"LeRobot interop needs the lerobot library: {_INSTALL} ({exc})") from exc
    return lerobot_dataset


# ---------------------------------------------------------------------------------------------- export
def _int_fps(fps: float) -> int:
    rounded = round(fps)
    if rounded < 1 or not math.isclose(fps, rounded, abs_tol=1e-6):
        raise LeRobotFormatError(
            f"store fps {fps:g} is not an integer; LeRobotDataset needs an integer fps "
            "(resample the store or record at an integer rate)"
        )
    return int(rounded)


def _element_names(name: str, spec: KeySpec) -> list[str]:
    if spec.shape == ():
        return [name]
    if spec.names is not None:
        return [f"{name}.{n}" for n in spec.names]
    return [f"{name}.{i}" for i in range(int(np.prod(spec.shape)))]


def _is_rgb(spec: KeySpec) -> bool:
    return spec.is_image and spec.shape[-1] == 3


def _lerobot_shape(spec: KeySpec) -> tuple[int, ...]:
    return spec.shape if spec.shape else (1,)


def plan_export(schema: StoreSchema, videos: bool = True) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """LeRobot ``features`` for a store schema, and the ``meta/robot_rl.json`` key map.

    The key map has ``state``: ``[[store key, start, stop], ...]`` slices of
    ``observation.state`` and ``keys``: ``{store key: lerobot feature}`` for every key
    stored in a column of its own.
    """
    features: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}
    state: list[list[Any]] = []
    state_names: list[str] = []
    taken = set(LEROBOT_DEFAULT_COLUMNS) | {STATE, "task", "next.reward", "next.done", TIMESTAMP_FEATURE}
    for key, spec in schema.keys.items():
        if not key.startswith("obs."):
            continue
        name = key[len("obs.") :]
        if _is_rgb(spec):
            cam = name[len("image.") :] if name.startswith("image.") else name
            feature = IMAGES_PREFIX + cam
            features[feature] = {
                "dtype": "video" if videos else "image",
                "shape": spec.shape,
                "names": ["height", "width", "channels"],
            }
            keys[key] = feature
            continue
        if not spec.is_image:
            start = len(state_names)
            state_names += _element_names(name, spec)
            state.append([key, start, len(state_names)])
        if spec.is_image or spec.dtype != "float32" or len(spec.shape) > 1:
            feature = f"observation.{name}"
            if feature in taken or feature in features:
                raise LeRobotFormatError(f"store key {key!r} maps to LeRobot feature {feature!r}, which is already used")
            features[feature] = {"dtype": spec.dtype, "shape": _lerobot_shape(spec), "names": spec.names and list(spec.names)}
            keys[key] = feature
    if state_names:
        features[STATE] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    action = schema.keys["action"]
    features["action"] = {
        "dtype": action.dtype,
        "shape": _lerobot_shape(action),
        "names": list(action.names) if action.names else None,
    }
    keys["action"] = "action"
    features["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    features[TIMESTAMP_FEATURE] = {"dtype": "float64", "shape": (1,), "names": None}
    keys.update({"reward": "next.reward", "done": "next.done", "timestamp": TIMESTAMP_FEATURE})
    for key, spec in schema.keys.items():
        if key.startswith("obs.") or key in keys:
            continue
        if key in taken or key in features:
            raise LeRobotFormatError(f"extra key {key!r} clashes with a LeRobot column; rename it before exporting")
        features[key] = {"dtype": spec.dtype, "shape": _lerobot_shape(spec), "names": spec.names and list(spec.names)}
        keys[key] = key
    return features, {"state": state, "keys": keys}


def _frame(ep: Mapping[str, np.ndarray], t: int, features: Mapping[str, dict[str, Any]], plan: Mapping[str, Any], task: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"task": task}
    if plan["state"]:
        frame[STATE] = np.concatenate([np.asarray(ep[k][t], dtype=np.float32).reshape(-1) for k, _, _ in plan["state"]])
    for key, feature in plan["keys"].items():
        ft = features[feature]
        value = np.asarray(ep[key][t])
        if ft["dtype"] in ("image", "video"):
            frame[feature] = value
        else:
            frame[feature] = value.astype(ft["dtype"]).reshape(ft["shape"])
    return frame


def export_lerobot(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    videos: bool = True,
    episodes: Sequence[int] | None = None,
    default_task: str = "",
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Write a store's committed episodes as a LeRobotDataset v3 at ``out``.

    Args:
        store: the ``.zarr`` episode store.
        out: dataset root to create (must not exist unless ``overwrite``).
        repo_id: LeRobot repo id recorded in the dataset (default ``local/<out name>``).
        videos: camera frames as mp4 video (lossy, small) or PNG images (exact, large).
        episodes: store episode indices to export (default: all committed).
        default_task: task string for episodes whose record has no ``task``.
        overwrite: delete ``out`` first when it exists.
        progress: show a progress bar (steps).

    Returns:
        a :class:`ConversionSummary`. Load the result with
        ``LeRobotDataset(repo_id, root=out)``.
    """
    t0 = time.monotonic()
    lerobot_dataset = _lerobot()
    from tqdm.auto import tqdm

    src = EpisodeStore(store)
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; choose a new directory or pass overwrite=True (--overwrite)")
        import shutil

        shutil.rmtree(out)
    repo_id = repo_id or f"local/{out.name}"
    fps = _int_fps(src.schema.fps)
    features, plan = plan_export(src.schema, videos=videos)
    chosen = list(range(len(src))) if episodes is None else [int(e) % len(src) if len(src) else int(e) for e in episodes]
    if not chosen:
        raise LeRobotFormatError(f"{store} has no committed episodes to export")
    robot_type = src.schema.robot.get("name") if isinstance(src.schema.robot.get("name"), str) else None
    dataset = lerobot_dataset.LeRobotDataset.create(
        repo_id, fps=fps, features=features, root=out, robot_type=robot_type, use_videos=videos
    )
    records: list[dict[str, Any]] = []
    lengths: list[int] = []
    total = int(sum(src.episode_lengths[chosen]))
    try:
        with tqdm(total=total, desc=f"export {src.path.name}", unit="step", disable=not progress, dynamic_ncols=True) as bar:
            for e in chosen:
                ep = src.episode(e)
                record = src.record(e)
                task = record.get("task") if isinstance(record.get("task"), str) else default_task
                n = len(ep["action"])
                for t in range(n):
                    dataset.add_frame(_frame(ep, t, features, plan, task))
                    bar.update(1)
                dataset.save_episode()
                records.append(record)
                lengths.append(n)
    finally:
        dataset.finalize()
    block = {
        "format": BLOCK_FORMAT,
        "version": BLOCK_VERSION,
        "source_store": str(src.path),
        "source_fingerprint": src.fingerprint(),
        "source_episodes": chosen,
        "schema": src.schema.to_json(),
        "state": plan["state"],
        "keys": plan["keys"],
        "episode_lengths": lengths,
        "episodes": records,
    }
    (out / ROBOT_RL_META).write_text(json.dumps(block, indent=1, allow_nan=False))
    summary = ConversionSummary(str(src.path), f"{out} ({repo_id})", len(chosen), total, seconds=time.monotonic() - t0)
    for key, spec in src.schema.keys.items():
        feature = plan["keys"].get(key)
        targets = [f for f in (feature,) if f]
        if any(k == key for k, _, _ in plan["state"]):
            targets.insert(0, STATE)
        how = "video (lossy)" if feature and features[feature]["dtype"] == "video" else "exact"
        summary.keys.append((key, " + ".join(targets), str(spec.shape), spec.dtype, how))
    if videos and any(f["dtype"] == "video" for f in features.values()):
        summary.notes.append("camera frames are mp4 video: they import back within codec error (use --no-videos for exact)")
    return summary


# ---------------------------------------------------------------------------------------------- import
def _check_v3(root: Path) -> dict[str, Any]:
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise LeRobotFormatError(
            f"{root} is not a local LeRobotDataset: {info_path} is missing "
            "(download it first, e.g. `huggingface-cli download --repo-type dataset REPO --local-dir ROOT`)"
        )
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise LeRobotFormatError(f"{info_path} is not readable JSON: {exc}") from exc
    version = str(info.get("codebase_version", "")) if isinstance(info, dict) else ""
    if not version.startswith("v3."):
        raise LeRobotFormatError(
            f"{root} is a LeRobotDataset {version or '(no codebase_version)'}, not v3; convert it with lerobot's "
            "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id REPO` first"
        )
    return info


def _read_block(root: Path) -> dict[str, Any] | None:
    path = root / ROBOT_RL_META
    if not path.is_file():
        return None
    try:
        block = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: not readable JSON (%s); importing generically", path, exc)
        return None
    if not isinstance(block, dict) or block.get("format") != BLOCK_FORMAT:
        log.warning("ignoring %s: not a robot_rl export block; importing generically", path)
        return None
    if block.get("version") != BLOCK_VERSION:
        log.warning("ignoring %s: version %r (this robot_rl reads %d); importing generically", path, block.get("version"), BLOCK_VERSION)
        return None
    return block


def _column(table: Any, name: str, start: int, stop: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Rows ``[start, stop)`` of a parquet column as ``(n, *shape)`` of ``dtype``, exactly as stored."""
    import pyarrow as pa

    col = table.column(name).slice(start, stop - start).combine_chunks()
    n = stop - start
    try:
        values = col
        while pa.types.is_fixed_size_list(values.type):
            values = values.flatten()
        arr = values.to_numpy(zero_copy_only=False)
        if arr.size != n * int(np.prod(shape, dtype=np.int64)):
            raise ValueError("size mismatch")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError):
        arr = np.asarray(col.to_pylist())
    return np.asarray(arr).astype(dtype, copy=False).reshape((n, *shape))


@dataclass
class _Source:
    """How one store key is read from the LeRobot dataset."""

    key: str
    spec: KeySpec
    feature: str | None  # column or camera; None: a default value
    kind: str  # "column" | "state" | "video" | "image" | "default"
    start: int = 0
    stop: int = 0


def _generic_plan(features: Mapping[str, dict[str, Any]], fps: float, robot_type: str | None, skip: set[str]) -> tuple[StoreSchema, list[_Source], list[str]]:
    """Store schema and key sources for a dataset made outside robot_rl."""
    sources: list[_Source] = []
    notes: list[str] = []
    specs: dict[str, KeySpec] = {}

    def add(key: str, spec: KeySpec, feature: str | None, kind: str) -> None:
        if key in specs:
            raise LeRobotFormatError(f"LeRobot feature {feature!r} maps to store key {key!r}, which another feature already uses")
        specs[key] = spec
        sources.append(_Source(key, spec, feature, kind))

    for name, ft in features.items():
        if name in LEROBOT_DEFAULT_COLUMNS or name in skip or name == TIMESTAMP_FEATURE:
            continue
        dtype = ft.get("dtype")
        shape = tuple(int(s) for s in ft.get("shape", ()))
        names = ft.get("names")
        info = ft.get("info") or {}
        if dtype in ("video", "image"):
            if info.get("is_depth_map") or info.get("video.is_depth_map"):
                raise LeRobotFormatError(f"LeRobot feature {name!r} is a depth map, which robot_rl does not import yet; pass skip_keys=[{name!r}] (--skip {name})")
            hwc = _hwc(name, shape, names)
            cam = name[len(IMAGES_PREFIX) :] if name.startswith(IMAGES_PREFIX) else name.split(".")[-1]
            add(f"obs.image.{_safe(cam)}", KeySpec(hwc, "uint8"), name, dtype)
            continue
        if dtype in ("string", "language") or not isinstance(dtype, str):
            raise LeRobotFormatError(
                f"LeRobot feature {name!r} has dtype {dtype!r}, which an episode store cannot hold "
                f"(numbers, images and videos only); pass skip_keys=[{name!r}] (--skip {name})"
            )
        try:
            np.dtype(dtype)
        except TypeError as exc:
            raise LeRobotFormatError(f"LeRobot feature {name!r} has unsupported dtype {dtype!r}; skip it with --skip {name}") from exc
        element_names = tuple(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else None
        if name in ("next.reward", "next.done"):
            if shape not in ((1,), ()):
                raise LeRobotFormatError(f"LeRobot feature {name!r} has shape {shape}; expected one value per frame")
            key = "reward" if name == "next.reward" else "done"
            add(key, KeySpec((), "float32" if key == "reward" else "bool"), name, "column")
            continue
        spec_shape = shape
        if name == "action":
            key = "action"
        elif name.startswith("observation."):
            key = "obs." + _safe(name[len("observation.") :])
        else:
            key = _safe(name)
            spec_shape = () if shape == (1,) else shape
        if element_names is not None and (len(spec_shape) != 1 or len(element_names) != spec_shape[0]):
            element_names = None
        add(key, KeySpec(spec_shape, dtype, names=element_names), name, "column")
    if "action" not in specs:
        raise LeRobotFormatError("the LeRobot dataset has no 'action' feature; an episode store needs actions")
    if not any(k.startswith("obs.") for k in specs):
        raise LeRobotFormatError("the LeRobot dataset has no observation.* feature; an episode store needs observations")
    for key, spec in (("reward", KeySpec((), "float32")), ("done", KeySpec((), "bool"))):
        if key not in specs:
            add(key, spec, None, "default")
            notes.append(f"no next.{key} in the dataset: {key} is {'0' if key == 'reward' else 'false'} on every step")
    clock = TIMESTAMP_FEATURE if TIMESTAMP_FEATURE in features and TIMESTAMP_FEATURE not in skip else "timestamp"
    add("timestamp", KeySpec((), "float64", units="s"), clock, "column")
    robot = {"name": robot_type} if robot_type else {}
    schema = StoreSchema(keys={s.key: s.spec for s in sources}, fps=fps, robot=robot)
    return schema, sources, notes


def _hwc(name: str, shape: tuple[int, ...], names: Any) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise LeRobotFormatError(f"LeRobot camera {name!r} has shape {shape}; expected (height, width, channels)")
    if isinstance(names, list) and len(names) == 3 and names[0] in ("channels", "channel", "c"):
        return (shape[1], shape[2], shape[0])
    return shape  # type: ignore[return-value]


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    return cleaned if cleaned and re.match(r"[A-Za-z0-9_]", cleaned[0]) else f"k{cleaned}"


def _block_plan(block: Mapping[str, Any], features: Mapping[str, dict[str, Any]]) -> tuple[StoreSchema, list[_Source]]:
    schema = StoreSchema.from_json(block["schema"])
    sources: list[_Source] = []
    own = dict(block.get("keys") or {})
    state = {k: (int(a), int(b)) for k, a, b in block.get("state") or []}
    for key, spec in schema.keys.items():
        feature = own.get(key)
        if feature is not None:
            if feature not in features:
                raise LeRobotFormatError(f"{ROBOT_RL_META} maps {key!r} to feature {feature!r}, which the dataset lacks")
            kind = features[feature]["dtype"] if features[feature]["dtype"] in ("video", "image") else "column"
            sources.append(_Source(key, spec, feature, kind))
        elif key in state:
            sources.append(_Source(key, spec, STATE, "state", *state[key]))
        else:
            raise LeRobotFormatError(f"{ROBOT_RL_META} does not say where store key {key!r} is")
    return schema, sources


def _episode_bounds(meta: Any, table: Any) -> list[tuple[int, int]]:
    ep_col = np.asarray(table.column("episode_index").to_numpy(), dtype=np.int64)
    idx_col = np.asarray(table.column("index").to_numpy(), dtype=np.int64)
    if idx_col.size and not np.array_equal(idx_col, np.arange(idx_col.size)):
        raise LeRobotFormatError("the dataset's 'index' column is not 0..N-1 in file order; is the dataset complete?")
    bounds = []
    for e in range(int(meta.total_episodes)):
        ep = meta.episodes[e]
        start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
        if not (0 <= start < stop <= ep_col.size) or np.any(ep_col[start:stop] != e):
            raise LeRobotFormatError(f"episode {e}: meta/episodes says rows [{start}, {stop}) but the data disagrees")
        bounds.append((start, stop))
    return bounds


def import_lerobot(
    root: str | os.PathLike[str],
    store_out: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    source: str = "teleop",
    skip_keys: Sequence[str] = (),
    use_robot_rl_meta: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Read a local LeRobotDataset v3 into a new episode store.

    Args:
        root: the dataset root (holding ``meta/info.json``); never downloaded.
        store_out: ``.zarr`` store to create.
        repo_id: LeRobot repo id (only a label here; default ``local/<root name>``).
        source: episode ``source`` for datasets without robot_rl records (teleop, policy, ...).
        skip_keys: LeRobot features to leave out (e.g. string or depth columns).
        use_robot_rl_meta: restore the exact store from ``meta/robot_rl.json`` when present.
        overwrite: delete ``store_out`` first when it exists.
        progress: show a progress bar (episodes).
    """
    t0 = time.monotonic()
    root = Path(root)
    _check_v3(root)
    lerobot_dataset = _lerobot()
    repo_id = repo_id or f"local/{root.name}"
    dataset = lerobot_dataset.LeRobotDataset(repo_id, root=root)
    meta = dataset.meta
    features = dict(meta.features)
    table = dataset.hf_dataset.data
    if hasattr(table, "table"):
        table = table.table
    bounds = _episode_bounds(meta, table)
    notes: list[str] = []
    block = _read_block(root) if use_robot_rl_meta else None
    if block is not None and [b - a for a, b in bounds] != list(block.get("episode_lengths", [])):
        notes.append(f"{ROBOT_RL_META} does not match the dataset's episodes (edited since export?): ignored")
        block = None
    if block is not None:
        schema, sources = _block_plan(block, features)
        records = [dict(r) for r in block["episodes"]]
    else:
        schema, sources, plan_notes = _generic_plan(features, float(meta.fps), meta.robot_type, set(skip_keys))
        notes += plan_notes
        records = []
    tasks = meta.tasks.index.tolist() if meta.tasks is not None else []
    task_index = np.asarray(table.column("task_index").to_numpy(), dtype=np.int64)
    images_numpy = None
    if any(s.kind == "image" for s in sources):
        images_numpy = dataset.hf_dataset.with_format("numpy", columns=[s.feature for s in sources if s.kind == "image"])
    if Path(store_out).exists() and overwrite:
        import shutil

        shutil.rmtree(store_out)
    from tqdm.auto import tqdm

    total = 0
    with EpisodeWriter(store_out, schema, defaults={"source": source}) as writer:
        for e, (start, stop) in enumerate(tqdm(bounds, desc=f"import {root.name}", unit="episode", disable=not progress)):
            n = stop - start
            data: dict[str, np.ndarray] = {}
            for s in sources:
                data[s.key] = _read_source(s, dataset, table, images_numpy, e, start, stop, meta)
            if block is None:
                first = int(task_index[start])
                record: dict[str, Any] = {"task": tasks[first] if 0 <= first < len(tasks) else None}
                record["lerobot_episode_index"] = e
            else:
                record = records[e]
            for t in range(n):
                writer.add_step_dict({k: v[t] for k, v in data.items()})
            writer.end_episode(record)
            total += n
    summary = ConversionSummary(f"{root} ({repo_id})", str(store_out), len(bounds), total, seconds=time.monotonic() - t0, notes=notes)
    for s in sources:
        how = {"video": "video decode", "state": f"{STATE}[{s.start}:{s.stop}]", "default": "default"}.get(s.kind, "exact")
        summary.keys.append((s.feature or "-", s.key, str(s.spec.shape), s.spec.dtype, how))
    return summary


def _read_source(s: _Source, dataset: Any, table: Any, images_numpy: Any, episode: int, start: int, stop: int, meta: Any) -> np.ndarray:
    n = stop - start
    if s.kind == "default":
        return np.zeros((n, *s.spec.shape), dtype=s.spec.np_dtype)
    if s.kind == "state":
        width = int(meta.features[STATE]["shape"][0])
        state = _column(table, STATE, start, stop, "float32", (width,))
        return state[:, s.start : s.stop].astype(s.spec.dtype).reshape((n, *s.spec.shape))
    if s.kind == "column":
        assert s.feature is not None
        return _column(table, s.feature, start, stop, s.spec.dtype, s.spec.shape)
    if s.kind == "image":
        frames = np.asarray(images_numpy[start:stop][s.feature])
    else:
        frames = _decode_video(dataset, meta, s.feature, episode, n)
    return _to_hwc(frames, s.key, s.spec.shape, episode)


def _decode_video(dataset: Any, meta: Any, feature: str, episode: int, n: int) -> np.ndarray:
    from lerobot.datasets.video_utils import decode_video_frames

    ep = meta.episodes[episode]
    path = Path(dataset.root) / meta.get_video_file_path(episode, feature)
    offset = float(ep[f"videos/{feature}/from_timestamp"])
    stamps = [offset + i / meta.fps for i in range(n)]
    frames = decode_video_frames(path, stamps, dataset.tolerance_s, dataset._video_backend, return_uint8=True)
    return np.asarray(frames.numpy())


def _to_hwc(frames: np.ndarray, key: str, shape: tuple[int, ...], episode: int) -> np.ndarray:
    """Decoded frames (N, C, H, W) or (N, H, W, C), uint8 or float in [0, 1] -> (N, H, W, C) uint8."""
    if frames.ndim != 4:
        raise LeRobotFormatError(f"episode {episode}, {key}: decoded frames have shape {frames.shape}, expected 4-D")
    if tuple(frames.shape[1:]) != shape and tuple(frames.shape[1:]) == (shape[2], shape[0], shape[1]):
        frames = frames.transpose(0, 2, 3, 1)
    if tuple(frames.shape[1:]) != shape:
        raise LeRobotFormatError(f"episode {episode}, {key}: decoded frames have shape {frames.shape[1:]}, the dataset declares {shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames)


__all__ = ["LeRobotFormatError", "export_lerobot", "import_lerobot", "plan_export"]
