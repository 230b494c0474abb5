"""A static report of an episode store: what is in it, and which episodes look wrong.

    summary = write_report(EpisodeStore("lift.zarr"), "lift_report")   # lift_report/index.html + PNGs
    checks = check_episodes(EpisodeStore("lift.zarr"))                  # the same checks, as data

Command line: ``robot-rl data report lift.zarr --out lift_report``.

The report is one ``index.html`` (no JavaScript, no network: open it from disk or
attach it to a CI run) that links PNGs beside it, plus ``report.json`` with the checks:

- a summary (episodes, steps, success rate, flagged episodes and why);
- episode lengths, coloured by success / failure / unlabelled, flagged ones marked;
- a checks table, one row per episode (see :class:`CheckConfig` for the thresholds):
  rate vs declared fps, timestamp jitter, dropped frames (timestamp gaps, and the
  recorder's own per-key drop counts when the episode record carries them), timestamps
  that go backwards or repeat, non-finite numbers in numeric keys, aborted episodes;
- histograms of the action and of every low-dimensional observation, per element,
  titled with the element names of the key's spec;
- per episode: the timestamp intervals against the declared period, and a strip of
  evenly spaced thumbnails per camera.

matplotlib (Agg) is imported only when a report is written; ``check_episodes`` needs
numpy alone.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data import EpisodeStore

COLORS = {"success": "#2e7d32", "failure": "#c62828", "unknown": "#9e9e9e"}
"""Bar colours of episodes by outcome."""


@dataclass
class CheckConfig:
    """Thresholds of the per-episode checks (each one documented in docs/report.md)."""

    fps_tolerance: float = 0.1
    """Flag ``fps mismatch`` when the episode's rate (1 / median timestamp interval) differs
    from its declared fps by more than this fraction of the declared fps."""
    gap_factor: float = 1.5
    """A timestamp interval longer than ``gap_factor`` frame periods is a gap: frames were
    dropped there (``round(dt / period) - 1`` of them)."""
    jitter_tolerance: float = 0.25
    """Flag ``jitter`` when the standard deviation of the intervals (gaps excluded) exceeds
    this fraction of the frame period."""
    min_steps: int = 3
    """Episodes shorter than this get no timing checks (too few intervals to judge)."""


@dataclass
class EpisodeCheck:
    """The checks of one episode; ``reasons`` is empty when nothing looks wrong."""

    episode: int
    length: int
    success: bool | None
    source: str | None
    task: str | None
    status: str
    declared_fps: float
    rate_fps: float | None
    """1 / median timestamp interval: the rate the episode was recorded at (robust to drops)."""
    mean_fps: float | None
    """(steps - 1) / duration: what the writer records as ``measured_fps`` (drops lower it)."""
    dt_std_ms: float | None
    """Standard deviation of the timestamp intervals without the gaps, in milliseconds."""
    dt_max_ms: float | None
    gaps: int = 0
    """Intervals longer than ``gap_factor`` frame periods."""
    dropped_frames: int = 0
    """Frames missing in those gaps."""
    recorder_drops: dict[str, int] = field(default_factory=dict)
    """Per-key drop counts written by the recorder into the episode record (``dropped``), if any."""
    backwards: int = 0
    """Intervals where the timestamp goes backwards."""
    repeated: int = 0
    """Intervals of zero length (the same timestamp twice)."""
    non_finite: dict[str, int] = field(default_factory=dict)
    """Rows with NaN or Inf, per numeric key."""
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    @property
    def outcome(self) -> str:
        return "unknown" if self.success is None else "success" if self.success else "failure"


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote and found."""

    out_dir: Path
    index: Path
    episodes: int
    steps: int
    success_rate: float | None
    """Share of successful episodes among the labelled ones (None when none is labelled)."""
    checks: list[EpisodeCheck]
    images: list[Path]

    @property
    def flagged(self) -> dict[int, list[str]]:
        return {c.episode: c.reasons for c in self.checks if c.flagged}


# ---------------------------------------------------------------------------- checks
def _select(store: EpisodeStore, episodes: Sequence[int] | None) -> list[int]:
    if episodes is None or len(episodes) == 0:
        return list(range(len(store)))
    n = len(store)
    out = []
    for e in episodes:
        if not -n <= int(e) < n:
            raise IndexError(f"episode {e} out of range: {store.path} has {n} committed episodes (0..{n - 1})")
        out.append(int(e) % n)
    return sorted(set(out))


def numeric_keys(store: EpisodeStore) -> list[str]:
    """Low-dimensional float keys: the action and every non-image observation."""
    keys = ["action"] + [k for k in store.schema.obs_keys if not store.schema.keys[k].is_image]
    return [k for k in keys if store.schema.keys[k].np_dtype.kind in "fiu"]


def check_episode(
    store: EpisodeStore, episode: int, config: CheckConfig | None = None, data: dict[str, np.ndarray] | None = None
) -> EpisodeCheck:
    """Run every check on one committed episode (``data``: its arrays, when already read)."""
    cfg = config or CheckConfig()
    record = store.record(episode)
    keys = ["timestamp"] + [k for k in store.keys if k != "timestamp" and store.schema.keys[k].np_dtype.kind == "f"]
    keys = [k for k in keys if not store.schema.keys[k].is_image]
    if data is None or any(k not in data for k in keys):
        data = store.episode(episode, keys)
    length = int(store.episode_lengths[episode])
    declared = _as_float(record.get("fps")) or store.schema.fps
    success = record.get("success") if isinstance(record.get("success"), bool) else None
    check = EpisodeCheck(
        episode=episode, length=length, success=success, source=record.get("source"), task=record.get("task"),
        status=str(record.get("status", "ok")), declared_fps=declared, rate_fps=None, mean_fps=None,
        dt_std_ms=None, dt_max_ms=None,
    )  # fmt: skip
    reasons = check.reasons
    if check.status != "ok":
        reasons.append(f"{check.status} episode" + (" (salvaged after a crash)" if record.get("recovered") else ""))
    elif record.get("recovered"):
        reasons.append("recovered after a crash")

    ts = np.asarray(data["timestamp"], dtype=np.float64)
    dt = np.diff(ts)
    finite_dt = dt[np.isfinite(dt)]
    check.backwards = int((finite_dt < 0).sum())
    check.repeated = int((finite_dt == 0).sum())
    if check.backwards:
        reasons.append(f"timestamps go backwards {check.backwards}x")
    if check.repeated:
        reasons.append(f"repeated timestamps {check.repeated}x")
    forward = finite_dt[finite_dt > 0]
    if length >= cfg.min_steps and forward.size:
        duration = float(ts[-1] - ts[0])
        check.mean_fps = (length - 1) / duration if duration > 0 else None
        median = float(np.median(forward))
        check.rate_fps = 1.0 / median
        period = 1.0 / declared
        if abs(check.rate_fps - declared) > cfg.fps_tolerance * declared:
            reasons.append(f"fps mismatch: recorded at {check.rate_fps:.3g} Hz, declared {declared:g} Hz")
            period = median  # judge drops and jitter against the rate it was actually recorded at
        gap = forward > cfg.gap_factor * period
        check.gaps = int(gap.sum())
        check.dropped_frames = int(np.maximum(np.round(forward[gap] / period) - 1, 1).sum()) if check.gaps else 0
        if check.gaps:
            reasons.append(f"dropped frames: {check.dropped_frames} in {check.gaps} gap(s)")
        steady = forward[~gap]
        check.dt_max_ms = 1000.0 * float(forward.max())
        if steady.size >= 2:
            check.dt_std_ms = 1000.0 * float(steady.std())
            if steady.std() > cfg.jitter_tolerance * period:
                share = 100 * steady.std() / period
                reasons.append(f"timestamp jitter: std {1000 * steady.std():.1f} ms, {share:.0f}% of the period")
    drops = record.get("dropped")
    if isinstance(drops, dict):
        check.recorder_drops = {str(k): int(v) for k, v in drops.items() if isinstance(v, (int, float)) and v > 0}
        if check.recorder_drops:
            listed = ", ".join(f"{k} {v}" for k, v in sorted(check.recorder_drops.items()))
            reasons.append(f"recorder dropped: {listed}")
    for key in keys:
        if key == "timestamp" and not np.isfinite(ts).all():
            check.non_finite[key] = int((~np.isfinite(ts)).sum())
            continue
        values = np.asarray(data[key])
        bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1) if values.size else np.zeros(0, bool)
        if bad.any():
            check.non_finite[key] = int(bad.sum())
    if check.non_finite:
        reasons.append("non-finite values: " + ", ".join(f"{k} ({v} rows)" for k, v in check.non_finite.items()))
    return check


def check_episodes(
    store: EpisodeStore,
    episodes: Sequence[int] | None = None,
    config: CheckConfig | None = None,
    progress: bool = False,
) -> list[EpisodeCheck]:
    """The checks of every (or the given) committed episode, in episode order."""
    return [
        check_episode(store, e, config)
        for e in tqdm(_select(store, episodes), desc="check", unit="episode", disable=not progress)
    ]


def _as_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


# ---------------------------------------------------------------------------- report
@dataclass
class ReportConfig:
    """What :func:`write_report` draws, besides the check thresholds."""

    checks: CheckConfig = field(default_factory=CheckConfig)
    thumbnails: int = 8
    """Frames per thumbnail strip (evenly spaced over the episode, first and last included)."""
    thumbnail_height: int = 96
    """Height of each thumbnail in pixels (width keeps the camera's aspect ratio)."""
    bins: int = 40
    """Histogram bins."""
    max_detail_episodes: int = 60
    """Episodes that get their own timing plot and thumbnails (flagged ones first, then in
    order); every episode still has a row in the checks table."""


def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the episode report draws with matplotlib: pip install 'robot-rl[interop]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(
    store: EpisodeStore | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    episodes: Sequence[int] | None = None,
    config: ReportConfig | None = None,
    progress: bool = True,
) -> ReportSummary:
    """Write ``out_dir/index.html``, its PNGs and ``report.json``; return what was found."""
    cfg = config or ReportConfig()
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    if len(store) == 0:
        raise ValueError(f"{store.path} has no committed episodes: nothing to report")
    plt = _require_matplotlib()
    selected = _select(store, episodes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous_images(out)
    low_dim = numeric_keys(store)
    checks: list[EpisodeCheck] = []
    values: dict[str, list[np.ndarray]] = {k: [] for k in low_dim}
    timestamps: dict[int, np.ndarray] = {}
    floats = {k for k in store.keys if store.schema.keys[k].np_dtype.kind == "f" and not store.schema.keys[k].is_image}
    read_keys = sorted({"timestamp", *low_dim, *floats})
    for e in tqdm(selected, desc="report: check", unit="episode", disable=not progress):
        data = store.episode(e, read_keys)
        checks.append(check_episode(store, e, cfg.checks, data))
        timestamps[e] = data["timestamp"]
        for k in low_dim:
            values[k].append(data[k].reshape(data[k].shape[0], -1))
    images: list[Path] = []
    images.append(_plot_lengths(plt, checks, out / "lengths.png"))
    hist_paths: dict[str, Path] = {}
    for k in tqdm(low_dim, desc="report: histograms", unit="key", disable=not progress):
        hist = out / f"hist_{_slug(k)}.png"
        hist_paths[k] = _plot_histograms(plt, store, k, np.concatenate(values[k]), cfg.bins, hist)
        images.append(hist_paths[k])
    by_episode = {c.episode: c for c in checks}
    detail = [c.episode for c in checks if c.flagged] + [c.episode for c in checks if not c.flagged]
    detail = sorted(detail[: cfg.max_detail_episodes])
    timing: dict[int, Path] = {}
    strips: dict[int, dict[str, Path]] = {}
    for e in tqdm(detail, desc="report: episodes", unit="episode", disable=not progress):
        timing[e] = _plot_timing(plt, by_episode[e], timestamps[e], cfg.checks, out / f"timing_{e:04d}.png")
        images.append(timing[e])
        strips[e] = {}
        for cam in store.schema.image_keys:
            strip = out / f"thumbs_{e:04d}_{_slug(cam)}.png"
            strips[e][cam] = _thumbnail_strip(store, e, cam, cfg.thumbnails, cfg.thumbnail_height, strip)
            images.append(strips[e][cam])
    labelled = [c.success for c in checks if c.success is not None]
    summary = ReportSummary(
        out_dir=out, index=out / "index.html", episodes=len(checks), steps=int(sum(c.length for c in checks)),
        success_rate=float(np.mean(labelled)) if labelled else None, checks=checks, images=images,
    )  # fmt: skip
    (out / "report.json").write_text(json.dumps(_summary_json(store, summary, cfg), indent=2))
    summary.index.write_text(_html(store, summary, cfg, hist_paths, timing, strips))
    return summary


def _remove_previous_images(out: Path) -> None:
    """Delete the PNGs an earlier report listed in out/report.json (and nothing else), so the
    directory holds only the images of the latest report."""
    try:
        previous = json.loads((out / "report.json").read_text()).get("images", [])
    except (OSError, ValueError, AttributeError):
        return
    for name in previous if isinstance(previous, list) else []:
        if isinstance(name, str) and name.endswith(".png") and Path(name).name == name:
            (out / name).unlink(missing_ok=True)


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def element_names(store: EpisodeStore, key: str) -> list[str]:
    """Names of the elements of a key: the spec's ``names`` when given, else ``key[i]``."""
    spec = store.schema.keys[key]
    n = int(np.prod(spec.shape)) if spec.shape else 1
    if spec.names is not None and len(spec.names) == n:
        return [str(x) for x in spec.names]
    if not spec.shape:
        return [key]
    return [f"{key}[{i}]" for i in range(n)]


def _plot_lengths(plt: Any, checks: list[EpisodeCheck], path: Path) -> Path:
    n = len(checks)
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.25 * n + 2), 14), 3.2))
    xs = np.arange(n)
    lengths = [c.length for c in checks]
    ax.bar(xs, lengths, color=[COLORS[c.outcome] for c in checks], width=0.8)
    flagged = [i for i, c in enumerate(checks) if c.flagged]
    if flagged:
        top = max(lengths)
        ax.scatter(xs[flagged], [lengths[i] + 0.04 * top for i in flagged], marker="v", color="#ef6c00", s=40, zorder=3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[o]) for o in ("success", "failure", "unknown")]
    labels = ["success", "failure", "unlabelled"]
    if flagged:
        handles.append(plt.Line2D([], [], marker="v", color="#ef6c00", linestyle=""))
        labels.append("flagged")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    step = max(1, math.ceil(n / 30))
    ax.set_xticks(xs[::step], [str(c.episode) for c in checks][::step], fontsize=8)
    ax.set_xlabel("episode")
    ax.set_ylabel("steps")
    ax.set_title("episode lengths")
    ax.set_ylim(0, max(lengths) * 1.12 + 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_histograms(plt: Any, store: EpisodeStore, key: str, values: np.ndarray, bins: int, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    names = element_names(store, key)
    dims = values.shape[1]
    cols = min(4, dims)
    rows = math.ceil(dims / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.0 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= dims:
            ax.axis("off")
            continue
        v = values[:, i].astype(np.float64)
        v = v[np.isfinite(v)]
        if v.size and v.max() > v.min():
            counts, edges = np.histogram(v, bins=bins)
            ax.stairs(counts, edges, fill=True, color="#1565c0", alpha=0.85)  # one artist: fast to draw
        elif v.size:  # a constant element: one bar, labelled
            ax.bar([v[0]], [v.size], width=1.0, color="#1565c0", alpha=0.85)
            ax.set_xlim(v[0] - 1, v[0] + 1)
        ax.set_title(names[i] if i < len(names) else f"{key}[{i}]", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    units = store.schema.keys[key].units
    fig.suptitle(f"{key}" + (f"  [{units}]" if units and len(units) < 60 else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_timing(plt: Any, check: EpisodeCheck, ts: np.ndarray, cfg: CheckConfig, path: Path) -> Path:
    dt = 1000.0 * np.diff(np.asarray(ts, dtype=np.float64))
    period = 1000.0 / check.declared_fps
    fig, ax = plt.subplots(figsize=(6.0, 2.0))
    if dt.size:
        steps = np.arange(1, dt.size + 1)
        ax.plot(steps, dt, color="#1565c0", linewidth=1.4, marker="." if dt.size < 80 else None, markersize=3, zorder=2)
        bad = (dt > cfg.gap_factor * period) | (dt <= 0) | ~np.isfinite(dt)
        if bad.any():
            ax.scatter(steps[bad], np.nan_to_num(dt[bad]), color="#c62828", s=18, zorder=3, label="gap / backwards")
    ax.axhline(period, color="#2e7d32", linestyle="--", linewidth=1, label=f"1/fps = {period:.1f} ms", zorder=1)
    gap_label = f"gap > {cfg.gap_factor:g}/fps"
    ax.axhline(cfg.gap_factor * period, color="#ef6c00", linestyle=":", linewidth=1, label=gap_label, zorder=1)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("dt (ms)", fontsize=8)
    ax.tick_params(labelsize=7)
    finite = dt[np.isfinite(dt)]
    low = min(0.0, float(finite.min()) * 1.1) if finite.size else 0.0
    high = max(cfg.gap_factor * period, float(finite.max()) if finite.size else 0.0) * 1.15
    ax.set_ylim(low, high)
    ax.set_title(f"episode {check.episode}: timestamp intervals", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _thumbnail_strip(store: EpisodeStore, episode: int, key: str, n: int, height: int, path: Path) -> Path:
    from PIL import Image, ImageDraw

    start, end = store.bounds(episode)
    rows = np.unique(np.linspace(start, end - 1, min(max(n, 1), end - start)).round().astype(np.int64))
    tiles = []
    for r in rows:
        frame = store.read(key, int(r), int(r) + 1)[0]
        if frame.shape[-1] == 1:
            frame = np.repeat(frame, 3, axis=-1)
        img = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
        width = max(1, round(img.width * height / img.height))
        tiles.append((int(r - start), img.resize((width, height), Image.Resampling.BILINEAR)))
    gap, label_h = 4, 14
    total_w = sum(t.width for _, t in tiles) + gap * (len(tiles) + 1)
    strip = Image.new("RGB", (total_w, height + label_h + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = gap
    for step, tile in tiles:
        strip.paste(tile, (x, gap))
        draw.text((x + 2, height + gap + 1), f"t={step}", fill=(60, 60, 60))
        x += tile.width + gap
    strip.save(path, optimize=True)
    return path


# ---------------------------------------------------------------------------- output
def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _summary_json(store: EpisodeStore, summary: ReportSummary, cfg: ReportConfig) -> dict[str, Any]:
    return {
        "store": str(store.path),
        "fingerprint": store.fingerprint(),
        "episodes": summary.episodes,
        "steps": summary.steps,
        "success_rate": summary.success_rate,
        "flagged": {str(k): v for k, v in summary.flagged.items()},
        "thresholds": asdict(cfg.checks),
        "images": [p.name for p in summary.images],
        "checks": [asdict(c) | {"flagged": c.flagged} for c in summary.checks],
    }


CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1180px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.muted { color: #666; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.flag td { background: #fff3e0; }
.ok { color: #2e7d32; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
img { max-width: 100%; border: 1px solid #eee; }
.episode { margin-bottom: 18px; }
"""


def _html(
    store: EpisodeStore,
    summary: ReportSummary,
    cfg: ReportConfig,
    hists: dict[str, Path],
    timing: dict[int, Path],
    strips: dict[int, dict[str, Path]],
) -> str:
    e = html.escape

    def img(path: Path, alt: str) -> str:
        return f'<img src="{e(path.name)}" alt="{e(alt)}">'

    rate = "unlabelled" if summary.success_rate is None else f"{100 * summary.success_rate:.1f}%"
    flagged = summary.flagged
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>robot_rl report: {e(store.path.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Episode report: {e(store.path.name)}</h1>",
        f'<div class="muted">{e(str(store.path))} &middot; fingerprint {e(store.fingerprint()[:16])} &middot; '
        f"declared {store.schema.fps:g} fps &middot; robot {e(str(store.schema.robot.get('name', '-')))}</div>",
        '<div class="cards">',
        f'<div class="card">episodes<b>{summary.episodes}</b></div>',
        f'<div class="card">steps<b>{summary.steps}</b></div>',
        f'<div class="card">success<b>{e(rate)}</b></div>',
        f'<div class="card">flagged<b class="{"bad" if flagged else "ok"}">{len(flagged)}</b></div>',
        "</div>",
        '<div class="muted">sections: <a href="#lengths">episode lengths</a> &middot; <a href="#checks">checks</a> '
        '&middot; <a href="#episodes">episodes</a> (timing, thumbnails) &middot; <a href="#distributions">'
        "distributions</a> (action and state histograms)</div>",
    ]
    if flagged:
        parts.append("<h2>Flagged episodes</h2><ul>")
        parts += [f'<li><a href="#ep{i}">episode {i}</a>: {e("; ".join(r))}</li>' for i, r in flagged.items()]
        parts.append("</ul>")
    else:
        parts.append('<p class="ok">No episode was flagged.</p>')
    c = cfg.checks
    parts += [
        '<h2 id="lengths">Episode lengths</h2>',
        img(summary.out_dir / "lengths.png", "episode lengths"),
        '<h2 id="checks">Checks</h2>',
        f'<p class="muted">fps mismatch: rate (1 / median interval) off the declared fps by more than '
        f"{100 * c.fps_tolerance:g}%; gap: an interval over {c.gap_factor:g} frame periods (dropped frames); "
        f"jitter: interval std over {100 * c.jitter_tolerance:g}% of the period; plus timestamps going backwards "
        "or repeating, NaN/Inf in numeric keys, aborted episodes and the recorder's own drop counts.</p>",
        "<table><tr><th>episode</th><th>flag</th><th>length</th><th>success</th><th>source</th><th>status</th>"
        "<th>declared fps</th><th>rate (Hz)</th><th>mean fps</th><th>dt std (ms)</th><th>dt max (ms)</th>"
        "<th>dropped</th><th>reasons</th></tr>",
    ]
    for ch in summary.checks:
        anchor = f'<a href="#ep{ch.episode}">{ch.episode}</a>' if ch.episode in timing else str(ch.episode)
        flag = '<span class="bad">FLAG</span>' if ch.flagged else '<span class="ok">ok</span>'
        parts.append(
            f'<tr class="{"flag" if ch.flagged else ""}"><td>{anchor}</td><td>{flag}</td><td>{ch.length}</td>'
            f"<td>{e(str(ch.success if ch.success is not None else '-'))}</td><td>{e(str(ch.source or '-'))}</td>"
            f"<td>{e(ch.status)}</td><td>{ch.declared_fps:g}</td><td>{_fmt(ch.rate_fps)}</td>"
            f"<td>{_fmt(ch.mean_fps)}</td>"
            f"<td>{_fmt(ch.dt_std_ms, '.2f')}</td><td>{_fmt(ch.dt_max_ms, '.1f')}</td>"
            f"<td>{ch.dropped_frames + sum(ch.recorder_drops.values())}</td><td>{e('; '.join(ch.reasons))}</td></tr>"
        )
    parts.append("</table>")
    parts.append('<h2 id="episodes">Episodes</h2>')
    shown = len(timing)
    if shown < summary.episodes:
        note = f"{shown} of {summary.episodes} episodes shown (flagged first); pass --episodes for others."
        parts.append(f'<p class="muted">{note}</p>')
    for ch in summary.checks:
        if ch.episode not in timing:
            continue
        record = store.record(ch.episode)
        title = f"episode {ch.episode}: {ch.length} steps, {ch.outcome}"
        parts.append(f'<div class="episode" id="ep{ch.episode}"><h3>{e(title)}</h3>')
        if ch.flagged:
            parts.append(f'<div class="bad">{e("; ".join(ch.reasons))}</div>')
        parts.append(img(timing[ch.episode], f"episode {ch.episode} timestamp intervals"))
        for cam, path in strips.get(ch.episode, {}).items():
            parts.append(f'<div class="muted">{e(cam)}</div>{img(path, f"episode {ch.episode} {cam}")}')
        details = e(json.dumps(record, indent=1))
        parts.append(f'<details><summary class="muted">record</summary><pre>{details}</pre></details></div>')
    parts.append('<h2 id="distributions">Distributions</h2>')
    for key, path in hists.items():
        parts.append(f"<h3>{e(key)}</h3>{img(path, key + ' histograms')}")
    parts.append('<p class="muted">written by robot-rl data report; the checks as data: report.json</p></body></html>')
    return "\n".join(parts)
