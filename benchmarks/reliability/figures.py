"""Figures for RESULTS.md from the reliability benchmarks' JSON outputs.

    .venv/bin/python benchmarks/reliability/figures.py   # -> benchmarks/figures/reliability.png

Panels: the robot's hold latency after policy faults per run (with the timeout + period
bound), recorder rows lost per SIGKILL against the flush interval, and each node's
resident memory over the soak.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("benchmarks/out/reliability"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/figures/reliability.png"))
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))

    ax = axes[0]
    runs = [(f, json.loads(f.read_text())) for f in sorted(args.runs.glob("policy_faults*.json"))]
    for f, run in runs:
        lat = sorted(x["hold_latency_s"] for x in run["faults"] if x["hold_latency_s"] is not None)
        missing = sum(x["hold_latency_s"] is None for x in run["faults"])
        label = f"{f.stem.removeprefix('policy_faults').strip('_') or 'run'} ({len(lat)} holds" + (f", {missing} not seen" if missing else "") + ")"
        ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], drawstyle="steps-post", label=label)
    if runs:
        bound = runs[0][1]["summary"]["bound_s"]
        ax.axvline(bound, color="k", ls="--", lw=1, label=f"timeout + period ({bound:.2f} s)")
    ax.set(xlabel="last command -> robot's first hold (s)", ylabel="fraction of faults", title="Policy SIGSTOP/SIGKILL: robot holds")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    rec = args.runs / "recorder_faults.json"
    if rec.exists():
        data = json.loads(rec.read_text())
        lost = [c["lost_rows"] for c in data["cycles"] if "lost_rows" in c]
        seen = [c["steps_seen"] for c in data["cycles"] if "lost_rows" in c]
        ax.scatter(seen, lost, s=14)
        ax.axhline(data["summary"]["flush_every"], color="k", ls="--", lw=1, label=f"flush interval ({data['summary']['flush_every']} steps)")
        ax.set(xlabel="steps sent in the killed episode", ylabel="steps lost (not salvaged)", title=f"Recorder SIGKILL x{data['summary']['kills']}: rows lost")
        ax.legend(fontsize=8)

    ax = axes[2]
    soak = args.runs / "soak.json"
    if soak.exists():
        data = json.loads(soak.read_text())
        samples = data["samples"]
        for node in samples[0]["rss_mb"]:
            pts = [(s["t"] / 60, s["rss_mb"][node]) for s in samples if node in s["rss_mb"]]
            ax.plot(*zip(*pts, strict=True), label=node)
        before = args.runs / "soak_before_fix.json"  # the run that found the mock robot's leak
        if before.exists():
            pts = [(x["t"] / 60, x["rss_mb"]["robot"]) for x in json.loads(before.read_text())["samples"] if "robot" in x["rss_mb"]]
            ax.plot(*zip(*pts, strict=True), ls="--", color="grey", label="robot, before bounding the mock's history")
        ax.set(xlabel="minutes", ylabel="resident memory (MB)", title=f"Soak: robot at {data['summary']['rate_target_hz']:g} Hz + camera + recorder")
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
