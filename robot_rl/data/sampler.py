"""Training batches from a store: windows for sequence policies, transitions for RL.

Everything is vectorised numpy over arrays loaded once: numeric keys in memory, image
keys in memory or in a memory-mapped ``.npy`` cache (decoded once, reused across runs
while the store's committed content is unchanged).

    data = load_episodes(store, keys=["obs.state", "obs.image.wrist", "action"])
    windows = WindowSampler(data, horizon=16, obs_horizon=2, action_horizon=8)
    batch = windows.sample(256, rng)   # obs.state (256, 2, D), action (256, 16, Da), is_pad (256, 16)
    trans = TransitionSampler(data)
    batch = trans.sample(256, rng)     # obs.*, next_obs.*, action, reward, done
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data.store import EpisodeStore


@dataclass
class EpisodeArrays:
    """Selected episodes, concatenated: ``data[key]`` is ``(N, ...)``.

    ``ends`` are exclusive end rows into these arrays; ``episodes`` the store indices.
    """

    data: dict[str, np.ndarray]
    ends: np.ndarray
    episodes: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], self.ends[:-1]]).astype(np.int64)

    @property
    def n_steps(self) -> int:
        return int(self.ends[-1]) if self.ends.size else 0


def default_cache_dir() -> Path:
    return Path(os.environ.get("ROBOT_RL_CACHE", Path.home() / ".cache" / "robot_rl")) / "stores"


def load_episodes(
    store: EpisodeStore,
    keys: Sequence[str] | None = None,
    episodes: Sequence[int] | np.ndarray | None = None,
    *,
    image_cache: str = "memmap",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> EpisodeArrays:
    """Load ``keys`` of the selected episodes (default: all) into contiguous arrays.

    ``image_cache``: ``"memory"`` decodes image keys into RAM; ``"memmap"`` decodes them
    once into ``<cache_dir>/<store fingerprint>/<key>.npy`` and maps that file.
    """
    if image_cache not in ("memory", "memmap"):
        raise ValueError(f"image_cache must be 'memory' or 'memmap', got {image_cache!r}")
    keys = list(keys) if keys is not None else store.keys
    for key in keys:
        if key not in store.schema.keys:
            raise KeyError(f"unknown key {key!r}; the store has {store.keys}")
    idx = np.arange(len(store)) if episodes is None else np.asarray(episodes, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(store)):
        raise IndexError(f"episode indices out of range for a store of {len(store)} episodes")
    lengths = store.episode_lengths[idx]
    ends = np.cumsum(lengths).astype(np.int64)
    ranges = _merge_ranges([store.bounds(int(i)) for i in idx])
    selection = hashlib.sha256(idx.astype("<i8").tobytes()).hexdigest()[:12]
    data: dict[str, np.ndarray] = {}
    for key in keys:
        spec = store.schema.keys[key]
        if spec.is_image and image_cache == "memmap":
            root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            folder = root / f"{store.fingerprint()[:20]}-{selection}"
            data[key] = _memmap_key(store, key, ranges, int(ends[-1]) if ends.size else 0, folder, progress)
        else:
            parts = [_read_range(store, key, lo, hi) for lo, hi in ranges]
            data[key] = np.concatenate(parts) if parts else np.empty((0, *spec.shape), spec.np_dtype)
    return EpisodeArrays(data=data, ends=ends, episodes=idx)


def _merge_ranges(bounds: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in bounds:
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _read_range(store: EpisodeStore, key: str, lo: int, hi: int, block: int = 4096) -> np.ndarray:
    step = max(block // max(store.chunk_rows(key), 1), 1) * store.chunk_rows(key)
    return np.concatenate([store.read(key, s, min(s + step, hi)) for s in range(lo, hi, step)])


def _memmap_key(
    store: EpisodeStore, key: str, ranges: list[tuple[int, int]], n: int, folder: Path, progress: bool
) -> np.ndarray:
    spec = store.schema.keys[key]
    path = folder / f"{key}.npy"
    info = folder / f"{key}.json"
    expected = {"key": key, "n": n, "shape": list(spec.shape), "dtype": spec.dtype}
    if path.is_file() and info.is_file():
        try:
            if json.loads(info.read_text()) == expected:
                return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            pass  # a broken cache entry is rebuilt below
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.{os.getpid()}.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=spec.np_dtype, shape=(n, *spec.shape))
    pos = 0
    with tqdm(total=n, desc=f"caching {key}", unit="frame", disable=not progress) as bar:
        for lo, hi in ranges:
            for s in range(lo, hi, 256):
                block = store.read(key, s, min(s + 256, hi))
                out[pos : pos + len(block)] = block
                pos += len(block)
                bar.update(len(block))
    out.flush()
    del out
    os.replace(tmp, path)
    info.write_text(json.dumps(expected))
    return np.load(path, mmap_mode="r", allow_pickle=False)


class WindowSampler:
    """Fixed-length windows with edge padding, as diffusion_policy's SequenceSampler.

    A window covers ``horizon`` (T) steps. It may start up to ``obs_horizon - 1`` steps
    before an episode and end up to ``action_horizon - 1`` steps after it; those steps
    repeat the episode's first / last row and are flagged in ``is_pad``.

    ``get(idx)`` returns, for B windows: each obs key as ``(B, To, ...)`` (the first To
    steps of the window), each action key as ``(B, T, ...)``, ``is_pad`` ``(B, T)`` and
    ``episode`` ``(B,)`` (store indices).
    """

    def __init__(
        self,
        data: EpisodeArrays,
        horizon: int,
        obs_horizon: int = 1,
        action_horizon: int = 1,
        obs_keys: Sequence[str] | None = None,
        action_keys: Sequence[str] = ("action",),
    ) -> None:
        if not 1 <= obs_horizon <= horizon or not 1 <= action_horizon <= horizon:
            raise ValueError(f"need 1 <= obs_horizon, action_horizon <= horizon; got {obs_horizon}, {action_horizon}, {horizon}")
        self.data = data
        self.horizon, self.obs_horizon, self.action_horizon = horizon, obs_horizon, action_horizon
        self.obs_keys = list(obs_keys) if obs_keys is not None else [k for k in data.data if k.startswith("obs.")]
        self.action_keys = list(action_keys)
        for key in self.obs_keys + self.action_keys:
            if key not in data.data:
                raise KeyError(f"key {key!r} was not loaded; loaded: {sorted(data.data)}")
        pad_before, pad_after = obs_horizon - 1, action_horizon - 1
        starts, ends = data.starts, data.ends
        counts = np.maximum(ends - starts - horizon + pad_before + pad_after + 1, 0)
        self.skipped_episodes = int(np.sum(counts == 0))
        ep = np.repeat(np.arange(ends.size), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        self._t0 = starts[ep] - pad_before + offset
        self._lo, self._hi = starts[ep], ends[ep] - 1
        self._episode = data.episodes[ep] if ep.size else np.empty(0, np.int64)
        self._arange = np.arange(horizon)

    def __len__(self) -> int:
        return int(self._t0.size)

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64)
        raw = self._t0[idx, None] + self._arange[None]
        rows = np.clip(raw, self._lo[idx, None], self._hi[idx, None])
        out = {key: self.data.data[key][rows[:, : self.obs_horizon]] for key in self.obs_keys}
        out.update({key: self.data.data[key][rows] for key in self.action_keys})
        out["is_pad"] = raw != rows
        out["episode"] = self._episode[idx]
        return out

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if len(self) == 0:
            raise ValueError("no windows: every selected episode is shorter than the horizon allows")
        return self.get(rng.integers(0, len(self), size=batch_size))


class TransitionSampler:
    """Single transitions ``(s, a, r, s', done)`` for offline RL.

    Terminal convention: ``done[t]`` (from the store) means the episode terminated
    after step t, so no value is bootstrapped from s'. The last step of an episode
    that ended without ``done`` (a time-out or an operator stop) has no recorded s';
    it is dropped by default (``drop_truncated_last``), or kept with s' = s.

    ``get(idx)`` returns each obs key ``(B, ...)``, ``next_<key>`` for each, the other
    loaded keys ``(B, ...)``, and ``done`` as float32 ``(B,)``.
    """

    def __init__(
        self,
        data: EpisodeArrays,
        obs_keys: Sequence[str] | None = None,
        drop_truncated_last: bool = True,
    ) -> None:
        self.data = data
        self.obs_keys = list(obs_keys) if obs_keys is not None else [k for k in data.data if k.startswith("obs.")]
        n = data.n_steps
        rows = np.arange(n, dtype=np.int64)
        last = np.zeros(n, dtype=bool)
        last[data.ends - 1] = True
        done = data.data["done"].astype(bool) if "done" in data.data else np.zeros(n, dtype=bool)
        keep = ~(last & ~done) if drop_truncated_last else np.ones(n, dtype=bool)
        self._rows = rows[keep]
        self._next = np.where(last, rows, rows + 1)[keep]
        self._done = done[keep].astype(np.float32)

    def __len__(self) -> int:
        return int(self._rows.size)

    @property
    def rows(self) -> np.ndarray:
        """Row of s for each transition, into the loaded arrays ``(N,)``."""
        return self._rows

    @property
    def next_rows(self) -> np.ndarray:
        """Row of s' for each transition (= the row of s at an episode's last step) ``(N,)``."""
        return self._next

    @property
    def dones(self) -> np.ndarray:
        """float32 ``(N,)``: 1 where no value is bootstrapped from s'."""
        return self._done

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64)
        rows, nxt = self._rows[idx], self._next[idx]
        out: dict[str, np.ndarray] = {}
        for key, values in self.data.data.items():
            if key == "done":
                continue
            out[key] = values[rows]
            if key in self.obs_keys:
                out[f"next_{key}"] = values[nxt]
        out["done"] = self._done[idx]
        return out

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if len(self) == 0:
            raise ValueError("no transitions in the selected episodes")
        return self.get(rng.integers(0, len(self), size=batch_size))
