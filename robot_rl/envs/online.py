"""Online fine-tuning on a Gymnasium env (no ROS): explore, store, update, evaluate.

    tuner = Finetuner.from_checkpoint(ckpt, FinetuneConfig(method="rlpd"), offline=data, online_steps=5000)
    history = run_online(tuner, RobotEnv(robot), steps=5000, store=Path("runs/ft/online.zarr"), robot_name="sim_lift")

Every online step is written to an episode store (``source=policy``, or
``intervention`` for episodes where an intervention took over, with the count), so a
fine-tuning run is itself a dataset. Evaluation episodes (the deterministic policy on
fixed seeds) are not stored and not trained on.

Interventions: ``intervention(obs, t) -> action | None`` is asked every step; an action
means a person (or a stand-in: ``ExpertRescue``) takes over for that step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.algos.finetune import Finetuner
from robot_rl.data import EpisodeWriter
from robot_rl.envs.collect import store_schema
from robot_rl.envs.evaluate import evaluate
from robot_rl.envs.robot_env import RobotEnv
from robot_rl.policies import Policy

Intervention = Callable[[dict[str, np.ndarray], int], "np.ndarray | None"]


class ExpertRescue:
    """A stand-in for a human supervisor: when an episode has run ``after`` steps without
    success, the scripted expert takes over until the episode ends (in a fraction
    ``probability`` of episodes)."""

    def __init__(self, robot: Any, after: int = 100, probability: float = 1.0, seed: int = 0) -> None:
        self.robot, self.after, self.probability = robot, after, probability
        self.rng = np.random.default_rng(seed)
        self.expert: Policy | None = None
        self.active = False

    def reset(self, seed: int) -> None:
        self.expert = self.robot.scripted_expert(noise=0.0, seed=seed)
        self.expert.reset()
        self.active = self.rng.random() < self.probability

    def __call__(self, obs: dict[str, np.ndarray], t: int) -> np.ndarray | None:
        if not self.active or t < self.after or self.expert is None:
            return None
        return self.expert.act(obs)


@dataclass
class OnlineHistory:
    evals: list[dict[str, float]] = field(default_factory=list)
    """One row per evaluation: env_steps, success_rate, mean_return, ..."""
    episodes: list[dict[str, Any]] = field(default_factory=list)
    """One row per training episode: env_steps at its end, success, length, interventions."""
    seconds: float = 0.0


class _TunerPolicy:
    """The fine-tuner's current deterministic policy, as a Policy for ``evaluate``."""

    def __init__(self, tuner: Finetuner) -> None:
        self.tuner = tuner

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.tuner.explore(obs, deterministic=True)


def run_online(
    tuner: Finetuner,
    env: RobotEnv,
    steps: int,
    *,
    robot_name: str,
    store: Path | None = None,
    eval_at: list[int] | None = None,
    eval_episodes: int = 10,
    eval_seed: int = 10_000,
    seed: int = 0,
    intervention: Intervention | None = None,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> OnlineHistory:
    """``steps`` environment steps of exploration + ``utd`` updates each (after the warm-up)."""
    history = OnlineHistory()
    t0 = time.perf_counter()
    eval_points = sorted(set(eval_at if eval_at is not None else [0, steps]))
    writer = None
    if store is not None:
        defaults = {"source": "policy", "task": robot_name, "robot": robot_name}
        writer = EpisodeWriter(store, store_schema(env.robot, robot_name), defaults=defaults)

    def run_eval() -> None:
        result = evaluate(env, _TunerPolicy(tuner), eval_episodes, seed=eval_seed, progress=False).summary()
        row = {"env_steps": tuner.env_steps, "updates": tuner.updates, **result}
        history.evals.append(row)
        if on_eval:
            on_eval(row)

    bar = tqdm(total=steps, desc=f"finetune {tuner.config.method}", unit="step", disable=not progress, dynamic_ncols=True)
    episode = 0
    try:
        tuner.offline_phase()
        while tuner.env_steps < steps:
            # evaluations at episode boundaries: the first boundary at or after each point
            if eval_points and tuner.env_steps >= eval_points[0]:
                while eval_points and tuner.env_steps >= eval_points[0]:
                    eval_points.pop(0)  # several points passed in one episode: one evaluation
                run_eval()
            ep_seed = seed + episode
            obs, _ = env.reset(seed=ep_seed)
            if isinstance(intervention, ExpertRescue):
                intervention.reset(ep_seed)
            t, taken_over = 0, 0
            metrics: dict[str, float] = {}
            while True:
                human = intervention(obs, t) if intervention is not None else None
                if human is not None:
                    action, source = human, "intervention"
                    taken_over += 1
                else:
                    action, source = tuner.explore(obs, deterministic=tuner.warming_up and tuner.config.method == "wsrl"), "policy"
                next_obs, _, terminated, truncated, info = env.step(action)
                reward = 1.0 if info["success"] else 0.0  # the offline data's sparse success reward
                sent = info["action_sent"]
                tuner.add(obs, sent, reward, next_obs, terminated, source=source)
                if writer is not None:
                    writer.add_step(obs, sent, reward=reward, done=terminated, timestamp=t / env.robot.config.fps)
                metrics = tuner.train(tuner.config.utd) or metrics
                obs, t = next_obs, t + 1
                bar.update(1)
                if terminated or truncated or tuner.env_steps >= steps:
                    break
            if writer is not None:
                writer.end_episode(success=bool(info["success"]), source="intervention" if taken_over else "policy", interventions=taken_over, seed=ep_seed)
            history.episodes.append({"env_steps": tuner.env_steps, "success": bool(info["success"]), "length": t, "interventions": taken_over})
            recent = history.episodes[-20:]
            bar.set_postfix(
                episodes=len(history.episodes),
                recent_success=f"{np.mean([e['success'] for e in recent]):.2f}",
                q=f"{metrics.get('q', float('nan')):.3g}",
                upd=tuner.updates,
            )
            episode += 1
        if eval_points:  # the final evaluation
            run_eval()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    history.seconds = time.perf_counter() - t0
    return history
