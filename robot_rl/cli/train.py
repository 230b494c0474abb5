"""``robot-rl train`` and ``robot-rl eval``: offline learning on an episode store, and
evaluation of any checkpoint on the sim twin."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from robot_rl.cli._args import arg
from robot_rl.cli._table import format_table
from robot_rl.cli.sim import TASKS, parse_overrides

log = logging.getLogger(__name__)

ALGOS = ("bc", "iql", "cql", "td3bc", "rebrac", "diffusion", "edp", "saq_iql", "saq_cql", "saq_brac", "ensemble_sac")


def parse_learner_overrides(items: list[str]) -> dict[str, Any]:
    """``["expectile=0.8", "hidden=[512,512]"]`` -> ``{"expectile": 0.8, "hidden": [512, 512]}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. expectile=0.8 or hidden=[512,512]")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return out


def load_yaml_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:  # FileNotFoundError, IsADirectoryError, PermissionError...
        raise ValueError(f"{path}: cannot read the config: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of learner config fields, got {type(data).__name__}")
    return data


def sim_evaluator(task: str, spec: Any, episodes: int, seed: int, overrides: list[str] | None = None) -> tuple[Any, Any]:
    """An ``EvaluateFn`` on the sim twin, and the env it keeps open (close it when done).

    The robot is built with the configuration recorded in the training data (cameras,
    image size, action mode) when the task is the robot the data came from, plus
    ``overrides``; its specs must match the checkpoint's.
    """
    from robot_rl.envs import RobotEnv, evaluate
    from robot_rl.robots import SimRobot, available_robots, make_robot

    name = TASKS.get(task, task)
    if name not in available_robots():
        raise KeyError(f"unknown task {task!r}; tasks: {sorted(TASKS)}; robots: {available_robots()}")
    config: dict[str, Any] = {}
    if spec.robot.get("name") == name:
        config = dict(spec.robot.get("config", {}))
    config.update(parse_overrides(name, overrides or []))
    robot = make_robot(name, **config)
    if not isinstance(robot, SimRobot):
        raise TypeError(f"{name} is not a simulated robot")
    spec.check_robot(robot.observation_spec, robot.action_spec)
    env = RobotEnv(robot)

    def run(learner: Any) -> dict[str, float]:
        return evaluate(env, learner.policy(), episodes, seed=seed, progress=False).summary()

    return run, env


@dataclass
class TrainConfig:
    """Train a policy offline on an episode store (BC, IQL, CQL, TD3+BC, ReBRAC, Diffusion Policy, EDP, SAQ).

    Learner settings come from the algorithm's defaults, then --config (YAML), then --set.
    Writes RUN/checkpoint (resumable), RUN/best (with --eval-task), RUN/metrics.csv,
    RUN/tb (TensorBoard), RUN/curves.png and RUN/summary.md + summary.json (the final table).
    Example: robot-rl train --algo iql --data lift.zarr --steps 20000 --eval-task lift --eval-every 5000 --out runs/lift_iql
    """

    algo: str = arg(help="learning algorithm", choices=ALGOS)
    data: Path = arg(help="episode store to train on")
    out: Path | None = arg(None, help="run directory (default runs/<store name>_<algo>)")
    steps: int = arg(20000, help="gradient updates in total (a resumed run counts from its checkpoint)")
    batch_size: int = arg(0, help="transitions per update (0: the algorithm's default)")
    seed: int = arg(0, help="seed of the networks and the sampler")
    threads: int = arg(2, help="torch CPU threads (results are reproducible for a given seed and thread count; 0: torch's default)")
    device: str = arg("cpu", help="cpu, cuda or auto", choices=("cpu", "cuda", "auto"))
    obs_keys: list[str] = arg([], help="observation keys to use, e.g. joint_pos eef_pos image.wrist (default: all)")
    obs_horizon: int = arg(1, help="frames stacked per observation")
    rewards: str = arg("success", help="'success' (sparse, from episode success flags), 'store' (recorded rewards) or a reward key")
    reward_scale: float = arg(1.0, help="rewards are multiplied by this ...")
    reward_bias: float = arg(0.0, help="... and shifted by this")
    config: Path | None = arg(None, help="YAML file of learner config fields")
    set: list[str] = arg([], help="learner config overrides FIELD=VALUE, e.g. expectile=0.8 hidden=[512,512]")
    eval_task: str = arg("", help=f"evaluate on this sim task ({', '.join(TASKS)}) during and after training")
    eval_every: int = arg(0, help="updates between evaluations (0: only at the end)")
    eval_episodes: int = arg(10, help="episodes per evaluation")
    eval_seed: int = arg(1000, help="seed of the first evaluation episode (fixed across evaluations)")
    eval_set: list[str] = arg([], help="robot config overrides for evaluation, e.g. cameras=[] when the policy uses no camera")
    save_every: int = arg(5000, help="updates between resumable checkpoints (0: only at the end)")
    log_every: int = arg(200, help="updates between metric rows")
    resume: bool = arg(False, help="continue RUN/checkpoint (same data, algorithm and config)")
    tensorboard: bool = arg(True, help="write TensorBoard event files")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu)")
    return name


def train(cfg: TrainConfig) -> int:
    import torch

    from robot_rl.algos import LearnerSpec, OfflineData, learner_class, make_config, make_learner
    from robot_rl.algos.checkpoint import read_config
    from robot_rl.algos.normalize import Normalizer
    from robot_rl.algos.trainer import fit
    from robot_rl.data import EpisodeStore

    if cfg.steps <= 0 or cfg.log_every <= 0:
        raise ValueError("--steps and --log-every must be positive")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    store = EpisodeStore(cfg.data)
    run = cfg.out or Path("runs") / f"{Path(cfg.data).name.removesuffix('.zarr')}_{cfg.algo}"
    overrides = {**load_yaml_config(cfg.config), **parse_learner_overrides(cfg.set)}
    if cfg.batch_size:
        overrides["batch_size"] = cfg.batch_size
    overrides.setdefault("obs_horizon", cfg.obs_horizon)
    normalizer = None
    if cfg.resume:
        previous = read_config(run / "checkpoint")
        if previous["algo"] != cfg.algo:
            raise ValueError(f"{run}/checkpoint was trained with {previous['algo']}; resume with --algo {previous['algo']}")
        if previous["data"].get("fingerprint") != store.fingerprint():
            raise ValueError(f"{cfg.data} is not the store {run}/checkpoint was trained on (its content fingerprint differs)")
        overrides = previous["learner_config"]
        normalizer = Normalizer.from_json(previous["normalizer"])
        prev_spec = LearnerSpec.from_json(previous["spec"])
        obs_keys: list[str] = prev_spec.state_keys + prev_spec.image_keys
    else:
        if run.joinpath("checkpoint", "config.json").exists():
            raise ValueError(f"{run} already holds a training run: pass --resume to continue it or --out for a new run")
        obs_keys = cfg.obs_keys
    learner_config = make_config(cfg.algo, overrides)
    spec = LearnerSpec.from_schema(store.schema, obs_keys, learner_config.obs_horizon)
    cls = learner_class(cfg.algo)
    data = OfflineData(
        store, spec, cfg.rewards, cfg.reward_scale, cfg.reward_bias, with_next=cls.uses_next,
        normalizer=normalizer, device=device, progress=True,
        action_horizon=int(getattr(learner_config, "action_horizon", 1)),
    )  # fmt: skip
    learner = make_learner(cfg.algo, spec, data.normalizer, learner_config, seed=cfg.seed, device=device)
    data_info = {
        "store": str(Path(cfg.data).resolve()),
        "fingerprint": store.fingerprint(),
        "episodes": data.n_episodes,
        "steps": data.n_steps,
        "transitions": len(data),
        "success_rate": data.success_rate,
        "rewards": cfg.rewards,
        "reward_scale": cfg.reward_scale,
        "reward_bias": cfg.reward_bias,
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "train_config.json").write_text(json.dumps({**asdict(cfg), "learner": asdict(learner_config)}, indent=2, default=str))
    print(
        f"{cfg.algo}: {learner.n_parameters():,} parameters; {data.n_episodes} episodes, {len(data):,} transitions "
        f"({100 * data.success_rate:.0f}% successful); obs {spec.state_keys + spec.image_keys}; device {device}"
    )
    evaluate_fn, env = None, None
    if cfg.eval_task:
        evaluate_fn, env = sim_evaluator(cfg.eval_task, spec, cfg.eval_episodes, cfg.eval_seed, cfg.eval_set)
    try:
        result = fit(
            learner, data, run, cfg.steps, seed=cfg.seed, log_every=cfg.log_every, save_every=cfg.save_every,
            eval_every=cfg.eval_every, evaluate_fn=evaluate_fn, data_info=data_info, resume=cfg.resume,
            tensorboard=cfg.tensorboard,
        )  # fmt: skip
    finally:
        if env is not None:
            env.close()
    rows = [["updates", result.steps], ["updates/s", f"{result.updates_per_second:.1f}"]]
    rows += [[k.removeprefix("train/"), f"{v:.4g}"] for k, v in result.final_metrics.items() if k.startswith("train/") and k != "train/updates_per_s"]
    if result.eval_history:
        final = result.eval_history[-1]
        rows.append([f"success ({cfg.eval_task}, final)", _rate(final)])
        assert result.best is not None
        rows.append([f"success (best, update {int(result.best['step'])})", _rate(result.best)])
    print(format_table(["", cfg.algo], rows))
    files = {"checkpoint": result.checkpoint, "best": result.best_checkpoint, "curves": result.curves}
    files["metrics"] = run / "metrics.csv"
    numbers = {
        "algo": cfg.algo, "data": data_info, "updates": result.steps, "updates_per_second": result.updates_per_second,
        "final_metrics": result.final_metrics, "eval_history": result.eval_history, "best": result.best,
    }  # fmt: skip
    title = f"robot-rl train: {cfg.algo} on {Path(cfg.data).name}"
    summary = write_run_summary(run, title, ["", cfg.algo], rows, files, numbers)
    print(f"checkpoint: {result.checkpoint}")
    if result.best_checkpoint:
        print(f"best:       {result.best_checkpoint}")
    if result.curves:
        print(f"curves:     {result.curves}")
    print(f"summary:    {summary}")
    return 0


def write_run_summary(
    run: Path,
    title: str,
    headers: list[str],
    rows: list[list[Any]],
    files: dict[str, Path | None],
    data: dict[str, Any],
) -> Path:
    """Write RUN/summary.md (the table printed at the end, plus links to the run's files) and
    RUN/summary.json (the same numbers as data); returns the markdown path."""
    cells = [[str(c).replace("|", "/") for c in r] for r in rows]
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    present = {k: Path(v) for k, v in files.items() if v is not None and Path(v).exists()}
    rel = {k: v.relative_to(run) if v.is_relative_to(run) else v for k, v in present.items()}  # links work from RUN
    lines += [""] + [f"- {k}: [{v}]({v})" for k, v in rel.items()]
    lines += [""] + [f"![{k}]({v})" for k, v in rel.items() if v.suffix == ".png"]
    (run / "summary.md").write_text("\n".join(lines) + "\n")
    table = {"headers": headers, "rows": cells}
    payload = {"title": title, "table": table, "files": {k: str(v) for k, v in present.items()}, **data}
    (run / "summary.json").write_text(json.dumps(payload, indent=2, default=str))
    return run / "summary.md"


def _rate(m: dict[str, float]) -> str:
    return f"{100 * m['eval/success_rate']:.1f}% (95% CI {100 * m['eval/ci95_low']:.0f}-{100 * m['eval/ci95_high']:.0f}%, n={int(m['eval/episodes'])})"


@dataclass
class CheckpointEvalConfig:
    """Evaluate a checkpoint on the sim twin: success rate with a 95% CI, return, length, videos.

    Episodes use seeds SEED, SEED+1, ...; the robot is built as the training data recorded it.
    Example: robot-rl eval runs/lift_bc/checkpoint --task lift --episodes 50 --videos 2
    """

    checkpoint: Path = arg(help="checkpoint directory", positional=True)
    task: str = arg("", help="sim task (default: the robot the training data came from)")
    episodes: int = arg(50, help="episodes to run")
    seed: int = arg(1000, help="seed of the first episode")
    videos: int = arg(0, help="MP4s of the first N episodes, -1: all (needs a camera, e.g. --set cameras=[agentview])")
    out: Path | None = arg(None, help="directory for eval.json and videos (default CHECKPOINT/eval)")
    set: list[str] = arg([], help="robot config overrides FIELD=VALUE")
    device: str = arg("cpu", help="cpu, cuda or auto", choices=("cpu", "cuda", "auto"))


def evaluate_checkpoint(cfg: CheckpointEvalConfig) -> int:
    from robot_rl.algos.checkpoint import load_checkpoint
    from robot_rl.envs import evaluate

    ckpt = load_checkpoint(cfg.checkpoint, device=resolve_device(cfg.device))
    spec = ckpt.learner.spec
    task = cfg.task or spec.robot.get("name", "")
    if not task:
        raise ValueError("the checkpoint does not record its robot: pass --task")
    _, env = sim_evaluator(task, spec, 0, cfg.seed, cfg.set)
    out = cfg.out or Path(cfg.checkpoint) / "eval"
    try:
        n_videos = cfg.episodes if cfg.videos < 0 else cfg.videos
        policy = ckpt.learner.policy()
        result = evaluate(env, policy, cfg.episodes, seed=cfg.seed, video_dir=out / "videos", n_videos=n_videos)
    finally:
        env.close()
    print(f"{TASKS.get(task, task)} / {ckpt.config['algo']} checkpoint at update {ckpt.step} ({cfg.checkpoint})")
    print(result.table())
    for v in result.videos:
        print(f"video: {v}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"task": TASKS.get(task, task), "checkpoint": str(cfg.checkpoint), "algo": ckpt.config["algo"], "seed": cfg.seed, **result.summary()}
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    return 0
