"""Learner node: trains on the actor's transitions and sends it weights (online fine-tuning).

    robot-rl-learner-node --ros-args -p checkpoint:=runs/lift_cql/checkpoint -p method:=rlpd -p online_steps:=5000 -p out:=runs/ft

It builds the same ``Finetuner`` as ``robot-rl finetune`` (robot_rl/algos/finetune.py),
adds every transition from ``transitions`` (published by the policy node with
``actor:=true``; interventions flagged), and trains in a worker thread: never more than
``utd`` updates per transition received (it may lag behind on a slow machine; the
achieved ratio is on ``~/status``). Every ``publish_every`` updates it sends the weights
on ``weights`` (safetensors bytes, ``UInt8MultiArray``). After ``online_steps``
transitions it saves ``out/checkpoint`` and ``out/learner.json`` and exits (the launch
file then shuts down).

Rewards follow the checkpoint's training data: ``success`` (1 on the step the task
reports success, which is terminal) or the twin's reward (``store``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.lifecycle import State, TransitionCallbackReturn
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

from robot_rl.ros.common import RELIABLE_QOS, RobotRLNode, json_param, run_node, transition_from_msg


class LearnerNode(RobotRLNode):
    def __init__(self) -> None:
        super().__init__("learner")
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("data", "")
        self.declare_parameter("method", "rlpd")
        self.declare_parameter("utd", 2)
        self.declare_parameter("batch_size", 256)
        self.declare_parameter("online_steps", 5000)
        self.declare_parameter("publish_every", 200)
        # -1: the method's default (robot_rl/algos/finetune.py)
        self.declare_parameter("offline_ratio", -1.0)
        self.declare_parameter("warmup_steps", -1)
        self.declare_parameter("offline_updates", -1)
        self.declare_parameter("learner_config", "")
        self.declare_parameter("out", "")
        self.declare_parameter("seed", 0)
        self.declare_parameter("threads", 1)
        self.finished = False
        self.exit_code = 0
        self.received = 0
        self.rejected = 0
        self.published = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: str | None = None

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        import torch

        from robot_rl.algos.checkpoint import CheckpointError, load_checkpoint
        from robot_rl.algos.finetune import FinetuneConfig, Finetuner, build_learner, offline_data
        from robot_rl.data import StoreError

        torch.set_num_threads(max(int(self.get_parameter("threads").value), 1))
        self.out = Path(self.get_parameter("out").value or "runs/finetune_ros")
        try:
            ckpt = load_checkpoint(self.get_parameter("checkpoint").value)
            config = FinetuneConfig(
                method=self.get_parameter("method").value,
                utd=int(self.get_parameter("utd").value),
                batch_size=int(self.get_parameter("batch_size").value),
                learner=json_param(self, "learner_config", {}),
                offline_ratio=None if float(self.get_parameter("offline_ratio").value) < 0 else float(self.get_parameter("offline_ratio").value),
                warmup_steps=None if int(self.get_parameter("warmup_steps").value) < 0 else int(self.get_parameter("warmup_steps").value),
                offline_updates=None if int(self.get_parameter("offline_updates").value) < 0 else int(self.get_parameter("offline_updates").value),
            )
            self.data_info = dict(ckpt.config.get("data", {}))
            offline = offline_data(ckpt.config, ckpt.learner, config, self.get_parameter("data").value or None)
            seed = int(self.get_parameter("seed").value)
            learner = build_learner(ckpt.learner, config, seed=seed)
            self.steps_budget = int(self.get_parameter("online_steps").value)
            self.tuner = Finetuner(learner, config, offline, seed=seed, online_steps=self.steps_budget)
        except (CheckpointError, StoreError, ValueError, KeyError, OSError) as exc:
            self.exit_code = 1
            return self.fail(f"cannot start the learner: {exc}")
        self.sparse = self.data_info.get("rewards", "success") == "success"
        spec = self.tuner.spec
        self.state_dim, self.action_dim = spec.state_dim, spec.action_dim
        self.create_subscription(Float64MultiArray, "transitions", self._on_transition, RELIABLE_QOS)
        self._weights_pub = self.create_publisher(UInt8MultiArray, "weights", RELIABLE_QOS)
        self._status_pub = self.create_publisher(String, "~/status", RELIABLE_QOS)
        self.get_logger().info(
            f"{config.method}: {learner.name} from {ckpt.config['algo']} ({ckpt.path}); UTD {config.utd}, "
            f"{self.steps_budget} online steps, weights every {self.get_parameter('publish_every').value} updates"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._status_timer = self.create_timer(0.5, self._publish_status)
        self._thread = threading.Thread(target=self._train, daemon=True, name="learner")
        self._thread.start()
        return super().on_activate(state)

    # ------------------------------------------------------------------ data
    def _on_transition(self, msg: Float64MultiArray) -> None:
        try:
            state, action, (reward, success, failure), next_state, intervention = transition_from_msg(msg, self.state_dim, self.action_dim)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected {exc}", throttle_duration_sec=5.0)
            return
        r = float(success > 0.5) if self.sparse else float(reward)
        try:
            with self._lock:
                if self.tuner.env_steps >= self.steps_budget:
                    return
                self.tuner.add_vectors(state, action, r, next_state, bool(success > 0.5 or failure > 0.5), "intervention" if intervention else "policy")
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected a transition: {exc}", throttle_duration_sec=5.0)
            return
        self.received += 1

    # ------------------------------------------------------------------ training
    def _train(self) -> None:
        tuner = self.tuner
        try:
            tuner.offline_phase()
            publish_every = int(self.get_parameter("publish_every").value)
            self._publish_weights()
            while not self._stop.is_set():
                with self._lock:  # the buffer is shared with the transition callback
                    steps = tuner.env_steps
                    batch = tuner.sample(tuner.config.batch_size) if tuner.pending_updates > 0 else None
                if batch is None:
                    if steps >= self.steps_budget:
                        break
                    time.sleep(0.005)
                    continue
                self.metrics = tuner.update(batch)
                if tuner.updates % publish_every == 0:
                    self._publish_weights()
        except Exception as exc:  # surfaced by the executor loop: the node exits non-zero
            import traceback

            self._error = f"training failed: {exc}\n{traceback.format_exc()}"
            return
        self._finish()

    def _publish_weights(self) -> None:
        from safetensors.torch import save

        data = save(self.tuner.learner.state_dict())
        msg = UInt8MultiArray()
        msg.data = data
        self._weights_pub.publish(msg)
        self.published += 1

    def _finish(self) -> None:
        from robot_rl.algos.checkpoint import save_checkpoint

        self._publish_weights()
        tuner = self.tuner
        ckpt = save_checkpoint(self.out / "checkpoint", tuner.learner, data={**self.data_info, "finetune": tuner.config.method, "via": "ros"})
        summary = {
            "method": tuner.config.method,
            "online_steps": tuner.env_steps,
            "updates": tuner.updates,
            "interventions": tuner.interventions,
            "weights_published": self.published,
            "rejected_transitions": self.rejected,
            "checkpoint": str(ckpt),
        }
        (self.out / "learner.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.get_logger().info(f"done: {tuner.env_steps} online steps, {tuner.updates} updates, {tuner.interventions} intervention steps -> {ckpt}")
        self.finished = True

    def _publish_status(self) -> None:
        if self._error is not None:
            self.get_logger().error(self._error)
            self.exit_code, self.finished = 1, True
            return
        tuner = self.tuner
        online = tuner.updates - tuner.config.resolved_offline_updates
        status: dict[str, Any] = {
            "online_steps": tuner.env_steps,
            "updates": tuner.updates,
            "achieved_utd": online / max(tuner.env_steps - tuner.config.resolved_warmup, 1),
            "interventions": tuner.interventions,
            "weights_published": self.published,
            "rejected_transitions": self.rejected,
            **{k: v for k, v in getattr(self, "metrics", {}).items() if k in ("q", "critic_loss", "actor_loss", "q_std")},
        }
        self._status_pub.publish(String(data=json.dumps(status)))

    def destroy_node(self) -> None:
        self._stop.set()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
