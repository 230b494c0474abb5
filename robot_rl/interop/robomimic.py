"""robomimic HDF5 -> episode store, so robomimic-format datasets train here unchanged.

    robot-rl data import --from robomimic lift_ph_low_dim.hdf5 lift_ph.zarr
    robot-rl train --algo bc --data lift_ph.zarr --steps 20000

robomimic's layout (``robomimic/scripts/conversion``, ``dataset_states_to_obs.py``)::

    data/                       attrs: total (steps), env_args (JSON: env_name, type, env_kwargs)
      demo_<i>/                 attrs: num_samples
        obs/<key>               (T, ...) low-dim float (robot0_eef_pos...) or uint8 HWC images (*_image)
        actions                 (T, A)
        rewards, dones          (T,)
        states                  (T, S) simulator states (optional)
    mask/<filter>               (N,) bytes: demo names in the filter ("train", "valid", "20_percent"...)

Mapping (robomimic -> store):

======================  =====================================  ===========================================
robomimic               store                                  notes
======================  =====================================  ===========================================
``obs/<name>_image``    ``obs.image.<name>`` uint8 HWC         e.g. ``agentview_image`` -> ``obs.image.agentview``
``obs/<key>``           ``obs.<key>``                          dtype and shape as in the file
``actions``             ``action``
``rewards``             ``reward`` float32                     0 when absent
``dones``               ``done`` bool                          false when absent
``states``              ``sim_state`` (extra)                  with ``states=True``, when every demo has it
(step index) / fps      ``timestamp`` float64 s                ``t / fps``
``env_args.env_name``   episode ``task``, schema ``robot``     ``robot`` also keeps ``env_args``
``env_kwargs.control_freq``  schema ``fps``                    default 20 Hz (robosuite's) when absent
``mask/<filter>``       episode ``tags`` (list of filters)     ``store.filter(tag="train")``
``demo_<i>``            episode ``robomimic_demo``             episodes ordered by i (demo_2 before demo_10)
======================  =====================================  ===========================================

Episode ``success``: robomimic marks the step where the task is solved as done, so
``success = any(dones)`` (null when the file has no ``dones``). ``source`` defaults to
``teleop`` (robomimic's PH/MH datasets are human demonstrations). Every number is
copied exactly; nothing is resized or re-encoded.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data import EpisodeWriter, KeySpec, StoreSchema
from robot_rl.interop.summary import ConversionSummary

DEFAULT_FPS = 20.0
"""robosuite's default control frequency (Hz), used when env_args has no control_freq."""
_DEMO_RE = re.compile(r"^demo_(\d+)$")
_INSTALL = "pip install 'robot-rl[interop]'"


class RobomimicFormatError(ValueError):
    """A file that is not a usable robomimic dataset; the message names the demo and key."""


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"robomimic import needs h5py: {_INSTALL} ({exc})") from exc
    return h5py


def demo_names(data: Any) -> list[str]:
    """``demo_<i>`` groups of ``data``, ordered by i (demo_2 before demo_10)."""
    names = [n for n in data.keys() if _DEMO_RE.match(n)]
    return sorted(names, key=lambda n: int(_DEMO_RE.match(n).group(1)))  # type: ignore[union-attr]


def store_key(obs_key: str) -> str:
    """robomimic obs key -> store key: ``agentview_image`` -> ``obs.image.agentview``."""
    if obs_key.endswith("_image"):
        return f"obs.image.{obs_key[: -len('_image')]}"
    return f"obs.{obs_key}"


def _env_args(data: Any) -> dict[str, Any]:
    raw = data.attrs.get("env_args")
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise RobomimicFormatError(f"data attribute env_args is not JSON ({exc}); robomimic writes json.dumps(env_meta) there") from exc
    return parsed if isinstance(parsed, dict) else {}


def _masks(f: Any) -> dict[str, list[str]]:
    """Demo name -> the filters (``mask/<filter>``) it belongs to."""
    tags: dict[str, list[str]] = {}
    if "mask" not in f:
        return tags
    for name in sorted(f["mask"].keys()):
        values = f["mask"][name][()]
        for raw in np.atleast_1d(values):
            demo = raw.decode() if isinstance(raw, (bytes, np.bytes_)) else str(raw)
            tags.setdefault(demo, []).append(name)
    return tags


def _dataset(group: Any, path: str, demo: str, what: str) -> Any:
    if path not in group:
        raise RobomimicFormatError(f"{demo} has no '{path}' dataset ({what}); is this a robomimic file?")
    node = group[path]
    if not hasattr(node, "shape"):
        raise RobomimicFormatError(f"{demo}/{path} is a group, expected a dataset ({what})")
    return node


def import_robomimic(
    hdf5: str | os.PathLike[str],
    store_out: str | os.PathLike[str],
    *,
    obs_keys: Sequence[str] | None = None,
    fps: float | None = None,
    source: str = "teleop",
    states: bool = False,
    filter_key: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Import a robomimic HDF5 file into a new episode store.

    Args:
        hdf5: the robomimic ``.hdf5`` file.
        store_out: ``.zarr`` store to create.
        obs_keys: robomimic obs keys to import (``robot0_eef_pos agentview_image``...);
            default: every key under the first demo's ``obs``.
        fps: control rate (Hz); default ``env_args.env_kwargs.control_freq`` or 20.
        source: episode ``source`` (teleop, policy, intervention, scripted).
        states: also import ``states`` (simulator states) as the extra key ``sim_state``.
        filter_key: import only the demos of ``mask/<filter_key>`` (all demos keep their tags).
        overwrite: delete ``store_out`` first when it exists.
        progress: show a progress bar (demos).
    """
    t0 = time.monotonic()
    h5py = _h5py()
    from tqdm.auto import tqdm

    path = Path(hdf5)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RobomimicFormatError(f"{path} is not an HDF5 file ({exc})") from exc
    with f:
        if "data" not in f:
            raise RobomimicFormatError(f"{path} has no 'data' group; robomimic files hold demos under data/demo_<i>")
        data = f["data"]
        demos = demo_names(data)
        if not demos:
            raise RobomimicFormatError(f"{path}: 'data' holds no demo_<i> groups")
        tags = _masks(f)
        if filter_key is not None:
            if "mask" not in f or filter_key not in f["mask"]:
                have = sorted(f["mask"].keys()) if "mask" in f else []
                raise RobomimicFormatError(f"{path} has no filter mask/{filter_key} (filters: {have or 'none'})")
            demos = [d for d in demos if filter_key in tags.get(d, [])]
        env_args = _env_args(data)
        env_name = env_args.get("env_name") if isinstance(env_args.get("env_name"), str) else None
        control_freq = (env_args.get("env_kwargs") or {}).get("control_freq")
        rate = float(fps) if fps else float(control_freq) if isinstance(control_freq, (int, float)) and control_freq > 0 else DEFAULT_FPS
        notes: list[str] = []
        if not fps and not isinstance(control_freq, (int, float)):
            notes.append(f"env_args has no control_freq: fps set to {DEFAULT_FPS:g} (pass --fps)")

        first = data[demos[0]]
        if "obs" not in first:
            raise RobomimicFormatError(f"{demos[0]} has no 'obs' group")
        keys = list(obs_keys) if obs_keys else sorted(first["obs"].keys())
        obs_specs: dict[str, KeySpec] = {}
        for k in keys:
            ds = _dataset(first["obs"], k, demos[0], "an observation")
            obs_specs[store_key(k)[len("obs.") :]] = KeySpec(tuple(ds.shape[1:]), ds.dtype.name)
        act = _dataset(first, "actions", demos[0], "the actions")
        if act.ndim != 2:
            raise RobomimicFormatError(f"{demos[0]}/actions has shape {act.shape}; expected (T, action_dim)")
        extras: dict[str, KeySpec] = {}
        if states:
            st = _dataset(first, "states", demos[0], "simulator states")
            extras["sim_state"] = KeySpec(tuple(st.shape[1:]), st.dtype.name)
        robot = {"name": env_name} if env_name else {}
        if env_args:
            robot["robomimic_env_args"] = env_args
        schema = StoreSchema.build(obs=obs_specs, action=KeySpec(tuple(act.shape[1:]), act.dtype.name), fps=rate, extras=extras, robot=robot)

        if Path(store_out).exists() and overwrite:
            import shutil

            shutil.rmtree(store_out)
        steps = 0
        with EpisodeWriter(store_out, schema, defaults={"source": source}) as writer:
            for demo in tqdm(demos, desc=f"import {path.name}", unit="demo", disable=not progress):
                episode = _read_demo(data[demo], demo, keys, schema, states)
                n = len(episode["action"])
                for t in range(n):
                    writer.add_step_dict({k: v[t] for k, v in episode.items()})
                has_dones = "dones" in data[demo]
                writer.end_episode(
                    success=bool(episode["done"].any()) if has_dones else None,
                    task=env_name,
                    tags=tags.get(demo, []),
                    robomimic_demo=demo,
                )
                steps += n
    summary = ConversionSummary(str(path), str(store_out), len(demos), steps, seconds=time.monotonic() - t0, notes=notes)
    for k in keys:
        spec = schema.keys[store_key(k)]
        summary.keys.append((f"obs/{k}", store_key(k), str(spec.shape), spec.dtype, "exact"))
    summary.keys.append(("actions", "action", str(schema.keys["action"].shape), schema.keys["action"].dtype, "exact"))
    summary.keys += [("rewards", "reward", "()", "float32", "exact"), ("dones", "done", "()", "bool", "exact")]
    if states:
        summary.keys.append(("states", "sim_state", str(schema.keys["sim_state"].shape), schema.keys["sim_state"].dtype, "exact"))
    tagged = sorted({t for d in demos for t in tags.get(d, [])})
    if tagged:
        summary.notes.append(f"episode tags from mask/: {', '.join(tagged)} (filter with store.filter(tag=...))")
    return summary


def _read_demo(group: Any, demo: str, keys: Sequence[str], schema: StoreSchema, states: bool) -> dict[str, np.ndarray]:
    actions = np.asarray(_dataset(group, "actions", demo, "the actions")[()])
    n = len(actions)
    if n == 0:
        raise RobomimicFormatError(f"{demo}/actions is empty")
    out: dict[str, np.ndarray] = {"action": actions}
    if "obs" not in group:
        raise RobomimicFormatError(f"{demo} has no 'obs' group")
    for k in keys:
        out[store_key(k)] = np.asarray(_dataset(group["obs"], k, demo, "an observation")[()])
    out["reward"] = np.asarray(group["rewards"][()], dtype=np.float32) if "rewards" in group else np.zeros(n, np.float32)
    out["done"] = np.asarray(group["dones"][()]).astype(bool) if "dones" in group else np.zeros(n, bool)
    if states:
        out["sim_state"] = np.asarray(_dataset(group, "states", demo, "simulator states")[()])
    out["timestamp"] = np.arange(n, dtype=np.float64) / schema.fps
    for key, value in out.items():
        spec = schema.keys[key]
        if value.shape[:1] != (n,):
            raise RobomimicFormatError(f"{demo}: '{key}' has {value.shape[0] if value.ndim else 0} steps but actions has {n}")
        if tuple(value.shape[1:]) != spec.shape:
            raise RobomimicFormatError(f"{demo}: '{key}' has per-step shape {tuple(value.shape[1:])}, the first demo has {spec.shape}")
        out[key] = value.astype(spec.np_dtype, copy=False)
    return out
