"""Fuzzed inputs for the robot node: ``commands`` (Float64MultiArray) and ``cmd_vel``
(Twist) messages, each with the verdict the node must reach (``None``: a valid command,
clamped by the safety filter if needed; otherwise the rejection reason). Shared by
tests/test_reliability.py and benchmarks/reliability/fuzz_robot_node.py."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Twist
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

SPECIAL = [np.nan, np.inf, -np.inf]
HUGE = [1e300, -1e300, np.finfo(np.float64).max, -np.finfo(np.float64).max, 1e-320, 5e15]


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return rng.uniform(-1.0, 1.0, n)  # plausible
    if kind == 1:
        return rng.uniform(-1e6, 1e6, n)  # far outside every limit: clamped
    if kind == 2:
        return rng.choice(HUGE, n)
    return rng.standard_normal(n) * 10.0 ** rng.integers(-3, 12)


def _label(rng: np.random.Generator, names: list[str]) -> tuple[str, bool]:
    """A layout label and whether the node must accept it."""
    kind = rng.integers(6)
    if kind == 0:
        return ",".join(names), True
    if kind == 1:
        return "", True  # unlabelled: allowed
    if kind == 2:
        return "commands", True
    if kind == 3:
        return ",".join(reversed(names)), False  # right names, wrong order
    if kind == 4:
        return ",".join(names[:-1]), False
    junk = "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, int(rng.integers(1, 200))))
    return junk, junk in ("", "commands", ",".join(names))


def fuzz_command(rng: np.random.Generator, names: list[str]) -> tuple[Float64MultiArray, str | None]:
    """One ``commands`` message and its verdict for a robot with these action names."""
    n = len(names)
    msg = Float64MultiArray()
    kind = rng.integers(5)
    if kind == 0:  # wrong length, from empty to very long
        length = int(rng.choice([0, 1, n - 1, n + 1, 2 * n, int(rng.integers(0, 5000))]))
        length = length if length != n else n + 1
        values, verdict = _values(rng, length), "wrong length"
    elif kind == 1:  # non-finite somewhere
        values = _values(rng, n)
        values[rng.integers(n)] = rng.choice(SPECIAL)
        verdict = "non-finite value"
    else:
        values, verdict = _values(rng, n), None
    msg.data = [float(v) for v in values]
    if rng.random() < 0.6:
        label, ok = _label(rng, names)
        dims = [MultiArrayDimension(label=label, size=int(rng.integers(0, 2**32)), stride=int(rng.integers(0, 2**32)))]
        dims += [MultiArrayDimension(label=str(rng.integers(1e9)), size=int(rng.integers(0, 2**32)), stride=0) for _ in range(int(rng.integers(0, 4)))]
        msg.layout.dim = dims
        msg.layout.data_offset = int(rng.integers(0, 2**32))
        if not ok and verdict != "wrong length":  # the node checks length, then names, then values
            verdict = "wrong element names"
    return msg, verdict


def fuzz_twist(rng: np.random.Generator) -> tuple[Twist, str | None]:
    """One ``cmd_vel`` message and its verdict (only linear.x and angular.z are used)."""
    msg = Twist()
    fields = [_values(rng, 1)[0] for _ in range(6)]
    verdict = None
    if rng.random() < 0.4:
        which = int(rng.integers(6))
        fields[which] = float(rng.choice(SPECIAL))
        if which in (0, 5):  # linear.x, angular.z: the base's (v, omega)
            verdict = "non-finite value"
    msg.linear.x, msg.linear.y, msg.linear.z = (float(v) for v in fields[:3])
    msg.angular.x, msg.angular.y, msg.angular.z = (float(v) for v in fields[3:])
    if verdict is None and not (np.isfinite(msg.linear.x) and np.isfinite(msg.angular.z)):
        verdict = "non-finite value"
    return msg, verdict
