"""``robot-rl data info|verify|recover``: look at, check and repair episode stores."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table, human_bytes
from robot_rl.data import EpisodeStore, recover
from robot_rl.data.verify import verify


@dataclass
class InfoConfig:
    """Print a summary of a store: episodes, steps, keys, success rate, sources, size.

    Example: robot-rl data info runs/demo/demo.zarr
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    episodes: bool = arg(False, help="also list every episode (length, success, source, task)")


def info(cfg: InfoConfig) -> int:
    store = EpisodeStore(cfg.store)
    records = store.records
    n = len(store)
    labelled = [r["success"] for r in records if isinstance(r.get("success"), bool)]
    success = f"{100.0 * sum(labelled) / len(labelled):.1f}% of {len(labelled)} labelled" if labelled else "unlabelled"
    lengths = store.episode_lengths
    summary = [
        ("store", str(store.path)),
        ("size on disk", human_bytes(store.size_bytes())),
        ("episodes", f"{n} committed, {store.n_steps} steps"),
        ("episode length", f"min {lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()}" if n else "-"),
        ("success", success),
        ("sources", _counts(r.get("source") for r in records)),
        ("tasks", _counts(r.get("task") for r in records)),
        ("status", _counts(r.get("status", "ok") for r in records)),
        ("fps", f"{store.schema.fps:g}"),
        ("robot", store.schema.robot.get("name", "-") if store.schema.robot else "-"),
        ("uncommitted tail", f"{store.uncommitted_rows} rows (run `robot-rl data recover`)" if store.uncommitted_rows else "none"),
        ("fingerprint", store.fingerprint()[:16]),
    ]
    width = max(len(k) for k, _ in summary)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in summary))
    print()
    rows = []
    for key, spec in store.schema.keys.items():
        rows.append([key, str(spec.shape), spec.dtype, spec.units or "-", "image" if spec.is_image else "numeric", store.chunk_rows(key)])
    print(format_table(["key", "shape", "dtype", "units", "kind", "rows/chunk"], rows))
    if cfg.episodes and n:
        print()
        ep_rows = [
            [i, int(lengths[i]), r.get("success"), r.get("source"), r.get("task"), r.get("status", "ok"), r.get("start_time") or "-"]
            for i, r in enumerate(records)
        ]
        print(format_table(["episode", "length", "success", "source", "task", "status", "start"], ep_rows))
    return 0


def _counts(values: object) -> str:
    counts = Counter(v for v in values if v is not None)  # type: ignore[union-attr]
    return ", ".join(f"{k}: {c}" for k, c in counts.most_common()) or "-"


@dataclass
class VerifyConfig:
    """Read every committed chunk of every key and check the store's invariants.

    Exits 0 when the store is sound (warnings are printed), 1 when it is corrupt.
    Example: robot-rl data verify runs/demo/demo.zarr
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    progress: bool = arg(True, help="show a progress bar")


def verify_cmd(cfg: VerifyConfig) -> int:
    report = verify(cfg.store, progress=cfg.progress)
    for w in report.warnings:
        print(f"warning: {w}")
    if report.ok:
        print(f"OK: {report.episodes} episodes, {report.steps} steps, {report.chunks_checked} chunks checked")
        return 0
    for e in report.errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"CORRUPT: {len(report.errors)} problem(s) in {cfg.store}", file=sys.stderr)
    return 1


@dataclass
class RecoverConfig:
    """Tidy a store whose writer died: truncate the uncommitted tail (default) or keep it.

    Committed episodes are never modified. Example: robot-rl data recover demo.zarr --salvage
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    salvage: bool = arg(
        False, help="keep the fully written uncommitted rows as one more episode marked status=aborted"
    )


def recover_cmd(cfg: RecoverConfig) -> int:
    report = recover(cfg.store, salvage=cfg.salvage)
    print(report.summary())
    return 0


@dataclass
class RelabelConfig:
    """Write relabelled rewards into a store (beside the recorded data, under derived/).

    Scheme 'success': sparse rewards from the episodes' success flags — reward 1 and a
    terminal on the last step of each successful episode, 0 elsewhere; failed episodes
    keep the recorded done flags (a time-out or operator stop is not terminal).
    Train on them with `robot-rl train --rewards NAME` (--rewards success relabels on the fly).
    Example: robot-rl data relabel teleop.zarr --scheme success --name success_sparse
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    scheme: str = arg("success", help="relabelling scheme", choices=("success",))
    name: str = arg("success_sparse", help="name of the relabelled rewards")


def relabel_cmd(cfg: RelabelConfig) -> int:
    from robot_rl.data.relabel import relabel_success, write_rewards

    store = EpisodeStore(cfg.store)
    reward, done = relabel_success(store)
    write_rewards(cfg.store, cfg.name, reward, done, scheme=cfg.scheme)
    n_success = int(reward.sum())
    print(f"{cfg.store}: wrote rewards {cfg.name!r} ({cfg.scheme}) for {len(store)} episodes, {store.n_steps} steps; "
          f"{n_success} rewarded terminal steps, {int(done.sum())} terminal steps")  # fmt: skip
    return 0
