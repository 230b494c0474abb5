"""Teleop node: hosts a teleop device plugin (``robot_rl.teleop``), publishes its
commands for each new observation, and turns its episode events into service calls
on the robot node (``reset``) and the recorder (``start``, ``stop``, ``discard``).

    robot-rl-teleop-node --ros-args -p device:=scripted -p robot:=sim_lift -p episodes:=5
    robot-rl-teleop-node --ros-args -p device:=keyboard -p robot:=sim_base -p device_config:="'{\"step\": 0.5}'"

``mode:=intervene`` (online fine-tuning, launch/finetune.launch.yaml): the device watches
a running policy; its ``intervene`` event toggles a takeover, announced on
``intervention`` (Bool, transient-local) so the policy node stops commanding; the
device's commands are published only while it has control; its other episode events
are ignored (the policy node runs the episodes). ``scripted_rescue`` is the stand-in
supervisor for tests; a keyboard's ``i`` key is a person's.

Human devices get the robot's action spec (from ``robot``/``robot_config``, built with
``make_robot`` without connecting) plus the JSON object ``device_config`` as keyword
arguments (see each device's docstring in ``robot_rl.teleop``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from robot_rl.robots import make_robot
from robot_rl.ros.common import (
    ALREADY_RECORDING,
    LATCHED_QOS,
    NOT_RECORDING,
    RELIABLE_QOS,
    SENSOR_QOS,
    RobotRLNode,
    ServiceCaller,
    command_msg,
    command_qos,
    json_param,
    run_node,
    stamp_to_ns,
)
from robot_rl.teleop import make_teleop


class TeleopNode(RobotRLNode):
    def __init__(self) -> None:
        super().__init__("teleop")
        self.declare_parameter("device", "scripted")
        self.declare_parameter("robot", "")
        self.declare_parameter("robot_config", "")
        self.declare_parameter("device_config", "")
        self.declare_parameter("episodes", 1)
        self.declare_parameter("noise", 0.0)
        self.declare_parameter("seed", 0)
        self.declare_parameter("recorder", "recorder")
        self.declare_parameter("mode", "record")
        self.declare_parameter("service_timeout", 10.0)  # longer than any legitimate reply (a twin reset, a commit)
        self.intervening = False
        self.finished = False
        self.exit_code = 0
        self._events: deque[str] = deque()
        # one episode call at a time; a reply that never comes is asked again (ServiceCaller)
        self._calls = ServiceCaller(self, float(self.get_parameter("service_timeout").value))
        self._latest: dict[str, tuple[int, np.ndarray]] = {}
        self._acted_stamp = -1
        self._min_stamp = 0

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        device = self.get_parameter("device").value
        try:
            robot = self.get_parameter("robot").value
            robot_config = json_param(self, "robot_config", {})
            kwargs: dict[str, Any]
            self.mode = self.get_parameter("mode").value
            if self.mode not in ("record", "intervene"):
                raise ValueError(f"mode must be record or intervene, got {self.mode!r}")
            if device == "scripted_rescue":
                kwargs = {"robot": robot, "robot_config": robot_config, "seed": int(self.get_parameter("seed").value)}
            elif device == "scripted":
                kwargs = {
                    "robot": robot,
                    "robot_config": robot_config,
                    "episodes": int(self.get_parameter("episodes").value),
                    "noise": float(self.get_parameter("noise").value),
                    "seed": int(self.get_parameter("seed").value),
                }
            else:  # a human device maps onto the robot's action layout
                kwargs = {"action_spec": make_robot(robot, **robot_config).action_spec}
            options = json_param(self, "device_config", {})
            if not isinstance(options, dict):
                raise ValueError(f"device_config must be a JSON object of device options, got {options!r}")
            kwargs.update(options)
            self.device = make_teleop(device, **kwargs)
        except (KeyError, TypeError, ValueError, ImportError, OSError) as exc:
            return self.fail(f"cannot start teleop device {device!r}: {exc}")
        if self.device.usage:
            self.get_logger().info(f"{device}: {self.device.usage}")
        recorder = self.get_parameter("recorder").value
        self._reset = self.create_client(Trigger, "reset")
        self._start = self.create_client(Trigger, f"{recorder}/start")
        self._stop = self.create_client(SetBool, f"{recorder}/stop")
        self._discard = self.create_client(Trigger, f"{recorder}/discard")
        self.create_subscription(String, "robot_spec", self._on_spec, LATCHED_QOS)
        self.create_subscription(JointState, "task", self._on_task, RELIABLE_QOS)
        self._spec: dict[str, Any] | None = None
        if self.mode == "intervene":
            self._intervention_pub = self.create_publisher(Bool, "intervention", LATCHED_QOS)
            self._intervention_pub.publish(Bool(data=False))
            self.create_subscription(String, "events", self._on_robot_event, RELIABLE_QOS)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._timer = self.create_timer(0.01, self._step_events)
        return super().on_activate(state)

    def _on_spec(self, msg: String) -> None:
        import json

        if self._spec is not None:
            return
        self._spec = json.loads(msg.data)
        self._keys = [k for k, s in self._spec["observation_spec"].items() if not (len(s["shape"]) == 3 and s["dtype"] == "uint8")]
        self._shapes = {k: tuple(self._spec["observation_spec"][k]["shape"]) for k in self._keys}
        self._names = self._spec["action_spec"].get("names") or []
        # offer the deadline the robot node requests (its command timeout): QoS-compatible
        self._cmd_pub = self.create_publisher(Float64MultiArray, "commands", command_qos(float(self._spec["command_timeout"])))
        for key in self._keys:
            self.create_subscription(JointState, f"state/{key}", lambda m, k=key: self._on_state(k, m), SENSOR_QOS)

    # ------------------------------------------------------------------ observations -> commands
    def _on_state(self, key: str, msg: JointState) -> None:
        self._latest[key] = (stamp_to_ns(msg.header.stamp), np.asarray(msg.position, dtype=np.float64).reshape(self._shapes[key]))
        self._maybe_act()

    def _maybe_act(self) -> None:
        """Send one command per complete new observation, unless events are pending."""
        if self._spec is None:
            return
        stamps = {self._latest[k][0] for k in self._keys if k in self._latest}
        if len(self._latest) < len(self._keys) or len(stamps) != 1:
            return
        (stamp,) = stamps
        if self.mode == "intervene":
            self._watch(stamp)
            return
        if stamp == self._acted_stamp or stamp < self._min_stamp or self._calls.busy or self._events:
            return
        action = self.device.get_action({k: v.astype(np.float32) for k, (_, v) in self._latest.items()})
        self._collect_events()
        if action is None or self._events:
            return
        self._acted_stamp = stamp
        self._cmd_pub.publish(command_msg(action, self._names))

    # ------------------------------------------------------------------ intervene mode
    def _watch(self, stamp: int) -> None:
        """Intervene mode: the device sees every observation; it commands only while in control."""
        if stamp == self._acted_stamp:
            return
        self._acted_stamp = stamp
        action = self.device.get_action({k: v.astype(np.float32) for k, (_, v) in self._latest.items()})
        self._take_events()
        if self.intervening and action is not None:
            self._cmd_pub.publish(command_msg(action, self._names))

    def _take_events(self) -> None:
        for event in self.device.events():
            if event == "intervene":
                self.intervening = not self.intervening
                self._intervention_pub.publish(Bool(data=self.intervening))
                self.get_logger().info("intervening: the operator has control" if self.intervening else "control back to the policy")
            elif event == "quit":
                self.finished = True
            else:
                self.get_logger().info(f"{event}: ignored while watching a policy (mode intervene)", throttle_duration_sec=5.0)

    def _on_robot_event(self, msg: String) -> None:
        import json

        event = json.loads(msg.data)
        if event.get("event") == "reset" and hasattr(self.device, "on_reset"):
            self.device.on_reset(int(event.get("seed", 0)))
            self._take_events()

    def _on_task(self, msg: JointState) -> None:
        if self.mode == "intervene":
            return
        if self._calls.busy or self._events or stamp_to_ns(msg.header.stamp) < self._min_stamp:
            return  # feedback from before the current episode (the robot keeps ticking)
        reward, success, failure = (float(v) for v in msg.position[:3])
        self.device.observe_task(reward, success > 0.5, failure > 0.5)
        self._collect_events()

    # ------------------------------------------------------------------ events -> services
    def _collect_events(self) -> None:
        self._events.extend(self.device.events())

    def _step_events(self) -> None:
        if self.mode == "intervene":
            self._take_events()
            return
        self._collect_events()
        self._calls.poll()
        if self._calls.busy or not self._events or self._spec is None:
            return
        event = self._events[0]
        if event == "quit":
            self.get_logger().info("teleop device finished")
            self.finished = True
            return
        calls = {
            "reset": (self._reset, Trigger.Request()),
            "start": (self._start, Trigger.Request()),
            "success": (self._stop, SetBool.Request(data=True)),
            "failure": (self._stop, SetBool.Request(data=False)),
            "discard": (self._discard, Trigger.Request()),
        }
        if event not in calls:
            self._events.popleft()
            return
        client, request = calls[event]
        if not client.service_is_ready():
            return  # wait for the robot node / recorder to come up
        if event == "reset":
            latest = max((s for s, _ in self._latest.values()), default=0)
            self._min_stamp = latest + 1  # act only on observations after the reset
        done_if = {"start": ALREADY_RECORDING, "success": NOT_RECORDING, "failure": NOT_RECORDING}.get(event)
        self._calls.call(client, request, event, lambda result, went_through, e=event: self._done(e, result, went_through), done_if)

    def _done(self, event: str, result: Any, went_through: bool) -> None:
        if not went_through:
            why = getattr(result, "message", "no response")
            if event == "start":  # e.g. the recorder is still opening its store: retry
                self.get_logger().warning(f"{event}: {why}; retrying", throttle_duration_sec=2.0)
                return
            self.get_logger().error(f"{event} failed: {why}")
        elif result.success:
            self.get_logger().info(f"{event}: {result.message}")
        self._events.popleft()
        self._maybe_act()  # the robot waits for a command: act on the observation we have

    def destroy_node(self) -> None:
        if getattr(self, "device", None) is not None:
            self.device.close()  # e.g. give the terminal back its mode
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
