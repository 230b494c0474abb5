"""Policy node: runs a trained checkpoint against a robot node, behind its safety filter.

    robot-rl-policy-node --ros-args -p checkpoint:=runs/lift_bc/checkpoint
    robot-rl-policy-node --ros-args -p checkpoint:=... -p episodes:=20 -p summary:=deploy.json   # sim twin episodes

The checkpoint is loaded (safetensors + JSON, never a pickle) and its weights checked
(finite, the shapes its config names) before any publisher exists: a bad checkpoint
ends the node with exit code 1 and not one command sent. The robot's ``robot_spec``
must match what the policy was trained on (keys, shapes, element names).

Control loop: the robot node's observation stream is the control clock. For every new
complete observation (all of the robot node's keys at one stamp, plus the latest frame
of any camera node the policy uses) the node runs ``LearnedPolicy.act`` — which pops
the action-chunk queue or predicts a new chunk — and publishes the action on
``commands`` (``Float64MultiArray``, labelled with the joint names; ``cmd_vel``
``Twist`` for a mobile base). The robot node filters it like any other command.

Safety: the node commands only while enabled (``~/enable``, ``std_srvs/SetBool``; a
true request also clears the observation history and the action queue). When its
inputs go stale (no new observation for ``stale_timeout`` s) or its own loop stalls
(e.g. the process was stopped with SIGSTOP), it disables itself and stays disabled
until an explicit enable: it never resumes on its own. The robot node holds the
robot once commands stop (command timeout + one period).

Loop timing on ``~/status`` (JSON, 2 Hz): inference latency p50/p99/max (ms), deadline
misses (observation arrival to command publish longer than one control period),
steps, inferences, stale events.

Fine-tuning actor (``actor:=true``, launch/finetune.launch.yaml): acts with the learner's
exploration (``ExplorationPolicy``), publishes every step as a transition on
``transitions`` (``Float64MultiArray``: s, a_sent, reward, success, failure, s',
intervention), and swaps in weights from the learner (``weights``, safetensors bytes in a
``UInt8MultiArray``). New weights are validated off the control loop — finite, the
names and shapes of this learner, and, with ``sanity_steps`` > 0 on a twin, a short
rollout on a local copy of the twin with no non-finite action, safety rejection or
failure — and swapped in between two control steps (a reference swap). While a human
intervenes (``intervention`` Bool true, from the teleop node) the actor does not command;
those steps are published with the intervention flag.

Episodes (sim twins, ``episodes`` > 0): the node runs them itself — reset the twin
(``reset`` service), start the recorder if one is named (``recorder``), enable, act
until the task reports success or failure or ``max_steps`` pass, disable, label the
episode on the recorder — then writes ``summary`` (JSON) and exits.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String, UInt8MultiArray
from std_srvs.srv import SetBool, Trigger

from robot_rl.data.schema import KeySpec
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
    image_from_msg,
    json_param,
    run_node,
    stamp_to_ns,
    transition_msg,
    vector_from_msg,
)


class LoopStats:
    """Inference latency and deadline misses of the control loop."""

    def __init__(self, period_s: float, window: int = 2000) -> None:
        self.period_s = period_s
        self.latencies: deque[float] = deque(maxlen=window)
        self.steps = 0
        self.deadline_misses = 0

    def add(self, inference_s: float, arrival_to_publish_s: float) -> None:
        self.steps += 1
        self.latencies.append(inference_s)
        if arrival_to_publish_s > self.period_s:
            self.deadline_misses += 1

    def summary(self) -> dict[str, float]:
        if not self.latencies:
            return {"steps": self.steps, "deadline_misses": self.deadline_misses}
        ms = 1000 * np.asarray(self.latencies)
        return {
            "steps": self.steps,
            "deadline_misses": self.deadline_misses,
            "latency_p50_ms": float(np.percentile(ms, 50)),
            "latency_p99_ms": float(np.percentile(ms, 99)),
            "latency_max_ms": float(ms.max()),
        }


class PolicyNode(RobotRLNode):
    udp_only = True  # run_node: no Fast DDS shared memory (ros/dds.py)
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("policy", **kwargs)  # kwargs: rclpy Node options (context, parameter_overrides)
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("enabled", True)
        self.declare_parameter("stale_timeout", 0.0)
        self.declare_parameter("episodes", 0)
        self.declare_parameter("max_steps", 0)
        self.declare_parameter("recorder", "")
        self.declare_parameter("summary", "")
        self.declare_parameter("reuse_chunks", True)
        self.declare_parameter("device", "cpu")
        self.declare_parameter("actor", False)
        self.declare_parameter("method", "rlpd")
        self.declare_parameter("learner_config", "")
        self.declare_parameter("sanity_steps", 0)
        self.declare_parameter("seed", 0)
        self.declare_parameter("service_timeout", 10.0)  # longer than any legitimate reply (a twin reset, a commit)
        self.finished = False
        self.exit_code = 0
        self.enabled = False
        self.spec: dict[str, Any] | None = None
        self._latest: dict[str, tuple[int, Any, float]] = {}  # key -> (stamp ns, value, arrival monotonic)
        self._acted_stamp = -1
        self._min_stamp = 0
        self._last_alive = time.monotonic()
        self.stale_events = 0
        self.stats: LoopStats | None = None
        self.episode: EpisodeRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        from robot_rl.algos.checkpoint import CheckpointError, load_checkpoint

        path = self.get_parameter("checkpoint").value
        if not path:
            return self.fail("parameter 'checkpoint' (a checkpoint directory) is required")
        try:
            ckpt = load_checkpoint(path, device=self.get_parameter("device").value)
        except (CheckpointError, ValueError, OSError) as exc:
            self.exit_code = 1
            return self.fail(f"refusing checkpoint {path}: {exc}")
        self.checkpoint = ckpt
        self.checkpoint_hash = str(ckpt.config.get("model_sha256", ""))
        self.actor = bool(self.get_parameter("actor").value)
        self.learner = ckpt.learner
        try:
            if self.actor:  # the learner node's learner: same method, same networks, same exploration
                from robot_rl.algos.finetune import FinetuneConfig, build_learner

                method = FinetuneConfig(method=self.get_parameter("method").value, learner=json_param(self, "learner_config", {}))
                self.learner = build_learner(ckpt.learner, method, seed=int(self.get_parameter("seed").value))
            self.policy = self._make_policy(self.learner)
        except ValueError as exc:
            return self.fail(f"cannot run {path} as a fine-tuning actor: {exc}")
        self._warm_up()
        self.get_logger().info(
            f"loaded {ckpt.config['algo']} from {path} (step {ckpt.step}, sha256 {self.checkpoint_hash[:12]}, "
            f"horizons {ckpt.config.get('horizons')})"
        )
        self.create_subscription(String, "robot_spec", self._on_spec, LATCHED_QOS)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.weights = WeightSwapper(self) if self.actor else None
        self._status_pub = self.create_publisher(String, "~/status", RELIABLE_QOS)
        return TransitionCallbackReturn.SUCCESS

    def _make_policy(self, learner: Any) -> Any:
        if self.actor:
            from robot_rl.algos.finetune import ExplorationPolicy

            return ExplorationPolicy(learner, seed=int(self.get_parameter("seed").value))
        policy = learner.policy()
        policy.reuse_chunks = bool(self.get_parameter("reuse_chunks").value)
        return policy

    def _warm_up(self) -> None:
        """One inference on a zero observation, so the first real step does not pay for allocations."""
        spec = self.policy.spec
        obs: dict[str, np.ndarray] = {}
        for key in spec.state_keys:
            obs[key.removeprefix("obs.")] = np.zeros(spec.keys[key].shape, np.float32)
        for key in spec.image_keys:
            obs[key.removeprefix("obs.")] = np.zeros(spec.keys[key].shape, np.uint8)
        self.policy.act(obs)
        self.policy.reset()
        self.policy.inferences = 0

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._watchdog = self.create_timer(0.02, self._check_alive)
        self._status_timer = self.create_timer(0.5, self._publish_status)
        return super().on_activate(state)

    # ------------------------------------------------------------------ robot spec -> inputs/outputs
    def _on_spec(self, msg: String) -> None:
        if self.spec is not None:
            return
        try:
            spec = json.loads(msg.data)
            obs_spec = {k: KeySpec.from_json(v) for k, v in spec["observation_spec"].items()}
            self.policy.spec.check_robot(obs_spec, KeySpec.from_json(spec["action_spec"]))
        except (KeyError, ValueError, TypeError) as exc:
            self.get_logger().error(f"cannot drive this robot: {exc}")
            self.exit_code, self.finished = 1, True
            return
        self.spec = spec
        period = 1.0 / float(spec["fps"])
        timeout = float(self.get_parameter("stale_timeout").value) or float(spec["command_timeout"])
        self.stale_timeout = timeout
        self.stats = LoopStats(period)
        self._names = list(spec["action_spec"].get("names") or [])
        qos = command_qos(float(spec["command_timeout"]))
        self._base = spec.get("safety_mode") == "base_velocity"
        self._cmd_pub = self.create_publisher(Twist, "cmd_vel", qos) if self._base else self.create_publisher(Float64MultiArray, "commands", qos)
        # robot-node keys share the observation stamp; cameras from camera nodes run on their own clock
        self._robot_keys = [k.removeprefix("obs.") for k in self.policy.spec.state_keys + self.policy.spec.image_keys]
        self._robot_keys = [k for k in self._robot_keys if k in obs_spec]
        self._shapes = {k: obs_spec[k].shape for k in self._robot_keys}
        for name in self._robot_keys:
            if obs_spec[name].is_image:
                topic = f"{name.removeprefix('image.')}/image_raw"
                self.create_subscription(Image, topic, lambda m, k=name: self._on_image(k, m), SENSOR_QOS)
            else:
                self.create_subscription(JointState, f"state/{name}", lambda m, k=name: self._on_vector(k, m), SENSOR_QOS)
        if self.actor:
            self.transitions = TransitionPublisher(self)
        episodes = int(self.get_parameter("episodes").value)
        if episodes > 0:
            if not spec.get("sim"):
                self.get_logger().error("episodes > 0 needs a sim twin (its reset service and task topic); on a real robot use ~/enable")
                self.exit_code, self.finished = 1, True
                return
            self.episode = EpisodeRunner(self, episodes, int(self.get_parameter("max_steps").value) or int(spec["config"].get("max_steps", 500)))
        elif self.get_parameter("enabled").value:
            self._enable()
        self.get_logger().info(
            f"driving {spec['name']} at {spec['fps']:g} Hz on {'cmd_vel' if self._base else 'commands'} "
            f"(stale timeout {timeout:g} s, {'enabled' if self.enabled else 'waiting for ~/enable' if episodes == 0 else f'{episodes} episodes'})"
        )

    # ------------------------------------------------------------------ inputs
    def _on_vector(self, key: str, msg: JointState) -> None:
        try:
            values = vector_from_msg(msg, int(np.prod(self._shapes[key])) if self._shapes[key] else 1)
        except ValueError as exc:
            self.get_logger().warning(f"ignoring {key} message: {exc}", throttle_duration_sec=5.0)
            return
        self._latest[key] = (stamp_to_ns(msg.header.stamp), values.reshape(self._shapes[key]).astype(np.float32), time.monotonic())
        self._maybe_act()

    def _on_image(self, key: str, msg: Image) -> None:
        try:
            frame = image_from_msg(msg, self._shapes[key])
        except ValueError as exc:
            self.get_logger().warning(f"ignoring {key} image: {exc}", throttle_duration_sec=5.0)
            return
        self._latest[key] = (stamp_to_ns(msg.header.stamp), frame, time.monotonic())
        self._maybe_act()

    def _maybe_act(self) -> None:
        if self._stalled():
            return
        if self.weights is not None:
            self.weights.maybe_swap()
        if len(self._latest) < len(self._robot_keys):
            return
        stamps = {self._latest[k][0] for k in self._robot_keys}
        if len(stamps) != 1:
            return
        (stamp,) = stamps
        if stamp == self._acted_stamp or stamp < self._min_stamp:
            return
        self._acted_stamp = stamp
        obs = {k: v for k, (_, v, _) in self._latest.items()}
        state = self.learner.spec.state_vector(obs).astype(np.float64) if self.actor else None
        if self.actor:
            self.transitions.on_observation(stamp, state)
        if self.episode is not None:
            self.episode.on_observation(stamp)
        if self.actor and self.transitions.intervening and self.enabled:
            self.transitions.acted(stamp, state, intervention=True)  # the teleop node commands this step
            if self.episode is not None:
                self.episode.steps += 1
            self._last_alive = time.monotonic()
            return
        if not self.enabled:
            return
        arrival = max(self._latest[k][2] for k in self._robot_keys)
        t0 = time.monotonic()
        try:
            action = self.policy.act(obs)
        except (ValueError, KeyError) as exc:
            self.get_logger().error(f"policy cannot act on this observation: {exc}; disabled")
            self._disable("bad observation")
            return
        t1 = time.monotonic()
        if t1 - arrival > self.stale_timeout:
            # the process stopped (SIGSTOP, a blocked call) while inferring, or inference is
            # slower than the robot's timeout: the observation is too old to act on
            self.stale_events += 1
            self._disable(f"the observation was {t1 - arrival:.2f} s old when the action was ready (stale timeout {self.stale_timeout:g} s); call ~/enable to resume")
            return
        if not np.all(np.isfinite(action)):
            self.get_logger().error(f"policy produced a non-finite action {action}; disabled (the robot holds)")
            self._disable("non-finite action")
            return
        self._publish(action)
        if self.actor:
            self.transitions.acted(stamp, state, intervention=False)
        self.stats.add(t1 - t0, time.monotonic() - arrival)
        self._last_alive = time.monotonic()  # the time spent inferring is not a stall
        if self.episode is not None:
            self.episode.steps += 1

    def _publish(self, action: np.ndarray) -> None:
        if self._base:
            msg = Twist()
            msg.linear.x, msg.angular.z = float(action[0]), float(action[1])
        else:
            msg = command_msg(action, self._names)
        self._cmd_pub.publish(msg)

    # ------------------------------------------------------------------ enable / stale / stall
    def _enable(self) -> None:
        self.policy.reset()  # a fresh history and action queue
        self.enabled = True
        self._last_alive = time.monotonic()
        # act on the current observation if it is complete (a sim twin after a reset waits for
        # its first command); otherwise on the next one
        self._acted_stamp = -1
        self._maybe_act()

    def _disable(self, why: str, expected: bool = False) -> None:
        if self.enabled and not expected:
            self.get_logger().warning(f"disabled: {why}")
        self.enabled = False
        self.policy.reset()

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if self.spec is None:
            response.success, response.message = False, "waiting for robot_spec from the robot node"
        elif request.data:
            self._enable()
            response.success, response.message = True, "enabled"
        else:
            self._disable("disable requested")
            response.success, response.message = True, "disabled"
        self._publish_status()
        return response

    def _stalled(self) -> bool:
        """Disable when this process did not run for longer than the stale timeout (SIGSTOP, swap, a
        blocked call): what it saw before the gap is no basis for a command."""
        now = time.monotonic()
        gap, self._last_alive = now - self._last_alive, now
        if self.spec is not None and gap > self.stale_timeout and self.enabled:
            self.stale_events += 1
            self._disable(f"the control loop stalled for {gap:.2f} s; call ~/enable to resume")
            return True
        return False

    def _check_alive(self) -> None:
        if self._stalled() or self.spec is None:
            return
        if self.enabled and self._latest:
            age = time.monotonic() - max(v[2] for v in self._latest.values())
            if age > self.stale_timeout:
                self.stale_events += 1
                self._disable(f"no new observation for {age:.2f} s (stale timeout {self.stale_timeout:g} s); call ~/enable to resume")
        if self.episode is not None:
            self.episode.tick()

    def _publish_status(self) -> None:
        status: dict[str, Any] = {
            "enabled": self.enabled,
            "checkpoint": self.checkpoint_hash,
            "stale_events": self.stale_events,
            "inferences": self.policy.inferences,
            **(self.stats.summary() if self.stats else {}),
        }
        if self.episode is not None:
            status.update(self.episode.status())
        if self.weights is not None:
            status.update(self.weights.status())
            status["transitions"] = self.transitions.published if self.spec is not None else 0
        self._status_pub.publish(String(data=json.dumps(status)))


class TransitionPublisher:
    """Pairs each commanded step with the action the robot sent, its task feedback and the next
    observation, and publishes it on ``transitions`` (``common.transition_msg``)."""

    def __init__(self, node: PolicyNode) -> None:
        self.node = node
        self.spec = node.learner.spec
        self.sim = bool(node.spec.get("sim"))
        self.published = 0
        self.intervening = False
        self._prev: tuple[int, np.ndarray, bool] | None = None
        self._waiting: deque[tuple[int, np.ndarray, np.ndarray, bool]] = deque(maxlen=200)
        self._sent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._task: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pub = node.create_publisher(Float64MultiArray, "transitions", RELIABLE_QOS)
        node.create_subscription(JointState, "action_sent", self._on_sent, RELIABLE_QOS)
        node.create_subscription(JointState, "task", self._on_task, RELIABLE_QOS)
        node.create_subscription(Bool, "intervention", self._on_intervention, LATCHED_QOS)

    def _remember(self, table: OrderedDict[int, np.ndarray], stamp: int, values: np.ndarray) -> None:
        table[stamp] = values
        while len(table) > 200:
            table.popitem(last=False)
        self._flush()

    def _on_sent(self, msg: JointState) -> None:
        self._remember(self._sent, stamp_to_ns(msg.header.stamp), np.asarray(msg.position, dtype=np.float64))

    def _on_task(self, msg: JointState) -> None:
        self._remember(self._task, stamp_to_ns(msg.header.stamp), np.asarray(msg.position[:3], dtype=np.float64))

    def _on_intervention(self, msg: Bool) -> None:
        if msg.data != self.intervening:
            self.node.get_logger().info("a human intervenes: the actor stops commanding" if msg.data else "intervention over: the actor commands again")
        self.intervening = bool(msg.data)

    def acted(self, stamp: int, state: np.ndarray, intervention: bool) -> None:
        """The step at ``stamp`` (low-dim state ``state``) was commanded, by the policy or a human."""
        self._prev = (stamp, state, intervention)

    def on_observation(self, stamp: int, state: np.ndarray) -> None:
        """A new observation is the next state of the last commanded step."""
        if self._prev is not None and stamp > self._prev[0]:
            prev_stamp, prev_state, intervention = self._prev
            self._waiting.append((prev_stamp, prev_state, state, intervention))
            self._prev = None
            self._flush()

    def _flush(self) -> None:
        while self._waiting:
            stamp, state, next_state, intervention = self._waiting[0]
            if stamp not in self._sent or (self.sim and stamp not in self._task):
                return
            self._waiting.popleft()
            self._pub.publish(transition_msg(state, self._sent[stamp], self._task.get(stamp, np.zeros(3)), next_state, intervention))
            self.published += 1


class WeightSwapper:
    """Validates weights from the learner in a worker thread; the control loop swaps them in."""

    def __init__(self, node: PolicyNode) -> None:
        self.node = node
        self.accepted = 0
        self.rejected: list[str] = []
        self.swap_seconds: list[float] = []
        self._template = copy.deepcopy(node.learner)  # each new set loads into a copy of this
        self._ready: Any = None
        self._incoming: bytes | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._robot: Any = None
        node.create_subscription(UInt8MultiArray, "weights", self._on_weights, RELIABLE_QOS)
        self._thread = threading.Thread(target=self._work, daemon=True, name="weights")
        self._thread.start()

    def _on_weights(self, msg: UInt8MultiArray) -> None:
        with self._lock:
            self._incoming = bytes(msg.data)  # only the newest set matters
        self._wake.set()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                data, self._incoming = self._incoming, None
            if data is None:
                continue
            try:
                learner = self._validate(data)
            except Exception as exc:  # anything wrong with these weights: keep the ones in use
                self.rejected.append(str(exc))
                self.node.get_logger().error(f"refused new weights: {exc}")
                continue
            with self._lock:
                self._ready = learner

    def _validate(self, data: bytes) -> Any:
        from safetensors.torch import load

        from robot_rl.algos.checkpoint import check_weights

        tensors = load(data)  # safetensors: no pickle
        check_weights(tensors)
        learner = copy.deepcopy(self._template)
        learner.load_state_dict(tensors)  # names and shapes must be this learner's
        steps = int(self.node.get_parameter("sanity_steps").value)
        if steps > 0 and self.node.spec and self.node.spec.get("sim"):
            self._sanity_rollout(learner, steps)
        return learner

    def _sanity_rollout(self, learner: Any, steps: int) -> None:
        from robot_rl.envs import RobotEnv
        from robot_rl.robots import make_robot

        if self._robot is None:
            spec = self.node.spec
            self._robot = RobotEnv(make_robot(spec["name"], **spec["config"]))
        env = self._robot
        policy = learner.policy()
        obs, _ = env.reset(seed=0)
        for t in range(steps):
            action = policy.act(obs)
            if not np.all(np.isfinite(action)):
                raise ValueError(f"sanity rollout: non-finite action at step {t}")
            obs, _, terminated, truncated, info = env.step(action)
            if not info["accepted"]:
                raise ValueError(f"sanity rollout: the safety filter rejected the action at step {t}: {info['safety']}")
            if info.get("failure"):
                raise ValueError(f"sanity rollout: the twin reports a failure at step {t}")
            if terminated or truncated:
                break

    def maybe_swap(self) -> None:
        """Called at the top of a control step: a reference swap, no copying."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return
        t0 = time.monotonic()
        # the exploration policy (and its random stream) stays; only its learner changes
        self.node.learner = self.node.policy.learner = ready
        self.accepted += 1
        self.swap_seconds.append(time.monotonic() - t0)

    def status(self) -> dict[str, Any]:
        return {
            "weights_accepted": self.accepted,
            "weights_rejected": len(self.rejected),
            "last_rejection": self.rejected[-1] if self.rejected else "",
            "swap_ms_max": 1000 * max(self.swap_seconds, default=0.0),
        }


class EpisodeRunner:
    """Sim-twin episodes for the policy node: reset, (record), run, label, repeat, summarise."""

    def __init__(self, node: PolicyNode, episodes: int, max_steps: int) -> None:
        self.node, self.episodes, self.max_steps = node, episodes, max_steps
        self.results: list[dict[str, Any]] = []
        self.steps = 0
        self.phase = "reset"
        # one call at a time; a reply that never comes is asked again (ServiceCaller)
        self._calls = ServiceCaller(node, float(node.get_parameter("service_timeout").value))
        self._reset_stamp: int | None = None
        self._outcome: str | None = None
        self._t_start = 0.0
        recorder = node.get_parameter("recorder").value
        self._reset = node.create_client(Trigger, "reset")
        self._start = node.create_client(Trigger, f"{recorder}/start") if recorder else None
        self._stop = node.create_client(SetBool, f"{recorder}/stop") if recorder else None
        node.create_subscription(String, "events", self._on_event, RELIABLE_QOS)
        node.create_subscription(JointState, "task", self._on_task, RELIABLE_QOS)

    # a service call at a time; the next phase starts from its response
    def _call(self, client: Any, request: Any, then: Any) -> None:
        phase = self.phase

        def done(result: Any, went_through: bool) -> None:
            if not went_through:
                self.node.get_logger().warning(f"{phase}: {getattr(result, 'message', 'no response')}; retrying", throttle_duration_sec=2.0)
                return
            then(result)

        self._calls.call(client, request, phase, done, {"start": ALREADY_RECORDING, "stop": NOT_RECORDING}.get(phase))

    def tick(self) -> None:
        self._calls.poll()
        if self._calls.busy:
            return
        if self.phase == "reset":
            self._reset_stamp = None
            self._call(self._reset, Trigger.Request(), lambda r: setattr(self, "phase", "wait_reset"))
        elif self.phase == "wait_reset" and self._reset_stamp is not None:
            self.node._min_stamp = self._reset_stamp  # act only on observations from the new episode
            self.phase = "start" if self._start is not None else "run"
        elif self.phase == "start":
            self._call(self._start, Trigger.Request(), lambda r: setattr(self, "phase", "run"))
        elif self.phase == "run" and not self.node.enabled and self._outcome is None:
            if self.steps == 0:
                self.node._enable()
                self._t_start = time.monotonic()
            else:  # disabled mid-episode (stale inputs, a bad action): the episode failed
                self._finish("failure (policy disabled)")
        elif self.phase == "stop":
            success = self._outcome == "success"
            self._call(self._stop, SetBool.Request(data=success), lambda r: self._next())

    def on_observation(self, stamp: int) -> None:
        if self.phase == "run" and self.node.enabled and self.steps >= self.max_steps and self._outcome is None:
            self._finish("timeout")

    def _on_event(self, msg: String) -> None:
        event = json.loads(msg.data)
        # the announcement may overtake the service response
        if event.get("event") == "reset" and (self.phase == "wait_reset" or (self.phase == "reset" and self._calls.busy)):
            self._reset_stamp = int(event["stamp"])

    def _on_task(self, msg: JointState) -> None:
        if self.phase != "run" or self._outcome is not None or self.steps == 0:
            return
        if stamp_to_ns(msg.header.stamp) < self.node._min_stamp:
            return
        _, success, failure = (float(v) for v in msg.position[:3])
        if success > 0.5:
            self._finish("success")
        elif failure > 0.5:
            self._finish("failure")

    def _finish(self, outcome: str) -> None:
        self.node._disable(f"episode {len(self.results)} ended: {outcome}", expected=True)
        self._outcome = outcome
        self.results.append({"success": outcome == "success", "outcome": outcome, "steps": self.steps, "seconds": time.monotonic() - self._t_start})
        ok = sum(r["success"] for r in self.results)
        self.node.get_logger().info(f"episode {len(self.results)}/{self.episodes}: {outcome} after {self.steps} steps ({ok} successful so far)")
        self.phase = "stop" if self._stop is not None else "next"
        if self.phase == "next":
            self._next()

    def _next(self) -> None:
        self.steps, self._outcome = 0, None
        if len(self.results) >= self.episodes:
            self._write_summary()
            self.node.finished = True
            self.phase = "done"
        else:
            self.phase = "reset"

    def status(self) -> dict[str, Any]:
        return {"episodes_done": len(self.results), "successes": sum(r["success"] for r in self.results), "phase": self.phase}

    def _write_summary(self) -> None:
        node = self.node
        summary = {
            "checkpoint": node.get_parameter("checkpoint").value,
            "model_sha256": node.checkpoint_hash,
            "algo": node.checkpoint.config["algo"],
            "robot": node.spec["name"] if node.spec else None,
            "episodes": self.results,
            "loop": node.stats.summary() if node.stats else {},
            "inferences": node.policy.inferences,
            "stale_events": node.stale_events,
        }
        path = node.get_parameter("summary").value
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(summary, indent=2) + "\n")
        node.get_logger().info(f"{sum(r['success'] for r in self.results)}/{len(self.results)} episodes successful")


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
