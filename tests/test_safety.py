"""The SafetyFilter: property tests over >= 10,000 generated commands, and its state
machine (hold on reject, timeout, e-stop latch) with an injected monotonic clock."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.safety import SafetyFilter, SafetyLimits, apply_limits

ARM = SafetyLimits(
    mode="joint_position",
    low=(-2.0, -1.5, -2.5, 0.0),
    high=(2.0, 1.5, 2.5, 1.0),
    max_delta=(0.1, 0.1, 0.1, 1.0),
    dt=0.02,
    command_timeout=0.2,
    joint_velocity=(1.0, 1.0, 2.0),
)
EE = SafetyLimits(
    mode="ee_delta",
    low=(-1.0,) * 7,
    high=(1.0,) * 7,
    workspace_low=(-0.3, -0.4, 0.8),
    workspace_high=(0.3, 0.4, 1.3),
    ee_delta_scale=(0.05, 0.05, 0.05),
)
BASE = SafetyLimits(mode="base_velocity", low=(-0.5, -1.5), high=(0.5, 1.5), max_delta=(0.05, 0.15), dt=0.05, command_timeout=0.3)

WEIRD = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, 0.0, 1e6])
ELEMENT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), WEIRD)


def command(n: int):
    same = st.lists(ELEMENT, min_size=n, max_size=n)
    wrong = st.lists(ELEMENT, min_size=0, max_size=n + 3).filter(lambda v: len(v) != n)
    return st.one_of(same, same, same, wrong, st.just("not a vector"), st.just(None))


def check_invariants(limits: SafetyLimits, safe, reasons, requested, obs, last):
    if safe is None:
        assert reasons and reasons[0].startswith("rejected")
        return
    assert safe.shape == (limits.size,)
    assert np.all(np.isfinite(safe)), safe
    assert np.all(safe >= np.array(limits.low)) and np.all(safe <= np.array(limits.high)), safe
    if any("holding" in r for r in reasons):
        return
    if limits.max_delta is not None and last is not None:
        assert np.all(np.abs(safe - last) <= np.array(limits.max_delta) + 1e-9)
    if limits.mode == "joint_position":
        k = len(limits.joint_velocity)
        assert np.all(np.abs(safe[:k] - obs["joint_pos"][:k]) <= np.array(limits.joint_velocity) * limits.dt + 1e-9)
    if limits.mode == "ee_delta":
        target = obs["eef_pos"] + safe[:3] * np.array(limits.ee_delta_scale)
        assert np.all(target >= np.array(limits.workspace_low) - 1e-9) and np.all(target <= np.array(limits.workspace_high) + 1e-9)


FUZZ = settings(max_examples=3500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@FUZZ
@given(requested=command(4), q=st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4), last=st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4))
def test_arm_commands_never_violate_limits(requested, q, last):
    obs = {"joint_pos": np.array(q)}
    last_arr = np.clip(np.array(last), ARM.low, ARM.high)
    safe, reasons = apply_limits(requested, obs, last_arr, ARM, hold=np.clip(np.array(q), ARM.low, ARM.high))
    check_invariants(ARM, safe, reasons, requested, obs, last_arr)


@FUZZ
@given(requested=command(7), ee=st.lists(st.floats(-0.5, 1.5), min_size=3, max_size=3))
def test_ee_commands_stay_in_workspace(requested, ee):
    obs = {"eef_pos": np.array(ee)}
    safe, reasons = apply_limits(requested, obs, None, EE, hold=np.zeros(7))
    check_invariants(EE, safe, reasons, requested, obs, None)


@FUZZ
@given(requested=command(2), last=st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=2))
def test_base_commands_respect_velocity_and_acceleration(requested, last):
    safe, reasons = apply_limits(requested, {}, np.array(last), BASE, hold=np.zeros(2))
    check_invariants(BASE, safe, reasons, requested, {}, np.array(last))


def test_non_finite_and_wrong_shape_are_rejected_with_reasons():
    for bad, why in [([np.nan, 0, 0, 0], "non-finite value nan at index 0"), ([0, 0, np.inf, 0], "non-finite value inf at index 2"), ([0, 0], "shape (2,)"), ("x", "not a numeric vector")]:
        safe, reasons = apply_limits(bad, {"joint_pos": np.zeros(4)}, None, ARM)
        assert safe is None and why in reasons[0]
    safe, reasons = apply_limits([1e308, 0, 0, 0.5], {"joint_pos": np.zeros(4)}, None, ARM)
    assert safe[0] == pytest.approx(0.02) and "joint velocity" in reasons[0]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_filter(limits=BASE):
    clock = FakeClock()
    hold = np.zeros(limits.size)
    return SafetyFilter(limits, lambda obs: hold, clock=clock), clock


def test_reject_holds_last_safe_command_and_counts_once_logged(caplog):
    f, _ = make_filter()
    f.filter([0.05, 0.1], {})
    for _ in range(5):
        r = f.filter([np.nan, 0.0], {})
        assert not r.accepted and r.holding
        np.testing.assert_allclose(r.action, [0.05, 0.1])
    assert f.counts["rejected"] == 5
    assert sum("rejected" in rec.message for rec in caplog.records) == 1  # logged once per kind


def test_timeout_counts_from_the_commands_arrival():
    """A command applied at the next control tick still expires ``command_timeout`` after it
    arrived, and at exactly the timeout: checked every tick, the hold comes at most one
    period after the timeout."""
    f, clock = make_filter()
    clock.t = 10.0
    f.filter([0.05, 0.0], {}, received_at=9.96)  # arrived 40 ms before the tick applied it
    clock.t = 9.96 + 0.299
    assert f.tick({}) is None
    clock.t = 9.96 + 0.3
    r = f.tick({})
    assert r is not None and r.holding and "timeout" in r.reasons[0]
    # an arrival time in the future (another clock) is not trusted beyond now
    f.filter([0.05, 0.0], {}, received_at=1e9)
    clock.t += 0.3
    assert f.tick({}) is not None


def test_timeout_on_monotonic_clock_stops_base():
    f, clock = make_filter()
    assert f.tick({}) is not None  # no command yet: hold
    f.filter([0.05, 0.0], {})
    clock.t += 0.29
    assert f.tick({}) is None
    clock.t += 0.02
    r = f.tick({})
    assert r is not None and r.holding and "timeout" in r.reasons[0]
    np.testing.assert_array_equal(r.action, [0.0, 0.0])
    # a stream of invalid commands does not keep the robot alive
    f.filter([0.05, 0.0], {})
    for _ in range(10):
        clock.t += 0.05
        f.filter([np.inf, 0], {})
    r = f.filter([np.inf, 0], {})
    np.testing.assert_array_equal(r.action, [0.0, 0.0])


def test_estop_latches_until_explicit_reset():
    f, clock = make_filter()
    f.filter([0.05, 0.0], {})
    f.estop()
    for _ in range(3):
        r = f.filter([0.05, 0.0], {})
        assert r.holding and not r.accepted and r.reasons[0] == "e-stop latched"
        np.testing.assert_array_equal(r.action, [0.0, 0.0])
    clock.t += 10
    assert f.tick({}).reasons[0] == "e-stop latched"
    f.reset_estop()
    assert f.tick({}) is not None  # still holding: no command since the reset
    r = f.filter([0.05, 0.0], {})
    assert r.accepted and r.action[0] == pytest.approx(0.05)


def test_limits_validation():
    with pytest.raises(ValueError, match="mode"):
        SafetyLimits(mode="fly", low=(0,), high=(1,))
    with pytest.raises(ValueError, match="low <= high"):
        SafetyLimits(mode="generic", low=(1,), high=(0,))
    with pytest.raises(ValueError, match="workspace"):
        SafetyLimits(mode="ee_delta", low=(-1,) * 3, high=(1,) * 3)
