"""The on-disk layout of an episode store: one module owns every path and codec.

```
name.zarr/
  zarr.json            group; attrs["robot_rl"] = schema (version, per-key specs, fps,
                       robot description, calibration ids); attrs["stats"] = cached stats
  data/<key>           (T, ...) all steps of all episodes, concatenated in time
  meta/episode_ends    (E,) int64, exclusive end row of each committed episode (commit marker)
  meta/episodes        (E,) UTF-8 JSON, one record per committed episode
  meta (group attrs)   writer progress: flushed_rows, open_episode (for salvage)
```

The one live writer holds an flock() on the store directory.

Commit protocol (see ``writer.py``): step rows are appended to every ``data/<key>``
first, then the episode record, and only then ``meta/episode_ends`` is extended.
Readers trust the longest prefix of ``episode_ends`` that is strictly increasing and
within the length of every data array; everything after it is an uncommitted tail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec, ZstdCodec

from robot_rl.data.errors import CorruptStoreError, SchemaError
from robot_rl.data.schema import KeySpec, StoreSchema

DATA = "data"
META = "meta"
EPISODE_ENDS = "meta/episode_ends"
EPISODES = "meta/episodes"
SCHEMA_ATTR = "robot_rl"
STATS_ATTR = "stats"
PARTIAL_SUFFIX = ".partial"  # zarr's LocalStore writes <chunk>.<uuid>.partial, then renames

# zarr skips writing chunks that equal the fill value unless told otherwise; a store
# must never confuse "all zeros" with "missing", so every chunk is written.
ARRAY_CONFIG = {"write_empty_chunks": True}

DEFAULT_TIME_CHUNK = 1024
META_CHUNK = 1024


# What robot_rl's writer puts in a store (this module), and nothing else. Every array a
# reader opens must declare exactly these in its zarr.json, checked on the raw JSON
# before zarr builds a codec pipeline or reads a chunk (by the reader, the appending
# writer and recovery alike): no object / variable-length
# bytes types, no pickle or other codecs from zarr's (plugin-extensible) registry, no
# storage transformers, no zarr v2 metadata.
NUMERIC_CODECS = frozenset({"bytes", "blosc", "crc32c"})
RECORD_CODECS = frozenset({"vlen-utf8", "zstd", "crc32c"})  # crc32c since issue #10; older stores have none
RECORD_DATA_TYPE = "string"  # UTF-8 JSON text, one episode record per element
V2_METADATA = (".zarray", ".zgroup", ".zattrs", ".zmetadata")


def check_format(root: Path, schema: StoreSchema) -> None:
    """Raise :class:`CorruptStoreError` naming the array and the reason when a store
    declares a data type, codec or layout that robot_rl does not write."""
    for key, spec in schema.keys.items():
        _check_array(root, f"{DATA}/{key}", spec.dtype, NUMERIC_CODECS, key=key)
    _check_array(root, EPISODE_ENDS, "int64", NUMERIC_CODECS)
    _check_array(root, EPISODES, RECORD_DATA_TYPE, RECORD_CODECS)


def _check_array(root: Path, name: str, data_type: str, codecs: frozenset[str], *, key: str | None = None) -> None:
    folder = root / name

    def refuse(reason: str) -> CorruptStoreError:
        return CorruptStoreError(f"array '{name}' {reason}: refusing to read it", key=key or name)

    v2 = [f for f in V2_METADATA if (folder / f).exists()]
    if v2:
        raise refuse(f"has zarr v2 metadata ({v2[0]}); robot_rl stores are zarr v3 only")
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except OSError:
        return  # missing: open_array names it
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(f"has unreadable metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise refuse("is not a zarr v3 array")
    if meta.get("data_type") != data_type:
        raise refuse(f"declares data type {meta.get('data_type')!r}; robot_rl writes {data_type!r} here")
    chain = meta.get("codecs")
    if not isinstance(chain, list) or not chain or not all(isinstance(c, dict) for c in chain):
        raise refuse("has a malformed codec list")
    for codec in chain:
        if codec.get("name") not in codecs:
            allowed = ", ".join(sorted(codecs))
            raise refuse(f"uses codec {codec.get('name')!r}, which robot_rl does not read (allowed here: {allowed})")
    if meta.get("storage_transformers"):
        raise refuse("declares storage transformers, which robot_rl does not read")
    encoding = meta.get("chunk_key_encoding") or {}
    separator = (encoding.get("configuration") or {}).get("separator", "/") if isinstance(encoding, dict) else None
    if not isinstance(encoding, dict) or encoding.get("name") != "default" or separator != "/":
        raise refuse(f"declares chunk key encoding {encoding!r}; robot_rl writes the default with '/'")
    grid = meta.get("chunk_grid")
    if not isinstance(grid, dict) or grid.get("name") != "regular":
        raise refuse("does not declare a regular chunk grid")


def numeric_codecs() -> list[Any]:
    # crc32c makes flipped or truncated chunks fail loudly instead of decoding garbage.
    return [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle), Crc32cCodec()]


def image_codecs() -> list[Any]:
    return [BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.bitshuffle), Crc32cCodec()]


def chunk_rows(spec: KeySpec, time_chunk: int = DEFAULT_TIME_CHUNK) -> int:
    """Rows per chunk along time: one frame for images, ``time_chunk`` otherwise."""
    return 1 if spec.is_image else time_chunk


def create_data_array(group: zarr.Group, key: str, spec: KeySpec, time_chunk: int) -> zarr.Array:
    rows = chunk_rows(spec, time_chunk)
    arr = group.create_array(
        key,
        shape=(0, *spec.shape),
        chunks=(rows, *spec.shape),
        dtype=spec.np_dtype,
        compressors=image_codecs() if spec.is_image else numeric_codecs(),
        fill_value=0,
        config=ARRAY_CONFIG,
    )
    return arr


def create_meta_arrays(meta: zarr.Group) -> tuple[zarr.Array, zarr.Array]:
    ends = meta.create_array(
        "episode_ends",
        shape=(0,),
        chunks=(META_CHUNK,),
        dtype=np.int64,
        compressors=numeric_codecs(),
        fill_value=0,
        config=ARRAY_CONFIG,
    )
    records = meta.create_array(
        "episodes",
        shape=(0,),
        chunks=(META_CHUNK,),
        dtype=str,
        compressors=[ZstdCodec(level=0), Crc32cCodec()],  # crc32c: a flipped byte fails loudly (stores written before issue #10 have none)
        config=ARRAY_CONFIG,
    )
    return ends, records


def chunk_file(root: Path, key: str, chunk: int, ndim: int) -> Path:
    """Path of time-chunk ``chunk`` of ``data/<key>`` (default v3 key encoding, '/')."""
    return root.joinpath(DATA, key, "c", str(chunk), *(["0"] * (ndim - 1)))


def first_missing_chunk(root: Path, key: str, arr: zarr.Array, chunks: Iterable[int]) -> int | None:
    """The first of ``chunks`` (time-chunk indices of ``data/<key>``) with no file, or None.

    zarr returns the fill value for a missing chunk; the store treats it as damage.
    """
    for chunk in chunks:
        if not chunk_file(root, key, int(chunk), arr.ndim).is_file():
            return int(chunk)
    return None


def open_root(path: str | os.PathLike[str], mode: str) -> zarr.Group:
    root = Path(path)
    if not (root / "zarr.json").is_file():
        raise CorruptStoreError(f"{root} is not an episode store (no zarr.json)")
    try:
        return zarr.open_group(str(root), mode=mode)
    except Exception as exc:  # zarr raises many types for unreadable metadata
        raise CorruptStoreError(f"cannot open {root}: {exc}") from exc


def read_schema(group: zarr.Group) -> StoreSchema:
    raw = group.attrs.get(SCHEMA_ATTR)
    if raw is None:
        raise CorruptStoreError("store has no robot_rl schema in its attributes (not written by robot_rl?)")
    try:
        return StoreSchema.from_json(raw)
    except SchemaError as exc:
        raise CorruptStoreError(f"unreadable schema: {exc}") from exc


def open_array(group: zarr.Group, name: str, *, key: str | None = None) -> zarr.Array:
    try:
        node = group[name]
    except KeyError as exc:
        raise CorruptStoreError(f"array '{name}' is missing", key=key or name) from exc
    except Exception as exc:
        raise CorruptStoreError(f"array '{name}' has unreadable metadata: {exc}", key=key or name) from exc
    if not isinstance(node, zarr.Array):
        raise CorruptStoreError(f"'{name}' is not an array", key=key or name)
    if node.ndim < 1 or node.chunks[0] < 1 or tuple(node.chunks[1:]) != tuple(node.shape[1:]):
        # Every path below (chunk_file, first_missing_chunk, chunk-by-chunk reads) relies
        # on time being the only chunked axis, with at least one row per chunk.
        raise CorruptStoreError(
            f"array '{name}' has chunk shape {tuple(node.chunks)} for shape {tuple(node.shape)}; "
            "robot_rl writes whole steps per chunk (chunked along time only)",
            key=key or name,
        )
    return node.with_config(ARRAY_CONFIG)


def check_meta_chunks(root: Path, name: str, arr: zarr.Array) -> None:
    """Raise when a chunk file of metadata array ``name`` (``meta/episode_ends``,
    ``meta/episodes``) is missing: zarr would read its fill value, which for the commit
    marker silently means "no episodes" (and a recovery would then truncate the data).

    The one legitimate gap: a writer that died between resizing the array by one entry
    and writing it leaves the last chunk unwritten when that entry starts a new chunk.
    """
    n = int(arr.shape[0])
    per = int(arr.chunks[0])
    n_chunks = (n + per - 1) // per
    for chunk in range(n_chunks):
        if root.joinpath(*name.split("/"), "c", str(chunk)).is_file():
            continue
        if chunk == n_chunks - 1 and n - chunk * per == 1:
            continue  # an interrupted append (its entry is uncommitted)
        raise CorruptStoreError(
            f"chunk file is missing (deleted?): {n - chunk * per if chunk == n_chunks - 1 else per} "
            "entries would read as fill values",
            key=name,
            chunk=chunk,
        )


def committed_prefix(ends: np.ndarray, max_rows: int) -> int:
    """Number of leading entries of ``ends`` that form valid committed episodes.

    Valid: strictly increasing, first > 0, last <= ``max_rows`` (the shortest data array).
    A crash between resizing ``episode_ends`` and writing its new value leaves a trailing
    fill value (0), which this rejects.
    """
    if ends.size == 0:
        return 0
    ends = ends.astype(np.int64, copy=False)
    prev = np.concatenate([[0], ends[:-1]])
    ok = (ends > prev) & (ends <= max_rows)
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else int(ends.size)


def decode_record(raw: str, episode: int) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise CorruptStoreError(f"episode record is not valid JSON: {exc}", key=EPISODES, episode=episode) from exc
    if not isinstance(record, dict):
        raise CorruptStoreError("episode record is not a JSON object", key=EPISODES, episode=episode)
    return record


def partial_files(root: Path) -> list[Path]:
    """Temporary files left by a write that was killed before zarr's atomic rename."""
    return sorted(p for p in root.rglob(f"*{PARTIAL_SUFFIX}") if p.is_file())
