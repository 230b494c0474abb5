"""One contract test over every registered Robot (mock, sim twin, and every hardware
driver against its in-package fake): specs match observations, send_action respects
limits and returns what was sent, reset is deterministic for a seed, the expert acts.

Hardware drivers follow one convention: their config has a ``fake: bool`` field, and
``fake=True`` puts the package's fake of the vendor SDK or serial device under the real
driver code (``robot-rl launch record.launch.yaml robot:=ur robot_config:='{"fake": true}'``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robot_rl.robots import GuardedRobot, SimRobot, available_robots, make_robot, robot_classes
from robot_rl.safety import apply_limits

ROBOTS = available_robots()


@pytest.fixture(scope="module", params=ROBOTS)
def robot(request):
    r = make_robot(request.param, **fake_overrides(request.param))
    r.connect()
    yield r
    r.disconnect()


def fake_overrides(name: str) -> dict:
    """``{"fake": True}`` for hardware drivers (configs with a ``fake`` field), else ``{}``."""
    config_cls, _ = robot_classes(name)
    return {"fake": True} if "fake" in {f.name for f in dataclasses.fields(config_cls)} else {}


def check_obs(robot, obs):
    spec = robot.observation_spec
    assert set(obs) == set(spec), f"observation keys {sorted(obs)} != spec {sorted(spec)}"
    for key, s in spec.items():
        assert obs[key].shape == s.shape, key
        assert obs[key].dtype == s.np_dtype, key
        if not s.is_image:
            assert np.all(np.isfinite(obs[key])), key


def test_specs_are_complete(robot):
    a = robot.action_spec
    assert a.low is not None and a.high is not None and a.names is not None and len(a.shape) == 1
    lim = robot.config.safety_limits()
    assert lim.size == a.shape[0]
    assert np.all(np.array(lim.low) >= np.array(a.low) - 1e-9) and np.all(np.array(lim.high) <= np.array(a.high) + 1e-9)
    for key, s in robot.observation_spec.items():
        assert s.units or s.is_image, f"{key} has no units"


def test_reset_is_deterministic_and_matches_spec(robot):
    if not isinstance(robot, SimRobot):
        pytest.skip("only simulated robots reset themselves")  # real drivers: hardware-marked tests
    a, b, c = robot.reset(3), robot.reset(3), robot.reset(4)
    check_obs(robot, a)
    for key, s in robot.observation_spec.items():
        if not s.is_image:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a[k], c[k]) for k, s in robot.observation_spec.items() if not s.is_image)
    assert not robot.is_success()


def test_guarded_commands_respect_limits_and_return_what_was_sent(robot):
    if isinstance(robot, SimRobot):
        robot.reset(0)
    guard = GuardedRobot(robot)
    lim = robot.config.safety_limits()
    rng = np.random.default_rng(0)
    n = robot.action_spec.shape[0]
    for requested in [np.full(n, 1e6), np.full(n, -1e6), rng.uniform(-3, 3, n), np.full(n, np.nan)]:
        obs = guard.observe()
        check_obs(robot, obs)
        sent, decision = guard.command(requested)
        assert sent.shape == (n,) and sent.dtype == robot.action_spec.np_dtype
        assert np.all(np.isfinite(sent))
        assert np.all(sent >= np.array(lim.low) - 1e-6) and np.all(sent <= np.array(lim.high) + 1e-6)
        # the device may reduce a command further (e.g. wheel-speed saturation), never enlarge it
        assert np.all(np.abs(sent) <= np.abs(decision.action) + 1e-5) or robot.config.safety_limits().mode == "joint_position"
    hold = robot.hold_action(guard.observe())
    safe, reasons = apply_limits(hold, guard.observe(), None, lim)
    assert safe is not None and not any("holding" in r for r in reasons)


def test_scripted_expert_acts(robot):
    if not isinstance(robot, SimRobot):
        pytest.skip("experts are for simulated tasks")
    obs = robot.reset(1)
    expert = robot.scripted_expert(noise=0.0, seed=0)
    expert.reset()
    for _ in range(3):
        a = expert.act(obs)
        assert a.shape == robot.action_spec.shape and np.all(np.isfinite(a))
        robot.send_action(a)
        obs = robot.get_observation()


def test_command_timeout_sends_the_hold_action(robot):
    """Through GuardedRobot on an injected clock: a command holds off the timeout for
    ``command_timeout`` s; after that, with no new command, what is sent is the hold action."""
    if isinstance(robot, SimRobot):
        robot.reset(0)
    now = [0.0]
    guard = GuardedRobot(robot, clock=lambda: now[0])
    lim = robot.config.safety_limits()
    requested = np.array(lim.low) * 0.25 + np.array(lim.high) * 0.75  # a valid command away from the hold
    guard.observe()
    _, decision = guard.command(requested)
    assert decision.accepted
    now[0] = lim.command_timeout * 0.5
    guard.observe()
    assert guard.tick() is None, "held before command_timeout passed"
    now[0] = lim.command_timeout
    obs = guard.observe()
    held = guard.tick()
    assert held is not None, f"no hold after command_timeout ({lim.command_timeout} s) without a command"
    sent, result = held
    hold = np.clip(robot.hold_action(obs), lim.low, lim.high)
    np.testing.assert_allclose(sent, hold, atol=1e-5)
    assert result.holding and not result.accepted
