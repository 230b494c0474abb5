"""A fake ros2_control robot in this process: the endpoint ``Ros2ControlRobot`` talks to with ``fake=True``.

    fake = FakeRos2Control(namespace="/fake", mode="joint_position", joints=("joint_0", "joint_1"), gripper="gripper")
    fake.start()   # own rclpy Context + node + spinning thread; fake.close() ends it

It behaves, over real DDS topics, like what a ros2_control robot exposes:

- arm (``joint_position``): ``forward_command_controller`` (``<command_topic>``,
  std_msgs/Float64MultiArray, one position per joint, gripper last) plus
  ``joint_state_broadcaster`` (``<joint_states_topic>``, sensor_msgs/JointState with
  position and velocity) over a mock arm whose joints move toward the last command at
  ``joint_velocity`` rad/s;
- base (``base_velocity``): ``diff_drive_controller`` (``<cmd_vel_topic>``,
  geometry_msgs/TwistStamped, or Twist with ``stamped=False``; ``<odom_topic>``
  nav_msgs/Odometry) over a unicycle, stopping after ``cmd_vel_timeout`` s without a
  command (diff_drive_controller's ``cmd_vel_timeout``, default 0.5 s).

It publishes at ``rate`` Hz. ``publishing`` can be cleared to emulate a stalled broadcaster.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import numpy as np
import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from robot_rl.ros.common import SENSOR_QOS, ns_to_stamp


class FakeRos2Control:
    """An in-process ros2_control look-alike (see the module docstring).

    Args:
        namespace: namespace of its topics (absolute, e.g. ``/arm``; "" for the root).
        mode: ``joint_position`` (arm) or ``base_velocity`` (base).
        joints: arm joint names, in command order.
        gripper: name of a last command element that is not a joint ("" for none);
            it is reported in joint_states like a joint.
        joint_velocity: arm joint speed limit, rad/s.
        rate: publish rate, Hz.
        cmd_vel_timeout: base: s without a command before it stops.
        stamped: base: cmd_vel is TwistStamped (diff_drive_controller since Jazzy) or Twist.
        topics: (joint_states, commands, cmd_vel, odom) topic names, relative to ``namespace``.
    """

    def __init__(
        self,
        namespace: str = "",
        mode: str = "joint_position",
        joints: Sequence[str] = (),
        gripper: str = "",
        joint_velocity: float = 2.0,
        rate: float = 100.0,
        cmd_vel_timeout: float = 0.5,
        stamped: bool = True,
        topics: tuple[str, str, str, str] = (
            "joint_states",
            "forward_position_controller/commands",
            "diff_drive_controller/cmd_vel",
            "diff_drive_controller/odom",
        ),
    ) -> None:
        self.mode, self.joints, self.gripper = mode, tuple(joints), gripper
        self.names = self.joints + ((gripper,) if gripper else ())
        self.joint_velocity, self.rate, self.cmd_vel_timeout = joint_velocity, rate, cmd_vel_timeout
        self.q = np.zeros(len(self.names))
        self.qd = np.zeros(len(self.names))
        self.target = np.zeros(len(self.names))
        self.pose = np.zeros(3)
        self.twist = np.zeros(2)
        self.commands_received = 0
        self.rejected = 0
        self.publishing = threading.Event()
        self.publishing.set()
        self._last_cmd = -math.inf
        self._lock = threading.Lock()
        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node(
            "fake_ros2_control",
            namespace=namespace or "/",
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )
        js_topic, cmd_topic, vel_topic, odom_topic = topics
        if mode == "joint_position":
            self._js_pub = self.node.create_publisher(JointState, js_topic, SENSOR_QOS)
            self.node.create_subscription(Float64MultiArray, cmd_topic, self._on_commands, 10)
        elif mode == "base_velocity":
            self._odom_pub = self.node.create_publisher(Odometry, odom_topic, SENSOR_QOS)
            self.node.create_subscription(TwistStamped if stamped else Twist, vel_topic, self._on_twist, 10)
        else:
            raise ValueError(f"fake ros2_control mode {mode!r}: use joint_position or base_velocity")
        self._t = time.monotonic()
        self.node.create_timer(1.0 / rate, self._step, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread: threading.Thread | None = None

    def start(self) -> FakeRos2Control:
        self._thread = threading.Thread(target=self._spin, name="fake-ros2-control", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context was shut down under the executor
                if not self.context.ok():
                    return
                raise

    def close(self) -> None:
        if self.context.ok():
            self.context.try_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    # ---------------------------------------------------------------- controllers
    def _on_commands(self, msg: Float64MultiArray) -> None:
        data = np.asarray(msg.data, dtype=np.float64)
        if data.shape != (len(self.names),) or not np.all(np.isfinite(data)):
            self.rejected += 1  # forward_command_controller drops a command of the wrong size
            return
        with self._lock:
            self.target = data
            self.commands_received += 1

    def _on_twist(self, msg: Twist | TwistStamped) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        with self._lock:
            self.twist = np.array([twist.linear.x, twist.angular.z])
            self._last_cmd = time.monotonic()
            self.commands_received += 1

    def _step(self) -> None:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        stamp = ns_to_stamp(time.time_ns())
        with self._lock:
            if self.mode == "joint_position":
                step = self.joint_velocity * dt
                new = self.q + np.clip(self.target - self.q, -step, step)
                self.qd = (new - self.q) / dt if dt > 0 else np.zeros_like(new)
                self.q = new
                msg = JointState()
                msg.header.stamp = stamp
                msg.name = list(self.names)
                msg.position = [float(v) for v in self.q]
                msg.velocity = [float(v) for v in self.qd]
            else:
                if now - self._last_cmd > self.cmd_vel_timeout:
                    self.twist = np.zeros(2)
                v, w = self.twist
                x, y, yaw = self.pose
                yaw_next = (yaw + w * dt + math.pi) % (2 * math.pi) - math.pi
                self.pose = np.array([x + v * math.cos(yaw) * dt, y + v * math.sin(yaw) * dt, yaw_next])
                msg = Odometry()
                msg.header.stamp = stamp
                msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
                msg.pose.pose.position.x, msg.pose.pose.position.y = float(self.pose[0]), float(self.pose[1])
                orientation = msg.pose.pose.orientation
                orientation.z, orientation.w = math.sin(self.pose[2] / 2), math.cos(self.pose[2] / 2)
                msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(w)
        if self.publishing.is_set():
            (self._js_pub if self.mode == "joint_position" else self._odom_pub).publish(msg)
