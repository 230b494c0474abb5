"""Relabelled rewards stored beside a store's recorded data.

    write_rewards("lift.zarr", "success", reward, done, scheme="success")
    reward, done = read_rewards(EpisodeStore("lift.zarr"), "success")

Layout: ``derived/rewards/<name>/reward`` (float32, one row per committed step) and
``.../done`` (bool), described in the root attribute ``derived_rewards[name]`` with the
store fingerprint they were computed for. They sit outside ``data/`` so the recorded
data stays append-only and the writer never has to produce them; after new episodes are
appended the fingerprint differs and reading them fails until they are recomputed.
Writing takes the store's writer lock (no recording may be in progress), writes the
arrays, and only then records them in the attribute (the commit point).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zarr

from robot_rl.data import layout
from robot_rl.data.errors import StoreError
from robot_rl.data.lock import WriterLock
from robot_rl.data.store import EpisodeStore

DERIVED_ATTR = "derived_rewards"
GROUP = "derived/rewards"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
RESERVED = ("store", "success")
"""Names the trainer reads directly (recorded rewards / on-the-fly success labels)."""


def success_rewards(ends: np.ndarray, success: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse rewards from episode success flags, what teleoperation data has.

    Terminal convention: the last step of a successful episode gets reward 1 and is
    terminal (done); every other step gets 0. A failed episode keeps the store's
    ``done`` flags: a failure the robot reported (a collision) stays terminal, while an
    operator stop or a time-out is a truncation, bootstrapped through.

    ``ends`` (E,) exclusive end rows, ``success`` (E,) bool, ``done`` (N,) -> reward
    float32 (N,), done bool (N,).
    """
    reward = np.zeros(len(done), dtype=np.float32)
    out_done = np.asarray(done, dtype=bool).copy()
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    for s, e, ok in zip(starts, ends, success, strict=True):
        if ok and e > s:
            out_done[s:e] = False
            reward[e - 1] = 1.0
            out_done[e - 1] = True
    return reward, out_done


def relabel_success(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
    """:func:`success_rewards` over every committed episode of ``store``."""
    success = np.array([bool(r.get("success", False)) for r in store.records], dtype=bool)
    done = store.read("done", 0, store.n_steps) if store.n_steps else np.zeros(0, bool)
    return success_rewards(store.episode_ends, success, done)


def write_rewards(path: str | os.PathLike[str], name: str, reward: np.ndarray, done: np.ndarray, scheme: str = "") -> None:
    """Store relabelled ``reward`` / ``done`` (one value per committed step) as ``name``."""
    if not _NAME_RE.match(name) or name in RESERVED:
        raise ValueError(f"reward name {name!r}: use letters, digits, '_', '.', '-' (not {RESERVED})")
    store_dir = Path(path)
    lock = WriterLock(store_dir).acquire()
    try:
        store = EpisodeStore(store_dir)
        if store.uncommitted_rows:
            raise StoreError(f"{store_dir} has {store.uncommitted_rows} uncommitted rows: run `robot-rl data recover` first")
        reward = np.asarray(reward, dtype=np.float32).reshape(-1)
        done = np.asarray(done, dtype=bool).reshape(-1)
        if reward.size != store.n_steps or done.size != store.n_steps:
            raise ValueError(f"need one reward and done per committed step ({store.n_steps}), got {reward.size} and {done.size}")
        if not np.all(np.isfinite(reward)):
            raise ValueError("rewards must be finite")
        root = layout.open_root(store_dir, mode="r+")
        described = dict(root.attrs.get(DERIVED_ATTR, {}))
        described.pop(name, None)
        root.attrs[DERIVED_ATTR] = described  # un-describe first: a crash below leaves no stale entry
        group = root.require_group(f"{GROUP}/{name}")
        for key, values in (("reward", reward), ("done", done)):
            if key in group:
                del group[key]
            arr = group.create_array(
                key, shape=values.shape, chunks=(layout.DEFAULT_TIME_CHUNK,), dtype=values.dtype,
                compressors=layout.numeric_codecs(), fill_value=0,
            )  # fmt: skip
            arr[:] = values
        described[name] = {
            "fingerprint": store.fingerprint(),
            "rows": int(store.n_steps),
            "scheme": scheme,
            "written": datetime.now(timezone.utc).isoformat(),
        }
        root.attrs[DERIVED_ATTR] = described
    finally:
        lock.release()


def reward_names(store: EpisodeStore) -> list[str]:
    root = zarr.open_group(str(store.path), mode="r")
    return sorted(dict(root.attrs.get(DERIVED_ATTR, {})))


def read_rewards(store: EpisodeStore, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The relabelled ``(reward float32 (N,), done bool (N,))`` over all committed steps."""
    root = zarr.open_group(str(store.path), mode="r")
    described = dict(root.attrs.get(DERIVED_ATTR, {}))
    if name not in described:
        raise KeyError(f"{store.path} has no relabelled rewards {name!r} (it has {sorted(described) or 'none'}); "
                       f"write them with `robot-rl data relabel {store.path} --name {name}`")  # fmt: skip
    if described[name].get("fingerprint") != store.fingerprint():
        raise StoreError(f"relabelled rewards {name!r} were computed before the store changed (episodes were added): "
                         f"re-run `robot-rl data relabel {store.path} --name {name} --scheme {described[name].get('scheme') or 'success'}`")  # fmt: skip
    group = root[f"{GROUP}/{name}"]
    return np.asarray(group["reward"][:], dtype=np.float32), np.asarray(group["done"][:], dtype=bool)
