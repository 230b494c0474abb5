"""The robosuite twins (sim_lift, sim_stack) against real robosuite: specs, seeding,
actions, cameras, joint-position control and the scripted experts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from robot_rl.robots.registry import make_robot
from robot_rl.safety import SafetyFilter
from robot_rl.sim.robosuite_arm import (
    EE_DELTA_SIZE,
    N_JOINTS,
    LiftConfig,
    LiftRobot,
    RobosuiteArm,
    StackRobot,
)


def _connected(name: str, **overrides: object) -> Iterator[RobosuiteArm]:
    robot = make_robot(name, **overrides)
    assert isinstance(robot, RobosuiteArm)
    robot.connect()
    yield robot
    robot.disconnect()


@pytest.fixture(scope="module")
def lift() -> Iterator[RobosuiteArm]:
    yield from _connected("sim_lift")


@pytest.fixture(scope="module")
def stack() -> Iterator[RobosuiteArm]:
    yield from _connected("sim_stack")


@pytest.fixture(scope="module")
def lift_cams() -> Iterator[RobosuiteArm]:
    yield from _connected("sim_lift", cameras=("agentview", "wrist"))


@pytest.fixture(scope="module")
def lift_joints() -> Iterator[RobosuiteArm]:
    yield from _connected("sim_lift", action_mode="joint_position")


@pytest.mark.parametrize("fixture", ["lift", "stack", "lift_cams"])
def test_observation_matches_spec(fixture: str, request: pytest.FixtureRequest) -> None:
    robot: RobosuiteArm = request.getfixturevalue(fixture)
    obs = robot.reset(seed=0)
    spec = robot.observation_spec
    assert set(obs) == set(spec)
    for key, value in obs.items():
        assert value.shape == spec[key].shape, key
        assert value.dtype == spec[key].np_dtype, key
        assert np.all(np.isfinite(value)), key
    robot.send_action(robot.hold_action(obs))
    assert {k: (v.shape, v.dtype) for k, v in robot.get_observation().items()} == {
        k: (s.shape, s.np_dtype) for k, s in spec.items()
    }


def test_registry_and_specs(lift: RobosuiteArm, stack: RobosuiteArm) -> None:
    assert isinstance(lift, LiftRobot) and isinstance(stack, StackRobot)
    assert lift.max_episode_steps == 200 and stack.max_episode_steps == 400
    assert lift.action_spec.shape == (EE_DELTA_SIZE,)
    assert lift.config.safety_limits().mode == "ee_delta"
    assert len(stack.observation_spec["object"].names or ()) == stack.observation_spec["object"].shape[0]
    with pytest.raises(ValueError, match="cameras"):
        LiftConfig(cameras=("front",))
    with pytest.raises(ValueError, match="action_mode"):
        LiftConfig(action_mode="torque")


@pytest.mark.parametrize("fixture", ["lift", "stack"])
def test_reset_is_deterministic_per_seed(fixture: str, request: pytest.FixtureRequest) -> None:
    robot: RobosuiteArm = request.getfixturevalue(fixture)
    first = robot.reset(seed=7)
    robot.send_action(np.ones(EE_DELTA_SIZE))  # disturb the state in between
    again = robot.reset(seed=7)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    other = robot.reset(seed=8)
    assert not np.array_equal(first["object"], other["object"])
    assert not robot.is_success()


def test_send_action_returns_clipped_float32(lift: RobosuiteArm) -> None:
    lift.reset(seed=0)
    requested = np.array([2.0, -3.0, 0.5, 0.0, 0.1, -0.2, 1.5])
    sent = lift.send_action(requested)
    assert sent.dtype == np.float32 and sent.shape == (EE_DELTA_SIZE,)
    assert np.all(sent >= -1) and np.all(sent <= 1)
    np.testing.assert_allclose(sent, np.clip(requested, -1, 1), atol=1e-7)
    assert isinstance(lift.reward(), float)
    with pytest.raises(ValueError, match="shape"):
        lift.send_action(np.zeros(N_JOINTS + 1))


def test_cameras_are_upright_uint8(lift_cams: RobosuiteArm) -> None:
    obs = lift_cams.reset(seed=0)
    for cam in ("agentview", "wrist"):
        img = obs[f"image.{cam}"]
        assert img.dtype == np.uint8 and img.shape == (84, 84, 3)
        assert img.std() > 10, f"{cam} frame is blank"
    # agentview looks across the table at the robot: the white table fills the bottom of
    # an upright frame, the robot and the room the top. A missing flip swaps them.
    agent = obs["image.agentview"].astype(float)
    quarter = agent.shape[0] // 4
    assert agent[-quarter:].mean() > agent[:quarter].mean() + 50


def test_joint_position_mode_tracks_targets(lift_joints: RobosuiteArm) -> None:
    obs = lift_joints.reset(seed=0)
    assert lift_joints.action_spec.shape == (N_JOINTS + 1,)
    assert lift_joints.config.safety_limits().mode == "joint_position"
    target = obs["joint_pos"].astype(np.float64) + np.array([0.2, -0.15, 0.15, 0.2, -0.2, 0.15, 0.3])
    start_err = np.abs(obs["joint_pos"] - target)
    for _ in range(30):
        sent = lift_joints.send_action(np.append(target, -1.0))
    np.testing.assert_allclose(sent[:N_JOINTS], target, atol=1e-6)
    err = np.abs(lift_joints.get_observation()["joint_pos"] - target)
    assert np.all(err < 0.1 * start_err), (start_err, err)
    # targets beyond the joint limits are clipped to them
    sent = lift_joints.send_action(np.full(N_JOINTS + 1, 10.0))
    np.testing.assert_allclose(sent, (*lift_joints.config.joint_high, 1.0), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="ee_delta"):
        lift_joints.scripted_expert()


def test_hold_action_holds_the_joints(lift_joints: RobosuiteArm) -> None:
    obs = lift_joints.reset(seed=1)
    for _ in range(5):
        lift_joints.send_action(lift_joints.hold_action(lift_joints.get_observation()))
    drift = np.abs(lift_joints.get_observation()["joint_pos"] - obs["joint_pos"])
    assert drift.max() < 0.02


def _run_expert(robot: RobosuiteArm, seed: int) -> bool:
    expert = robot.scripted_expert(noise=0.0, seed=seed)
    expert.reset()
    obs = robot.reset(seed=seed)
    assert not robot.is_success()
    for _ in range(robot.max_episode_steps):
        robot.send_action(expert.act(obs))
        obs = robot.get_observation()
        if robot.is_success():
            return True
    return False


@pytest.mark.parametrize("seed", [0, 1])
def test_lift_expert_succeeds_and_hold_keeps_the_cube(lift: RobosuiteArm, seed: int) -> None:
    assert _run_expert(lift, seed)
    assert lift.reward() == pytest.approx(1.0)
    # holding (zero motion, gripper kept closed) through the safety filter keeps the cube up
    safety = SafetyFilter(lift.config.safety_limits(), lift.hold_action)
    for _ in range(10):
        obs = lift.get_observation()
        lift.send_action(safety.filter(lift.hold_action(obs), obs).action)
    assert lift.is_success()


def test_stack_expert_succeeds(stack: RobosuiteArm) -> None:
    assert _run_expert(stack, 0)
    assert stack.task_info()["success"] is True
