"""Mock robots for fast tests: pure numpy, no simulator, the full Robot contract.

``mock_arm``: 6 joints + gripper, absolute joint-position commands, joints move toward
the target at no more than their velocity limit; task: reach a random joint target.
``mock_base``: a unicycle driven by (v, omega); task: reach a random goal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, RobotConfig, SimRobot
from robot_rl.robots.registry import register_robot
from robot_rl.safety import SafetyLimits

N_JOINTS = 6
SENT_HISTORY = 10_000


@dataclass
class MockArmConfig(RobotConfig):
    """A 6-joint arm with a gripper in [0, 1] (open..closed)."""

    name = "mock_arm"
    fps: float = 50.0
    joint_low: tuple[float, ...] = (-2.9, -1.8, -2.9, -3.0, -2.9, -0.1)
    joint_high: tuple[float, ...] = (2.9, 1.8, 2.9, 0.0, 2.9, 3.7)
    joint_velocity: tuple[float, ...] = (2.0,) * N_JOINTS
    max_delta: float = 0.2
    command_timeout: float = 0.2
    success_tol: float = 0.05

    def __post_init__(self) -> None:
        for name in ("joint_low", "joint_high", "joint_velocity"):
            if len(getattr(self, name)) != N_JOINTS:
                raise ValueError(f"{name} needs {N_JOINTS} values, got {getattr(self, name)!r}")

    def safety_limits(self) -> SafetyLimits:
        return SafetyLimits(
            mode="joint_position",
            low=(*self.joint_low, 0.0),
            high=(*self.joint_high, 1.0),
            max_delta=(self.max_delta,) * N_JOINTS + (1.0,),
            dt=1.0 / self.fps,
            command_timeout=self.command_timeout,
            joint_velocity=self.joint_velocity,
        )


class _NumpyRobot(SimRobot):
    """Connection bookkeeping shared by the mock robots (there is no device)."""

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        self._connected = False
        # the last SENT_HISTORY actions sent, for tests; bounded: a mock robot run for hours
        # (benchmarks/reliability/soak.py) grew ~5 MB/min at 450 Hz keeping all of them
        self.sent: deque[np.ndarray] = deque(maxlen=SENT_HISTORY)

    def connect(self) -> None:
        self._connected = True

    @property
    def is_connected(self) -> bool:
        return self._connected

    def disconnect(self) -> None:
        self._connected = False


@register_robot(MockArmConfig)
class MockArm(_NumpyRobot):
    config: MockArmConfig

    def __init__(self, config: MockArmConfig) -> None:
        super().__init__(config)
        self.q = np.zeros(N_JOINTS)
        self.gripper = 0.0
        self.target = np.zeros(N_JOINTS)

    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        names = tuple(f"joint_{i}" for i in range(N_JOINTS))
        return {
            "joint_pos": KeySpec((N_JOINTS,), "float32", "rad", names=names, low=c.joint_low, high=c.joint_high),
            "gripper": KeySpec((1,), "float32", "1", names=("gripper",), low=(0.0,), high=(1.0,)),
            "target": KeySpec((N_JOINTS,), "float32", "rad", names=names),
        }

    @property
    def action_spec(self) -> KeySpec:
        lim = self.config.safety_limits()
        names = tuple(f"joint_{i}" for i in range(N_JOINTS)) + ("gripper",)
        return KeySpec((N_JOINTS + 1,), "float32", "rad, 1", names=names, low=lim.low, high=lim.high)

    def reset(self, seed: int | None = None) -> Obs:
        rng = np.random.default_rng(seed)
        lo, hi = np.array(self.config.joint_low), np.array(self.config.joint_high)
        self.q = rng.uniform(lo * 0.5, hi * 0.5)
        self.target = rng.uniform(lo * 0.5, hi * 0.5)
        self.gripper = 0.0
        return self.get_observation()

    def get_observation(self) -> Obs:
        return {
            "joint_pos": self.q.astype(np.float32),
            "gripper": np.array([self.gripper], np.float32),
            "target": self.target.astype(np.float32),
        }

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        step = np.array(self.config.joint_velocity) / self.config.fps
        self.q = self.q + np.clip(a[:N_JOINTS] - self.q, -step, step)
        self.gripper = float(np.clip(a[N_JOINTS], 0.0, 1.0))
        sent = a.astype(np.float32)
        self.sent.append(sent)
        return sent

    def hold_action(self, obs: Obs) -> np.ndarray:
        return np.concatenate([obs["joint_pos"], obs["gripper"]]).astype(np.float64)

    def reward(self) -> float:
        return float(self.is_success())

    def is_success(self) -> bool:
        return bool(np.max(np.abs(self.q - self.target)) < self.config.success_tol)

    def scripted_expert(self, noise: float = 0.0, seed: int | None = None) -> _NoisyExpert:
        def act(obs: Obs) -> np.ndarray:
            return np.concatenate([obs["target"], [1.0]])

        return _NoisyExpert(act, self.action_spec, noise, seed)


@dataclass
class MockBaseConfig(RobotConfig):
    """A unicycle base commanded by (v [m/s], omega [rad/s])."""

    name = "mock_base"
    fps: float = 20.0
    max_linear: float = 0.5
    max_angular: float = 1.5
    max_accel: tuple[float, float] = field(default=(1.0, 3.0))
    command_timeout: float = 0.3
    goal_tol: float = 0.1

    def safety_limits(self) -> SafetyLimits:
        dt = 1.0 / self.fps
        return SafetyLimits.base_velocity(self.max_linear, self.max_angular, self.max_accel, dt, self.command_timeout)


@register_robot(MockBaseConfig)
class MockBase(_NumpyRobot):
    config: MockBaseConfig

    def __init__(self, config: MockBaseConfig) -> None:
        super().__init__(config)
        self.pose = np.zeros(3)
        self.vel = np.zeros(2)
        self.goal = np.zeros(2)

    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        return {
            "odom": KeySpec((5,), "float32", "m, m, rad, m/s, rad/s", names=("x", "y", "yaw", "v", "omega")),
            "goal": KeySpec((2,), "float32", "m", names=("x", "y")),
        }

    @property
    def action_spec(self) -> KeySpec:
        c = self.config
        return KeySpec((2,), "float32", "m/s, rad/s", names=("v", "omega"), low=(-c.max_linear, -c.max_angular), high=(c.max_linear, c.max_angular))

    def reset(self, seed: int | None = None) -> Obs:
        rng = np.random.default_rng(seed)
        self.pose = np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
        self.vel = np.zeros(2)
        self.goal = rng.uniform(-2, 2, 2)
        return self.get_observation()

    def get_observation(self) -> Obs:
        return {"odom": np.concatenate([self.pose, self.vel]).astype(np.float32), "goal": self.goal.astype(np.float32)}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        v, w = np.asarray(action, dtype=np.float64)
        dt = 1.0 / self.config.fps
        x, y, yaw = self.pose
        self.pose = np.array([x + v * np.cos(yaw) * dt, y + v * np.sin(yaw) * dt, (yaw + w * dt + np.pi) % (2 * np.pi) - np.pi])
        self.vel = np.array([v, w])
        sent = np.array([v, w], np.float32)
        self.sent.append(sent)
        return sent

    def hold_action(self, obs: Obs) -> np.ndarray:
        return np.zeros(2)

    def reward(self) -> float:
        return float(self.is_success())

    def is_success(self) -> bool:
        return bool(np.linalg.norm(self.pose[:2] - self.goal) < self.config.goal_tol)

    def scripted_expert(self, noise: float = 0.0, seed: int | None = None) -> _NoisyExpert:
        c = self.config

        def act(obs: Obs) -> np.ndarray:
            x, y, yaw = obs["odom"][:3]
            dx, dy = obs["goal"] - np.array([x, y])
            heading = (np.arctan2(dy, dx) - yaw + np.pi) % (2 * np.pi) - np.pi
            v = min(c.max_linear, np.hypot(dx, dy)) * max(0.0, np.cos(heading))
            return np.array([v, np.clip(2.0 * heading, -c.max_angular, c.max_angular)])

        return _NoisyExpert(act, self.action_spec, noise, seed)


class _NoisyExpert:
    """A deterministic controller plus Gaussian noise scaled to the action range."""

    def __init__(self, fn: Callable[[Obs], np.ndarray], spec: KeySpec, noise: float, seed: int | None) -> None:
        self.fn, self.noise, self.seed = fn, noise, seed
        assert spec.low is not None and spec.high is not None
        self.low, self.high = np.array(spec.low), np.array(spec.high)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Obs) -> np.ndarray:
        a = self.fn(obs) + self.noise * (self.high - self.low) / 2 * self.rng.standard_normal(self.low.shape)
        return np.clip(a, self.low, self.high).astype(np.float32)
