"""``robot-rl data report|view``: look at an episode store as a person would."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table

MAX_ROWS = 40
"""Episodes listed in the terminal table (flagged ones first); index.html lists them all."""


@dataclass
class DataReportConfig:
    """Write a static HTML/PNG report of a store and flag suspicious episodes.

    The report (no JavaScript, no network) shows episode lengths and success, action and
    state histograms, per-episode timestamp intervals and camera thumbnails, and a checks
    table: fps mismatch, timestamp jitter, dropped frames, timestamps going backwards or
    repeating, NaN/Inf, aborted episodes. The checks are also written to report.json.
    Example: robot-rl data report runs/demo/lift.zarr --out runs/demo/lift_report
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    out: Path | None = arg(None, help="report directory (default: <store name>_report beside the store)")
    episodes: list[int] = arg([], help="episodes to report, e.g. 0 3 7 (default: all)")
    fps_tolerance: float = arg(0.1, help="flag a rate off the declared fps by more than this fraction")
    gap_factor: float = arg(1.5, help="a timestamp interval over this many frame periods is a gap (dropped frames)")
    jitter_tolerance: float = arg(0.25, help="flag an interval std above this fraction of the frame period")
    thumbnails: int = arg(8, help="frames per camera thumbnail strip")
    max_detail_episodes: int = arg(60, help="episodes with their own timing plot and thumbnails (flagged first)")
    strict: bool = arg(False, help="exit 1 when any episode is flagged (for CI)")
    progress: bool = arg(True, help="show progress bars")


def report_cmd(cfg: DataReportConfig) -> int:
    from robot_rl.data import EpisodeStore
    from robot_rl.interop.report import CheckConfig, ReportConfig, write_report

    for name in ("fps_tolerance", "jitter_tolerance"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if not cfg.gap_factor > 1:
        raise ValueError(f"--gap-factor must be above 1 (a gap is longer than one frame period), got {cfg.gap_factor}")
    if cfg.thumbnails < 1 or cfg.max_detail_episodes < 0:
        raise ValueError("--thumbnails must be >= 1 and --max-detail-episodes >= 0")
    store = EpisodeStore(cfg.store)
    out = cfg.out or Path(cfg.store).resolve().parent / f"{Path(cfg.store).name.removesuffix('.zarr')}_report"
    checks = CheckConfig(cfg.fps_tolerance, cfg.gap_factor, cfg.jitter_tolerance)
    config = ReportConfig(checks=checks, thumbnails=cfg.thumbnails, max_detail_episodes=cfg.max_detail_episodes)
    summary = write_report(store, out, cfg.episodes or None, config, progress=cfg.progress)
    rate = "unlabelled" if summary.success_rate is None else f"{100 * summary.success_rate:.1f}%"
    flagged = len(summary.flagged)
    print(f"{store.path}: {summary.episodes} episodes, {summary.steps} steps, success {rate}, {flagged} flagged")
    ordered = [c for c in summary.checks if c.flagged] + [c for c in summary.checks if not c.flagged]
    rows = [
        [c.episode, "FLAG" if c.flagged else "ok", c.length, "-" if c.success is None else c.success,
         f"{c.rate_fps:.3g}" if c.rate_fps else "-", f"{c.dt_std_ms:.2f}" if c.dt_std_ms is not None else "-",
         c.dropped_frames + sum(c.recorder_drops.values()), "; ".join(c.reasons)]
        for c in ordered[:MAX_ROWS]
    ]  # fmt: skip
    print(format_table(["episode", "flag", "length", "success", "rate Hz", "dt std ms", "dropped", "reasons"], rows))
    if len(ordered) > MAX_ROWS:
        print(f"... {len(ordered) - MAX_ROWS} more episodes in the report")
    print(f"report: {summary.index}")
    return 1 if cfg.strict and summary.flagged else 0


@dataclass
class DataViewConfig:
    """Open one episode in the rerun viewer: camera frames, every state and action element, the record.

    Timelines 'step' and 'time' (the recorded timestamps). Without a display, write a file
    with --save and open it elsewhere with `rerun FILE.rrd`. Needs pip install 'robot-rl[interop]'.
    Example: robot-rl data view runs/demo/lift.zarr --episode 3 --save ep3.rrd
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    episode: int = arg(0, help="episode index (negative counts from the end)")
    save: Path | None = arg(None, help="write an .rrd file instead of opening the viewer")
    progress: bool = arg(True, help="show a progress bar")


def view_cmd(cfg: DataViewConfig) -> int:
    from robot_rl.interop.viewer import view_episode

    try:
        path = view_episode(cfg.store, cfg.episode, save=cfg.save, progress=cfg.progress)
    except (RuntimeError, ImportError) as exc:  # no viewer / no display / no rerun-sdk
        print(f"robot-rl data view: error: {exc}", file=sys.stderr)
        return 2
    if path is not None:
        print(f"wrote {path}; open it with: rerun {path}")
    else:
        print(f"episode {cfg.episode} of {cfg.store} sent to the rerun viewer")
    return 0
