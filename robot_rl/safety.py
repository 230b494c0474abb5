"""The one choke point every command passes, from any source (teleop, policy, intervention).

``apply_limits`` is the pure part: ``(requested, obs, last_sent, limits) -> (safe | None, reasons)``.
A command is *rejected* (None) when it has the wrong shape or a non-finite value; it is
*clamped* element-wise to the intersection of

- the absolute command bounds ``[low, high]``,
- a maximum change per tick around the last command sent (``max_delta``),
- for joint-position commands, the joint velocity limits around the measured joint
  positions (``q +- v_max * dt``),
- for end-effector delta commands, the Cartesian workspace box (the commanded
  position ``eef + delta * scale`` must stay inside it).

When these constraints cannot all hold (the robot is outside its own limits), the
command becomes the robot's hold action, clipped to ``[low, high]``.

``SafetyFilter`` adds state: it holds the last safe command when one is rejected,
counts and logs every reason once per kind, expires commands after
``command_timeout`` s on a monotonic clock (then the robot holds / stops), and latches
an e-stop until an explicit ``reset_estop()``. Limits come from the robot's config,
never from the policy.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODES = ("joint_position", "ee_delta", "base_velocity", "generic")


@dataclass(frozen=True)
class SafetyLimits:
    """Command limits of one robot, built by its config.

    Attributes:
        mode: ``joint_position`` (absolute joint targets, gripper last), ``ee_delta``
            (end-effector deltas, e.g. OSC), ``base_velocity`` ((v, omega) for a base),
            or ``generic`` (bounds and rate only).
        low, high: absolute bounds per action element (rad, m, m/s, normalised units...).
        max_delta: maximum change of each element per tick, or None.
        dt: control period in s.
        command_timeout: s without an accepted command before the robot holds / stops.
        joint_velocity: joint_position mode: max joint speed (rad/s) for the first
            ``len(joint_velocity)`` elements; needs ``obs[joint_pos_key]``.
        workspace_low, workspace_high: ee_delta mode: Cartesian box (m) in the robot base frame.
        ee_delta_scale: ee_delta mode: metres per unit of the first three action elements.
    """

    mode: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    max_delta: tuple[float, ...] | None = None
    dt: float = 0.05
    command_timeout: float = 0.5
    joint_velocity: tuple[float, ...] | None = None
    joint_pos_key: str = "joint_pos"
    workspace_low: tuple[float, float, float] | None = None
    workspace_high: tuple[float, float, float] | None = None
    ee_delta_scale: tuple[float, float, float] = (0.05, 0.05, 0.05)
    ee_pos_key: str = "eef_pos"

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(f"safety mode {self.mode!r} is not one of {MODES}")
        low = _vector("low", self.low)
        high = _vector("high", self.high)
        n = len(low)
        if len(high) != n or n == 0:
            raise ValueError("low and high must have the same, non-zero length")
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise ValueError(f"limits must be finite with low <= high: {self.low} / {self.high}")
        if self.max_delta is not None:
            max_delta = _vector("max_delta", self.max_delta)
            if len(max_delta) != n or not (np.isfinite(max_delta).all() and (max_delta > 0).all()):
                raise ValueError("max_delta needs one positive value per action element")
        if not (_positive(self.dt) and _positive(self.command_timeout)):
            raise ValueError(f"dt and command_timeout must be positive and finite, got {self.dt!r} / {self.command_timeout!r}")
        if self.joint_velocity is not None:
            velocity = _vector("joint_velocity", self.joint_velocity)
            if self.mode == "joint_position" and len(velocity) > n:
                raise ValueError("more joint velocity limits than action elements")
            if not (np.isfinite(velocity).all() and (velocity > 0).all()):
                raise ValueError(f"joint velocity limits must be positive and finite, got {self.joint_velocity}")
        for attr in ("joint_pos_key", "ee_pos_key"):
            if not isinstance(getattr(self, attr), str):
                raise ValueError(f"{attr} must be an observation name, got {getattr(self, attr)!r}")
        if self.mode == "ee_delta" and (self.workspace_low is None or self.workspace_high is None):
            raise ValueError("ee_delta mode needs a workspace box")
        if self.mode == "ee_delta" and n < 3:
            raise ValueError(f"ee_delta mode needs at least 3 action elements (the position delta), got {n}")
        if self.workspace_low is not None or self.workspace_high is not None:
            wlo = _vector("workspace_low", self.workspace_low if self.workspace_low is not None else (0.0,) * 3)
            whi = _vector("workspace_high", self.workspace_high if self.workspace_high is not None else (0.0,) * 3)
            if len(wlo) != 3 or len(whi) != 3 or not (np.isfinite(wlo).all() and np.isfinite(whi).all()) or (wlo > whi).any():
                raise ValueError(f"the workspace box needs 3 finite values per corner, low <= high: {self.workspace_low} / {self.workspace_high}")
        scale = _vector("ee_delta_scale", self.ee_delta_scale)
        if len(scale) != 3 or not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"ee_delta_scale needs 3 positive values, got {self.ee_delta_scale}")

    @property
    def size(self) -> int:
        return len(self.low)

    @classmethod
    def base_velocity(cls, max_linear: float, max_angular: float, accel: tuple[float, float], dt: float, command_timeout: float) -> SafetyLimits:
        """Limits of a mobile base commanded with (v m/s, omega rad/s): |v| <= max_linear,
        |omega| <= max_angular, changing by at most ``accel * dt`` per tick (accel: (m/s^2, rad/s^2))."""
        return cls(
            mode="base_velocity",
            low=(-max_linear, -max_angular),
            high=(max_linear, max_angular),
            max_delta=(accel[0] * dt, accel[1] * dt),
            dt=dt,
            command_timeout=command_timeout,
        )


def _vector(name: str, value: Any) -> np.ndarray:
    """A limit as a 1-D float array; ValueError naming it when it is not a list of numbers."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}")
    if any(isinstance(v, (bool, np.bool_)) for v in value):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must be a list of numbers, got {value!r}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got {value!r}")
    return arr


def _positive(value: Any) -> bool:
    try:
        return not isinstance(value, (bool, str)) and bool(np.isfinite(value) and value > 0)
    except (TypeError, ValueError, OverflowError):
        return False


def apply_limits(
    requested: Any,
    obs: Mapping[str, np.ndarray] | None,
    last_sent: np.ndarray | None,
    limits: SafetyLimits,
    hold: np.ndarray | None = None,
) -> tuple[np.ndarray | None, list[str]]:
    """Pure filter. Returns ``(safe_action or None if rejected, reasons)``."""
    n = limits.size
    try:
        a = np.asarray(requested, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None, [f"rejected: not a numeric vector ({type(requested).__name__})"]
    if a.shape != (n,):
        return None, [f"rejected: shape {a.shape}, expected ({n},)"]
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        return None, [f"rejected: non-finite value {a[bad]} at index {bad}"]

    lo = np.array(limits.low, dtype=np.float64)
    hi = np.array(limits.high, dtype=np.float64)
    reasons: list[str] = []
    if limits.max_delta is not None and last_sent is not None:
        md = np.array(limits.max_delta)
        lo, hi = _intersect(lo, hi, last_sent - md, last_sent + md, reasons, "max change per tick", a)
    if limits.mode == "joint_position" and limits.joint_velocity is not None and obs is not None:
        q = np.asarray(obs[limits.joint_pos_key], dtype=np.float64)
        k = len(limits.joint_velocity)
        step = np.array(limits.joint_velocity) * limits.dt
        jlo, jhi = lo.copy(), hi.copy()
        jlo[:k], jhi[:k] = q[:k] - step, q[:k] + step
        lo, hi = _intersect(lo, hi, jlo, jhi, reasons, "joint velocity", a)
    if limits.mode == "ee_delta" and obs is not None:
        ee = np.asarray(obs[limits.ee_pos_key], dtype=np.float64)[:3]
        scale = np.array(limits.ee_delta_scale)
        wlo, whi = lo.copy(), hi.copy()
        wlo[:3] = (np.array(limits.workspace_low) - ee) / scale
        whi[:3] = (np.array(limits.workspace_high) - ee) / scale
        lo, hi = _intersect(lo, hi, wlo, whi, reasons, "workspace box", a)
    if np.any(lo > hi):
        fallback = np.zeros(n) if hold is None else np.asarray(hold, dtype=np.float64)
        safe = np.clip(fallback, limits.low, limits.high)
        return safe, reasons + ["no command satisfies every limit: holding"]
    safe = np.clip(a, lo, hi)
    if np.any(safe != a) and not reasons:
        idx = int(np.flatnonzero(safe != a)[0])
        reasons.append(f"clamped index {idx} from {a[idx]:.6g} to {safe[idx]:.6g} (command bounds)")
    return safe, reasons


def _intersect(
    lo: np.ndarray, hi: np.ndarray, lo2: np.ndarray, hi2: np.ndarray, reasons: list[str], what: str, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    new_lo, new_hi = np.maximum(lo, lo2), np.minimum(hi, hi2)
    if np.any((a < new_lo) | (a > new_hi)) and not np.any(new_lo > new_hi):
        idx = int(np.flatnonzero((a < new_lo) | (a > new_hi))[0])
        reasons.append(f"clamped index {idx} from {a[idx]:.6g} to [{new_lo[idx]:.6g}, {new_hi[idx]:.6g}] ({what})")
    return new_lo, new_hi


@dataclass
class FilterResult:
    """What the filter decided for one command.

    ``action`` is what to send; ``accepted`` is False when the command was rejected or
    the robot is held (e-stop, timeout); ``reasons`` says why anything was changed.
    """

    action: np.ndarray
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    holding: bool = False


class SafetyFilter:
    """Stateful wrapper of ``apply_limits``: hold on reject, timeout, e-stop latch, counters.

    ``hold_fn(obs)`` gives the robot's hold command (its ``Robot.hold_action``).
    ``clock`` must be monotonic (injectable for tests); wall-clock jumps do not matter.
    """

    def __init__(
        self,
        limits: SafetyLimits,
        hold_fn: Callable[[Mapping[str, np.ndarray] | None], np.ndarray],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.hold_fn = hold_fn
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.last_sent: np.ndarray | None = None
        self._last_safe: np.ndarray | None = None
        self._last_accept: float | None = None
        self._estop = False
        self._logged: set[str] = set()

    # ---------------------------------------------------------------- commands
    def filter(self, requested: Any, obs: Mapping[str, np.ndarray] | None, fresh: bool = True, received_at: float | None = None) -> FilterResult:
        """Decide what to send for a command.

        ``fresh=False`` re-applies a command already received (a control loop running
        faster than its command source): it is filtered again but does not count as a
        new command, so it cannot hold off the timeout. ``received_at`` (on ``clock``):
        when the command arrived, if earlier than now — the timeout counts from there,
        so a command applied at the next control tick does not gain up to a period.
        """
        if self._estop:
            return self._hold(obs, "e-stop latched")
        hold = self.hold_fn(obs)
        safe, reasons = apply_limits(requested, obs, self.last_sent, self.limits, hold)
        if safe is None:
            self._count(reasons[0])
            fallback = self._last_safe if self._last_safe is not None and not self._expired() else hold
            action, _ = apply_limits(fallback, obs, self.last_sent, self.limits, hold)
            assert action is not None
            return self._sent(FilterResult(action, accepted=False, reasons=reasons, holding=True))
        for r in reasons:
            self._count(r)
        self._last_safe = safe
        if fresh:
            now = self.clock()
            self._last_accept = now if received_at is None else min(received_at, now)
        return self._sent(FilterResult(safe, accepted=True, reasons=reasons))

    def tick(self, obs: Mapping[str, np.ndarray] | None) -> FilterResult | None:
        """Call every control period: returns a hold command when commands went stale
        (no accepted command for ``command_timeout`` s) or the e-stop is latched."""
        if self._estop:
            return self._hold(obs, "e-stop latched")
        if self._expired():
            return self._hold(obs, f"command timeout ({self.limits.command_timeout:g} s without a valid command)")
        return None

    def _expired(self) -> bool:
        # expired once the timeout has fully elapsed: checked every control tick, the
        # robot holds at most one period after the timeout
        return self._last_accept is None or self.clock() - self._last_accept >= self.limits.command_timeout

    def _hold(self, obs: Mapping[str, np.ndarray] | None, why: str) -> FilterResult:
        self._count(why)
        self._last_safe = None
        hold = self.hold_fn(obs)
        # no rate limit on a hold: an e-stop or a timeout stops now, not after a ramp
        action, reasons = apply_limits(hold, obs, None, self.limits, hold)
        assert action is not None, "a robot's hold action must be a finite vector of the action size"
        return self._sent(FilterResult(action, accepted=False, reasons=[why, *reasons], holding=True))

    def _sent(self, result: FilterResult) -> FilterResult:
        self.last_sent = result.action.copy()
        return result

    # ---------------------------------------------------------------- e-stop
    def estop(self) -> None:
        """Latch the e-stop: every command is replaced by the hold command until reset."""
        if not self._estop:
            log.warning("e-stop latched")
        self._estop = True

    def reset_estop(self) -> None:
        """Explicitly release the e-stop; commands must arrive again before the robot moves."""
        self._estop = False
        self._last_accept = None
        self._last_safe = None

    @property
    def estopped(self) -> bool:
        return self._estop

    def _count(self, reason: str) -> None:
        kind = reason.split(":")[0].split(" from ")[0].split(" (")[0]
        self.counts[kind] += 1
        if kind not in self._logged:
            self._logged.add(kind)
            # a clamp is the filter doing its job (counted, reported in status and eval);
            # rejections, holds and timeouts are what an operator must hear about
            log.log(logging.DEBUG if kind.startswith("clamped") else logging.WARNING, "safety filter: %s", reason)
