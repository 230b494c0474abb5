"""Roll a policy out in a RobotEnv and report success with a 95% confidence interval.

    result = evaluate(RobotEnv(make_robot("sim_lift")), robot.scripted_expert(), episodes=50)
    print(result.table())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from robot_rl.envs.robot_env import RobotEnv
from robot_rl.policies import Policy


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z=1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalResult:
    successes: list[bool] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    safety_steps: int = 0
    """Steps where the safety filter changed or replaced the policy's action."""
    steps: int = 0

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(int(sum(self.successes)), self.episodes)

    def summary(self) -> dict[str, float]:
        lo, hi = self.ci95
        return {
            "episodes": self.episodes,
            "success_rate": self.success_rate,
            "ci95_low": lo,
            "ci95_high": hi,
            "mean_return": float(np.mean(self.returns)) if self.returns else 0.0,
            "mean_length": float(np.mean(self.lengths)) if self.lengths else 0.0,
            "safety_fraction": self.safety_steps / self.steps if self.steps else 0.0,
        }

    def table(self) -> str:
        s = self.summary()
        return (
            f"episodes      {s['episodes']}\n"
            f"success rate  {100 * s['success_rate']:.1f}%  (95% CI {100 * s['ci95_low']:.1f}-{100 * s['ci95_high']:.1f}%)\n"
            f"mean return   {s['mean_return']:.3f}\n"
            f"mean length   {s['mean_length']:.1f} steps\n"
            f"safety filter changed {100 * s['safety_fraction']:.1f}% of the actions"
        )


def evaluate(
    env: RobotEnv,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    video_dir: Path | None = None,
    n_videos: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Run ``episodes`` seeded episodes (seeds ``seed .. seed+episodes-1``)."""
    result = EvalResult()
    for ep in tqdm(range(episodes), desc="eval", unit="episode", disable=not progress):
        obs, _ = env.reset(seed=seed + ep)
        policy.reset()
        frames = [] if ep < n_videos else None
        total, steps, info = 0.0, 0, {"success": False}
        while True:
            if frames is not None:
                frames.append(_frame(env))
            obs, reward, terminated, truncated, info = env.step(policy.act(obs))
            total += reward
            steps += 1
            result.steps += 1
            result.safety_steps += bool(info["safety"])
            if terminated or truncated:
                break
        result.successes.append(bool(info["success"]))
        result.returns.append(total)
        result.lengths.append(steps)
        if frames:
            assert video_dir is not None
            result.videos.append(write_video(video_dir / f"episode_{ep:03d}.mp4", frames, env.robot.config.fps))
    return result


def _frame(env: RobotEnv) -> np.ndarray:
    frame = env.render()
    if frame is None:
        raise ValueError("saving videos needs a camera observation: enable one in the robot config (e.g. --set cameras=[agentview])")
    return frame


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write RGB uint8 frames to an MP4 (OpenCV, mp4v codec)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
