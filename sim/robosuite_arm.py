"""robosuite twins of a Franka Panda on a table: ``sim_lift`` (Lift) and ``sim_stack`` (Stack).

Two action modes (``config.action_mode``):

- ``ee_delta``: robosuite's OSC_POSE controller with delta input, 7-d
  ``[dx, dy, dz, dax, day, daz, gripper]`` in [-1, 1]. Position deltas scale to
  0.05 m per unit, axis-angle deltas to 0.5 rad per unit (robosuite's ``output_max``),
  both in the robot base frame, whose axes are the world axes here. robosuite clips
  every element to [-1, 1]; ``send_action`` returns that clipped action.
- ``joint_position``: robosuite's JOINT_POSITION controller with ``input_type="absolute"``
  (supported by robosuite 1.5): 7 absolute Panda joint targets (rad) + gripper. The
  targets are clipped to the Panda joint limits before they are sent.

The gripper element is robosuite's: -1 opens, +1 closes. The Panda gripper integrates
its sign (20 % of its range per step), so a held command keeps its state.

Observations (all float32 except images): ``joint_pos`` (7, rad), ``eef_pos`` (3, m,
world frame, the grip site), ``eef_quat`` (4, xyzw, grip site orientation),
``gripper_qpos`` (2, m, finger joints), ``object`` (task object state, per-element names
in the spec) and, when configured, ``image.agentview`` / ``image.wrist`` (uint8 H x W x 3,
upright). World frame: origin at the floor under the table centre, z up; the table top
is at z = 0.8 m and the robot base at (-0.56, 0, 0.912).

Rendering on CPU (llvmpipe) is dominated by shadows, reflections and multisampling; with
``fast_render`` they are turned off (about 3x faster per camera at 84 x 84).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
import robosuite
from robosuite import macros
from robosuite.controllers import load_composite_controller_config, load_part_controller_config
from scipy.spatial.transform import Rotation

from robot_rl.data.schema import KeySpec
from robot_rl.policies import Policy
from robot_rl.robots.base import Obs, RobotConfig, SimRobot
from robot_rl.robots.registry import register_robot
from robot_rl.safety import SafetyLimits

N_JOINTS = 7
EE_DELTA_SIZE = 7
"""ee_delta action: 3 position + 3 axis-angle deltas + gripper."""
ACTION_MODES = ("ee_delta", "joint_position")
CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
"""Our camera name -> robosuite camera name."""

PANDA_JOINT_LOW = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
PANDA_JOINT_HIGH = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
PANDA_JOINT_VELOCITY = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
"""Franka Panda joint limits (rad) and joint speed limits (rad/s), as in robosuite's model."""

OSC_POS_SCALE = 0.05
"""m per unit of the ee_delta position elements (robosuite OSC_POSE ``output_max``)."""
OSC_ROT_SCALE = 0.5
"""rad per unit of the ee_delta axis-angle elements (robosuite OSC_POSE ``output_max``)."""
PHYSICS_HZ = 500.0
"""robosuite's physics rate (timestep 2 ms); one control period is PHYSICS_HZ / fps substeps."""
TABLE_Z = 0.8
"""Table top height in the world frame (m), robosuite's ``table_offset``."""
_MODEL_SEED = 0
"""Seed of robosuite.make: fixes the model itself (e.g. Lift's random cube size)."""


@dataclass
class RobosuiteArmConfig(RobotConfig):
    """A robosuite Panda task, shared by Lift and Stack.

    Attributes:
        fps: control rate in Hz (robosuite ``control_freq``); one ``send_action`` per period.
        action_mode: ``ee_delta`` (OSC_POSE deltas in [-1, 1]) or ``joint_position``
            (absolute joint targets in rad + gripper); see the module docstring.
        cameras: subset of ``("agentview", "wrist")``; each adds ``image.<name>``.
        image_size: camera frame height and width (px).
        fast_render: turn off shadows, reflections, skybox and multisampling (much faster on CPU).
        max_steps: episode length limit (steps).
        workspace_low, workspace_high: ee_delta safety box (m, world frame, the frame of
            ``eef_pos``) that the commanded grip-site position must stay in.
        joint_low, joint_high: joint_position bounds (rad).
        joint_velocity: joint_position speed limits (rad/s).
        joint_max_delta: joint_position max change of a joint target per tick (rad).
        command_timeout: s without a valid command before the safety filter holds.
        joint_kp: JOINT_POSITION controller stiffness (1/s^2, mass-matrix scaled; critically damped).
    """

    fps: float = 20.0
    action_mode: str = "ee_delta"
    cameras: tuple[str, ...] = ()
    image_size: int = 84
    fast_render: bool = True
    max_steps: int = 200
    workspace_low: tuple[float, float, float] = (-0.3, -0.3, 0.805)
    workspace_high: tuple[float, float, float] = (0.3, 0.3, 1.3)
    joint_low: tuple[float, ...] = PANDA_JOINT_LOW
    joint_high: tuple[float, ...] = PANDA_JOINT_HIGH
    joint_velocity: tuple[float, ...] = PANDA_JOINT_VELOCITY
    joint_max_delta: float = 0.15
    command_timeout: float = 0.25
    joint_kp: float = 150.0

    def __post_init__(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode {self.action_mode!r} is not one of {ACTION_MODES}")
        self.cameras = tuple(self.cameras)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras {self.cameras} must be distinct names from {tuple(CAMERAS)}")
        if self.image_size <= 0 or self.max_steps <= 0 or self.fps <= 0:
            raise ValueError("image_size, max_steps and fps must be positive")
        substeps = PHYSICS_HZ / self.fps
        if abs(substeps - round(substeps)) > 1e-9:
            raise ValueError(f"fps {self.fps} must divide robosuite's {PHYSICS_HZ:g} Hz physics rate")
        for name in ("joint_low", "joint_high", "joint_velocity"):
            if len(getattr(self, name)) != N_JOINTS:
                raise ValueError(f"{name} needs {N_JOINTS} values")

    def safety_limits(self) -> SafetyLimits:
        dt = 1.0 / self.fps
        if self.action_mode == "ee_delta":
            return SafetyLimits(
                mode="ee_delta",
                low=(-1.0,) * EE_DELTA_SIZE,
                high=(1.0,) * EE_DELTA_SIZE,
                dt=dt,
                command_timeout=self.command_timeout,
                workspace_low=self.workspace_low,
                workspace_high=self.workspace_high,
                ee_delta_scale=(OSC_POS_SCALE,) * 3,
            )
        return SafetyLimits(
            mode="joint_position",
            low=(*self.joint_low, -1.0),
            high=(*self.joint_high, 1.0),
            max_delta=(self.joint_max_delta,) * N_JOINTS + (2.0,),
            dt=dt,
            command_timeout=self.command_timeout,
            joint_velocity=self.joint_velocity,
        )


@dataclass
class LiftConfig(RobosuiteArmConfig):
    """robosuite Lift: lift the red cube (4-4.4 cm) more than 4 cm above the table."""

    name = "sim_lift"
    max_steps: int = 200


@dataclass
class StackConfig(RobosuiteArmConfig):
    """robosuite Stack: put the red cube (4 cm) on the green cube (5 cm) and let go."""

    name = "sim_stack"
    max_steps: int = 400


# ---------------------------------------------------------------------------- experts
R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""Grip-site orientation pointing straight down at yaw 0 (the Panda's home, untilted)."""


class _ArmExpert:
    """Shared parts of the scripted Panda experts (ee_delta actions from the observation only).

    A phase machine picks a grip-site position target, a yaw and a gripper command each
    step; ``_command`` turns them into a proportional OSC delta. ``noise`` is the std of
    Gaussian noise added to every normalised action element; with probability
    ``min(1, noise)`` / 2 per episode the first grasp is also aimed 1-2.5 cm off (a sloppy
    operator). A noisy expert accepts proportionally looser alignment before moving on
    (tolerances x ``1 + SLACK * noise``), as a shaky operator would; it retries failed grasps.
    """

    POS_GAIN = 1.0
    """Fraction of the position error commanded per step (before the 0.05 m/unit clip)."""
    ROT_GAIN = 1.0
    """Fraction of the orientation error commanded per step."""
    SLACK = 1.5
    """Growth of the alignment tolerances per unit of noise."""

    def __init__(self, object_names: tuple[str, ...], noise: float = 0.0, seed: int | None = None) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self._slack = 1.0 + self.SLACK * self.noise
        self._index = {name: i for i, name in enumerate(object_names)}
        self._rng = np.random.default_rng(seed)
        self.phase = ""
        self.reset()

    def reset(self) -> None:
        self._grasp_offset = np.zeros(2)
        if self._rng.random() < min(1.0, self.noise) / 2:
            angle = self._rng.uniform(0, 2 * np.pi)
            self._grasp_offset = self._rng.uniform(0.01, 0.025) * np.array([np.cos(angle), np.sin(angle)])
        self._start_phase("approach")

    def _start_phase(self, phase: str) -> None:
        self.phase = phase
        self._ticks = 0

    def _vec(self, obs: dict[str, np.ndarray], prefix: str, axes: Iterable[str] = "xyz") -> np.ndarray:
        """Elements ``{prefix}_{axis}`` of ``obs["object"]``, e.g. a cube's position (m)."""
        return np.array([obs["object"][self._index[f"{prefix}_{a}"]] for a in axes], dtype=np.float64)

    def _yaw(self, obs: dict[str, np.ndarray], cube: str) -> float:
        """Gripper yaw target (rad) that puts the fingers square to ``cube``'s faces, the one
        of the four equivalent yaws nearest the gripper's current yaw."""
        cube_rot = Rotation.from_quat(self._vec(obs, cube, ("qx", "qy", "qz", "qw"))).as_matrix()
        cube_yaw = np.arctan2(cube_rot[1, 0], cube_rot[0, 0])
        current = _site_yaw(obs)
        return float(current + (cube_yaw - current + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def _command(self, obs: dict[str, np.ndarray], target: np.ndarray, yaw: float, gripper: float) -> np.ndarray:
        eef = np.asarray(obs["eef_pos"], dtype=np.float64)
        action = np.zeros(EE_DELTA_SIZE)
        action[:3] = self.POS_GAIN * (target - eef) / OSC_POS_SCALE
        current = Rotation.from_quat(np.asarray(obs["eef_quat"], dtype=np.float64))
        goal = Rotation.from_euler("z", yaw) * Rotation.from_matrix(R_DOWN)
        action[3:6] = self.ROT_GAIN * (goal * current.inv()).as_rotvec() / OSC_ROT_SCALE
        action[6] = gripper
        if self.noise > 0:
            action += self._rng.normal(0.0, self.noise, EE_DELTA_SIZE)
        self._ticks += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _site_yaw(obs: dict[str, np.ndarray]) -> float:
    """Yaw (rad) of the grip site relative to ``R_DOWN``: rotation about world z."""
    rot = Rotation.from_quat(np.asarray(obs["eef_quat"], dtype=np.float64)).as_matrix()
    return float(np.arctan2(rot[1, 0], rot[0, 0]) - np.pi / 2)


def _gripper_width(obs: dict[str, np.ndarray]) -> float:
    """Distance between the Panda fingers (m): about 0.08 open, 0 closed on nothing."""
    q = obs["gripper_qpos"]
    return float(q[0] - q[1])


class _PickExpert(_ArmExpert):
    """Approach above a cube, descend, close, and report whether the cube is held."""

    HOVER = 0.08
    """Height (m) of the grip site above the cube centre before descending."""
    GRASP_DZ = -0.005
    """Grip site height relative to the cube centre at the grasp (m)."""
    CLOSE_TICKS = 8
    """Steps the gripper closes before lifting (it moves 20 % of its range per step)."""
    OPEN_WIDTH = 0.065
    """Finger distance (m) above which the gripper counts as open."""

    def _pick(self, obs: dict[str, np.ndarray], cube: str) -> np.ndarray | None:
        """Phases approach -> descend -> close for ``cube``; None once the cube is grasped."""
        eef = np.asarray(obs["eef_pos"], dtype=np.float64)
        grasp = self._vec(obs, cube) + np.array([*self._grasp_offset, self.GRASP_DZ])
        hover = grasp + np.array([0.0, 0.0, self.HOVER - self.GRASP_DZ])
        yaw = self._yaw(obs, cube)
        if self.phase == "approach":
            tol = self._slack
            aligned = np.linalg.norm((hover - eef)[:2]) < 0.01 * tol and abs(hover[2] - eef[2]) < 0.02 * tol
            if aligned and abs(yaw - _site_yaw(obs)) < 0.1 * tol and _gripper_width(obs) > self.OPEN_WIDTH:
                self._start_phase("descend")
            else:
                return self._command(obs, hover if eef[2] > grasp[2] + 0.03 or aligned else eef + [0, 0, 0.05], yaw, -1.0)
        if self.phase == "descend":
            if np.linalg.norm((grasp - eef)[:2]) > 0.02 * self._slack:
                self._start_phase("approach")
                return self._command(obs, hover, yaw, -1.0)
            if np.linalg.norm(grasp - eef) > 0.008 * self._slack:
                return self._command(obs, grasp, yaw, -1.0)
            self._start_phase("close")
        if self.phase == "close":
            if self._ticks < self.CLOSE_TICKS:
                return self._command(obs, grasp, yaw, 1.0)
            self._grasp_offset = np.zeros(2)  # a retry aims straight at the cube
            self._start_phase("lift")
        return None

    def _holding(self, obs: dict[str, np.ndarray], cube: str) -> bool:
        """Whether ``cube`` moves with the gripper (close to the grip site, fingers not shut)."""
        eef = np.asarray(obs["eef_pos"], dtype=np.float64)
        return bool(np.linalg.norm(self._vec(obs, cube) - eef) < 0.03 and _gripper_width(obs) > 0.01)


class LiftExpert(_PickExpert):
    """Scripted Lift: grasp the cube square to its faces and lift it 15 cm."""

    LIFT = 0.15
    """Lift height of the grip site above the table top + cube half size (m)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = self._pick(obs, "cube")
        if action is not None:
            return action
        eef = np.asarray(obs["eef_pos"], dtype=np.float64)
        if self._ticks > 3 and not self._holding(obs, "cube"):
            self._start_phase("approach")  # grasp missed or slipped: open and retry
            return self._command(obs, eef + [0, 0, 0.05], _site_yaw(obs), -1.0)
        target = np.array([eef[0], eef[1], TABLE_Z + 0.02 + self.LIFT])
        return self._command(obs, target, _site_yaw(obs), 1.0)


class StackExpert(_PickExpert):
    """Scripted Stack: pick cube A, carry it above cube B, lower it on B, open, retreat."""

    CLEARANCE = 0.05
    """Height (m) of cube A's bottom above cube B's top while carrying."""
    HALF_A, HALF_B = 0.02, 0.025
    """Cube half sizes (m) in robosuite Stack."""
    RELEASE_TICKS = 6
    """Steps the gripper opens, holding still, before retreating."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = np.asarray(obs["eef_pos"], dtype=np.float64)
        a, b = self._vec(obs, "cubeA"), self._vec(obs, "cubeB")
        on_b = a[2] > b[2] + self.HALF_B + self.HALF_A - 0.01 and np.linalg.norm((a - b)[:2]) < self.HALF_B
        if self.phase in ("release", "retreat"):
            if self.phase == "release" and self._ticks < self.RELEASE_TICKS:
                return self._command(obs, eef, _site_yaw(obs), -1.0)
            if not on_b:  # A fell off B: start over
                self._start_phase("approach")
            else:
                self.phase = "retreat"
                top = np.array([eef[0], eef[1], b[2] + self.HALF_B + 2 * self.HALF_A + 0.08])
                return self._command(obs, top, _site_yaw(obs), -1.0)
        action = self._pick(obs, "cubeA")
        if action is not None:
            return action
        if self._ticks > 3 and not self._holding(obs, "cubeA"):
            self._start_phase("approach")
            return self._command(obs, eef + [0, 0, 0.05], _site_yaw(obs), -1.0)
        # carry: the grip-site target is where cube A should be, plus the current grasp offset
        offset = eef - a
        carry_z = b[2] + self.HALF_B + self.HALF_A + self.CLEARANCE
        above = np.array([b[0], b[1], carry_z])
        yaw = self._yaw(obs, "cubeB")
        if self.phase == "lift":
            if a[2] < carry_z - 0.01:
                return self._command(obs, np.array([eef[0], eef[1], carry_z + offset[2]]), _site_yaw(obs), 1.0)
            self._start_phase("carry")
        if self.phase == "carry":
            if np.linalg.norm((above - a)[:2]) > 0.006 * self._slack:
                return self._command(obs, above + offset, yaw, 1.0)
            self._start_phase("lower")
        rest = np.array([b[0], b[1], b[2] + self.HALF_B + self.HALF_A])
        if np.linalg.norm((rest - a)[:2]) > 0.015 * self._slack:
            self._start_phase("carry")
            return self._command(obs, above + offset, yaw, 1.0)
        if a[2] - rest[2] > 0.006 * self._slack:
            return self._command(obs, rest + offset - [0, 0, 0.005], yaw, 1.0)
        self._start_phase("release")
        return self._command(obs, eef, _site_yaw(obs), -1.0)


# ---------------------------------------------------------------------------- robots
def _xyz(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{a}" for a in "xyz")


def _quat(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_q{a}" for a in "xyzw")


class RobosuiteArm(SimRobot):
    """A Panda with its robosuite task (see the module docstring for actions and observations).

    Subclasses set ``env_name`` (the robosuite environment), ``object_layout`` (the
    robosuite object observables concatenated, in order, into ``obs["object"]``, with
    per-element names) and ``expert_class`` (the task's scripted expert).
    """

    config: RobosuiteArmConfig
    env_name: ClassVar[str] = ""
    object_layout: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    expert_class: ClassVar[type[_ArmExpert]]

    def __init__(self, config: RobosuiteArmConfig) -> None:
        super().__init__(config)
        self._env: Any = None
        self._obs: dict[str, np.ndarray] = {}
        self._reward = 0.0
        self._success = False
        self._steps = 0
        self._gripper_cmd = 0.0

    # ------------------------------------------------------------------ specs
    @property
    def object_names(self) -> tuple[str, ...]:
        """Per-element names of ``obs["object"]``."""
        return tuple(n for _, names in self.object_layout for n in names)

    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        joints = tuple(f"joint_{i}" for i in range(1, N_JOINTS + 1))
        spec = {
            "joint_pos": KeySpec((N_JOINTS,), "float32", "rad", names=joints, low=c.joint_low, high=c.joint_high),
            "eef_pos": KeySpec((3,), "float32", "m", names=_xyz("eef")),
            "eef_quat": KeySpec((4,), "float32", "quaternion xyzw", names=_quat("eef")),
            "gripper_qpos": KeySpec((2,), "float32", "m", names=("finger_left", "finger_right")),
            "object": KeySpec((len(self.object_names),), "float32", "m, quaternion xyzw", names=self.object_names),
        }
        for cam in c.cameras:
            spec[f"image.{cam}"] = KeySpec((c.image_size, c.image_size, 3), "uint8", "rgb")
        return spec

    @property
    def action_spec(self) -> KeySpec:
        lim = self.config.safety_limits()
        if self.config.action_mode == "ee_delta":
            names = ("dx", "dy", "dz", "dax", "day", "daz", "gripper")
            units = "normalised: x0.05 m (dx-dz), x0.5 rad axis-angle (dax-daz), gripper -1 open +1 close"
        else:
            names = tuple(f"joint_{i}" for i in range(1, N_JOINTS + 1)) + ("gripper",)
            units = "rad (joints), gripper -1 open +1 close"
        return KeySpec((lim.size,), "float32", units, names=names, low=lim.low, high=lim.high)

    # ------------------------------------------------------------- lifecycle
    def connect(self) -> None:
        """Build the robosuite environment (headless; an offscreen renderer only for cameras)."""
        c = self.config
        cams = [CAMERAS[name] for name in c.cameras]
        self._env = robosuite.make(
            self.env_name,
            robots="Panda",
            controller_configs=self._controller_config(),
            has_renderer=False,
            has_offscreen_renderer=bool(cams),
            use_camera_obs=bool(cams),
            camera_names=cams or "agentview",
            camera_heights=c.image_size,
            camera_widths=c.image_size,
            reward_shaping=True,
            control_freq=c.fps,
            horizon=10**9,
            ignore_done=True,  # the episode limit is ours (max_steps)
            hard_reset=False,  # keep one model and render context: resets take ~ms, not ~1 s
            seed=_MODEL_SEED,
        )
        if cams and c.fast_render:
            self._speed_up_rendering()
        self._obs = self._env.observation_spec()  # robosuite's current observation dict
        self._steps = 0

    def _controller_config(self) -> dict[str, Any]:
        config = load_composite_controller_config(robot="Panda")  # arm: OSC_POSE, delta input
        if self.config.action_mode == "joint_position":
            arm = load_part_controller_config(default_controller="JOINT_POSITION")
            arm.update(input_type="absolute", kp=self.config.joint_kp, gripper={"type": "GRIP"})
            config["body_parts"]["right"] = arm
        return config

    def _speed_up_rendering(self) -> None:
        """Shadows, reflections, skybox and multisampling off; rebuilds the GL context."""
        ctx = self._env.sim._render_context_offscreen
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
            ctx.scn.flags[flag] = 0
        self._env.sim.model._model.vis.quality.offsamples = 0
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()  # robosuite's own rebuild; reads offsamples

    @property
    def is_connected(self) -> bool:
        return self._env is not None

    def disconnect(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _require_env(self) -> Any:
        if self._env is None:
            raise RuntimeError(f"{type(self).__name__} is not connected: call connect() first")
        return self._env

    # -------------------------------------------------------------- episodes
    def reset(self, seed: int | None = None) -> Obs:
        """New episode. robosuite draws object placements and the Panda's initial joint
        noise from ``env.rng`` (one numpy Generator shared with its placement sampler),
        so its state is set from ``seed``: the same seed gives the same episode start."""
        env = self._require_env()
        env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self._obs = env.reset()
        self._reward = 0.0
        self._success = bool(env._check_success())
        self._steps = 0
        self._gripper_cmd = 0.0
        return self.get_observation()

    def get_observation(self) -> Obs:
        self._require_env()
        o = self._obs
        obs = {
            "joint_pos": o["robot0_joint_pos"].astype(np.float32),
            "eef_pos": o["robot0_eef_pos"].astype(np.float32),
            "eef_quat": o["robot0_eef_quat_site"].astype(np.float32),
            "gripper_qpos": o["robot0_gripper_qpos"].astype(np.float32),
            "object": np.concatenate([o[key] for key, _ in self.object_layout]).astype(np.float32),
        }
        flip = macros.IMAGE_CONVENTION == "opengl"  # robosuite's default: rows bottom-up
        for cam in self.config.cameras:
            img = o[f"{CAMERAS[cam]}_image"]
            obs[f"image.{cam}"] = np.ascontiguousarray(img[::-1] if flip else img, dtype=np.uint8)
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Advance one control period. Returns the action applied (float32): clipped to
        [-1, 1] (ee_delta, as robosuite clips) or to the joint and gripper bounds."""
        env = self._require_env()
        a = np.asarray(action, dtype=np.float64)
        size = EE_DELTA_SIZE if self.config.action_mode == "ee_delta" else N_JOINTS + 1
        if a.shape != (size,):
            raise ValueError(f"{self.config.action_mode} action has shape {a.shape}, expected ({size},)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action has non-finite values: {a}")
        if self.config.action_mode == "ee_delta":
            applied = np.clip(a, -1.0, 1.0)
        else:
            applied = np.clip(a, (*self.config.joint_low, -1.0), (*self.config.joint_high, 1.0))
        self._obs, reward, _, _ = env.step(applied)
        self._reward = float(reward)
        self._success = bool(env._check_success())
        self._steps += 1
        self._gripper_cmd = float(applied[-1])
        return applied.astype(np.float32)

    def hold_action(self, obs: Obs) -> np.ndarray:
        """ee_delta: zero motion; joint_position: the measured joints. Both keep the last
        gripper command, so a grasped object stays grasped."""
        if self.config.action_mode == "ee_delta":
            return np.array([0.0] * 6 + [self._gripper_cmd])
        return np.append(np.asarray(obs["joint_pos"], dtype=np.float64), self._gripper_cmd)

    def reward(self) -> float:
        """robosuite's shaped reward after the last step, normalised so that 1.0 is success
        (Lift: reaching + grasping below that; Stack: the max of reach/grasp, lift/align and stack stages)."""
        return self._reward

    def is_success(self) -> bool:
        return self._success

    def task_info(self) -> dict[str, Any]:
        o = self._obs
        info: dict[str, Any] = {"step": self._steps, "success": self._success, "reward": self._reward}
        for key, _ in self.object_layout:
            if key.endswith("_pos") and not key.startswith("gripper_to"):
                info[key] = [float(v) for v in o[key]]
        return info

    def scripted_expert(self, noise: float = 0.0, seed: int | None = None) -> Policy:
        if self.config.action_mode != "ee_delta":
            raise NotImplementedError(
                f"the {self.config.name} scripted expert commands end-effector deltas; "
                f"make the robot with action_mode='ee_delta' (this one is {self.config.action_mode!r})"
            )
        return self.expert_class(self.object_names, noise=noise, seed=seed)


@register_robot(LiftConfig)
class LiftRobot(RobosuiteArm):
    """Panda lifting a cube (robosuite ``Lift``); success: cube > 4 cm above the table."""

    config: LiftConfig
    env_name = "Lift"
    expert_class = LiftExpert
    object_layout = (
        ("cube_pos", _xyz("cube")),
        ("cube_quat", _quat("cube")),
        ("gripper_to_cube_pos", _xyz("cube_minus_eef")),
    )


@register_robot(StackConfig)
class StackRobot(RobosuiteArm):
    """Panda stacking the red cube A on the green cube B (robosuite ``Stack``)."""

    config: StackConfig
    env_name = "Stack"
    expert_class = StackExpert
    object_layout = (
        ("cubeA_pos", _xyz("cubeA")),
        ("cubeA_quat", _quat("cubeA")),
        ("cubeB_pos", _xyz("cubeB")),
        ("cubeB_quat", _quat("cubeB")),
        ("cubeA_to_cubeB", _xyz("cubeB_minus_cubeA")),
        ("gripper_to_cubeA", _xyz("cubeA_minus_eef")),
        ("gripper_to_cubeB", _xyz("cubeB_minus_eef")),
    )
