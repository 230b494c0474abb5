"""sim_base: the MuJoCo differential-drive twin (real MuJoCo, no mocks)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.policies import Policy
from robot_rl.robots import GuardedRobot, make_robot
from robot_rl.sim.diff_drive import ROBOT_RADIUS, ROOM_HALF, DiffDriveConfig, DiffDriveRobot


@pytest.fixture(scope="module")
def robot() -> Iterator[DiffDriveRobot]:
    r = make_robot("sim_base")
    assert isinstance(r, DiffDriveRobot)
    with r:
        yield r


@pytest.fixture(scope="module")
def empty_room() -> Iterator[DiffDriveRobot]:
    r = make_robot("sim_base", n_obstacles=0)
    assert isinstance(r, DiffDriveRobot)
    with r:
        yield r


def assert_obs_matches_spec(r: DiffDriveRobot, obs: dict[str, np.ndarray]) -> None:
    spec = r.observation_spec
    assert set(obs) == set(spec)
    for key, s in spec.items():
        assert obs[key].shape == s.shape, key
        assert obs[key].dtype == s.np_dtype, key
        assert np.all(np.isfinite(obs[key])), key


def seed_facing_open_space(r: DiffDriveRobot, clearance: float) -> int:
    """First seed whose start pose has ``clearance`` m free straight ahead."""
    for seed in range(100):
        if r.reset(seed)["scan"][0] > clearance:
            return seed
    raise AssertionError("no seed with open space ahead")


def test_config_limits_and_specs(robot: DiffDriveRobot) -> None:
    c = robot.config
    lim = c.safety_limits()
    assert lim.mode == "base_velocity" and robot.is_mobile_base
    assert lim.low == (-c.max_linear, -c.max_angular) and lim.high == (c.max_linear, c.max_angular)
    assert lim.max_delta == pytest.approx((c.max_linear_accel / c.fps, c.max_angular_accel / c.fps))
    a = robot.action_spec
    assert a.shape == (2,) and a.names == ("v", "omega") and a.low == lim.low and a.high == lim.high
    assert_obs_matches_spec(robot, robot.reset(0))
    assert robot.observation_spec["scan"].shape == (c.lidar_beams,)
    assert "image.front" not in robot.observation_spec


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_obstacles"):
        DiffDriveConfig(n_obstacles=7)
    r = make_robot("sim_base", wheel_radius=0.06)
    with pytest.raises(ValueError, match="do not match"):
        r.connect()
    with pytest.raises(RuntimeError, match="not connected"):
        r.get_observation()


def test_reset_is_deterministic_per_seed(robot: DiffDriveRobot) -> None:
    def rollout(seed: int) -> list[dict[str, np.ndarray]]:
        out = [robot.reset(seed)]
        for t in range(10):
            robot.send_action(np.array([0.3, 0.8 * math.sin(t)]))
            out.append(robot.get_observation())
        return out

    a, b = rollout(7), rollout(7)
    for oa, ob in zip(a, b, strict=True):
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key], err_msg=key)
    other = robot.reset(8)
    assert not np.array_equal(other["goal"], a[0]["goal"])
    assert robot.reward() == 0.0 and not robot.is_failure()


def test_send_action_returns_what_was_applied(robot: DiffDriveRobot) -> None:
    c = robot.config
    robot.reset(0)
    sent = robot.send_action(np.array([0.2, 0.5], np.float32))
    assert sent.dtype == np.float32
    np.testing.assert_allclose(sent, [0.2, 0.5], atol=1e-6)
    # Out of range: clipped to (0.5, -2.0), whose wheel speeds (16 rad/s) exceed 12 rad/s,
    # so both wheels scale by 0.75: same curvature, slower.
    sent = robot.send_action(np.array([5.0, -9.0]))
    np.testing.assert_allclose(sent, [0.375, -1.5], atol=1e-6)
    _, wheels = robot.wheel_speeds(np.array([5.0, -9.0]))
    assert np.max(np.abs(wheels)) == pytest.approx(c.max_wheel_speed)
    np.testing.assert_array_equal(robot.hold_action(robot.get_observation()), [0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        robot.send_action(np.array([np.nan, 0.0]))


def test_guarded_path_rate_limits(robot: DiffDriveRobot) -> None:
    robot.reset(0)
    guarded = GuardedRobot(robot)
    guarded.command(np.zeros(2, np.float32))
    sent, result = guarded.command(np.array([0.5, 0.0], np.float32))
    assert result.accepted  # clamped by the acceleration limit, still accepted
    assert sent[0] == pytest.approx(robot.config.max_linear_accel / robot.config.fps)


def test_driving_forward_and_turning_odometry(empty_room: DiffDriveRobot) -> None:
    r = empty_room
    seed = seed_facing_open_space(r, 1.5)
    x0, y0, yaw0 = r.reset(seed)["odom"][:3]
    for _ in range(30):  # 1.5 s at 0.4 m/s
        r.send_action(np.array([0.4, 0.0]))
    x, y, yaw, v, omega = r.get_observation()["odom"]
    heading = np.array([math.cos(yaw0), math.sin(yaw0)])
    moved = np.array([x - x0, y - y0])
    assert 0.5 < moved @ heading < 0.6  # 0.6 m minus the spin-up
    assert abs(moved @ [-heading[1], heading[0]]) < 0.01  # no sideways drift
    assert abs(math.remainder(yaw - yaw0, 2 * math.pi)) < 0.02
    assert v == pytest.approx(0.4, rel=0.02) and abs(omega) < 0.02  # wheels track, no slip
    for _ in range(20):  # 1 s at 1 rad/s in place
        r.send_action(np.array([0.0, 1.0]))
    x1, y1, yaw1, v1, omega1 = r.get_observation()["odom"]
    assert math.remainder(yaw1 - yaw, 2 * math.pi) == pytest.approx(0.95, abs=0.05)
    assert omega1 == pytest.approx(1.0, rel=0.03) and abs(v1) < 0.02
    assert math.hypot(x1 - x, y1 - y) < 0.03  # only the stop from 0.4 m/s
    assert not r.is_failure()


def wall_distance(x: float, y: float, angle: float) -> float:
    """Distance [m] from (x, y) along ``angle`` to the square room's inner walls."""
    axes = ((math.cos(angle), x), (math.sin(angle), y))
    hits = [(math.copysign(ROOM_HALF, u) - p) / u for u, p in axes if abs(u) > 1e-9]
    return min(hits)


def test_lidar_ranges_match_the_walls(empty_room: DiffDriveRobot) -> None:
    r = empty_room
    for seed in (0, 1):
        obs = r.reset(seed)
        x, y, yaw = obs["odom"][:3].astype(float)
        want = [min(wall_distance(x, y, yaw + a), r.config.lidar_range) for a in r.beam_angles]
        np.testing.assert_allclose(obs["scan"], want, atol=0.01)
        assert np.any(obs["scan"] < r.config.lidar_range)


def test_lidar_sees_obstacles(robot: DiffDriveRobot) -> None:
    obs = robot.reset(0)
    x, y, yaw = obs["odom"][:3].astype(float)
    walls = np.array([min(wall_distance(x, y, yaw + a), robot.config.lidar_range) for a in robot.beam_angles])
    assert np.any(obs["scan"] < walls - 0.2)  # some beam stops at an obstacle before the wall


def test_driving_into_a_wall_is_a_collision(empty_room: DiffDriveRobot) -> None:
    r = empty_room
    r.reset(3)
    rewards = []
    for _ in range(400):
        r.send_action(np.array([0.5, 0.0]))
        rewards.append(r.reward())
        if r.is_failure():
            break
    assert r.is_failure() and not r.is_success()
    assert r.task_info()["collided"]
    assert rewards[-1] < -r.config.collision_penalty + 0.1
    assert float(r.scan().min()) == pytest.approx(ROBOT_RADIUS, abs=0.02)
    for _ in range(40):  # keep pushing: the wall holds (no tunnelling)
        r.send_action(np.array([0.5, 0.0]))
    x, y, _ = r.pose()
    assert max(abs(x), abs(y)) < ROOM_HALF - ROBOT_RADIUS + 0.01
    assert r.is_failure()  # latched until reset
    r.reset(3)
    assert not r.is_failure()


def test_camera_image() -> None:
    r = make_robot("sim_base", camera=True, image_size=48)
    assert isinstance(r, DiffDriveRobot)
    with r:
        obs = r.reset(1)
        assert_obs_matches_spec(r, obs)
        img = obs["image.front"]
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert img.std() > 10  # not blank
        # Upright: the black background (no skybox) is at the top, the lit floor at the bottom.
        assert img[:4].mean() < img[-4:].mean()
        r.send_action(np.array([0.3, 1.0]))
        assert not np.array_equal(r.get_observation()["image.front"], img)


def test_expert_reaches_the_goal(robot: DiffDriveRobot) -> None:
    for seed in (0, 1):
        expert = robot.scripted_expert(noise=0.0, seed=seed)
        assert isinstance(expert, Policy)
        obs = robot.reset(seed)
        expert.reset()
        for _ in range(robot.max_episode_steps):
            action = expert.act(obs)
            assert action.shape == (2,) and action.dtype == np.float32
            robot.send_action(action)
            obs = robot.get_observation()
            if robot.is_success() or robot.is_failure():
                break
        assert robot.is_success(), f"seed {seed}: {robot.task_info()}"
        assert robot.reward() > robot.config.success_bonus - 1
