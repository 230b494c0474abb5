"""Recorder faults: random SIGKILLs of the recorder node while it records on the Lift twin.

    .venv/bin/python benchmarks/reliability/recorder_faults.py --kills 50

One robot node (sim_lift, audit log on) runs throughout, driven by random commands;
the recorder is started, records short episodes (start / stop from this script), and is
SIGKILLed at a random moment — mid-episode, mid-commit or between episodes. After each
kill: the store must open; every episode committed before is byte-identical (sha256 of
its arrays and record); every newly committed row is finite, time-ordered and equal to
an action the robot node really sent at that stamp; ``recover(salvage=True)`` keeps the
killed episode's flushed rows, and the rows lost (steps the robot sent during the
episode that are not in the store) must stay within one flush interval.
Writes benchmarks/out/reliability/recorder_faults.json and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _ros import Probe, read_audit, start, stop  # noqa: E402


def episode_hash(store, i: int) -> str:
    h = hashlib.sha256(json.dumps(store.record(i), sort_keys=True).encode())
    for key, arr in sorted(store.episode(i).items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def bad_rows(store, i: int, audit: dict[int, np.ndarray]) -> int:
    ep = store.episode(i)
    bad = 0
    stamps = np.array(sorted(audit))
    prev = -np.inf
    for t, action in zip(ep["timestamp"], ep["action"], strict=True):
        k = int(np.argmin(np.abs(stamps - t * 1e9)))
        ok = abs(stamps[k] - t * 1e9) < 2000 and np.array_equal(action, audit[int(stamps[k])].astype(action.dtype)) and t > prev
        bad += not ok
        prev = t
    for key, arr in ep.items():
        if arr.dtype.kind == "f":
            bad += int((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1).sum())
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--flush-every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/reliability/recorder_faults"))
    args = ap.parse_args()
    from std_srvs.srv import SetBool, Trigger

    from robot_rl.data import EpisodeStore
    from robot_rl.data.recovery import recover
    from robot_rl.data.verify import verify
    from robot_rl.ros.common import ALREADY_RECORDING, command_msg

    args.out.mkdir(parents=True, exist_ok=True)
    store_path, audit_path, log = args.out / "rec.zarr", args.out / "audit.txt", args.out / "nodes.log"
    for p in (audit_path, log):
        p.unlink(missing_ok=True)
    if store_path.exists():
        import shutil

        shutil.rmtree(store_path)
    rng = np.random.default_rng(args.seed)
    robot = start("robot_rl.ros.robot_node", "robot", "robot:=sim_lift", f"audit_log:={audit_path}", log=log)
    probe = Probe()
    probe.wait_for(lambda: probe.spec, 60, "robot_spec")
    names = probe.spec["action_spec"]["names"]
    probe.node.create_timer(0.05, lambda: probe.commands.publish(command_msg(np.r_[rng.uniform(-0.5, 0.5, len(names) - 1), rng.choice([-1.0, 1.0])], names)))
    known: dict[int, str] = {}
    cycles = []
    rec = None
    t_start = time.monotonic()
    try:
        for kill in range(args.kills):
            rec = start("robot_rl.ros.recorder_node", "recorder", f"out:={store_path}", "task:=lift", "source:=scripted", f"flush_every:={args.flush_every}", log=log)
            pending = None  # (kind, future)
            in_episode, episode_start, commits = False, 0.0, 0
            ep_len = int(rng.integers(10, 80))
            start_c = probe.node.create_client(Trigger, "recorder/start")
            stop_c = probe.node.create_client(SetBool, "recorder/stop")
            if not start_c.wait_for_service(timeout_sec=60):
                raise RuntimeError("the recorder did not come up (see nodes.log)")
            kill_at = None
            refusals, cycle_notes = [], []
            first_start_sent = None  # when this recorder was first asked to start
            give_up = time.monotonic() + 60
            while True:
                if time.monotonic() > give_up and kill_at is None:
                    raise RuntimeError(f"the recorder never started an episode: {refusals[-3:]} (see nodes.log)")
                probe.spin(0.01)
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    break
                if pending is not None:
                    kind, fut, deadline = pending
                    if not fut.done():
                        # a request sent before the new recorder's service matched is lost
                        # (the killed one lingers in discovery until its lease ends): retry
                        if now > deadline and kind == "start" and kill_at is None:
                            pending = None
                        continue
                    pending = None
                    res = fut.result()
                    if kind == "start" and not res.success and res.message == ALREADY_RECORDING:
                        # an earlier start went through but its reply never came back (a
                        # response sent before the server matched this client's reader is
                        # dropped): the episode runs since that request at the earliest, so
                        # counting steps from then can only overstate the loss
                        in_episode, episode_start = True, first_start_sent
                        kill_at = kill_at or time.monotonic() + float(rng.uniform(0.0, 6.0))
                        cycle_notes.append("start reply lost")
                        continue
                    if kind == "start" and not res.success:
                        refusals.append(res.message)
                        probe.spin(0.1)
                    if kind == "start" and res.success:
                        in_episode, episode_start = True, time.monotonic()
                        kill_at = kill_at or episode_start + float(rng.uniform(0.0, 6.0))
                    elif kind == "stop":
                        in_episode = False
                        commits += bool(res.success)
                        ep_len = int(rng.integers(10, 80))
                    continue
                if not in_episode:
                    first_start_sent = first_start_sent or now
                    pending = ("start", start_c.call_async(Trigger.Request()), now + 2.0)
                elif sum(1 for t, _, _ in probe.sent if t > episode_start) >= ep_len:
                    pending = ("stop", stop_c.call_async(SetBool.Request(data=bool(rng.integers(2)))), now + 2.0)
            stop(rec, sig=signal.SIGKILL)
            killed_at = time.monotonic()
            probe.node.destroy_client(start_c)
            probe.node.destroy_client(stop_c)
            seen = sum(1 for t, _, _ in probe.sent if episode_start < t <= killed_at) if in_episode else 0
            cycle = {"kill": kill, "during": pending[0] if pending else ("episode" if in_episode else "idle"), "steps_seen": seen, "notes": cycle_notes}
            t0 = time.monotonic()
            try:
                store = EpisodeStore(store_path)
                cycle["opened"] = True
            except Exception as exc:  # noqa: BLE001 - a benchmark records every failure
                cycle.update(opened=False, error=repr(exc))
                cycles.append(cycle)
                continue
            cycle["open_s"] = time.monotonic() - t0
            cycle["changed_committed"] = sum(episode_hash(store, i) != h for i, h in known.items())
            audit = read_audit(audit_path)
            new = [i for i in range(len(store)) if i not in known]
            cycle["new_committed"] = len(new)
            cycle["bad_rows"] = sum(bad_rows(store, i, audit) for i in new)
            for i in new:
                known[i] = episode_hash(store, i)
            report = recover(store_path, salvage=True)
            cycle["salvaged_rows"] = report.salvaged_rows
            # a stop in flight when the kill came may or may not have committed
            if in_episode or (pending and pending[0] == "stop"):
                committed_now = new and pending and pending[0] == "stop"
                cycle["lost_rows"] = 0 if committed_now else max(0, seen - report.salvaged_rows)
            store = EpisodeStore(store_path)
            for i in range(len(store)):
                if i not in known:
                    known[i] = episode_hash(store, i)
                    cycle["bad_rows"] += bad_rows(store, i, audit)
            cycles.append(cycle)
            print(
                f"kill {kill + 1}/{args.kills} during {cycle['during']}: opened, {cycle['new_committed']} new episodes, "
                f"{cycle['changed_committed']} changed, {cycle['bad_rows']} bad rows, salvaged {report.salvaged_rows}"
                + (f", lost {cycle['lost_rows']} of {seen}" if "lost_rows" in cycle else ""),
                flush=True,
            )
    finally:
        probe.close()
        stop(robot, *([rec] if rec is not None else []))
    final = verify(store_path)
    store = EpisodeStore(store_path)
    lost = [c["lost_rows"] for c in cycles if "lost_rows" in c]
    summary = {
        "kills": len(cycles),
        "stores_opened": sum(c.get("opened", False) for c in cycles),
        "bad_rows": sum(c.get("bad_rows", 0) for c in cycles),
        "committed_changed": sum(c.get("changed_committed", 0) for c in cycles),
        "episodes": len(store),
        "aborted_salvaged": sum(r.get("status") == "aborted" for r in store.records),
        "kills_mid_episode": len(lost),
        "lost_rows_max": max(lost, default=0),
        "lost_rows_median": float(np.median(lost)) if lost else 0,
        "flush_every": args.flush_every,
        "open_s_max": max(c.get("open_s", 0) for c in cycles),
        "verify_ok": final.ok,
        "minutes": (time.monotonic() - t_start) / 60,
        "during": {k: sum(c["during"] == k for c in cycles) for k in ("episode", "start", "stop", "idle")},
        "start_replies_lost": sum("start reply lost" in c["notes"] for c in cycles),
    }
    (args.out.parent / "recorder_faults.json").write_text(json.dumps({"summary": summary, "cycles": cycles}, indent=1))
    print(json.dumps(summary, indent=1))
    ok = summary["stores_opened"] == summary["kills"] and summary["bad_rows"] == 0 and summary["committed_changed"] == 0 and final.ok
    ok = ok and summary["lost_rows_max"] <= args.flush_every + 2  # + the step being assembled and one in flight
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
