"""``sim_base``: a differential-drive base in a walled room, simulated with MuJoCo.

Task: drive from a random start pose to a random goal in a 6 m x 6 m room with
randomly placed box and cylinder obstacles, without touching walls or obstacles.
The model is ``assets/diff_drive_room.xml`` (frames, sizes and collision groups are
described there). World frame: origin at the room centre, x/y on the floor, z up;
the room's inner walls are at x, y = +-3 m.

Actions are ``(v, omega)`` in m/s and rad/s (ROS ``cmd_vel`` / diff_drive_controller
convention). ``send_action`` clips them to the config's limits, converts them to wheel
speeds, scales both wheels down together when one would exceed ``max_wheel_speed``
(keeping the curvature), drives the two wheel-velocity servos for one control period and
returns the ``(v, omega)`` those wheel speeds correspond to.

Observations (see ``DiffDriveRobot.observation_spec``):

- ``odom`` (5,) float32: x [m], y [m], yaw [rad], v [m/s], omega [rad/s]. Taken from the
  simulated base pose and velocity (perfect odometry, no wheel-slip drift), in the
  world frame; v is the forward speed in the base frame, omega the yaw rate.
- ``scan`` (lidar_beams,) float32: ranges [m] from MuJoCo ray casting at 0.16 m above
  the floor, measured from the base centre; beam i points at ``i * 360 / lidar_beams``
  degrees counter-clockwise from the heading. Rays are horizontal (they follow the
  base's yaw, not its small pitch/roll), see only walls and obstacles (not the robot,
  floor or goal marker) and read ``lidar_range`` when nothing is hit.
- ``goal`` (4,) float32: goal x, y [m] in the world frame, then its distance [m] and
  bearing [rad] (counter-clockwise from the heading, in (-pi, pi]) from the base.
- ``image.front`` (image_size, image_size, 3) uint8, upright RGB from the base's front
  camera, only when ``camera=True``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, RobotConfig, SimRobot
from robot_rl.robots.registry import register_robot
from robot_rl.safety import SafetyLimits

MODEL_PATH = Path(__file__).parent / "assets" / "diff_drive_room.xml"

ROOM_HALF = 3.0
"""Half-size of the room [m]: the inner wall faces are at x, y = +-ROOM_HALF."""
ROBOT_RADIUS = 0.18
"""Radius of the chassis cylinder [m] (the base's footprint)."""
LIDAR_HEIGHT = 0.16
"""Height of the lidar rays above the floor [m]."""
N_OBSTACLE_BODIES = 6
"""Obstacle bodies in the MJCF (``obstacle_0`` ... ``obstacle_5``)."""
PARK_DEPTH = -10.0
"""z [m] of unused obstacles: under the floor, out of the lidar's and camera's view."""
SETTLE_STEPS = 40
"""Physics steps run at reset with zero wheel speed so the base settles on its contacts."""


@dataclass
class DiffDriveConfig(RobotConfig):
    """Config of the simulated differential-drive base and its go-to-goal task.

    Attributes:
        fps: control rate [Hz]; one ``send_action`` advances the sim by ``1 / fps`` s.
        substeps: physics steps per control period (timestep = 1 / (fps * substeps) s).
        max_linear: forward/backward speed limit [m/s].
        max_angular: yaw-rate limit [rad/s].
        max_linear_accel: linear acceleration limit [m/s^2] (safety filter rate limit).
        max_angular_accel: angular acceleration limit [rad/s^2] (safety filter rate limit).
        command_timeout: s without a valid command before the safety filter stops the base.
        wheel_radius: wheel radius [m]; must match the MJCF (checked at ``connect``).
        wheel_separation: distance between the wheels' contact points [m]; must match the MJCF.
        max_wheel_speed: wheel speed limit [rad/s]; (v, omega) pairs needing more are scaled
            down together, keeping the curvature.
        lidar_beams: number of lidar beams over 360 degrees.
        lidar_range: maximum lidar range [m] (reported when nothing is hit).
        camera: render ``image.front`` in every observation.
        image_size: camera image height = width [px].
        goal_tol: distance to the goal [m] that counts as reached.
        max_steps: episode length limit [control steps].
        n_obstacles: obstacles placed per episode (0 to 6).
        min_goal_distance: minimum start-to-goal distance [m] when sampling an episode.
        success_bonus: reward added on every step the goal is reached.
        collision_penalty: reward subtracted on the step a collision is first detected.
        time_penalty: reward subtracted on every step.
    """

    name = "sim_base"
    fps: float = 20.0
    substeps: int = 10
    max_linear: float = 0.5
    max_angular: float = 2.0
    max_linear_accel: float = 1.0
    max_angular_accel: float = 4.0
    command_timeout: float = 0.3
    wheel_radius: float = 0.05
    wheel_separation: float = 0.30
    max_wheel_speed: float = 12.0
    lidar_beams: int = 36
    lidar_range: float = 4.0
    camera: bool = False
    image_size: int = 64
    goal_tol: float = 0.15
    max_steps: int = 400
    n_obstacles: int = 6
    min_goal_distance: float = 2.0
    success_bonus: float = 10.0
    collision_penalty: float = 10.0
    time_penalty: float = 0.01

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.substeps >= 1):
            raise ValueError(f"fps must be > 0 and substeps >= 1, got fps={self.fps}, substeps={self.substeps}")
        if not 0 <= self.n_obstacles <= N_OBSTACLE_BODIES:
            raise ValueError(f"n_obstacles must be in [0, {N_OBSTACLE_BODIES}], got {self.n_obstacles}")
        if self.lidar_beams < 1 or self.lidar_range <= 0:
            raise ValueError("lidar_beams must be >= 1 and lidar_range > 0")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 px, got {self.image_size}")
        positive = ("max_linear", "max_angular", "max_linear_accel", "max_angular_accel", "max_wheel_speed", "goal_tol")
        bad = [f for f in positive if not getattr(self, f) > 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive")

    @property
    def dt(self) -> float:
        """Control period [s]."""
        return 1.0 / self.fps

    def safety_limits(self) -> SafetyLimits:
        dt = self.dt
        return SafetyLimits.base_velocity(self.max_linear, self.max_angular, (self.max_linear_accel, self.max_angular_accel), dt, self.command_timeout)


@register_robot(DiffDriveConfig)
class DiffDriveRobot(SimRobot):
    """MuJoCo differential-drive base with a go-to-goal task (see the module docstring).

    ``connect()`` loads the model and starts the seed-0 episode, so observations are valid
    at once; ``reset(seed)`` starts the episode of that seed (same seed, same layout,
    same trajectory for the same actions).
    """

    config: DiffDriveConfig

    def __init__(self, config: DiffDriveConfig) -> None:
        super().__init__(config)
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: mujoco.Renderer | None = None
        self.goal = np.zeros(2)
        self.episode = 0  # incremented by every reset; lets the expert notice a new layout
        self._collided = False
        self._prev_goal_dist = 0.0
        self._last_reward = 0.0
        self._steps = 0
        self.beam_angles = np.arange(config.lidar_beams) * (2 * np.pi / config.lidar_beams)
        """Beam directions [rad] relative to the heading, counter-clockwise, shape (lidar_beams,)."""
        self._ray_vec = np.zeros(3 * config.lidar_beams)
        self._ray_dist = np.zeros(config.lidar_beams)
        self._ray_geom = np.zeros(config.lidar_beams, np.int32)
        self._ray_groups = np.array([1, 0, 0, 0, 0, 0], np.uint8)  # group 0: walls and obstacles

    # ------------------------------------------------------------------ specs
    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        spec = {
            "odom": KeySpec(
                (5,), "float32", "m, m, rad, m/s, rad/s", names=("x", "y", "yaw", "v", "omega"),
                low=(-ROOM_HALF, -ROOM_HALF, -np.pi, -c.max_linear, -c.max_angular),
                high=(ROOM_HALF, ROOM_HALF, np.pi, c.max_linear, c.max_angular),
            ),
            "scan": KeySpec(
                (c.lidar_beams,), "float32", "m",
                names=tuple(f"range_{math.degrees(a):.0f}deg" for a in self.beam_angles),
                low=(0.0,) * c.lidar_beams, high=(c.lidar_range,) * c.lidar_beams,
            ),
            "goal": KeySpec(
                (4,), "float32", "m, m, m, rad", names=("x", "y", "distance", "bearing"),
                low=(-ROOM_HALF, -ROOM_HALF, 0.0, -np.pi),
                high=(ROOM_HALF, ROOM_HALF, 2 * math.sqrt(2) * ROOM_HALF, np.pi),
            ),
        }
        if c.camera:
            spec["image.front"] = KeySpec((c.image_size, c.image_size, 3), "uint8", "rgb")
        return spec

    @property
    def action_spec(self) -> KeySpec:
        c = self.config
        lim = c.safety_limits()
        return KeySpec((2,), "float32", "m/s, rad/s", names=("v", "omega"), low=lim.low, high=lim.high)

    # ------------------------------------------------------------- lifecycle
    def connect(self) -> None:
        """Load the model (and the camera renderer), then start the seed-0 episode."""
        c = self.config
        m = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
        m.opt.timestep = c.dt / c.substeps
        self._check_geometry(m)
        if c.camera:
            m.vis.global_.offwidth = max(m.vis.global_.offwidth, c.image_size)
            m.vis.global_.offheight = max(m.vis.global_.offheight, c.image_size)
            try:
                self._renderer = mujoco.Renderer(m, c.image_size, c.image_size)
            except mujoco.FatalError as exc:
                raise RuntimeError(
                    f"cannot create a MuJoCo renderer with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                    "set MUJOCO_GL=egl (or osmesa) before anything imports mujoco, or use camera=False"
                ) from exc
            for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
                self._renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        self._base_body = m.body("base").id
        self._base_qpos = int(m.joint("base_free").qposadr[0])
        self._base_qvel = int(m.joint("base_free").dofadr[0])
        self._wheel_act = [m.actuator(f"{side}_wheel").id for side in ("left", "right")]
        self._obstacle_mocap = [int(m.body(f"obstacle_{i}").mocapid[0]) for i in range(N_OBSTACLE_BODIES)]
        self._obstacle_geoms = [m.geom(f"obstacle_{i}_geom").id for i in range(N_OBSTACLE_BODIES)]
        self._goal_mocap = int(m.body("goal").mocapid[0])
        self.wall_geoms = [m.geom(f"wall_{side}").id for side in ("px", "nx", "py", "ny")]
        robot_bodies = [self._base_body, m.body("left_wheel").id, m.body("right_wheel").id]
        self._is_robot_geom = np.isin(m.geom_bodyid, robot_bodies)
        self._is_obstacle_geom = m.geom_group == 0  # walls and obstacles
        self.model, self.data = m, mujoco.MjData(m)
        self.reset(0)

    def _check_geometry(self, m: mujoco.MjModel) -> None:
        """Raise when the config's wheel radius / separation / speed limit disagree with the MJCF."""
        c = self.config
        radius = float(m.geom("left_wheel_geom").size[0])
        separation = float(m.body("left_wheel").pos[1] - m.body("right_wheel").pos[1])
        if abs(radius - c.wheel_radius) > 1e-6 or abs(separation - c.wheel_separation) > 1e-6:
            raise ValueError(
                f"config wheel_radius={c.wheel_radius}, wheel_separation={c.wheel_separation} do not match "
                f"{MODEL_PATH.name} (radius {radius}, separation {separation})"
            )
        servo_limit = float(m.actuator("left_wheel").ctrlrange[1])
        if c.max_wheel_speed > servo_limit:
            raise ValueError(f"max_wheel_speed={c.max_wheel_speed} rad/s exceeds the wheel servos' {servo_limit} rad/s")

    @property
    def is_connected(self) -> bool:
        return self.model is not None

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        self.model = self.data = None

    def _sim(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        if self.model is None or self.data is None:
            raise RuntimeError("sim_base is not connected: call connect() (or use `with robot:`) first")
        return self.model, self.data

    # --------------------------------------------------------------- episode
    def reset(self, seed: int | None = None) -> Obs:
        """Sample a layout from ``seed`` (start pose, goal, obstacle poses; ``None``: fresh
        entropy), settle the base on the floor and return the first observation.

        The chassis starts at least 0.25 m clear of everything; the base fits on the goal
        with 0.15 m to spare; obstacles (bounding circles) are at least 0.6 m apart from
        each other and from the walls, so the base can always get through."""
        m, d = self._sim()
        rng = np.random.default_rng(seed)
        start, yaw, goal, obstacles = self._sample_layout(rng)
        mujoco.mj_resetData(m, d)
        for i, mocap in enumerate(self._obstacle_mocap):
            if i < len(obstacles):
                x, y, angle = obstacles[i]
                d.mocap_pos[mocap] = (x, y, self._half_height(self._obstacle_geoms[i]))  # standing on the floor
                d.mocap_quat[mocap] = (math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2))
            else:
                d.mocap_pos[mocap] = (float(i), 0.0, PARK_DEPTH)
        d.mocap_pos[self._goal_mocap] = (goal[0], goal[1], 0.0)
        q = self._base_qpos
        d.qpos[q : q + 3] = (start[0], start[1], self.config.wheel_radius)
        d.qpos[q + 3 : q + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        mujoco.mj_forward(m, d)
        for _ in range(SETTLE_STEPS):
            mujoco.mj_step(m, d)
        self.goal = np.array(goal, dtype=np.float64)
        self.episode += 1
        self._collided = False
        self._prev_goal_dist = self.goal_distance()
        self._last_reward = 0.0
        self._steps = 0
        return self.get_observation()

    def _sample_layout(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, float, np.ndarray, list[tuple[float, float, float]]]:
        """Start (x, y), start yaw, goal (x, y) and (x, y, yaw) per obstacle, all in m / rad.

        Obstacle 0 is placed near the start-goal midpoint (so most episodes need a detour);
        the rest uniformly. Rejection sampling with clearances measured between bounding
        circles."""
        m, c = self.model, self.config
        assert m is not None
        lim = ROOM_HALF - ROBOT_RADIUS - 0.25
        start = rng.uniform(-lim, lim, 2)
        yaw = float(rng.uniform(-np.pi, np.pi))
        while True:
            goal = rng.uniform(-ROOM_HALF + 0.3, ROOM_HALF - 0.3, 2)
            if np.linalg.norm(goal - start) >= c.min_goal_distance:
                break
        radii = [self._bounding_radius(g) for g in self._obstacle_geoms[: c.n_obstacles]]
        placed: list[tuple[float, float, float]] = []
        for i, r in enumerate(radii):
            for attempt in range(1000):
                if i == 0 and attempt < 100:
                    xy = (start + goal) / 2 + rng.normal(0.0, 0.25, 2)
                else:
                    xy = rng.uniform(-ROOM_HALF, ROOM_HALF, 2)
                clear_walls = ROOM_HALF - np.max(np.abs(xy)) - r >= 0.6
                clear_start = np.linalg.norm(xy - start) - r >= ROBOT_RADIUS + 0.25
                clear_goal = np.linalg.norm(xy - goal) - r >= ROBOT_RADIUS + 0.15
                clear_others = all(
                    math.hypot(xy[0] - p[0], xy[1] - p[1]) - r - radii[j] >= 0.6 for j, p in enumerate(placed)
                )
                if clear_walls and clear_start and clear_goal and clear_others:
                    placed.append((float(xy[0]), float(xy[1]), float(rng.uniform(-np.pi, np.pi))))
                    break
            else:
                raise RuntimeError(f"could not place obstacle {i} after 1000 tries; lower n_obstacles")
        return start, yaw, goal, placed

    def _half_height(self, geom: int) -> float:
        """Half-height [m] of a box or cylinder geom."""
        m = self.model
        assert m is not None
        return float(m.geom_size[geom, 2] if m.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX else m.geom_size[geom, 1])

    def _bounding_radius(self, geom: int) -> float:
        """Radius [m] of the circle enclosing ``geom``'s footprint on the floor."""
        m = self.model
        assert m is not None
        size = m.geom_size[geom]
        return float(math.hypot(size[0], size[1]) if m.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX else size[0])

    # ------------------------------------------------------------- sensing
    def pose(self) -> np.ndarray:
        """Base pose (x [m], y [m], yaw [rad]) in the world frame, shape (3,)."""
        _, d = self._sim()
        q = self._base_qpos
        w, x, y, z = d.qpos[q + 3 : q + 7]
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        return np.array([d.qpos[q], d.qpos[q + 1], yaw])

    def velocity(self) -> np.ndarray:
        """Forward speed [m/s] in the base frame and yaw rate [rad/s], shape (2,)."""
        _, d = self._sim()
        yaw = self.pose()[2]
        lin = d.qvel[self._base_qvel : self._base_qvel + 3]  # world frame
        return np.array([lin[0] * math.cos(yaw) + lin[1] * math.sin(yaw), d.cvel[self._base_body, 2]])

    def goal_distance(self) -> float:
        """Distance [m] from the base centre to the goal."""
        return float(np.linalg.norm(self.goal - self.pose()[:2]))

    def scan(self) -> np.ndarray:
        """Lidar ranges [m], shape (lidar_beams,) float32 (see the module docstring)."""
        m, d = self._sim()
        x, y, yaw = self.pose()
        a = yaw + self.beam_angles
        vec = self._ray_vec.reshape(-1, 3)
        vec[:, 0], vec[:, 1] = np.cos(a), np.sin(a)
        rng_max = self.config.lidar_range
        pnt = np.array([x, y, LIDAR_HEIGHT])
        mujoco.mj_multiRay(
            m, d, pnt, self._ray_vec, self._ray_groups, 1, self._base_body,
            self._ray_geom, self._ray_dist, None, len(a), rng_max,
        )
        dist = np.where(self._ray_geom >= 0, self._ray_dist, rng_max)
        return np.clip(dist, 0.0, rng_max).astype(np.float32)

    def get_observation(self) -> Obs:
        _, d = self._sim()
        x, y, yaw = self.pose()
        dx, dy = self.goal - (x, y)
        bearing = math.remainder(math.atan2(dy, dx) - yaw, 2 * math.pi)
        obs = {
            "odom": np.array([x, y, yaw, *self.velocity()], np.float32),
            "scan": self.scan(),
            "goal": np.array([self.goal[0], self.goal[1], math.hypot(dx, dy), bearing], np.float32),
        }
        if self._renderer is not None:
            self._renderer.update_scene(d, camera="front")
            obs["image.front"] = self._renderer.render().copy()
        return obs

    # -------------------------------------------------------------- acting
    def wheel_speeds(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(v, omega) -> (applied (v, omega) float32 shape (2,), wheel speeds [rad/s] (left, right)).

        Clips v and omega to their limits, then scales both wheel speeds by the same factor
        when one exceeds ``max_wheel_speed``."""
        c = self.config
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"sim_base action must be a finite (v, omega) vector of shape (2,), got {a!r}")
        v = float(np.clip(a[0], -c.max_linear, c.max_linear))
        w = float(np.clip(a[1], -c.max_angular, c.max_angular))
        half = c.wheel_separation / 2
        wheels = np.array([v - w * half, v + w * half]) / c.wheel_radius
        peak = float(np.max(np.abs(wheels)))
        if peak > c.max_wheel_speed:
            wheels *= c.max_wheel_speed / peak
        left, right = wheels * c.wheel_radius  # rim speeds [m/s]
        applied = np.array([(left + right) / 2, (right - left) / c.wheel_separation], np.float32)
        return applied, wheels

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Drive with ``(v [m/s], omega [rad/s])`` for one control period; returns the
        (v, omega) actually applied (after clipping and wheel-speed saturation), float32."""
        m, d = self._sim()
        applied, wheels = self.wheel_speeds(action)
        d.ctrl[self._wheel_act] = wheels
        new_collision = False
        for _ in range(self.config.substeps):
            mujoco.mj_step(m, d)
            if not self._collided and self._in_collision():
                self._collided = new_collision = True
        self._steps += 1
        dist = self.goal_distance()
        c = self.config
        self._last_reward = (
            (self._prev_goal_dist - dist)
            - c.time_penalty
            + (c.success_bonus if self.is_success() else 0.0)
            - (c.collision_penalty if new_collision else 0.0)
        )
        self._prev_goal_dist = dist
        return applied

    def _in_collision(self) -> bool:
        """Whether any robot geom touches a wall or obstacle now (MuJoCo contacts)."""
        _, d = self._sim()
        n = d.ncon
        if n == 0:
            return False
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        robot1, robot2 = self._is_robot_geom[g1], self._is_robot_geom[g2]
        obst1, obst2 = self._is_obstacle_geom[g1], self._is_obstacle_geom[g2]
        return bool(np.any((robot1 & obst2) | (robot2 & obst1)))

    def hold_action(self, obs: Obs) -> np.ndarray:
        return np.zeros(2)

    # ---------------------------------------------------------------- task
    def reward(self) -> float:
        """Reward of the last step: goal-distance decrease [m] - ``time_penalty``
        + ``success_bonus`` when at the goal - ``collision_penalty`` on the step a
        collision starts. 0 right after ``reset``."""
        return float(self._last_reward)

    def is_success(self) -> bool:
        """Within ``goal_tol`` of the goal and no collision in this episode."""
        return not self._collided and self.goal_distance() < self.config.goal_tol

    def is_failure(self) -> bool:
        """The base touched a wall or obstacle in this episode (latched until ``reset``)."""
        return self._collided

    def task_info(self) -> dict[str, Any]:
        """goal_distance [m], min_range [m] (closest lidar reading), collided, steps."""
        return {
            "goal_distance": self.goal_distance(),
            "min_range": float(self.scan().min()),
            "collided": self._collided,
            "steps": self._steps,
        }

    def obstacle_footprints(self) -> list[tuple[str, np.ndarray, float, np.ndarray]]:
        """Walls and placed obstacles as (shape, centre (x, y) [m], yaw [rad], half-sizes [m]).

        ``shape`` is ``"box"`` (half-sizes (hx, hy)) or ``"cylinder"`` (half-sizes (r, r)).
        Privileged map for the scripted expert's planner."""
        m, d = self._sim()
        out = []
        for g in self.wall_geoms + self._obstacle_geoms:
            if d.geom_xpos[g, 2] < 0:  # parked under the floor
                continue
            mat = d.geom_xmat[g].reshape(3, 3)
            yaw = math.atan2(mat[1, 0], mat[0, 0])
            if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
                out.append(("box", d.geom_xpos[g, :2].copy(), yaw, m.geom_size[g, :2].copy()))
            else:
                r = float(m.geom_size[g, 0])
                out.append(("cylinder", d.geom_xpos[g, :2].copy(), yaw, np.array([r, r])))
        return out

    def scripted_expert(self, noise: float = 0.0, seed: int | None = None) -> DiffDriveExpert:
        return DiffDriveExpert(self, noise=noise, seed=seed)


class DiffDriveExpert:
    """Go-to-goal expert: a grid planner on the known map plus a pure-pursuit follower.

    On the first ``act`` of every episode it rasterises the walls and obstacles (privileged
    map from the sim) into a 5 cm clearance grid and computes the cost-to-go to the goal
    (8-connected, cells closer than ``ROBOT_RADIUS + 0.02`` m to anything are blocked,
    cells within ``ROBOT_RADIUS + MARGIN`` m cost more, so paths keep a margin). Each step
    it follows the cost-to-go downhill for ``LOOKAHEAD`` m from the base's cell (pose from
    ``obs["odom"]``, goal from ``obs["goal"]``), steers at that point, turns in place for
    large heading errors, slows down near the goal and brakes when ``obs["scan"]`` sees
    something close ahead. The command is rate-limited by the config's acceleration limits.

    ``noise`` is the std of Gaussian noise added to the normalised action (v / max_linear,
    omega / max_angular); the noise is temporally correlated (AR(1), coefficient
    ``NOISE_CORRELATION`` per step, stationary std = ``noise``), like an unsteady operator.
    A noisier expert is also careless: its path margin shrinks to
    ``MARGIN * max(0.1, 1 - noise)``, so large values cause detours, timeouts and
    collisions (see benchmarks/sim_base.py for the rates).
    """

    RESOLUTION = 0.05
    """Planner grid cell [m]."""
    LOOKAHEAD = 0.5
    """Pure-pursuit lookahead along the path [m]."""
    MARGIN = 0.35
    """Preferred clearance [m] beyond the robot radius at noise 0."""
    NOISE_CORRELATION = 0.9
    """AR(1) coefficient of the action noise per control step (time constant ~0.5 s at 20 Hz)."""

    def __init__(self, robot: DiffDriveRobot, noise: float = 0.0, seed: int | None = None) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.robot = robot
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        n = int(round(2 * ROOM_HALF / self.RESOLUTION))
        centres = -ROOM_HALF + (np.arange(n) + 0.5) * self.RESOLUTION
        self._gx, self._gy = np.meshgrid(centres, centres, indexing="ij")
        self.cost_to_go = np.full((n, n), np.inf)
        self._planned_episode = -1
        self._last = np.zeros(2)
        self._noise_state = np.zeros(2)

    def reset(self) -> None:
        self._planned_episode = -1
        self._last = np.zeros(2)
        self._noise_state = np.zeros(2)

    # -------------------------------------------------------------- planning
    def _clearance(self) -> np.ndarray:
        """Distance [m] from every cell centre to the nearest wall or obstacle, shape (n, n)."""
        clear = np.full(self._gx.shape, np.inf)
        for shape, centre, yaw, half in self.robot.obstacle_footprints():
            px, py = self._gx - centre[0], self._gy - centre[1]
            if shape == "cylinder":
                dist = np.hypot(px, py) - half[0]
            else:
                c, s = math.cos(yaw), math.sin(yaw)
                qx, qy = np.abs(c * px + s * py) - half[0], np.abs(-s * px + c * py) - half[1]
                dist = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
            clear = np.minimum(clear, dist)
        return clear

    def _plan(self, goal: np.ndarray) -> None:
        """Cost-to-go [m, weighted] from every cell to ``goal`` by vectorised Bellman-Ford."""
        clear = self._clearance()
        free = clear > ROBOT_RADIUS + 0.02
        comfort = ROBOT_RADIUS + self.MARGIN * max(0.1, 1.0 - self.noise)
        cell_cost = np.where(free, 1.0 + 8.0 * np.clip((comfort - clear) / comfort, 0.0, None), np.inf)
        cost = np.full(clear.shape, np.inf)
        gi = self._cell(goal)
        cost[gi] = 0.0
        steps = [(di, dj, self.RESOLUTION * math.hypot(di, dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
        n = cost.shape[0]
        for _ in range(n * n):  # Bellman-Ford bound; converges after about the longest path in cells
            prev = cost.copy()
            for di, dj, length in steps:
                src = cost[max(0, di) : n + min(0, di), max(0, dj) : n + min(0, dj)]
                dst = (slice(max(0, -di), n + min(0, -di)), slice(max(0, -dj), n + min(0, -dj)))
                np.minimum(cost[dst], src + length * cell_cost[dst], out=cost[dst])
            if np.array_equal(prev, cost):
                break
        self.cost_to_go = cost

    def _cell(self, xy: np.ndarray) -> tuple[int, int]:
        n = self.cost_to_go.shape[0]
        i, j = ((np.asarray(xy) + ROOM_HALF) / self.RESOLUTION).astype(int)
        return int(np.clip(i, 0, n - 1)), int(np.clip(j, 0, n - 1))

    def _waypoint(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Point [m] ``LOOKAHEAD`` m down the cost-to-go from ``pos`` (the goal when closer)."""
        if np.linalg.norm(goal - pos) <= self.LOOKAHEAD:
            return goal
        cost, n = self.cost_to_go, self.cost_to_go.shape[0]
        i, j = self._cell(pos)
        if not np.isfinite(cost[i, j]):  # squeezed against something: head for the nearest free cell
            finite = np.argwhere(np.isfinite(cost))
            i, j = finite[np.argmin(np.hypot(finite[:, 0] - i, finite[:, 1] - j))]
        for _ in range(int(self.LOOKAHEAD / self.RESOLUTION)):
            best = (cost[i, j], i, j)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < n and 0 <= b < n and cost[a, b] < best[0]:
                        best = (cost[a, b], a, b)
            if (best[1], best[2]) == (i, j):
                return goal
            i, j = best[1], best[2]
        return np.array([self._gx[i, j], self._gy[i, j]])

    # --------------------------------------------------------------- acting
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(v [m/s], omega [rad/s]) float32, shape (2,), for ``obs`` of the robot."""
        c = self.robot.config
        x, y, yaw = (float(v) for v in obs["odom"][:3])
        goal = np.asarray(obs["goal"][:2], dtype=np.float64)
        if self._planned_episode != self.robot.episode:
            self._plan(goal)
            self._planned_episode = self.robot.episode
        pos = np.array([x, y])
        target = self._waypoint(pos, goal)
        err = math.remainder(math.atan2(target[1] - y, target[0] - x) - yaw, 2 * math.pi)
        goal_dist = float(np.linalg.norm(goal - pos))
        omega = float(np.clip(3.0 * err, -c.max_angular, c.max_angular))
        v = c.max_linear * max(0.0, math.cos(err)) ** 4 if abs(err) < 1.0 else 0.0
        v = min(v, goal_dist)  # v [m/s] <= distance [m] * 1 /s: ease into the goal
        scan = np.asarray(obs["scan"])
        ahead = np.abs(np.remainder(self.robot.beam_angles + np.pi, 2 * np.pi) - np.pi) <= math.radians(35)
        v = min(v, max(0.0, 2.0 * (float(scan[ahead].min()) - ROBOT_RADIUS - 0.05)))
        cmd = np.array([v, omega])
        step = np.array([c.max_linear_accel, c.max_angular_accel]) * c.dt
        cmd = np.clip(cmd, self._last - step, self._last + step)
        self._last = cmd
        if self.noise > 0:
            rho = self.NOISE_CORRELATION
            self._noise_state = rho * self._noise_state + math.sqrt(1 - rho * rho) * self.rng.normal(0.0, self.noise, 2)
            scale = np.array([c.max_linear, c.max_angular])
            cmd = np.clip(cmd / scale + self._noise_state, -1.0, 1.0) * scale
        return cmd.astype(np.float32)
