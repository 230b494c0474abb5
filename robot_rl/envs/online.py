"""Online fine-tuning on a Gymnasium env (no ROS): explore, store, update, evaluate.

    tuner = Finetuner(build_learner(source, config), config, offline=data, online_steps=5000)
    history = run_online(tuner, RobotEnv(robot), steps=5000, store=Path("runs/ft/online.zarr"), robot_name="sim_lift")

Every online step is written to an episode store (``source=policy``, or
``intervention`` for episodes where an intervention took over, with the count), so a
fine-tuning run is itself a dataset. Evaluation episodes (the deterministic policy on
fixed seeds) are not stored and not trained on.

Interventions: ``intervention`` is a teleop device (``robot_rl.teleop``) used as in the
ROS teleop node's ``mode:=intervene``: it sees every observation, and its ``intervene``
event toggles a takeover (its actions are sent while it has control). ``ScriptedRescue``
is the stand-in supervisor; a human device works the same way.
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
from robot_rl.teleop import Teleop

@dataclass
class OnlineHistory:
    evals: list[dict[str, float]] = field(default_factory=list)
    """One row per evaluation: env_steps, success_rate, mean_return, ..."""
    episodes: list[dict[str, Any]] = field(default_factory=list)
    """One row per training episode: env_steps at its end, success, length, interventions."""
    seconds: float = 0.0


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
    intervention: Teleop | None = None,
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
        result = evaluate(env, tuner.learner.policy(), eval_episodes, seed=eval_seed, progress=False).summary()
        row = {"env_steps": tuner.env_steps, "updates": tuner.updates, **result}
        history.evals.append(row)
        if on_eval:
            on_eval(row)

    greedy = tuner.learner.policy()  # the deterministic policy (the learner's current weights)
    intervening = False
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
            greedy.reset()
            if intervention is not None and hasattr(intervention, "on_reset"):
                intervention.on_reset(ep_seed)
                intervening = _toggled(intervention, intervening)
            t, taken_over = 0, 0
            metrics: dict[str, float] = {}
            while True:
                human = intervention.get_action(obs) if intervention is not None else None
                intervening = _toggled(intervention, intervening)
                if intervening and human is not None:
                    action, source = human, "intervention"
                    taken_over += 1
                elif tuner.warming_up and tuner.config.method == "wsrl":  # WSRL's warm-up: the pre-trained policy
                    action, source = greedy.act(obs), "policy"
                else:
                    action, source = tuner.explore(obs), "policy"
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


def _toggled(device: Teleop | None, intervening: bool) -> bool:
    """Apply the device's ``intervene`` events (each toggles the takeover)."""
    if device is None:
        return False
    for event in device.events():
        if event == "intervene":
            intervening = not intervening
    return intervening
