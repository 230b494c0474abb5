"""One episode of a store as an interactive rerun timeline: cameras, states, actions.

    view_episode(EpisodeStore("lift.zarr"), 3)                    # opens the rerun viewer
    view_episode(EpisodeStore("lift.zarr"), 3, save="ep3.rrd")    # headless: a file; `rerun ep3.rrd`

Command line: ``robot-rl data view lift.zarr --episode 3 [--save ep3.rrd]``.

Entity paths (names from each key's spec, ``<i>`` where it has none):

- ``camera/<cam>``: ``obs.image.<cam>`` frames (``rr.Image``);
- ``obs/<name>/<element>``: every element of every low-dimensional observation (``rr.Scalars``);
- ``action/<element>``, ``reward``, ``done``, and any numeric extra as ``extra/<key>/<element>``;
- ``episode``: the episode record and the report's checks (markdown, static).

Timelines: ``step`` (index within the episode) and ``time`` (the recorded timestamps,
seconds since the episode's first step, as a duration; absolute epoch stamps as a
timestamp). rerun-sdk is imported lazily; it comes with ``pip install 'robot-rl[interop]'``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data import EpisodeStore
from robot_rl.interop.report import check_episode, element_names

APPLICATION_ID = "robot_rl"
EPOCH_THRESHOLD_S = 1e8
"""Timestamps above this many seconds are taken as wall-clock epoch time, not time since the start."""


NO_VIEWER_HINT = "write a file instead with --save out.rrd and open it where there is a display with `rerun out.rrd`"


def require_rerun() -> Any:
    """``import rerun`` or an ImportError naming the extra to install."""
    try:
        import rerun as rr
    except ImportError as exc:
        raise ImportError("the episode viewer needs rerun-sdk: pip install 'robot-rl[interop]'") from exc
    return rr


def entity_path(key: str) -> str:
    """The entity path of a store key: ``obs.joint_pos`` -> ``obs/joint_pos``,
    ``obs.image.wrist`` -> ``camera/wrist``, ``action`` -> ``action``."""
    if key.startswith("obs.image."):
        return "camera/" + key.removeprefix("obs.image.")
    if key.startswith("obs."):
        return "obs/" + key.removeprefix("obs.")
    if key in ("action", "reward", "done"):
        return key
    return "extra/" + key


def view_episode(
    store: EpisodeStore | str | os.PathLike[str],
    episode: int,
    save: str | os.PathLike[str] | None = None,
    spawn: bool = True,
    progress: bool = True,
) -> Path | None:
    """Log one committed episode to rerun.

    ``save``: write an .rrd file (no viewer needed; returns its path). Otherwise, with
    ``spawn``, start (or connect to) a rerun viewer on this machine; that needs a
    display. Raises IndexError for an episode the store does not have.
    """
    rr = require_rerun()
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    n = len(store)
    if not -n <= episode < n:
        raise IndexError(f"episode {episode} out of range: {store.path} has {n} committed episodes (0..{n - 1})")
    episode %= n
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=f"{store.fingerprint()[:16]}-episode-{episode}")
    out: Path | None = None
    if save is not None:
        out = Path(save)
        out.parent.mkdir(parents=True, exist_ok=True)
        rec.save(out)
    elif spawn:
        _viewer_on_path()
        try:
            rec.spawn()
        except Exception as exc:  # no viewer binary, no display, port in use
            raise RuntimeError(f"could not start the rerun viewer ({exc}); {NO_VIEWER_HINT}") from exc
    try:
        _log_episode(rr, rec, store, episode, progress)
        try:
            rec.flush()
        except Exception as exc:  # the spawned viewer died (e.g. no display) or never listened
            if out is not None:
                raise
            raise RuntimeError(f"the rerun viewer did not take the recording ({exc}); {NO_VIEWER_HINT}") from exc
    finally:
        rec.disconnect()
    return out


def _viewer_on_path() -> None:
    """rerun-sdk installs the viewer as ``rerun`` beside the Python executable; a venv that
    is not activated (``.venv/bin/robot-rl``) does not have it on PATH, where spawn looks."""
    if shutil.which("rerun") is None and (Path(sys.executable).parent / "rerun").is_file():
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _time_columns(rr: Any, ts: np.ndarray) -> list[Any]:
    steps = np.arange(ts.shape[0], dtype=np.int64)
    cols = [rr.TimeColumn("step", sequence=steps)]
    if ts.size and np.isfinite(ts).all():
        if float(ts[0]) > EPOCH_THRESHOLD_S:
            cols.append(rr.TimeColumn("time", timestamp=ts))
        else:
            cols.append(rr.TimeColumn("time", duration=ts))
    return cols


def _set_time(rec: Any, step: int, t: float) -> None:
    rec.set_time("step", sequence=step)
    if np.isfinite(t):
        if t > EPOCH_THRESHOLD_S:
            rec.set_time("time", timestamp=t)
        else:
            rec.set_time("time", duration=t)


def _log_episode(rr: Any, rec: Any, store: EpisodeStore, episode: int, progress: bool) -> None:
    schema = store.schema
    numeric = [k for k in store.keys if not schema.keys[k].is_image and k != "timestamp"]
    data = store.episode(episode, ["timestamp", *numeric])
    ts = np.asarray(data["timestamp"], dtype=np.float64)
    check = check_episode(store, episode, data=data)
    record = store.record(episode)
    lines = [f"# {store.path.name}, episode {episode}", "", f"{len(ts)} steps, declared {check.declared_fps:g} fps", ""]
    lines += ["**checks:** " + ("; ".join(check.reasons) if check.reasons else "nothing flagged"), "", "```json"]
    lines += [json.dumps(record, indent=1), "```"]
    rec.log("episode", rr.TextDocument("\n".join(lines), media_type=rr.MediaType.MARKDOWN), static=True)
    times = _time_columns(rr, ts)
    for key in numeric:
        values = np.asarray(data[key]).reshape(len(ts), -1).astype(np.float64)
        base = entity_path(key)
        names = element_names(store, key)
        if values.shape[1] == 1 and not schema.keys[key].shape:
            rec.send_columns(base, indexes=times, columns=rr.Scalars.columns(scalars=values[:, 0]))
            continue
        for i in range(values.shape[1]):
            name = names[i] if names[i] != f"{key}[{i}]" else str(i)
            path = f"{base}/{rr.escape_entity_path_part(name)}"
            rec.send_columns(path, indexes=times, columns=rr.Scalars.columns(scalars=values[:, i]))
    cams = schema.image_keys
    if cams:
        start, _ = store.bounds(episode)
        for t in tqdm(range(len(ts)), desc=f"view: episode {episode} frames", unit="step", disable=not progress):
            _set_time(rec, t, float(ts[t]))
            for cam in cams:
                frame = store.read(cam, start + t, start + t + 1)[0]
                rec.log(entity_path(cam), rr.Image(frame, color_model={1: "L", 3: "RGB", 4: "RGBA"}[frame.shape[-1]]))
