"""QoS profiles, message conversions and the node runner shared by robot_rl's nodes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from robot_rl.ros.dds import udp_only_transport

RCLError = _rclpy_impl.RCLError  # what rcl raises, e.g. publishing on a shut-down context

SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
)


def command_qos(timeout_s: float) -> QoSProfile:
    """Reliable, latest-only, with a deadline equal to the robot's command timeout."""
    return QoSProfile(
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
        deadline=Duration(seconds=timeout_s),
    )


def stamp_to_ns(stamp: TimeMsg) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> TimeMsg:
    return TimeMsg(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def vector_msg(values: np.ndarray, names: Sequence[str], stamp_ns: int, frame: str = "") -> JointState:
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame
    msg.name = list(names)
    msg.position = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    return msg


def vector_from_msg(msg: JointState, size: int, names: Sequence[str] | None = None) -> np.ndarray:
    """Values of a stamped named vector; raises ValueError on a wrong size or names."""
    values = np.asarray(msg.position, dtype=np.float64)
    if values.shape != (size,):
        raise ValueError(f"expected {size} values, got {values.shape[0]}")
    if names is not None and msg.name and list(msg.name) != list(names):
        raise ValueError(f"element names {list(msg.name)} do not match {list(names)}")
    return values


def command_msg(action: np.ndarray, names: Sequence[str]) -> Float64MultiArray:
    """A ``commands`` message: the action in the action spec's order, its elements named in
    ``layout.dim[0].label`` (comma-separated), which the robot node checks."""
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=",".join(names), size=len(action), stride=len(action))]
    msg.data = [float(a) for a in action]
    return msg


def transition_msg(state: np.ndarray, action: np.ndarray, task: np.ndarray, next_state: np.ndarray, intervention: bool) -> Float64MultiArray:
    """A ``transitions`` message, labelled ``transition:<Ds>,<Da>``; data
    ``[s (Ds), a_sent (Da), reward, success, failure, s' (Ds), intervention]``."""
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=f"transition:{len(state)},{len(action)}", size=0, stride=0)]
    data = np.concatenate([state, action, task[:3], next_state, [float(intervention)]])
    msg.data = [float(v) for v in data]
    return msg


def transition_from_msg(msg: Float64MultiArray, state_dim: int, action_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(s, a_sent, (reward, success, failure), s', intervention)``; ValueError on another layout."""
    values = np.asarray(msg.data, dtype=np.float64)
    label = msg.layout.dim[0].label if msg.layout.dim else ""
    want = f"transition:{state_dim},{action_dim}"
    if label != want or values.shape != (2 * state_dim + action_dim + 4,):
        raise ValueError(f"a transition labelled {label!r} with {values.size} values (expected {want})")
    ds, da = state_dim, action_dim
    return values[:ds], values[ds : ds + da], values[ds + da : ds + da + 3], values[ds + da + 3 : -1], bool(values[-1] > 0.5)


def image_msg(frame: np.ndarray, stamp_ns: int, frame_id: str = "") -> Image:
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = "rgb8" if frame.shape[2] == 3 else "mono8"
    msg.step = int(frame.shape[1] * frame.shape[2])
    msg.data = np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
    return msg


def image_from_msg(msg: Image, shape: tuple[int, ...]) -> np.ndarray:
    if (msg.height, msg.width) != tuple(shape[:2]) or msg.encoding not in ("rgb8", "mono8"):
        raise ValueError(f"image {msg.width}x{msg.height} {msg.encoding}, expected {shape[1]}x{shape[0]} rgb8")
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(shape)


def json_param(node: LifecycleNode, name: str, default: Any) -> Any:
    raw = node.get_parameter(name).value
    if raw in (None, ""):
        return default
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameter {name!r} is not valid JSON: {exc}") from exc


class StampClock:
    """Message stamps (ns): the wall-clock time when the clock was made plus the monotonic
    time elapsed since. Epoch-like like ROS time, but never steps: a wall-clock jump
    (NTP step, ``date -s``) after the node started moves neither its stamps nor anything
    aligned on them. Nodes started on either side of a jump disagree by the jump."""

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return self._wall0 + time.monotonic_ns() - self._mono0


# the recorder's refusals of a start / stop that mean an earlier, unanswered one went through
ALREADY_RECORDING = "already recording"
NOT_RECORDING = "not recording"


class ServiceCaller:
    """One service call in flight at a time, with a deadline for its reply.

    A reply can fail to arrive: DDS drops a response the server sends before it has matched
    the client's response reader (a client that starts while the server does), and a server
    can hang. A call whose reply is not in after ``timeout`` seconds is given up
    (``poll``, from the caller's timer), logged, and may be made again. ``done`` receives
    the response and whether it means the request went through: a success, or, when the
    same ``what`` was asked before without an answer, the refusal ``done_if`` (such as
    ``ALREADY_RECORDING``), which says the earlier request went through.
    """

    def __init__(self, node: LifecycleNode, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"service reply timeout must be > 0, got {timeout}")
        self.node, self.timeout = node, float(timeout)
        self._pending: tuple[Any, Any, str, float] | None = None  # client, future, what, deadline
        self._unanswered: set[str] = set()
        self.gave_up = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def call(self, client: Any, request: Any, what: str, done: Any, done_if: str | None = None) -> bool:
        """Send ``request`` unless a call is in flight or the service is not there yet;
        ``done(response, went_through)`` runs with the reply."""
        if self._pending is not None or not client.service_is_ready():
            return False
        future = client.call_async(request)
        self._pending = (client, future, what, time.monotonic() + self.timeout)

        def finished(f: Any) -> None:
            if self._pending is None or self._pending[1] is not f:
                return  # given up on already
            self._pending = None
            asked_before = what in self._unanswered
            self._unanswered.discard(what)
            result = f.result()
            went_through = result is not None and bool(result.success)
            if not went_through and asked_before and done_if is not None and getattr(result, "message", None) == done_if:
                self.node.get_logger().warning(f"{what}: {done_if}: the earlier {what} request went through and its reply was lost")
                went_through = True
            done(result, went_through)

        future.add_done_callback(finished)
        return True

    def poll(self) -> None:
        """Give up on a call whose reply is overdue, so that it can be made again."""
        if self._pending is None or time.monotonic() < self._pending[3]:
            return
        client, future, what, _ = self._pending
        self._pending = None
        client.remove_pending_request(future)
        self._unanswered.add(what)
        self.gave_up += 1
        self.node.get_logger().warning(f"{what}: no reply within {self.timeout:g} s (a lost reply or a busy server); asking again")


class RobotRLNode(LifecycleNode):
    """Lifecycle-style node: resources in configure, timers in activate.

    With parameter ``autostart`` (default true) the node configures and activates
    itself, since a plain process launch has no lifecycle manager; the standard
    lifecycle services are there for one.

    Timers run on the steady (monotonic) clock and stamps come from ``stamp_ns()``
    (``StampClock``): rclpy's default ROS-time timers stop firing after the wall clock
    steps backwards (measured: a 1 h step stalls them for the hour), which would freeze
    control loops and watchdogs.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.declare_parameter("autostart", True)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._stamps = StampClock()

    def create_timer(self, timer_period_sec: float, callback: Any, callback_group: Any = None, clock: Clock | None = None, autostart: bool = True) -> Any:
        return super().create_timer(timer_period_sec, callback, callback_group, clock or self._steady, autostart)

    def stamp_ns(self) -> int:
        """Stamp for an outgoing message: monotonic, epoch-anchored (see ``StampClock``)."""
        return self._stamps.now_ns()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # rclpy turns an exception in a transition callback into ERROR without a word: log it
        super().__init_subclass__(**kwargs)
        for name in ("on_configure", "on_activate"):
            if name in cls.__dict__:
                setattr(cls, name, _logged_transition(cls.__dict__[name]))

    def fail(self, message: str) -> TransitionCallbackReturn:
        self.get_logger().error(message)
        return TransitionCallbackReturn.FAILURE


def _logged_transition(fn: Any) -> Any:
    import functools
    import traceback

    @functools.wraps(fn)
    def wrapper(self: RobotRLNode, state: Any) -> TransitionCallbackReturn:
        try:
            return fn(self, state)
        except Exception:
            self.get_logger().error(f"{fn.__name__} failed:\n{traceback.format_exc()}")
            return TransitionCallbackReturn.ERROR

    return wrapper


def run_node(node_cls: type[RobotRLNode], args: Sequence[str] | None = None) -> int:
    """Entry point body: init, (auto)start, spin until shutdown; 1 if configure or activate
    fails (a node that cannot activate exits, so its launch ends with the reason logged,
    rather than idling while its peers wait for it)."""
    transport = udp_only_transport() if getattr(node_cls, "udp_only", False) else ""
    rclpy.init(args=list(args) if args is not None else sys.argv)
    node = node_cls()
    if transport:
        node.get_logger().info(f"DDS transport: {transport}")
    code = 0
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, "finished", False):
            try:
                executor.spin_once(timeout_sec=0.1)
            except RCLError:
                # SIGINT's handler shuts the context down at once; a callback that runs after
                # that (a timer already due) fails to publish on it: that is the shutdown,
                # not a fault (it made nodes exit 1 with a traceback on Ctrl-C, now and then)
                if rclpy.ok():
                    raise
                break
        code = int(getattr(node, "exit_code", 0))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()  # also after SIGINT's handler shut the rcl context down
    return code
