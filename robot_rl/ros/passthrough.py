"""``ros2_control``: a Robot that drives an existing ros2_control robot through its topics.

    # an arm with forward_command_controller + joint_state_broadcaster; our nodes in namespace /rl
    robot-rl launch deploy.launch.yaml namespace:=rl robot:=ros2_control checkpoint:=runs/arm/checkpoint \\
        robot_config:='{"joints": ["a", "b", "c"], "gripper": "", "joint_low": [-3, -3, -3], "joint_high": [3, 3, 3]}'
    # a base with diff_drive_controller
    robot-rl launch record.launch.yaml namespace:=rl robot:=ros2_control teleop:=keyboard out:=runs/base.zarr \\
        robot_config:='{"mode": "base_velocity"}'
    # no robot: an in-process fake ros2_control endpoint
    robot-rl launch record.launch.yaml robot:=ros2_control robot_config:='{"fake": true, "mode": "base_velocity"}' \\
        teleop:=keyboard out:=/tmp/p.zarr

Arm (``mode: joint_position``): reads ``<namespace>/<joint_states_topic>`` (sensor_msgs/
JointState, by joint name, any order) and publishes absolute positions of ``joints``
(plus ``gripper`` last, when set) on ``<namespace>/<command_topic>``
(std_msgs/Float64MultiArray, forward_command_controller: one value per joint in its
``joints`` order). Base (``mode: base_velocity``): reads ``<odom_topic>`` (nav_msgs/
Odometry) and publishes ``<cmd_vel_topic>`` (geometry_msgs/TwistStamped, as
diff_drive_controller wants since Jazzy, or Twist with ``cmd_vel_stamped: false``).
Defaults are ros2_control's topic names; our own robot node follows the same
conventions (``joint_states``, ``commands``, ``cmd_vel``, ``odom`` in its namespace),
so it can be the target too.

The Robot owns its own rclpy Context, node and spinning thread, so it runs inside our
robot node's process (or any process) without touching that process's context. It
never publishes on the topics of the robot node that hosts it only if the two are in
different namespaces: run our nodes in their own namespace (``namespace:=rl``) when the
target is at the root.

Stale state: ``connect`` waits ``connect_timeout`` s for the first state message
(else ``ConnectionError`` naming the topic). When no state arrives for
``state_timeout`` s, ``get_observation`` returns the last state and counts a stale
read, and ``send_action`` sends the hold command (arm: the last measured positions;
base: zero velocity) instead of the request and returns it; after
``state_timeout_error`` s without state it raises ``TimeoutError`` (the robot node stops).

``fake: true`` starts ``FakeRos2Control`` in this process, under a private namespace
(``/fake_ros2_control_<pid>`` + ``namespace``) so it cannot meet a real robot or the
hosting robot node's own topics.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from robot_rl.data.schema import KeySpec
from robot_rl.robots.base import Obs, Robot, RobotConfig
from robot_rl.robots.registry import register_robot
from robot_rl.ros.common import SENSOR_QOS, command_qos
from robot_rl.safety import SafetyLimits

log = logging.getLogger(__name__)

MODES = ("joint_position", "base_velocity")


@dataclass
class Ros2ControlConfig(RobotConfig):
    """A ros2_control robot driven through its controller topics (defaults: a 6-joint arm
    with a gripper, named like our ``mock_arm``).

    Attributes:
        namespace: namespace of the target's topics ("" = root; e.g. ``/ur``).
        mode: ``joint_position`` (arm, forward_command_controller) or ``base_velocity``
            (base, diff_drive_controller).
        joints: arm joint names in the command order of the forward_command_controller.
        gripper: name of one more command element after the joints ("" for none); read
            from joint_states when it is there, else held at its last command (gripper_low before the first).
        joint_states_topic, command_topic: arm topics, relative to ``namespace``.
        cmd_vel_topic, odom_topic: base topics, relative to ``namespace``.
        cmd_vel_stamped: publish TwistStamped (diff_drive_controller since Jazzy) or Twist.
        joint_low, joint_high: joint position limits, rad, one per joint.
        joint_velocity: joint speed limit, rad/s (the safety filter's step around the measured position).
        max_delta: max change of a joint target per tick, rad.
        gripper_low, gripper_high: gripper command range (the controller's units).
        max_linear, max_angular: base |v| (m/s) and |omega| (rad/s) limits.
        max_accel: base (linear m/s^2, angular rad/s^2) limits; per tick: accel / fps.
        command_timeout: s without a valid command before the robot node holds.
        connect_timeout: s to wait for the first state message in ``connect``.
        state_timeout: s without a state message before readings are stale and commands become holds.
        state_timeout_error: s without a state message before ``TimeoutError``.
        fps: control rate, Hz.
        fake: start an in-process fake ros2_control endpoint (``FakeRos2Control``).
    """

    name = "ros2_control"
    namespace: str = ""
    mode: str = "joint_position"
    joints: tuple[str, ...] = tuple(f"joint_{i}" for i in range(6))
    gripper: str = "gripper"
    joint_states_topic: str = "joint_states"
    command_topic: str = "forward_position_controller/commands"
    cmd_vel_topic: str = "diff_drive_controller/cmd_vel"
    odom_topic: str = "diff_drive_controller/odom"
    cmd_vel_stamped: bool = True
    joint_low: tuple[float, ...] = (-2.9, -1.8, -2.9, -3.0, -2.9, -0.1)
    joint_high: tuple[float, ...] = (2.9, 1.8, 2.9, 0.0, 2.9, 3.7)
    joint_velocity: float = 2.0
    max_delta: float = 0.2
    gripper_low: float = 0.0
    gripper_high: float = 1.0
    max_linear: float = 0.5
    max_angular: float = 1.5
    max_accel: tuple[float, float] = (1.0, 3.0)
    command_timeout: float = 0.3
    connect_timeout: float = 10.0
    state_timeout: float = 0.5
    state_timeout_error: float = 5.0
    fps: float = 20.0
    fake: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.mode == "joint_position":
            if not self.joints:
                raise ValueError("joints must name the arm's joints (the forward_command_controller's, in order)")
            if not len(self.joint_low) == len(self.joint_high) == len(self.joints):
                n = len(self.joints)
                raise ValueError(f"joint_low and joint_high need one value per joint ({n}: {self.joints})")
        if not 0 < self.state_timeout <= self.state_timeout_error:
            got = f"{self.state_timeout} / {self.state_timeout_error}"
            raise ValueError(f"need 0 < state_timeout <= state_timeout_error, got {got}")
        if not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {self.connect_timeout}")
        if self.namespace and not self.namespace.startswith("/"):
            raise ValueError(f"namespace must be absolute (start with /), got {self.namespace!r}")

    @property
    def command_names(self) -> tuple[str, ...]:
        if self.mode == "base_velocity":
            return ("v", "omega")
        return self.joints + ((self.gripper,) if self.gripper else ())

    def safety_limits(self) -> SafetyLimits:
        dt = 1.0 / self.fps
        if self.mode == "base_velocity":
            return SafetyLimits.base_velocity(self.max_linear, self.max_angular, self.max_accel, dt, self.command_timeout)
        g = (self.gripper_low,) if self.gripper else ()
        gh = (self.gripper_high,) if self.gripper else ()
        gd = (self.gripper_high - self.gripper_low,) if self.gripper else ()
        return SafetyLimits(
            mode="joint_position",
            low=(*self.joint_low, *g),
            high=(*self.joint_high, *gh),
            max_delta=(self.max_delta,) * len(self.joints) + gd,
            dt=dt,
            command_timeout=self.command_timeout,
            joint_velocity=(self.joint_velocity,) * len(self.joints),
        )


@register_robot(Ros2ControlConfig)
class Ros2ControlRobot(Robot):
    config: Ros2ControlConfig

    def __init__(self, config: Ros2ControlConfig) -> None:
        super().__init__(config)
        self.fake: Any = None  # the FakeRos2Control when config.fake
        self.stale_reads = 0
        self.counts: Counter[str] = Counter()  # problems by kind: bad / stale state, commands held
        self._last_problem = ""
        self._context: Context | None = None
        self._lock = threading.Lock()
        self._state: np.ndarray | None = None  # arm: joints (+ gripper); base: x y yaw v omega
        self._state_at = -math.inf
        self._last_gripper = config.gripper_low
        self._gripper_measured = False
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- specs
    @property
    def observation_spec(self) -> dict[str, KeySpec]:
        c = self.config
        if c.mode == "base_velocity":
            return {"odom": KeySpec((5,), "float32", "m, m, rad, m/s, rad/s", names=("x", "y", "yaw", "v", "omega"))}
        n = len(c.joints)
        spec = {"joint_pos": KeySpec((n,), "float32", "rad", names=c.joints, low=c.joint_low, high=c.joint_high)}
        if c.gripper:
            low, high = (c.gripper_low,), (c.gripper_high,)
            spec["gripper"] = KeySpec((1,), "float32", "1", names=(c.gripper,), low=low, high=high)
        return spec

    @property
    def action_spec(self) -> KeySpec:
        lim = self.config.safety_limits()
        units = "m/s, rad/s" if self.config.mode == "base_velocity" else "rad"
        return KeySpec((lim.size,), "float32", units, names=self.config.command_names, low=lim.low, high=lim.high)

    # ---------------------------------------------------------------- connection
    def connect(self) -> None:
        c = self.config
        namespace = c.namespace
        self._state, self._state_at = None, -math.inf  # nothing from an earlier connection counts
        if c.fake:
            from robot_rl.ros.fake_ros2_control import FakeRos2Control

            namespace = f"/fake_ros2_control_{os.getpid()}{c.namespace}"
            self.fake = FakeRos2Control(
                namespace=namespace,
                mode=c.mode,
                joints=c.joints,
                gripper=c.gripper,
                joint_velocity=c.joint_velocity,
                stamped=c.cmd_vel_stamped,
                topics=(c.joint_states_topic, c.command_topic, c.cmd_vel_topic, c.odom_topic),
            ).start()
        self._context = Context()
        rclpy.init(args=[], context=self._context)
        node = rclpy.create_node(
            "ros2_control_passthrough",
            namespace=namespace or "/",
            context=self._context,
            use_global_arguments=False,  # not the hosting process's --ros-args remaps
            start_parameter_services=False,
        )
        self._node = node
        # offer a deadline of two periods: QoS-compatible with a subscriber asking for a command timeout >= that
        qos = command_qos(min(c.command_timeout, 2.0 / c.fps))
        if c.mode == "base_velocity":
            self._state_topic = node.resolve_topic_name(c.odom_topic)
            node.create_subscription(Odometry, c.odom_topic, self._on_odom, SENSOR_QOS)
            self._pub = node.create_publisher(TwistStamped if c.cmd_vel_stamped else Twist, c.cmd_vel_topic, qos)
        else:
            self._state_topic = node.resolve_topic_name(c.joint_states_topic)
            node.create_subscription(JointState, c.joint_states_topic, self._on_joint_states, SENSOR_QOS)
            self._pub = node.create_publisher(Float64MultiArray, c.command_topic, qos)
        self._command_topic = self._pub.topic_name
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="ros2-control-passthrough", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + c.connect_timeout
        while time.monotonic() < deadline and (self._state is None or self._pub.get_subscription_count() == 0):
            time.sleep(0.02)
        if self._state is None or self._pub.get_subscription_count() == 0:
            if self._state is None:
                missing = f"no message on {self._state_topic}"
            else:
                missing = f"no subscriber on {self._command_topic}"
            errors = f" (last problem: {self._last_problem})" if self._last_problem else ""
            self.disconnect()
            raise ConnectionError(
                f"ros2_control robot not reachable after {c.connect_timeout:g} s: {missing}{errors}; "
                "check the target is running, its namespace and topic names (ros2 topic list), and ROS_DOMAIN_ID"
            )
        log.info("ros2_control: state on %s, commands on %s", self._state_topic, self._command_topic)

    def _spin(self) -> None:
        assert self._context is not None
        while self._context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context was shut down under the executor
                if not self._context.ok():
                    return
                raise

    @property
    def is_connected(self) -> bool:
        return self._context is not None

    def disconnect(self) -> None:
        if self._context is not None:
            if self._context.ok():
                self._context.try_shutdown()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self._executor.shutdown(timeout_sec=1.0)
            self._node.destroy_node()
            self._context = None
        if self.fake is not None:
            self.fake.close()
            self.fake = None

    # ---------------------------------------------------------------- state
    def _problem(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        self._last_problem = detail
        if self.counts[kind] == 1:
            log.warning("ros2_control: %s (further ones are counted)", detail)

    def _on_joint_states(self, msg: JointState) -> None:
        c = self.config
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [j for j in c.joints if j not in index]
        if missing or len(msg.position) != len(msg.name):
            detail = f"joint_states on {self._state_topic} lacks {missing} (has {list(msg.name)})"
            self._problem("bad joint_states", detail)
            return
        q = np.array([msg.position[index[j]] for j in c.joints], dtype=np.float64)
        if not np.all(np.isfinite(q)):
            self._problem("non-finite joint_states", f"non-finite joint position on {self._state_topic}: {q}")
            return
        with self._lock:
            if c.gripper and c.gripper in index and math.isfinite(msg.position[index[c.gripper]]):
                self._last_gripper = float(msg.position[index[c.gripper]])
                self._gripper_measured = True
            self._state = q
            self._state_at = time.monotonic()

    def _on_odom(self, msg: Odometry) -> None:
        p, o, t = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist
        yaw = math.atan2(2 * (o.w * o.z + o.x * o.y), 1 - 2 * (o.y * o.y + o.z * o.z))
        state = np.array([p.x, p.y, yaw, t.linear.x, t.angular.z], dtype=np.float64)
        if not np.all(np.isfinite(state)):
            self._problem("non-finite odom", f"non-finite odometry on {self._state_topic}")
            return
        with self._lock:
            self._state = state
            self._state_at = time.monotonic()

    @property
    def state_age(self) -> float:
        """s since the last state message."""
        return time.monotonic() - self._state_at

    def _check_stale(self) -> bool:
        age = self.state_age
        if age >= self.config.state_timeout_error:
            why = "the robot's broadcaster or driver stopped"
            raise TimeoutError(f"ros2_control: no state on {self._state_topic} for {age:.1f} s ({why})")
        return age >= self.config.state_timeout

    # ---------------------------------------------------------------- Robot
    def get_observation(self) -> Obs:
        if self._state is None:
            raise RuntimeError("ros2_control robot is not connected")
        if self._check_stale():
            self.stale_reads += 1
            self._problem("stale state", f"state on {self._state_topic} is {self.state_age:.2f} s old: holding")
        with self._lock:
            state, gripper = self._state.copy(), self._last_gripper
        if self.config.mode == "base_velocity":
            return {"odom": state.astype(np.float32)}
        obs = {"joint_pos": state.astype(np.float32)}
        if self.config.gripper:
            obs["gripper"] = np.array([gripper], np.float32)
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        c = self.config
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (len(c.command_names),) or not np.all(np.isfinite(a)):
            n = len(c.command_names)
            raise ValueError(f"ros2_control: command {a} is not {n} finite values; commands must pass the SafetyFilter")
        if self._check_stale():
            self.counts["held (stale state)"] += 1
            a = self.hold_action(self.get_observation())
        if c.mode == "base_velocity":
            twist = Twist()
            twist.linear.x, twist.angular.z = float(a[0]), float(a[1])
            if c.cmd_vel_stamped:
                msg = TwistStamped()
                msg.header.stamp = self._node.get_clock().now().to_msg()
                msg.header.frame_id = "base_link"
                msg.twist = twist
                self._pub.publish(msg)
            else:
                self._pub.publish(twist)
        else:
            msg = Float64MultiArray()
            msg.layout.dim = [MultiArrayDimension(label=",".join(c.command_names), size=len(a), stride=len(a))]
            msg.data = [float(v) for v in a]
            self._pub.publish(msg)
            if c.gripper and not self._gripper_measured:
                with self._lock:
                    self._last_gripper = float(a[-1])
        return a.astype(np.float32)

    def hold_action(self, obs: Obs) -> np.ndarray:
        if self.config.mode == "base_velocity":
            return np.zeros(2)
        hold = np.asarray(obs["joint_pos"], dtype=np.float64)
        return np.append(hold, obs["gripper"]) if self.config.gripper else hold
