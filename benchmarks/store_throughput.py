"""Episode-store throughput: writing (20-d state + 2 cameras at 224x224) and sampling.

    .venv/bin/python benchmarks/store_throughput.py [--episodes 5 --steps 200 --repeats 3]

Frames are a smooth gradient with a moving blob plus Gaussian sensor noise (std 3),
so they compress like real camera frames rather than like flat synthetic colours or
pure noise. Prints a table of medians over --repeats; results go in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from robot_rl.data import EpisodeStore, EpisodeWriter, KeySpec, StoreSchema
from robot_rl.data.sampler import TransitionSampler, WindowSampler, load_episodes

SIZE = 224


def make_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.float32) * (200.0 / SIZE)
    frames = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for t in range(n):
        cx, cy = 40 + (t * 3) % 140, 60 + (t * 2) % 100
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < 400)[..., None] * np.array([80.0, -60.0, 40.0])
        frames[t] = np.clip(base + blob + rng.normal(0, 3, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return frames


def bench_write(path: Path, episodes: int, steps: int, frames: np.ndarray) -> float:
    schema = StoreSchema.build(
        obs={
            "state": KeySpec((20,), "float32"),
            "image.front": KeySpec((SIZE, SIZE, 3), "uint8"),
            "image.wrist": KeySpec((SIZE, SIZE, 3), "uint8"),
        },
        action=KeySpec((7,), "float32"),
        fps=20,
    )
    rng = np.random.default_rng(0)
    states = rng.standard_normal((steps, 20)).astype(np.float32)
    actions = rng.standard_normal((steps, 7)).astype(np.float32)
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    with EpisodeWriter(path, schema, defaults={"source": "scripted"}, update_stats=False) as w:
        for _ in range(episodes):
            for t in range(steps):
                w.add_step(
                    {"state": states[t], "image.front": frames[t % len(frames)], "image.wrist": frames[-1 - t % len(frames)]},
                    actions[t],
                    timestamp=t / 20,
                )
            w.end_episode(success=True)
    return episodes * steps / (time.perf_counter() - t0)


def rate(fn, seconds: float = 2.0) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frames = make_frames(rng, 64)
    tmp = Path(tempfile.mkdtemp(prefix="robot_rl_bench_"))
    os.environ.setdefault("ROBOT_RL_CACHE", str(tmp / "cache"))
    results: dict[str, list[float]] = {k: [] for k in ("write", "trans_lowdim", "trans_img", "win_lowdim", "win_img")}
    size = 0
    try:
        for r in range(args.repeats):
            path = tmp / "bench.zarr"
            results["write"].append(bench_write(path, args.episodes, args.steps, frames))
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            store = EpisodeStore(path)
            low = load_episodes(store, keys=["obs.state", "action", "reward", "done"])
            img = load_episodes(store, image_cache="memmap", cache_dir=tmp / f"cache{r}")
            srng = np.random.default_rng(r)
            t_low, t_img = TransitionSampler(low), TransitionSampler(img)
            w_low = WindowSampler(low, horizon=16, obs_horizon=2, action_horizon=8)
            w_img = WindowSampler(img, horizon=16, obs_horizon=2, action_horizon=8)
            results["trans_lowdim"].append(rate(lambda: t_low.sample(256, srng)))
            results["trans_img"].append(rate(lambda: t_img.sample(256, srng)))
            results["win_lowdim"].append(rate(lambda: w_low.sample(256, srng)))
            results["win_img"].append(rate(lambda: w_img.sample(256, srng)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steps = args.episodes * args.steps
    print(f"store: {args.episodes} episodes x {args.steps} steps, 20-d state + 2 cameras {SIZE}x{SIZE}x3 uint8")
    print(f"on disk: {size / 2**20:.1f} MiB ({size / steps / 1024:.1f} KiB/step; raw {2 * SIZE * SIZE * 3 / 1024:.0f} KiB/step)")
    print(f"medians of {args.repeats} runs:")
    labels = {
        "write": "write, steps/s",
        "trans_lowdim": "transition batches of 256/s (low-dim)",
        "trans_img": "transition batches of 256/s (state + 2 cameras, memmap)",
        "win_lowdim": "window batches of 256/s (T=16, To=2, low-dim)",
        "win_img": "window batches of 256/s (T=16, To=2, state + 2 cameras, memmap)",
    }
    for key, label in labels.items():
        vals = results[key]
        print(f"  {label:<66} {statistics.median(vals):10.1f}   (runs: {', '.join(f'{v:.1f}' for v in vals)})")


if __name__ == "__main__":
    main()
