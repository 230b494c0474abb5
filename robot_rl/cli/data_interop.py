"""``robot-rl data export|import``: episode stores to and from other formats (LeRobot, robomimic, rosbag2/MCAP).

``data import --from FORMAT`` dispatches through :data:`IMPORTERS` (format name -> function
of the config); a new format (e.g. rosbag) adds one entry there, its name to
``ImportConfig.from_``'s choices, and any options of its own as fields of ``ImportConfig``
(each field's help says which formats read it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table


def print_summary(summary: Any) -> None:
    """The table every conversion ends with (a :class:`robot_rl.interop.summary.ConversionSummary`)."""
    rate = summary.steps / summary.seconds if summary.seconds > 0 else 0.0
    print(f"{summary.source} -> {summary.target}")
    print(f"{summary.episodes} episodes, {summary.steps} steps, {len(summary.keys)} keys "
          f"in {summary.seconds:.1f} s ({rate:.0f} steps/s)")  # fmt: skip
    print(format_table(["from", "to", "shape", "dtype", "how"], summary.keys))
    for note in summary.notes:
        print(f"note: {note}")


@dataclass
class ExportConfig:
    """Export an episode store to another format: a LeRobotDataset v3 (parquet + mp4, meta/info.json, stats, tasks).

    The result loads with lerobot's `LeRobotDataset(REPO_ID, root=OUT)`, offline. Low-dim obs keys are
    concatenated into observation.state (names per element); meta/robot_rl.json lets `data import` restore
    the store exactly (camera frames exactly only with --no-videos).
    Example: robot-rl data export --to lerobot lift.zarr out/lift_lerobot --repo-id me/lift
    """

    store: Path = arg(help="path of the .zarr episode store", positional=True)
    out: Path = arg(help="directory to create for the exported dataset", positional=True)
    to: str = arg("lerobot", help="target format", choices=("lerobot",))
    repo_id: str = arg("", help="LeRobot repo id recorded in the dataset (default local/<OUT name>)")
    videos: bool = arg(True, help="cameras as mp4 video (lossy, small); --no-videos: PNG images (exact)")
    episodes: list[int] = arg([], help="store episodes to export (default: all committed)")
    task: str = arg("", help="task string for episodes whose record has none")
    overwrite: bool = arg(False, help="replace OUT when it exists")
    progress: bool = arg(True, help="show a progress bar")


def export_cmd(cfg: ExportConfig) -> int:
    from robot_rl.interop.lerobot import export_lerobot

    if cfg.out.exists() and not cfg.overwrite:
        raise ValueError(f"{cfg.out} exists; choose a new directory or pass --overwrite")

    summary = export_lerobot(
        cfg.store,
        cfg.out,
        repo_id=cfg.repo_id or None,
        videos=cfg.videos,
        episodes=cfg.episodes or None,
        default_task=cfg.task,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
    )
    print_summary(summary)
    return 0


@dataclass
class ImportConfig:
    """Import a dataset into a new episode store: a local LeRobotDataset v3, a robomimic HDF5 file, or a rosbag2/MCAP bag.

    lerobot: features map to keys (observation.state -> obs.state, observation.images.CAM -> obs.image.CAM,
    action, next.reward/next.done -> reward/done), fps, tasks and episode boundaries; a dataset exported by
    robot_rl comes back exactly. robomimic: data/demo_i/{obs,actions,rewards,dones}, mask/<filter> -> episode tags.
    rosbag: topics map to keys by a YAML (--mapping) or the robot_rl recorder's own topics (--namespace), aligned
    with the recorder's latest-before policy, episodes cut at time gaps or by a marker topic (docs/rosbag.md).
    Example: robot-rl data import --from lerobot ~/.cache/huggingface/lerobot/lerobot/pusht pusht.zarr
    Example: robot-rl data import --from robomimic lift_ph_low_dim.hdf5 lift_ph.zarr --obs-keys robot0_eef_pos object
    Example: robot-rl data import --from rosbag runs/session_0/ runs/session.zarr --namespace /robot --task lift
    Example: robot-rl data import --from rosbag teleop.mcap teleop.zarr --mapping mapping.yaml
    """

    src: Path = arg(help="dataset to import: a LeRobot dataset root, a robomimic .hdf5 file, a rosbag2 directory or .mcap", positional=True)
    store: Path = arg(help="episode store (.zarr) to create", positional=True)
    from_: str = arg(help="source format", choices=("lerobot", "robomimic", "rosbag"), flag="--from")
    source: str = arg("", help="episode source for records the dataset does not give (teleop, policy, intervention, scripted; default teleop, or the rosbag mapping's)")
    repo_id: str = arg("", help="[lerobot] repo id label (default local/<SRC name>)")
    skip: list[str] = arg([], help="[lerobot] features to leave out (e.g. string or depth columns)")
    exact_meta: bool = arg(True, help="[lerobot] restore a robot_rl export exactly from meta/robot_rl.json (--no-exact-meta: generic mapping)")
    obs_keys: list[str] = arg([], help="[robomimic] obs keys to import (default: all of the first demo's)")
    fps: float = arg(0.0, help="[robomimic, rosbag] control rate in Hz (0: robomimic's env_args control_freq, else 20; rosbag: the mapping's, else estimated)")
    states: bool = arg(False, help="[robomimic] also import simulator states as the extra key sim_state")
    filter_key: str = arg("", help="[robomimic] import only the demos of mask/<FILTER_KEY> (e.g. train)")
    mapping: str = arg("", help="[rosbag] mapping YAML (docs/rosbag.md); default: the robot_rl recorder's mapping for --namespace")
    namespace: str = arg("", help="[rosbag] robot node namespace for the default mapping, e.g. /robot")
    task: str = arg("", help="[rosbag] task of every episode (overrides the mapping's)")
    gap: float = arg(0.0, help="[rosbag] cut episodes where the steps pause longer than this many s (0: the mapping's, default 1)")
    episode_topic: str = arg("", help="[rosbag] marker topic that starts/stops episodes (std_msgs/Bool, or String start/stop/reset)")
    min_steps: int = arg(0, help="[rosbag] drop episodes with fewer steps (0: the mapping's, default 2)")
    stamp: str = arg("", help="[rosbag] message time: header (header stamp, else receive time) or receive (default header)")
    overwrite: bool = arg(False, help="replace STORE when it exists")
    progress: bool = arg(True, help="show a progress bar")


def _import_lerobot(cfg: ImportConfig) -> Any:
    from robot_rl.interop.lerobot import import_lerobot

    return import_lerobot(
        cfg.src,
        cfg.store,
        repo_id=cfg.repo_id or None,
        source=cfg.source or "teleop",
        skip_keys=cfg.skip,
        use_robot_rl_meta=cfg.exact_meta,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
    )


def _import_robomimic(cfg: ImportConfig) -> Any:
    from robot_rl.interop.robomimic import import_robomimic

    return import_robomimic(
        cfg.src,
        cfg.store,
        obs_keys=cfg.obs_keys or None,
        fps=cfg.fps or None,
        source=cfg.source or "teleop",
        states=cfg.states,
        filter_key=cfg.filter_key or None,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
    )


def _import_rosbag(cfg: ImportConfig) -> Any:
    from robot_rl.interop.rosbag import RosbagImportConfig, import_rosbag

    config = RosbagImportConfig(
        bag=cfg.src,
        out=cfg.store,
        mapping=Path(cfg.mapping) if cfg.mapping else None,
        namespace=cfg.namespace,
        task=cfg.task or None,
        source=cfg.source or None,
        fps=cfg.fps or None,
        gap=cfg.gap or None,
        episode_topic=cfg.episode_topic or None,
        min_steps=cfg.min_steps or None,
        stamp=cfg.stamp or None,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
    )
    return import_rosbag(config).to_conversion_summary()


IMPORTERS: dict[str, Callable[[ImportConfig], Any]] = {"lerobot": _import_lerobot, "robomimic": _import_robomimic, "rosbag": _import_rosbag}
"""``--from`` name -> importer; each returns a ConversionSummary."""


def import_cmd(cfg: ImportConfig) -> int:
    if cfg.from_ not in IMPORTERS:
        raise ValueError(f"--from {cfg.from_!r}: unknown format; choose one of {sorted(IMPORTERS)}")
    if cfg.store.exists() and not cfg.overwrite:
        raise ValueError(f"{cfg.store} exists; choose a new store path or pass --overwrite")
    print_summary(IMPORTERS[cfg.from_](cfg))
    return 0
