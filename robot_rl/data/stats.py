"""Normalisation statistics per key, computed over committed episodes.

Numeric keys: per-element mean, std, min, max and the 1st/99th percentiles (the
quantile normalisation used by diffusion/VQ policies). Image keys: per-channel
mean/std/min/max in raw uint8 units, from an evenly spaced subset of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from robot_rl.data.schema import StoreSchema
    from robot_rl.data.store import EpisodeStore

Stats = dict[str, np.ndarray]

MAX_NUMERIC_ROWS = 200_000
"""Quantiles above this many rows are estimated on an evenly spaced subset."""
MAX_IMAGE_FRAMES = 256


def compute_stats(store: EpisodeStore, keys: Sequence[str] | None = None) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    n = store.n_steps
    for key in keys if keys is not None else store.keys:
        spec = store.schema.keys[key]
        if n == 0:
            continue
        if spec.is_image:
            rows = np.unique(np.linspace(0, n - 1, min(n, MAX_IMAGE_FRAMES)).astype(np.int64))
            frames = np.stack([store.read(key, int(r), int(r) + 1)[0] for r in rows]).astype(np.float32)
            flat = frames.reshape(-1, spec.shape[-1])
            out[key] = _summarise(flat, quantiles=False)
        else:
            values = np.concatenate([store.read(key, lo, hi) for _, lo, hi in store.iter_chunks(key)])
            flat = values.reshape(n, -1).astype(np.float64) if values.ndim > 1 else values.astype(np.float64)
            out[key] = _summarise(flat, quantiles=True)
            if values.ndim > 1:
                out[key] = {k: v.reshape(spec.shape) if v.ndim else v for k, v in out[key].items()}
    return out


def _summarise(values: np.ndarray, quantiles: bool) -> Stats:
    stats: Stats = {
        "mean": values.mean(axis=0),
        "std": values.std(axis=0),
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "count": np.asarray(values.shape[0]),
    }
    if quantiles:
        sub = values
        if values.shape[0] > MAX_NUMERIC_ROWS:
            sub = values[np.linspace(0, values.shape[0] - 1, MAX_NUMERIC_ROWS).astype(np.int64)]
        stats["q01"], stats["q99"] = np.quantile(sub, [0.01, 0.99], axis=0)
    return stats


def stats_to_json(stats: dict[str, Stats]) -> dict[str, Any]:
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()}


def stats_from_json(data: Any, schema: StoreSchema | None = None) -> dict[str, Stats]:
    """Stats from their JSON form; ``ValueError`` when malformed (a damaged cache).

    With ``schema``, every key must be one of its keys and every statistic numeric and
    shaped like the key (per channel for images; ``count`` a scalar).
    """
    if not isinstance(data, dict):
        raise ValueError(f"stats must be a mapping of keys, got {type(data).__name__}")
    out: dict[str, Stats] = {}
    for key, s in data.items():
        if not isinstance(s, dict):
            raise ValueError(f"stats of {key!r} must be a mapping, got {type(s).__name__}")
        spec = None
        if schema is not None:
            if key not in schema.keys:
                raise ValueError(f"stats for unknown key {key!r}")
            spec = schema.keys[key]
        out[key] = {}
        for name, v in s.items():
            try:
                arr = np.asarray(v)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"stats {key!r}.{name} is not an array: {exc}") from exc
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"stats {key!r}.{name} is not numeric ({arr.dtype})")
            if spec is not None:
                want = () if name == "count" else (spec.shape[-1],) if spec.is_image else spec.shape
                if arr.shape != want:
                    raise ValueError(f"stats {key!r}.{name} has shape {arr.shape}, expected {want}")
            out[key][name] = arr
    return out
