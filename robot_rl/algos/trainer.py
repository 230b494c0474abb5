"""The offline training loop: sample, update, log, evaluate, checkpoint, resume.

    result = fit(learner, data, run_dir, steps=20_000, evaluate_fn=my_eval)

Run directory::

    run_dir/
      checkpoint/      latest training checkpoint (weights + optimiser + RNG: resumable)
      best/            best evaluation so far (when evaluate_fn is given)
      metrics.csv      one row per log interval (and per evaluation)
      tb/              TensorBoard event files
      curves.png       training curves, written at the end

Determinism: on the CPU, the same seed and thread count give the same weights; a run
resumed from its checkpoint continues exactly as if it had not stopped (the sampler's
generator, torch's RNG and the optimisers are saved).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from robot_rl.algos.base import Learner
from robot_rl.algos.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.algos.data import OfflineData

log = logging.getLogger(__name__)

SHOWN = ("loss", "critic_loss", "actor_loss", "q")
"""Metrics on the progress bar, when the learner reports them (besides updates/s)."""

EvaluateFn = Callable[[Learner], dict[str, float]]
"""Takes the learner (use ``learner.policy()``), returns metrics incl. ``success_rate``."""


class MetricsLog:
    """Scalars to CSV and TensorBoard; PNG curves at the end.

    The CSV has one column per metric name ever seen; it is rewritten when a new name
    appears (metrics are few and rows are per log interval, so this stays small).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.csv_path = run_dir / "metrics.csv"
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = ["step"]
        if self.csv_path.is_file():  # resumed run: keep the history
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or ["step"])
                self.rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in reader]
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (a resumed run repeats the steps after its checkpoint)."""
        self.rows = [r for r in self.rows if r.get("step", 0) <= step]
        self._rewrite()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": float(step), **metrics}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)

    def _rewrite(self) -> None:
        with open(self.csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def plot(self, path: Path | None = None) -> Path | None:
        """One panel per metric against step; returns the PNG path (None without rows)."""
        names = [c for c in self.columns if c != "step"]
        if not self.rows or not names:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = min(3, len(names))
        nrows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            pts = [(r["step"], r[name]) for r in self.rows if name in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None)
            ax.set_title(name)
            ax.set_xlabel("update")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.tight_layout()
        out = path or self.run_dir / "curves.png"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out


@dataclass
class FitResult:
    steps: int
    final_metrics: dict[str, float]
    eval_history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    updates_per_second: float = 0.0
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    curves: Path | None = None


def fit(
    learner: Learner,
    data: OfflineData,
    run_dir: str | Path,
    steps: int,
    *,
    seed: int = 0,
    log_every: int = 200,
    save_every: int = 0,
    eval_every: int = 0,
    evaluate_fn: EvaluateFn | None = None,
    data_info: dict[str, Any] | None = None,
    resume: bool = False,
    tensorboard: bool = True,
    progress: bool = True,
) -> FitResult:
    """Train ``learner`` for ``steps`` updates in total (a resumed run counts from its
    checkpoint). ``save_every``/``eval_every`` of 0 mean: only at the end."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_dir, best_dir = run / "checkpoint", run / "best"
    generator = torch.Generator().manual_seed(seed)
    best: dict[str, float] | None = None
    eval_history: list[dict[str, float]] = []
    if resume:
        ckpt = load_checkpoint(ckpt_dir, device=learner.device, resume=True)
        if ckpt.config["algo"] != learner.name:
            raise ValueError(f"{ckpt_dir} was trained with {ckpt.config['algo']}, not {learner.name}")
        learner.load_state_dict(ckpt.learner.state_dict())
        assert ckpt.resume is not None and ckpt.resume_tensors is not None
        learner.load_optimizer_state(ckpt.resume_tensors, ckpt.resume["optimizers"])
        learner.aug_generator.set_state(ckpt.resume_tensors["rng.augment"])
        torch.set_rng_state(ckpt.resume_tensors["rng.torch"])
        generator.set_state(ckpt.resume_tensors["extra.sampler"])
        best = ckpt.resume.get("best")
        eval_history = list(ckpt.resume.get("eval_history", []))
        log.info("resuming %s at update %d of %d", learner.name, learner.steps, steps)
    metrics_log = MetricsLog(run, tensorboard=tensorboard)
    if resume:
        metrics_log.truncate(learner.steps)

    def save(path: Path, metrics: dict[str, float], with_resume: bool) -> Path:
        state = {"best": best, "eval_history": eval_history} if with_resume else None
        tensors = {"sampler": generator.get_state()} if with_resume else None
        return save_checkpoint(path, learner, data=data_info, metrics=metrics, resume=state, resume_tensors=tensors)

    def run_eval() -> dict[str, float]:
        nonlocal best
        assert evaluate_fn is not None
        t0 = time.perf_counter()
        result = evaluate_fn(learner)
        result = {f"eval/{k}": float(v) for k, v in result.items()}
        result["eval/seconds"] = time.perf_counter() - t0
        eval_history.append({"step": learner.steps, **result})
        metrics_log.log(learner.steps, result)
        rate = result.get("eval/success_rate", -math.inf)
        if best is None or rate > best.get("eval/success_rate", -math.inf):
            best = {"step": learner.steps, **result}
            save(best_dir, result, with_resume=False)
        return result

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = defaultdict(int)
    last: dict[str, float] = {}
    bs = learner.config.batch_size
    start_step = learner.steps
    t_window, n_window, total_time = time.perf_counter(), 0, 0.0
    bar = tqdm(total=steps, initial=start_step, desc=f"train {learner.name}", unit="upd", disable=not progress, dynamic_ncols=True)
    try:
        while learner.steps < steps:
            metrics = learner.update(data.sample(bs, generator))
            for k, v in metrics.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
                counts[k] += 1
            n_window += 1
            step = learner.steps
            if step % log_every == 0 or step == steps:
                now = time.perf_counter()
                ups = n_window / max(now - t_window, 1e-9)
                total_time += now - t_window
                last = {f"train/{k}": float(sums[k]) / counts[k] for k in sums}
                if any(not math.isfinite(v) for v in last.values()):
                    raise FloatingPointError(f"non-finite training metrics at update {step}: {last}; lower the learning rates")
                last["train/updates_per_s"] = ups
                metrics_log.log(step, last)
                sums.clear()
                counts.clear()
                bar.update(n_window)
                shown = [f"train/{k}" for k in SHOWN if f"train/{k}" in last][:3]
                bar.set_postfix({k.removeprefix("train/"): f"{last[k]:.3g}" for k in shown} | {"upd/s": f"{ups:.0f}"})
                t_window, n_window = time.perf_counter(), 0
            if evaluate_fn is not None and eval_every and step % eval_every == 0 and step != steps:
                result = run_eval()
                bar.write(f"update {step}: success {100 * result.get('eval/success_rate', 0):.0f}%  return {result.get('eval/mean_return', 0):.2f}")
                t_window = time.perf_counter()
            if save_every and step % save_every == 0 and step != steps:
                save(ckpt_dir, last, with_resume=True)
                t_window = time.perf_counter()
    finally:
        bar.close()
    if evaluate_fn is not None:
        last = {**last, **run_eval()}
    final_ckpt = save(ckpt_dir, last, with_resume=True)
    curves = metrics_log.plot()
    metrics_log.close()
    done = learner.steps - start_step
    return FitResult(
        steps=learner.steps,
        final_metrics=last,
        eval_history=eval_history,
        best=best,
        updates_per_second=done / total_time if total_time > 0 else 0.0,
        checkpoint=final_ckpt,
        best_checkpoint=best_dir if best is not None else None,
        curves=curves,
    )
