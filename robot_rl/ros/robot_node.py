"""Robot node: hosts any registered Robot behind its SafetyFilter.

Parameters: ``robot`` (registered name), ``robot_config`` (JSON overrides), ``seed``
(first sim reset), ``audit_log`` (optional path: one line per sent action,
``<stamp_ns> <values...>``, for audits and tests), ``stall_traceback`` (s; when the
control tick stops for that long, every thread's stack goes to stderr; 0 = off),
``rearm_commands`` (default 2: after a silence longer than the command timeout, that many
commands, each within the timeout of the previous one, must arrive before the robot moves
again; 1 = the first command moves it).

    robot-rl-robot-node --ros-args -p robot:=sim_lift -p robot_config:='{"cameras": ["agentview"]}'

Every control period (1 / fps): the latest command (``commands`` or ``cmd_vel``) goes
through ``GuardedRobot`` — rejected, clamped, or replaced by the hold action when
commands are stale or the e-stop is latched — and is sent; then ``action_sent`` is
published stamped with the observation it was applied in, then the new observation.
A malformed message (wrong length or element names, a non-finite value) is rejected:
counted per reason on ``~/status``, logged once per reason, and the node runs on with
the last valid command (which expires after the command timeout).

Re-arming takes a stream, not one message: a lone command after a silence is what a
command source that froze or died leaves behind (a sample written before a SIGSTOP and
delivered after the SIGCONT, measured in benchmarks/reliability/policy_faults.py), and
commands carry no stamp the robot could judge its age by. Such commands are counted as
``rearm_waits`` on ``~/status``; a live source streams at its rate, so re-arming costs
it one period.
"""

from __future__ import annotations

import faulthandler
import json
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from robot_rl.robots import GuardedRobot, SimRobot, make_robot
from robot_rl.ros.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    RobotRLNode,
    command_qos,
    image_msg,
    json_param,
    ns_to_stamp,
    run_node,
    vector_msg,
)


class RobotNode(RobotRLNode):
    udp_only = True  # run_node: no Fast DDS shared memory, a frozen peer cannot block a publish (ros/dds.py)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("robot", **kwargs)  # kwargs: rclpy Node options (context, parameter_overrides)
        self.declare_parameter("robot", "")
        self.declare_parameter("robot_config", "")
        self.declare_parameter("seed", 0)
        self.declare_parameter("audit_log", "")
        # diagnostics: when the control tick has not run for this many s, dump every thread's
        # Python stack to stderr (faulthandler: works while a C call holds the GIL); 0 = off
        self.declare_parameter("stall_traceback", 0.0)
        self.declare_parameter("rearm_commands", 2)
        self.robot: Any = None
        self.guard: GuardedRobot | None = None
        self._command: np.ndarray | None = None
        self._command_fresh = False
        self._command_at = 0.0
        self.received_messages = 0
        self.rejected_by_reason: Counter[str] = Counter()
        self._obs_stamp = 0
        self._seed = 0
        # robot I/O (commands, holds, observations, resets) happens under this lock, from the
        # executor's control tick or from the hold watchdog thread
        self._lock = threading.Lock()
        self._last_control = time.monotonic()
        self._watchdog_stop = threading.Event()
        self.watchdog_holds = 0
        self._stall_traceback = 0.0
        self._rearm = 2
        self._stream = 0  # valid commands since the last silence longer than the timeout
        self._last_arrival = float("-inf")
        self.rearm_waits = 0
        # robot-side hold latency: last command's arrival -> the first timeout hold sent
        # to the robot (monotonic), for the first hold after each stream of commands
        self.timeout_hold_latency: list[float] = []
        self._awaiting_hold = False

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        name = self.get_parameter("robot").value
        self._rearm = int(self.get_parameter("rearm_commands").value)
        if self._rearm < 1:
            return self.fail(f"rearm_commands must be >= 1, got {self._rearm}")
        try:
            overrides = json_param(self, "robot_config", {})
            self.robot = make_robot(name, **overrides)
            self.robot.connect()
        except (KeyError, TypeError, ValueError, ImportError, OSError, TimeoutError) as exc:  # OSError: ConnectionError, a serial port
            return self.fail(f"cannot start robot {name!r}: {exc}")
        self._seed = int(self.get_parameter("seed").value)
        audit = self.get_parameter("audit_log").value
        self._audit = open(audit, "a", buffering=1) if audit else None  # noqa: SIM115 - closed in on_cleanup
        if isinstance(self.robot, SimRobot):
            self.robot.reset(self._seed)
        self.guard = GuardedRobot(self.robot)
        spec = self.robot.action_spec
        self._n_action = spec.shape[0]
        self._action_names = list(spec.names or [f"a{i}" for i in range(self._n_action)])
        limits = self.robot.config.safety_limits()
        qos = command_qos(limits.command_timeout)
        if limits.mode == "base_velocity":
            self.create_subscription(Twist, "cmd_vel", self._on_twist, qos)
        self.create_subscription(Float64MultiArray, "commands", self._on_commands, qos)
        self.create_subscription(Bool, "estop", self._on_estop, LATCHED_QOS)
        self.create_service(Trigger, "reset_estop", self._on_reset_estop)
        if isinstance(self.robot, SimRobot):
            self.create_service(Trigger, "reset", self._on_reset)
        self._pubs: dict[str, Any] = {}
        # specs and element names once, not every control period
        self._obs_spec = self.robot.observation_spec
        self._obs_names = {
            k: list(s.names or [f"{k}_{i}" for i in range(int(np.prod(s.shape)))]) for k, s in self._obs_spec.items() if not s.is_image
        }
        for key, s in self._obs_spec.items():
            if s.is_image:
                self._pubs[key] = self.create_publisher(Image, f"{key.removeprefix('image.')}/image_raw", SENSOR_QOS)
            else:
                self._pubs[key] = self.create_publisher(JointState, f"state/{key}", SENSOR_QOS)
        self._joint_pub = self.create_publisher(JointState, "joint_states", SENSOR_QOS) if "joint_pos" in self.robot.observation_spec else None
        self._odom_pub = self.create_publisher(Odometry, "odom", SENSOR_QOS) if "odom" in self.robot.observation_spec else None
        self._sent_pub = self.create_publisher(JointState, "action_sent", RELIABLE_QOS)
        self._task_pub = self.create_publisher(JointState, "task", RELIABLE_QOS) if isinstance(self.robot, SimRobot) else None
        self._status_pub = self.create_publisher(String, "~/status", RELIABLE_QOS)
        self._events_pub = self.create_publisher(String, "events", RELIABLE_QOS)
        spec_pub = self.create_publisher(String, "robot_spec", LATCHED_QOS)
        spec_pub.publish(String(data=json.dumps(self.describe())))
        self._spec_pub = spec_pub
        self.get_logger().info(f"robot {name} ready at {self.robot.config.fps:g} Hz (safety mode {limits.mode})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._stall_traceback = float(self.get_parameter("stall_traceback").value)
        with self._lock:
            obs = self.guard.observe()
        self._publish_obs(obs)
        self._timer = self.create_timer(1.0 / self.robot.config.fps, self._tick)
        self._status_timer = self.create_timer(0.5, self._publish_status)
        self.start_hold_watchdog()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._watchdog_stop.set()
        self.destroy_timer(self._timer)
        self.destroy_timer(self._status_timer)
        with self._lock:
            self.robot.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.robot.disconnect()
        if self._audit is not None:
            self._audit.close()
        return TransitionCallbackReturn.SUCCESS

    def describe(self) -> dict[str, Any]:
        import dataclasses

        return {
            "name": self.robot.config.name,
            "fps": self.robot.config.fps,
            "observation_spec": {k: s.to_json() for k, s in self.robot.observation_spec.items()},
            "action_spec": self.robot.action_spec.to_json(),
            "config": json.loads(json.dumps(dataclasses.asdict(self.robot.config), default=list)),
            "sim": isinstance(self.robot, SimRobot),
            "command_timeout": self.robot.config.safety_limits().command_timeout,
            "safety_mode": self.robot.config.safety_limits().mode,
        }

    # ------------------------------------------------------------------ inputs
    @property
    def rejected_messages(self) -> int:
        return sum(self.rejected_by_reason.values())

    def _reject(self, reason: str, detail: str) -> None:
        """Count a rejected message under ``reason``; log the first of each reason."""
        self.rejected_by_reason[reason] += 1
        if self.rejected_by_reason[reason] == 1:
            self.get_logger().warning(f"rejected message ({reason}): {detail}; further ones are counted on ~/status")

    def _on_commands(self, msg: Float64MultiArray) -> None:
        self.received_messages += 1
        values = np.asarray(msg.data, dtype=np.float64)
        if values.shape != (self._n_action,):
            self._reject("wrong length", f"commands has {values.shape[0]} values, expected {self._n_action} ({', '.join(self._action_names)})")
            return
        if msg.layout.dim and msg.layout.dim[0].label and msg.layout.dim[0].label not in ("", "commands"):
            labels = msg.layout.dim[0].label.split(",")
            if labels != self._action_names:
                self._reject("wrong element names", f"commands labelled {labels[:16]}, expected {self._action_names}")
                return
        self._set_command(values)

    def _on_twist(self, msg: Twist) -> None:
        self.received_messages += 1
        self._set_command(np.array([msg.linear.x, msg.angular.z]))

    def _set_command(self, values: np.ndarray) -> None:
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            self._reject("non-finite value", f"{values[bad]} at index {bad} ({self._action_names[bad]})")
            return  # the robot keeps its last valid command (and times out without new ones)
        now = self.guard.filter.clock()
        if now - self._last_arrival >= self.guard.filter.limits.command_timeout:
            self._stream = 0  # after a silence: re-arming takes a stream (module docstring)
        self._last_arrival = now
        self._stream += 1
        if self._stream < self._rearm:
            self.rearm_waits += 1
            return
        self._command = values
        self._command_fresh = True
        self._command_at = now  # the timeout counts from arrival

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:
            with self._lock:
                self.guard.estop()
        self.get_logger().warning(f"e-stop {'latched' if msg.data else 'released on topic; call reset_estop to move'}")

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self.guard.reset_estop()
            self._command, self._command_fresh = None, False
            self._stream = 0
            self._awaiting_hold = False
        response.success, response.message = True, "e-stop reset; waiting for a fresh command"
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._seed += 1
        with self._lock:
            obs = self.robot.reset(self._seed)
            self.guard = GuardedRobot(self.robot, clock=self.guard.filter.clock) if not self.guard.filter.estopped else self.guard
            self.guard.last_obs = obs
            # a command that arrived since the last tick is dropped with the rest: the next
            # tick must not send it (it sent None before, which the filter rejected)
            self._command, self._command_fresh = None, False
            self._stream = 0
            self._awaiting_hold = False
            self._last_control = time.monotonic()
        self._publish_obs(obs)
        self._events_pub.publish(String(data=json.dumps({"event": "reset", "stamp": self._obs_stamp, "seed": self._seed})))
        response.success, response.message = True, f"reset with seed {self._seed}"
        return response

    # ------------------------------------------------------------------ control loop
    def _tick(self) -> None:
        """One control period: decide and send under the lock, then publish outside it (so a
        slow publish does not hold the lock; a publish blocked inside rclpy also holds the
        GIL, which stops the hold watchdog too: see docs/ros.md)."""
        if self._stall_traceback > 0:  # re-armed every tick: fires only when ticks stop
            faulthandler.dump_traceback_later(self._stall_traceback, exit=False)
        with self._lock:
            step = self._control_step()
        if step is None:
            return
        sent, stamp, task, obs = step
        self._sent_pub.publish(vector_msg(sent, self._action_names, stamp))
        if task is not None:
            self._task_pub.publish(vector_msg(np.array(task), ["reward", "success", "failure"], stamp))
        self._publish_obs(obs)

    def _control_step(self) -> tuple[np.ndarray, int, list[float] | None, dict[str, np.ndarray]] | None:
        if self._command_fresh:
            sent, decision = self.guard.command(self._command, received_at=self._command_at)
            self._awaiting_hold = decision.accepted
        else:
            held = self.guard.tick()  # stale commands or e-stop: hold
            if held is not None:
                sent, decision = held
                self._note_hold(decision)
            elif self._command is not None:
                sent, decision = self.guard.command(self._command, fresh=False)
            else:
                return None
        self._command_fresh = False
        self._last_control = time.monotonic()
        stamp = self._obs_stamp
        self._write_audit(stamp, sent)
        task = None
        if self._task_pub is not None:
            task = [self.robot.reward(), float(self.robot.is_success()), float(self.robot.is_failure())]
        return sent, stamp, task, self.guard.observe()

    def _note_hold(self, decision: Any) -> None:
        """Called under the lock with each hold sent: keep the latency of the first timeout
        hold after a stream of commands (what the 'timeout + one period' bound is about)."""
        if self._awaiting_hold and decision.reasons and decision.reasons[0].startswith("command timeout"):
            self.timeout_hold_latency = [*self.timeout_hold_latency[-999:], self.guard.filter.clock() - self._command_at]
        self._awaiting_hold = False

    def _write_audit(self, stamp: int, sent: np.ndarray) -> None:
        if self._audit is not None:
            self._audit.write(" ".join([str(stamp), *(repr(float(v)) for v in sent)]) + "\n")

    def start_hold_watchdog(self) -> None:
        """Hold the robot even when the control tick does not run: a thread that, after two
        periods without a tick (the executor stalled in Python code), applies the command
        timeout and the e-stop itself, every period, until the tick runs again. It sends
        holds only. It cannot run while another thread holds the GIL in a blocked C call
        (as a Fast DDS shared-memory publish to a frozen peer did for ~1 s, before this node
        went UDP-only: ros/dds.py)."""
        self._watchdog_stop.clear()
        threading.Thread(target=self._hold_watchdog, name="hold-watchdog", daemon=True).start()

    def _hold_watchdog(self) -> None:
        period = 1.0 / self.robot.config.fps
        while not self._watchdog_stop.wait(period):
            if time.monotonic() - self._last_control <= 2 * period:
                continue
            try:
                with self._lock:
                    if self._watchdog_stop.is_set():
                        return
                    held = self.guard.tick()
                    if held is not None:
                        self.watchdog_holds += 1
                        self._note_hold(held[1])
                        self._write_audit(self.stamp_ns(), held[0])
            except Exception as exc:  # noqa: BLE001 - keep watching; the operator must hear of it
                self.get_logger().error(f"hold watchdog: {exc!r}", throttle_duration_sec=1.0)

    def destroy_node(self) -> None:
        if self._stall_traceback > 0:
            faulthandler.cancel_dump_traceback_later()
        self._watchdog_stop.set()
        with self._lock:  # a hold in progress finishes before the robot goes away
            pass
        super().destroy_node()

    def _publish_obs(self, obs: dict[str, np.ndarray]) -> None:
        self._obs_stamp = self.stamp_ns()
        for key, value in obs.items():
            if key in self._obs_names:
                self._pubs[key].publish(vector_msg(value, self._obs_names[key], self._obs_stamp))
            else:
                self._pubs[key].publish(image_msg(value, self._obs_stamp, key))
        if self._joint_pub is not None:
            self._joint_pub.publish(vector_msg(obs["joint_pos"], self._obs_names["joint_pos"], self._obs_stamp))
        if self._odom_pub is not None:
            x, y, yaw, v, w = (float(a) for a in obs["odom"][:5])
            msg = Odometry()
            msg.header.stamp = ns_to_stamp(self._obs_stamp)
            msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
            msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
            msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = float(np.sin(yaw / 2)), float(np.cos(yaw / 2))
            msg.twist.twist.linear.x, msg.twist.twist.angular.z = v, w
            self._odom_pub.publish(msg)

    def _publish_status(self) -> None:
        status = {
            "robot": self.robot.config.name,
            "estop": self.guard.filter.estopped,
            "received_messages": self.received_messages,
            "rejected_messages": self.rejected_messages,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "watchdog_holds": self.watchdog_holds,
            "rearm_waits": self.rearm_waits,
            "timeout_holds": len(self.timeout_hold_latency),
            "timeout_hold_latency_max_s": max(self.timeout_hold_latency, default=None),
            "timeout_hold_latency_last_s": self.timeout_hold_latency[-1] if self.timeout_hold_latency else None,
            "safety_counts": dict(self.guard.filter.counts),
            "time": time.time(),
        }
        self._status_pub.publish(String(data=json.dumps(status)))


def main(args: list[str] | None = None) -> int:
    return run_node(RobotNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
