"""Corrupt data: damage a store at random places and measure what a reader sees.

    .venv/bin/python benchmarks/reliability/corrupt_data.py [--episodes 50 --repeats 10 --seed 0]

Builds a store (``--episodes`` episodes of 20-80 steps: 7-d state and action, one camera
at 48x64, numeric keys chunked every ``--time-chunk`` rows, images one frame per chunk),
then, ``--repeats`` times per kind of damage at a random (seeded) place: flipped bytes,
truncated and deleted chunks of numeric and image keys, deleted or garbled array
metadata, a deleted or flipped commit marker, flipped bytes in the episode records,
orphan ``*.partial`` files, a missing root ``zarr.json`` or schema. Each trial opens the
store, reads every episode and runs ``verify``, and records:

- detected: a read raised ``CorruptStoreError`` or ``verify`` reported an error;
- time to error: how long the call that raised took (opening the store, or reading the
  episode that holds the damage);
- named: the error named what was damaged (episode + key + chunk for a chunk, the
  key for array metadata, the store path for the root);
- other episodes loaded: episodes whose data the damage does not touch that read back
  exactly as written (a store-level error loads none);
- wrong / zero-filled: episodes that loaded without an error but differ from what was
  written (zero-filled: the differing rows are all zeros). Must be 0.

Writes ``--out`` (JSON, every trial) and prints a markdown table of the per-kind summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from robot_rl.data import CorruptStoreError, EpisodeStore, EpisodeWriter, KeySpec, StoreError, StoreSchema  # noqa: E402
from robot_rl.data.verify import verify  # noqa: E402

IMAGE = (48, 64, 3)
NUMERIC_KEYS = ("obs.state", "action", "reward", "done", "timestamp")
IMAGE_KEY = "obs.image.front"


# ---------------------------------------------------------------------------- the store
def episode_length(i: int) -> int:
    return 20 + (i * 37) % 61


def episode_data(i: int) -> dict[str, np.ndarray]:
    """Deterministic content of episode ``i`` (no row is all zeros)."""
    rng = np.random.default_rng(10_000 + i)
    n = episode_length(i)
    yy, xx = np.mgrid[0 : IMAGE[0], 0 : IMAGE[1]]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1) % 200 + 20
    frames = np.stack([np.roll(base, t, axis=1) for t in range(n)]) + rng.integers(0, 30, (n, *IMAGE))
    return {
        "obs.state": rng.uniform(-3, 3, (n, 7)).astype(np.float32) + 10.0,
        IMAGE_KEY: frames.astype(np.uint8),
        "action": rng.uniform(-1, 1, (n, 7)).astype(np.float32) + 5.0,
        "reward": np.linspace(0.1, 1.0, n, dtype=np.float32),
        "done": np.arange(n) == n - 1,
        "timestamp": 0.05 * np.arange(n) + 1.0,
    }


def build_store(path: Path, episodes: int, time_chunk: int) -> None:
    schema = StoreSchema.build(
        obs={"state": KeySpec((7,), "float32", "rad"), "image.front": KeySpec(IMAGE, "uint8")},
        action=KeySpec((7,), "float32", "rad"),
        fps=20.0,
    )
    with EpisodeWriter(path, schema, defaults={"source": "teleop"}, time_chunk=time_chunk) as w:
        for i in range(episodes):
            data = episode_data(i)
            for t in range(len(data["action"])):
                w.add_step_dict({k: v[t] for k, v in data.items()})
            w.end_episode({"success": i % 3 != 0, "task": "bench"})


class Scratch:
    """The store a trial damages; put back byte for byte afterwards (only what was touched)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}

    def restore(self, touched: list[str]) -> None:
        for rel in touched:
            target = self.path / rel
            if rel in self.files:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.files[rel])
            else:
                target.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- damage
@dataclass
class Damage:
    """What a corruption did: the files it touched and what it hit."""

    touched: list[str]
    key: str | None = None  # data key or metadata array ("meta/episode_ends")
    chunk: int | None = None
    episodes: list[int] = field(default_factory=list)  # committed episodes whose data it touches
    store_level: bool = False  # the whole store is expected to be unreadable


def chunk_rel(key: str, chunk: int) -> str:
    ndim_rest = 3 if key == IMAGE_KEY else (1 if key in ("obs.state", "action") else 0)
    return "/".join(["data", key, "c", str(chunk), *(["0"] * ndim_rest)])


def episodes_of_rows(ends: np.ndarray, lo: int, hi: int) -> list[int]:
    hi = min(hi, int(ends[-1]))
    if lo >= hi:
        return []
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, hi - 1, side="right"))
    return list(range(first, last + 1))


def pick_chunk(rng: random.Random, key: str, ends: np.ndarray, time_chunk: int) -> tuple[int, list[int]]:
    rows = 1 if key == IMAGE_KEY else time_chunk
    n_chunks = (int(ends[-1]) + rows - 1) // rows
    chunk = rng.randrange(n_chunks)
    return chunk, episodes_of_rows(ends, chunk * rows, (chunk + 1) * rows)


def corrupt(kind: str, root: Path, rng: random.Random, ends: np.ndarray, time_chunk: int) -> Damage:
    if kind.endswith(("_numeric", "_image")):
        key = IMAGE_KEY if kind.endswith("_image") else rng.choice(NUMERIC_KEYS)
        chunk, episodes = pick_chunk(rng, key, ends, time_chunk)
        rel = chunk_rel(key, chunk)
        path = root / rel
        raw = bytearray(path.read_bytes())
        if kind.startswith("flip"):
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] ^= rng.randint(1, 255)
            path.write_bytes(bytes(raw))
        elif kind.startswith("truncate"):
            path.write_bytes(bytes(raw[: rng.randrange(len(raw))]))
        else:
            path.unlink()
        return Damage([rel], key, chunk, episodes)
    if kind in ("delete_array_meta", "garble_array_meta"):
        key = rng.choice([*NUMERIC_KEYS, IMAGE_KEY])
        rel = f"data/{key}/zarr.json"
        if kind == "delete_array_meta":
            (root / rel).unlink()
        else:
            (root / rel).write_bytes(rng.randbytes(rng.randint(0, 64)))
        return Damage([rel], key, None, list(range(len(ends))), store_level=True)
    if kind in ("delete_commit_marker", "flip_commit_marker", "flip_records"):
        name = "meta/episodes" if kind == "flip_records" else "meta/episode_ends"
        rel = f"{name}/c/0"
        path = root / rel
        if kind == "delete_commit_marker":
            path.unlink()
        else:
            raw = bytearray(path.read_bytes())
            raw[rng.randrange(len(raw))] ^= rng.randint(1, 255)
            path.write_bytes(bytes(raw))
        return Damage([rel], name, 0, list(range(len(ends))), store_level=True)
    if kind == "orphan_partial":
        chunks = [str(p.relative_to(root)) for p in (root / "data").rglob("*") if p.is_file() and "/c/" in str(p)]
        touched = []
        for _ in range(rng.randint(1, 5)):
            rel = f"{rng.choice(chunks)}.{rng.getrandbits(128):032x}.partial"
            (root / rel).write_bytes(rng.randbytes(rng.randint(0, 256)))
            touched.append(rel)
        return Damage(touched)
    if kind == "missing_root_meta":
        (root / "zarr.json").unlink()
        return Damage(["zarr.json"], None, None, list(range(len(ends))), store_level=True)
    if kind == "missing_schema":
        meta = json.loads((root / "zarr.json").read_text())
        meta["attributes"].pop("robot_rl")
        (root / "zarr.json").write_text(json.dumps(meta))
        return Damage(["zarr.json"], None, None, list(range(len(ends))), store_level=True)
    raise ValueError(f"unknown kind {kind}")


KINDS = (
    "flip_numeric",
    "flip_image",
    "truncate_numeric",
    "truncate_image",
    "delete_numeric",
    "delete_image",
    "delete_array_meta",
    "garble_array_meta",
    "delete_commit_marker",
    "flip_commit_marker",
    "flip_records",
    "orphan_partial",
    "missing_root_meta",
    "missing_schema",
)


# ---------------------------------------------------------------------------- one trial
def names_damage(exc: BaseException, damage: Damage, store_path: Path) -> bool:
    """Whether the error names what was damaged."""
    message = str(exc)
    if damage.chunk is not None and damage.key is not None and damage.key.startswith("meta/"):
        return damage.key in message
    if damage.chunk is not None:
        return (
            isinstance(exc, CorruptStoreError)
            and exc.key == damage.key
            and exc.chunk == damage.chunk
            and exc.episode in damage.episodes
            and f"episode {exc.episode}, key '{damage.key}', chunk {damage.chunk}" in message
        )
    if damage.key is not None:
        return f"key '{damage.key}'" in message
    return str(store_path) in message or "schema" in message


def trial(path: Path, damage: Damage, n_episodes: int, expected: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": damage.key, "chunk": damage.chunk, "affected_episodes": damage.episodes}
    first_error: BaseException | None = None
    t0 = time.perf_counter()
    loaded_ok, wrong, zero_filled, failed = [], [], [], []
    try:
        store = EpisodeStore(path)
    except StoreError as exc:
        first_error, out["time_to_error_s"] = exc, time.perf_counter() - t0
        out["open"] = "error"
    except Exception as exc:  # noqa: BLE001 - an untyped error is a finding, recorded as such
        first_error, out["time_to_error_s"] = exc, time.perf_counter() - t0
        out["open"] = f"untyped {type(exc).__name__}"
        out["untyped"] = f"{type(exc).__name__}: {exc}"
    else:
        out["open"] = "ok"
        out["episodes_visible"] = len(store)
        for i in range(len(store)):
            t_call = time.perf_counter()
            try:
                data = store.episode(i)
            except StoreError as exc:
                if first_error is None:
                    first_error, out["time_to_error_s"] = exc, time.perf_counter() - t_call
                    out["first_error_after_s"] = time.perf_counter() - t0
                failed.append(i)
                continue
            except Exception as exc:  # noqa: BLE001
                if first_error is None:
                    first_error, out["time_to_error_s"] = exc, time.perf_counter() - t_call
                    out["first_error_after_s"] = time.perf_counter() - t0
                out["untyped"] = f"{type(exc).__name__}: {exc}"
                failed.append(i)
                continue
            bad_rows = [
                ~np.all(data[k].reshape(len(data[k]), -1) == want.reshape(len(want), -1), axis=1)
                for k, want in expected[i].items()
                if data[k].shape == want.shape
            ]
            if len(bad_rows) != len(expected[i]) or any(b.any() for b in bad_rows):
                wrong.append(i)
                if any(b.any() and np.all(data[k][b] == 0) for k, b in zip(expected[i], bad_rows, strict=False)):
                    zero_filled.append(i)
            else:
                loaded_ok.append(i)
    out["read_s"] = time.perf_counter() - t0
    unaffected = [i for i in range(n_episodes) if i not in damage.episodes]
    out["other_episodes"] = len(unaffected)
    out["other_episodes_loaded"] = len([i for i in loaded_ok if i in unaffected])
    out["failed_episodes"], out["wrong_episodes"], out["zero_filled_episodes"] = failed, wrong, zero_filled
    if first_error is not None:
        out["error"] = f"{type(first_error).__name__}: {first_error}"[:300]
        out["typed"] = isinstance(first_error, StoreError)
        out["named"] = names_damage(first_error, damage, path)
    t1 = time.perf_counter()
    report = verify(path)
    out["verify_s"] = time.perf_counter() - t1
    out["verify_ok"], out["verify_errors"], out["verify_warnings"] = report.ok, report.errors[:3], report.warnings[:3]
    out["detected"] = first_error is not None or not report.ok
    return out


# ---------------------------------------------------------------------------- report
def summarise(kind: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [t for t in trials if "error" in t]
    tte = [t["time_to_error_s"] * 1000 for t in errors]
    other = sum(t["other_episodes"] for t in trials)
    return {
        "kind": kind,
        "trials": len(trials),
        "detected": sum(t["detected"] for t in trials),
        "read_errors": len(errors),
        "typed": sum(t.get("typed", False) for t in errors),
        "named": sum(t.get("named", False) for t in errors),
        "tte_median_ms": statistics.median(tte) if tte else None,
        "tte_max_ms": max(tte) if tte else None,
        "other_loaded": sum(t["other_episodes_loaded"] for t in trials),
        "other_total": other,
        "wrong": sum(len(t["wrong_episodes"]) for t in trials),
        "zero_filled": sum(len(t["zero_filled_episodes"]) for t in trials),
        "verify_flagged": sum(not t["verify_ok"] for t in trials),
        "verify_warned": sum(bool(t["verify_warnings"]) for t in trials),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| damage | trials | detected | error at read | typed | names episode/key/chunk | time to error median / max (ms) | other episodes loaded | wrong / zero-filled | verify fails (warns) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        tte = f"{r['tte_median_ms']:.1f} / {r['tte_max_ms']:.1f}" if r["tte_median_ms"] is not None else "-"
        other = f"{r['other_loaded']}/{r['other_total']}" if r["other_total"] else "-"
        lines.append(
            f"| {r['kind']} | {r['trials']} | {r['detected']} | {r['read_errors']} | {r['typed']}/{r['read_errors']} | "
            f"{r['named']}/{r['read_errors']} | {tte} | {other} | {r['wrong']} / {r['zero_filled']} | "
            f"{r['verify_flagged']} ({r['verify_warned']}) |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=10, help="trials per kind of damage")
    ap.add_argument("--time-chunk", type=int, default=64, help="rows per chunk of the numeric keys")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/reliability/corrupt_data.json"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    expected = [episode_data(i) for i in range(args.episodes)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        t0 = time.perf_counter()
        build_store(path, args.episodes, args.time_chunk)
        store = EpisodeStore(path)
        ends, steps = store.episode_ends, store.n_steps
        print(f"store: {args.episodes} episodes, {steps} steps, {store.size_bytes() / 1e6:.1f} MB, built in {time.perf_counter() - t0:.1f} s")
        scratch = Scratch(path)
        results: dict[str, list[dict[str, Any]]] = {}
        for kind in args.kinds:
            results[kind] = []
            for _ in range(args.repeats):
                damage = corrupt(kind, path, rng, ends, args.time_chunk)
                try:
                    results[kind].append(trial(path, damage, args.episodes, expected))
                finally:
                    scratch.restore(damage.touched)
            s = summarise(kind, results[kind])
            print(f"  {kind}: detected {s['detected']}/{s['trials']}, wrong {s['wrong']}, zero-filled {s['zero_filled']}", flush=True)
    rows = [summarise(k, v) for k, v in results.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "store_steps": steps, "summary": rows, "trials": results},
            indent=1,
            default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o),
        )
    )
    print()
    print(table(rows))
    print(f"\nwrote {args.out}")
    bad = sum(r["wrong"] + r["zero_filled"] for r in rows) + sum(r["read_errors"] - r["typed"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
