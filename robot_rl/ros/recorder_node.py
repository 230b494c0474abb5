"""Recorder node: writes what the robot node observed and sent into an episode store.

    robot-rl-recorder-node --ros-args -p out:=runs/lift.zarr -p task:=lift -p source:=teleop

Alignment policy (documented in docs/ros.md): one store step per ``action_sent``
message. Its stamp is the stamp of the observation the action was applied in; each
observation key takes its latest message with a stamp <= that stamp (latest-before /
hold). A step is assembled once every key has a message at or after its stamp, or
one control period after it arrived; a key held from an older message counts as a
drop for that key. Services: ``~/start`` (Trigger), ``~/stop`` (SetBool: data =
success), ``~/discard`` (Trigger); status JSON on ``~/status``. Episodes are committed
with ``EpisodeWriter``: a killed recorder loses at most the episode in progress (its
rows flushed every ``flush_every`` steps can be salvaged: ``robot-rl data recover
--salvage``). When the store cannot be written (disk full, I/O error) the recorder stops
recording at once: the error is logged and reported as ``fault`` on ``~/status``, the
episode in progress is dropped, the store is closed with every committed episode intact,
and ``~/start`` refuses until the recorder is restarted.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from robot_rl.calibration.camera_info import CalibrationError
from robot_rl.calibration.registry import parse_ref, resolve_ref
from robot_rl.data import SOURCES, EpisodeWriter, KeySpec, SchemaError, StoreError, StoreSchema
from robot_rl.ros.common import (
    ALREADY_RECORDING,
    LATCHED_QOS,
    NOT_RECORDING,
    RELIABLE_QOS,
    SENSOR_QOS,
    RobotRLNode,
    image_from_msg,
    run_node,
    stamp_to_ns,
    vector_from_msg,
)

HISTORY = 64


class RecorderNode(RobotRLNode):
    def __init__(self) -> None:
        super().__init__("recorder")
        self.declare_parameter("out", "")
        self.declare_parameter("task", "")
        self.declare_parameter("source", "teleop")
        self.declare_parameter("operator", "")
        # episodes driven by a policy: its checkpoint directory (or the model sha256 itself)
        self.declare_parameter("policy_checkpoint", "")
        self.declare_parameter("flush_every", 50)
        # extra cameras from camera nodes: "wrist:320x240,front:640x480" -> obs.image.<name>
        self.declare_parameter("cameras", "")
        self.declare_parameter("compressed", False)
        # calibrations in use, "intrinsics/wrist,handeye/wrist" (latest) or ".../v3" (pinned): the ids go in the
        # store's calibration attrs, the versions they resolve to in every episode's record
        self.declare_parameter("calibration", "")
        self.writer: EpisodeWriter | None = None
        self.recording = False
        self.dropped: Counter[str] = Counter()
        self._dropped_at_start: Counter[str] = Counter()  # self.dropped when the episode started
        self.rejected = 0
        self._history: dict[str, deque[tuple[int, np.ndarray]]] = {}
        self._pending: deque[tuple[int, float, np.ndarray]] = deque()
        self._start_stamp = 0
        self._last_reset_stamp = 0
        self._steps_written = 0
        self.camera_keys: dict[str, KeySpec] = {}
        self.fault: str | None = None

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.out = self.get_parameter("out").value
        if not self.out:
            return self.fail("parameter 'out' (the store path) is required")
        # a SOURCES value, or the teleop device's name: any device but 'scripted' is a human
        source = self.get_parameter("source").value
        if source not in SOURCES:
            source = "teleop"
        self.defaults = {"source": source, "task": self.get_parameter("task").value or None}
        if self.get_parameter("operator").value:
            self.defaults["operator"] = self.get_parameter("operator").value
        if ckpt := self.get_parameter("policy_checkpoint").value:
            try:
                self.defaults["policy_checkpoint"] = checkpoint_hash(ckpt)
            except (OSError, ValueError, KeyError) as exc:
                return self.fail(f"policy_checkpoint {ckpt!r}: {exc}")
        try:
            self.calibration = resolve_calibrations(self.get_parameter("calibration").value)
        except CalibrationError as exc:
            return self.fail(f"calibration: {exc}")
        if self.calibration:
            self.defaults["calibration"] = dict(self.calibration)
        self.create_subscription(String, "robot_spec", self._on_spec, LATCHED_QOS)
        self.create_subscription(String, "events", self._on_event, RELIABLE_QOS)
        # a human taking over from a policy (teleop node, mode intervene): counted per episode
        self.intervening = False
        self._intervened_steps = 0
        self.create_subscription(Bool, "intervention", lambda m: setattr(self, "intervening", bool(m.data)), LATCHED_QOS)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(SetBool, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self._status_pub = self.create_publisher(String, "~/status", RELIABLE_QOS)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._timer = self.create_timer(0.005, self._assemble)
        self._status_timer = self.create_timer(0.5, self._publish_status)
        return super().on_activate(state)

    def destroy_node(self) -> None:
        if self.writer is not None:
            self.get_logger().info(
                f"closing: {self.writer.num_episodes} episodes in {self.out}, {self._steps_written} steps written "
                f"this run, dropped {dict(self.dropped) or 0}, rejected {self.rejected}"
            )
            self.writer.close()  # an episode in progress is discarded, committed ones stay
            self.writer = None
        super().destroy_node()

    # ------------------------------------------------------------------ spec -> store
    def _on_spec(self, msg: String) -> None:
        if self.writer is not None or self.fault is not None:
            return
        try:
            spec = json.loads(msg.data)
            obs = {k: KeySpec.from_json(v) for k, v in spec["observation_spec"].items()}
            self.camera_keys = parse_cameras(self.get_parameter("cameras").value)
            obs.update(self.camera_keys)
            schema = StoreSchema.build(
                obs=obs,
                action=KeySpec.from_json(spec["action_spec"]),
                fps=spec["fps"],
                robot={"name": spec["name"], "config": spec.get("config", {})},
                # ids only: the versions go in each episode's record, so a store can grow across recalibrations
                calibration={ref: dict(zip(("kind", "id"), ref.split("/", 1))) for ref in self.calibration},
            )
            self.defaults["robot"] = spec["name"]
            self.writer = EpisodeWriter(self.out, schema, defaults=self.defaults, flush_every=int(self.get_parameter("flush_every").value))
        except (KeyError, ValueError, TypeError, StoreError) as exc:
            self.get_logger().error(f"cannot open store {self.out}: {exc}")
            self.exit_code, self.finished = 1, True
            return
        self.schema = schema
        self.period_ns = int(1e9 / schema.fps)
        self.stale_ns = max(2 * self.period_ns, 100_000_000)
        self.obs_specs = obs
        for key, s in obs.items():
            self._history[key] = deque(maxlen=HISTORY)
            if key in self.camera_keys and self.get_parameter("compressed").value:
                topic = f"{key.removeprefix('image.')}/image_raw/compressed"
                self.create_subscription(CompressedImage, topic, lambda m, k=key: self._on_compressed(k, m), SENSOR_QOS)
            elif s.is_image:
                self.create_subscription(Image, f"{key.removeprefix('image.')}/image_raw", lambda m, k=key: self._on_image(k, m), SENSOR_QOS)
            else:
                self.create_subscription(JointState, f"state/{key}", lambda m, k=key: self._on_vector(k, m), SENSOR_QOS)
        if spec.get("sim"):  # sim twins report reward / success / failure per step
            self._history["task"] = deque(maxlen=HISTORY)
            self.create_subscription(JointState, "task", lambda m: self._on_vector("task", m), RELIABLE_QOS)
        self.create_subscription(JointState, "action_sent", self._on_action, RELIABLE_QOS)
        self.get_logger().info(f"recording {spec['name']} into {self.out} ({self.writer.num_episodes} episodes already there)")

    # ------------------------------------------------------------------ inputs
    def _on_vector(self, key: str, msg: JointState) -> None:
        size = 3 if key == "task" else int(np.prod(self.obs_specs[key].shape))
        try:
            values = vector_from_msg(msg, size)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected {key} message: {exc}", throttle_duration_sec=5.0)
            return
        shape = (3,) if key == "task" else self.obs_specs[key].shape
        self._history[key].append((stamp_to_ns(msg.header.stamp), values.reshape(shape)))

    def _on_image(self, key: str, msg: Image) -> None:
        try:
            frame = image_from_msg(msg, self.obs_specs[key].shape)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected {key} image: {exc}", throttle_duration_sec=5.0)
            return
        self._history[key].append((stamp_to_ns(msg.header.stamp), frame))

    def _on_compressed(self, key: str, msg: CompressedImage) -> None:
        import cv2

        frame = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if frame is None or frame.shape != self.obs_specs[key].shape:
            self.rejected += 1
            self.get_logger().warning(f"rejected {key} compressed image (undecodable or wrong size)", throttle_duration_sec=5.0)
            return
        self._history[key].append((stamp_to_ns(msg.header.stamp), np.ascontiguousarray(frame[..., ::-1])))

    def _on_action(self, msg: JointState) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        if not self.recording or stamp < self._start_stamp:
            return
        self._pending.append((stamp, time.monotonic(), np.asarray(msg.position, dtype=np.float64)))

    def _on_event(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "reset":
            self._last_reset_stamp = int(event["stamp"])
            if self.recording and self._last_reset_stamp > self._start_stamp:
                # the reset announcement arrived after `start`: actions before it are not this episode's
                self._start_stamp = self._last_reset_stamp
                self._pending = deque(p for p in self._pending if p[0] >= self._start_stamp)

    # ------------------------------------------------------------------ assembling steps
    def _assemble(self, force: bool = False) -> None:
        while self._pending and self.writer is not None:
            stamp, arrived, action = self._pending[0]
            ready = all(h and h[-1][0] >= stamp for h in self._history.values())
            if not (ready or force or time.monotonic() - arrived > self.period_ns / 1e9):
                return
            self._pending.popleft()
            step = self._step_at(stamp)
            if step is None:
                continue
            obs, task = step
            try:
                self.writer.add_step(obs, action, reward=task[0], done=bool(task[1] or task[2]), timestamp=stamp / 1e9)
                self._steps_written += 1
                self._intervened_steps += self.intervening
            except SchemaError as exc:
                self.get_logger().error(f"step rejected by the store: {exc}")
                self.rejected += 1
            except StoreError as exc:  # the store cannot be written (disk full, I/O error)
                self._store_failed(exc)
                return

    def _store_failed(self, exc: StoreError) -> None:
        """Stop recording for good after a failed write; keep what was committed."""
        self.fault = str(exc)
        self.recording = False
        self._pending.clear()
        writer, self.writer = self.writer, None
        self.get_logger().error(
            f"recording stopped: {exc}. Check the store with `robot-rl data verify {self.out}`; "
            "free space and restart the recorder to record again"
        )
        try:
            writer.update_stats = False  # nothing more to write on a full disk
            writer.close()  # drops the episode in progress; releases the writer lock
        except (StoreError, OSError) as close_exc:
            self.get_logger().warning(f"closing the store after the failure: {close_exc} (the next open tidies it)")
        self._publish_status()

    def _step_at(self, stamp: int) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        obs: dict[str, np.ndarray] = {}
        for key, hist in self._history.items():
            # newest first: the latest message at or before the stamp is usually the last one
            latest = next(((s, v) for s, v in reversed(hist) if s <= stamp), None)
            if latest is None:
                self.dropped[f"{key} (missing)"] += 1
                return None
            s, v = latest
            # robot-node keys share the action's stamp (anything else is a drop); camera
            # nodes run on their own clock, so only a frame older than the stale limit counts
            if s != stamp and (key not in self.camera_keys or stamp - s > self.stale_ns):
                self.dropped[key] += 1
            obs[key] = v
        task = obs.pop("task", np.zeros(3))
        return obs, task

    # ------------------------------------------------------------------ services
    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.fault is not None:
            response.success, response.message = False, f"store failed, not recording: {self.fault}"
        elif self.writer is None:
            response.success, response.message = False, "waiting for robot_spec from the robot node"
        elif self.recording:
            response.success, response.message = False, ALREADY_RECORDING
        elif missing := [k for k, h in self._history.items() if not h]:
            # an episode cannot start before every source is live (e.g. a camera node still starting)
            response.success, response.message = False, f"waiting for first messages on {missing}"
        else:
            # after a reset, the episode starts at the reset observation; otherwise at the
            # latest observation seen (older actions belong to the time before the start)
            latest = max((h[-1][0] for h in self._history.values() if h), default=0)
            self._start_stamp = self._last_reset_stamp or latest
            self._pending.clear()
            self._intervened_steps = 0
            self._dropped_at_start = Counter(self.dropped)
            self.recording = True
            response.success, response.message = True, f"recording episode {self.writer.num_episodes}"
        self._publish_status()
        return response

    def _on_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not self.recording or self.writer is None:
            response.success, response.message = False, NOT_RECORDING
            return response
        self._assemble(force=True)
        if self.writer is None:  # the store failed while assembling the last steps
            response.success, response.message = False, f"store failed, episode not committed: {self.fault}"
            return response
        self.recording = False
        self._last_reset_stamp = 0
        if self.writer.steps_in_episode == 0:
            response.success, response.message = False, "no steps recorded; nothing committed"
            return response
        meta: dict[str, Any] = {"success": bool(request.data)}
        dropped = self.dropped - self._dropped_at_start
        if dropped:  # steps that held a key from an older message (per key): `robot-rl data report` flags them
            meta["dropped"] = dict(dropped)
        if self._intervened_steps:
            meta.update(source="intervention", interventions=self._intervened_steps)
        self._intervened_steps = 0
        try:
            index = self.writer.end_episode(meta)
        except SchemaError as exc:
            response.success, response.message = False, f"commit failed: {exc}"
            return response
        except StoreError as exc:
            self._store_failed(exc)
            response.success, response.message = False, f"commit failed: {exc}"
            return response
        response.success, response.message = True, f"committed episode {index} (success={bool(request.data)})"
        self.get_logger().info(response.message)
        self._publish_status()
        return response

    def _on_discard(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.writer is None:
            response.success, response.message = False, "no store open"
            return response
        self._pending.clear()
        self._intervened_steps = 0
        steps = self.writer.discard_episode()
        self.recording = False
        self._last_reset_stamp = 0
        response.success, response.message = True, f"discarded {steps} steps"
        return response

    def _publish_status(self) -> None:
        status: dict[str, Any] = {
            "recording": self.recording,
            "episodes": self.writer.num_episodes if self.writer else 0,
            "steps": self.writer.steps_in_episode if self.writer else 0,
            "steps_written": self._steps_written,
            "dropped": dict(self.dropped),
            "rejected": self.rejected,
            "fault": self.fault,
        }
        self._status_pub.publish(String(data=json.dumps(status)))


def checkpoint_hash(value: str) -> str:
    """The model sha256 of a checkpoint directory (read from its config.json), or ``value``
    itself when it is already a hex digest."""
    from pathlib import Path

    if Path(value).is_dir():
        digest = json.loads((Path(value) / "config.json").read_text())["model_sha256"]
    else:
        digest = value
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise ValueError(f"{value!r} is neither a checkpoint directory nor a sha256 digest")
    return digest


def resolve_calibrations(value: str) -> dict[str, str]:
    """``"intrinsics/wrist,handeye/wrist/v2"`` -> ``{"intrinsics/wrist": "intrinsics/wrist/v3", "handeye/wrist":
    "handeye/wrist/v2"}``: each reference checked to load from the calibration registry, latest version when unpinned."""
    out: dict[str, str] = {}
    for ref in filter(None, (v.strip() for v in value.split(","))):
        kind, id, _ = parse_ref(ref)
        out[f"{kind}/{id}"] = resolve_ref(ref)
    return out


def parse_cameras(value: str) -> dict[str, KeySpec]:
    """``"wrist:320x240,front:640x480"`` -> ``{"image.wrist": KeySpec((240, 320, 3), "uint8")}``."""
    out: dict[str, KeySpec] = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        name, _, size = item.partition(":")
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"camera {item!r}: expected NAME:WIDTHxHEIGHT") from None
        out[f"image.{name}"] = KeySpec((h, w, 3), "uint8")
    return out


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
