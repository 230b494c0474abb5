"""The episode report, the rerun viewer and the training reports, looked at as a user would."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import zarr
from PIL import Image

from robot_rl.cli import main
from robot_rl.data import EpisodeStore, EpisodeWriter
from robot_rl.interop.report import CheckConfig, check_episodes
from robot_rl.interop.viewer import view_episode
from store_fixtures import IMAGE, small_schema

FPS = 20.0
LENGTH = 60
DROPPED_AT = (10, 11, 30)  # frame indices the recorder lost in episode 1: gaps of 2 and 1 frames


def frames(n: int, seed: int) -> np.ndarray:
    """A moving bright square on a textured background: thumbnails that are not blank."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 60, (n, *IMAGE), dtype=np.uint8)
    for t in range(n):
        x = (t * 2) % (IMAGE[1] - 6)
        out[t, 8:14, x : x + 6] = (250, 200, 40)
    return out


def write(writer: EpisodeWriter, ts: np.ndarray, seed: int, **meta) -> int:
    rng = np.random.default_rng(seed)
    n = ts.size
    joint = np.cumsum(rng.normal(0, 0.05, (n, 7)), axis=0).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
    images = frames(n, seed)
    for t in range(n):
        writer.add_step({"joint_pos": joint[t], "image.wrist": images[t]}, action=action[t], timestamp=float(ts[t]),
                        done=t == n - 1)  # fmt: skip
    return writer.end_episode(meta)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Episode 0 clean; 1 with dropped frames; 2 recorded at 15 Hz, declared 20; 3 with small, tolerable jitter."""
    path = tmp_path_factory.mktemp("report") / "episodes.zarr"
    period = 1.0 / FPS
    with EpisodeWriter(path, small_schema(), defaults={"source": "teleop", "task": "lift"}) as w:
        write(w, period * np.arange(LENGTH), 0, success=True)
        kept = np.array([i for i in range(LENGTH + len(DROPPED_AT)) if i not in DROPPED_AT])
        write(w, period * kept, 1, success=False)
        write(w, np.arange(LENGTH) / 15.0, 2, success=True)
        jitter = np.random.default_rng(3).uniform(-0.002, 0.002, LENGTH)
        write(w, period * np.arange(LENGTH) + jitter, 3)  # unlabelled
    return path


def test_checks_flag_exactly_the_dropped_frames_and_the_fps_mismatch(store_path):
    checks = check_episodes(EpisodeStore(store_path))
    assert [c.episode for c in checks] == [0, 1, 2, 3]
    assert [c.flagged for c in checks] == [False, True, True, False]
    clean, drops, slow, jittery = checks
    assert clean.gaps == 0 and clean.dropped_frames == 0 and clean.rate_fps == pytest.approx(FPS)
    assert drops.gaps == 2 and drops.dropped_frames == 3
    assert len(drops.reasons) == 1 and "dropped frames: 3 in 2 gap(s)" in drops.reasons[0]
    assert drops.rate_fps == pytest.approx(FPS)  # the drops do not read as an fps mismatch ...
    assert drops.mean_fps < FPS  # ... although they lower the mean rate the writer records
    assert slow.rate_fps == pytest.approx(15.0) and len(slow.reasons) == 1 and "fps mismatch" in slow.reasons[0]
    assert slow.gaps == 0  # judged against the rate it was recorded at, its intervals are regular
    assert 0 < jittery.dt_std_ms < 0.25 * 1000 / FPS and jittery.success is None
    # a tighter jitter threshold flags episode 3 too
    tight = check_episodes(EpisodeStore(store_path), episodes=[3], config=CheckConfig(jitter_tolerance=0.01))
    assert tight[0].flagged and "jitter" in tight[0].reasons[0]
    with pytest.raises(IndexError, match="4 committed episodes"):
        check_episodes(EpisodeStore(store_path), episodes=[9])


def test_checks_flag_backwards_timestamps_nan_recorder_drops_and_aborted_episodes(tmp_path):
    path = tmp_path / "bad.zarr"
    period = 1.0 / FPS
    with EpisodeWriter(path, small_schema(), defaults={"source": "teleop"}) as w:
        for i in range(3):
            write(w, period * np.arange(20), 10 + i)
        write(w, period * np.arange(20), 13, dropped={"obs.image.wrist": 4, "obs.joint_pos": 0})
        write(w, period * np.arange(20), 14, status="aborted", recovered=True)
    # damage two committed episodes the way a buggy importer could (the writer refuses both)
    ts = zarr.open_array(path / "data" / "timestamp", mode="r+")
    ts[25] = ts[24] - 0.01  # episode 1 steps back in time
    joints = zarr.open_array(path / "data" / "obs.joint_pos", mode="r+")
    joints[45] = np.full(7, np.nan, np.float32)  # episode 2 has a NaN row
    checks = check_episodes(EpisodeStore(path))
    assert checks[0].reasons == []
    assert checks[1].backwards == 1 and any("backwards" in r for r in checks[1].reasons)
    assert checks[2].non_finite == {"obs.joint_pos": 1} and any("non-finite" in r for r in checks[2].reasons)
    assert checks[3].recorder_drops == {"obs.image.wrist": 4}
    assert checks[3].reasons == ["recorder dropped: obs.image.wrist 4"]
    assert checks[4].reasons == ["aborted episode (salvaged after a crash)"]


def png_ok(path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert pixels.var() > 0, f"{path.name} is blank"
    return pixels.shape[1], pixels.shape[0]


def test_report_html_links_real_pngs_and_flags_the_bad_episodes(store_path, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["data", "report", str(store_path), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 episodes, 240 steps, success 66.7%, 2 flagged" in text and f"report: {out / 'index.html'}" in text
    page = (out / "index.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(set(sources)) >= 1 + 2 + 4 + 4  # lengths, 2 histograms, 4 timings, 4 strips
    for src in sources:
        assert "/" not in src and (out / src).is_file(), src
        w, h = png_ok(out / src)
        assert w >= 200 and h >= 100, (src, w, h)
    assert {"lengths.png", "hist_action.png", "hist_obs_joint_pos.png", "timing_0001.png"} <= set(sources)
    strip_w, strip_h = png_ok(out / "thumbs_0000_obs_image_wrist.png")
    assert strip_h >= 96 and strip_w > 8 * 96  # 8 frames, 96 px high, wider than high
    flagged = page[page.index("<h2>Flagged episodes</h2>") : page.index('<h2 id="lengths">')]
    assert "episode 1" in flagged and "episode 2" in flagged
    assert "episode 0" not in flagged and "episode 3" not in flagged
    data = json.loads((out / "report.json").read_text())
    assert sorted(data["flagged"]) == ["1", "2"] and data["steps"] == 240
    # --strict fails a CI run on flagged episodes; a clean selection passes
    (out / "notes.png").write_bytes(b"mine")
    quick = ["--max-detail-episodes", "0", "--no-progress"]
    assert main(["data", "report", str(store_path), "--out", str(out), "--strict", *quick]) == 1
    clean = ["--episodes", "0", "3", "--strict", "--no-progress"]
    assert main(["data", "report", str(store_path), "--out", str(out), *clean]) == 0
    assert not (out / "timing_0001.png").exists()  # the directory holds only the latest report's images ...
    assert (out / "notes.png").read_bytes() == b"mine"  # ... and never loses files it did not write
    capsys.readouterr()
    assert main(["data", "report", str(store_path), "--out", str(out), "--episodes", "7", "--no-progress"]) == 2
    assert "episode 7 out of range" in capsys.readouterr().err


def test_viewer_writes_a_recording_rerun_reads_back(store_path, tmp_path, capsys):
    from rerun.chunk import RrdReader

    rrd = view_episode(EpisodeStore(store_path), 1, save=tmp_path / "ep1.rrd", progress=False)
    rows: Counter[str] = Counter()
    timelines: set[str] = set()
    for chunk in RrdReader(rrd).stream():
        rows[chunk.entity_path] += chunk.num_rows
        timelines.update(chunk.timeline_names)
    n = EpisodeStore(store_path).episode_lengths[1]
    assert {"step", "time"} <= timelines
    assert rows["/camera/wrist"] == n
    assert all(rows[f"/obs/joint_pos/j{i}"] == n for i in range(7))  # element names from the key spec
    assert all(rows[f"/action/{i}"] == n for i in range(7))  # no names: the element index
    assert rows["/reward"] == n and rows["/episode"] == 1
    # the CLI, headless
    out = tmp_path / "cli.rrd"
    assert main(["data", "view", str(store_path), "--episode", "-1", "--save", str(out), "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert sum(c.num_rows for c in RrdReader(out).stream() if c.entity_path == "/camera/wrist") == LENGTH
    assert main(["data", "view", str(store_path), "--episode", "4", "--save", str(out)]) == 2
    assert "episode 4 out of range: " in capsys.readouterr().err


def test_train_and_finetune_leave_curves_and_a_summary(tmp_path, capsys):
    store = tmp_path / "mock.zarr"
    collect = ["sim", "collect", "--task", "mock_arm", "--episodes", "4", "--noise", "0", "0.8", "--out", str(store)]
    assert main(collect) == 0
    run = tmp_path / "cql"
    args = ["train", "--algo", "cql", "--data", str(store), "--out", str(run), "--steps", "20", "--batch-size", "32",
            "--log-every", "10", "--save-every", "0", "--no-tensorboard", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert f"summary:    {run / 'summary.md'}" in capsys.readouterr().out
    png_ok(run / "curves.png")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == 20 and summary["algo"] == "cql" and "train/critic_loss" in summary["final_metrics"]
    md = (run / "summary.md").read_text()
    assert "| updates | 20 |" in md and "![curves](curves.png)" in md
    ft = tmp_path / "ft"
    args = ["finetune", str(run / "checkpoint"), "--method", "rlpd", "--online-steps", "20", "--utd", "1",
            "--batch-size", "16", "--eval-every", "20", "--eval-episodes", "1", "--offline-updates", "0",
            "--warmup-steps", "10", "--out", str(ft)]  # fmt: skip
    assert main(args) == 0
    png_ok(ft / "curve.png")
    summary = json.loads((ft / "summary.json").read_text())
    assert summary["method"] == "rlpd" and summary["online_steps"] == 20 and summary["evals"][-1]["env_steps"] == 20
    assert "![curve](curve.png)" in (ft / "summary.md").read_text()
