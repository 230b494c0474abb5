from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data import EpisodeStore
from robot_rl.envs import RobotEnv, collect_episodes, evaluate, wilson_interval
from robot_rl.robots import GuardedRobot, make_robot


def test_env_spaces_seeding_and_success():
    env = RobotEnv(make_robot("mock_base"))
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs) and info["success"] is False
    obs2, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs["goal"], obs2["goal"])
    expert = env.robot.scripted_expert()
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        steps += 1
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0 and steps < env.max_steps
    assert info["action_sent"].shape == (2,)


def test_env_truncates_and_filters_actions():
    env = RobotEnv(make_robot("mock_arm"), max_steps=5)
    env.reset(seed=0)
    for t in range(5):
        _, _, terminated, truncated, info = env.step(np.full(7, 100.0))  # far outside the limits
        assert not terminated and truncated == (t == 4)
        assert np.all(info["action_sent"] <= np.array(env.robot.config.safety_limits().high) + 1e-6)
        assert info["safety"]
    with pytest.raises(TypeError, match="reset_fn"):
        RobotEnv(object())  # type: ignore[arg-type]


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)


def test_evaluate_reports_success_and_ci():
    env = RobotEnv(make_robot("mock_base"))
    result = evaluate(env, env.robot.scripted_expert(), episodes=8, progress=False)
    s = result.summary()
    assert s["episodes"] == 8 and s["success_rate"] == 1.0 and s["ci95_low"] > 0.6 and s["mean_length"] > 1
    noisy = evaluate(RobotEnv(make_robot("mock_arm", success_tol=0.01)), make_robot("mock_arm").scripted_expert(noise=0.8, seed=1), episodes=4, progress=False)
    assert noisy.success_rate < 1.0


def test_collect_records_the_action_that_was_sent(tmp_path):
    robot = make_robot("mock_arm")
    results = collect_episodes(robot, "mock_arm", "reach", tmp_path / "s.zarr", episodes=4, noise=(0.0, 0.6), seed=3, progress=False)
    assert sorted(results) == [0.0, 0.6] and results[0.0] == [True, True]
    store = EpisodeStore(tmp_path / "s.zarr")
    assert len(store) == 4
    rec = store.record(1)
    assert rec["source"] == "scripted" and rec["noise"] == 0.6 and rec["seed"] == 4 and rec["task"] == "reach"
    assert store.schema.robot["name"] == "mock_arm"
    sent = np.stack(robot.sent)
    actions = np.concatenate([store.episode(i)["action"] for i in range(4)])
    np.testing.assert_array_equal(actions, sent)  # what was recorded is what was sent
    ep = store.episode(0)
    assert ep["done"][-1] and not ep["done"][:-1].any() and store.record(0)["success"]


def test_timeout_and_estop_on_the_twin():
    robot = make_robot("mock_base", fps=20)
    robot.connect()
    robot.reset(0)
    now = [0.0]
    guard = GuardedRobot(robot, clock=lambda: now[0])
    for _ in range(20):
        guard.observe()
        guard.command([0.5, 0.0])
        now[0] += 0.05
    assert robot.vel[0] == pytest.approx(0.5)
    # the source goes silent: within timeout + one period the base is commanded to stop
    stopped_at = None
    for k in range(20):
        guard.observe()
        held = guard.tick()
        if held is not None and stopped_at is None:
            stopped_at = k * 0.05
        now[0] += 0.05
    assert stopped_at is not None and stopped_at <= robot.config.command_timeout + 0.05
    assert robot.vel[0] == 0.0
    guard.command([0.5, 0.0])
    guard.estop()
    for _ in range(5):
        guard.observe()
        sent, decision = guard.command([0.5, 0.0])
        assert decision.holding and sent[0] == 0.0
    guard.reset_estop()
    sent, decision = guard.command([0.5, 0.0])
    assert decision.accepted and sent[0] > 0
