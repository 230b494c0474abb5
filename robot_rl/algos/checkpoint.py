"""Checkpoints: a directory of JSON + safetensors; loading never unpickles.

    checkpoint/
      config.json         format, algorithm + its config, learner spec (keys with shapes,
                          units, names), normalizer stats, horizons, training data
                          (store, fingerprint, episodes, reward scheme), metrics, step,
                          seed, code version, sha256 of model.safetensors
      model.safetensors   network weights (targets included)
      resume.safetensors  optimiser tensors + torch RNG state   (training checkpoints)
      resume.json         optimiser hyper-parameters, step, data-sampler RNG state

Files are written to temporary names and renamed, config.json last, so a killed
process leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import robot_rl
from robot_rl.algos.base import Learner, learner_class, make_config
from robot_rl.algos.data import LearnerSpec
from robot_rl.algos.normalize import Normalizer

FORMAT = "robot_rl.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or from an incompatible version."""


# Formats that unpickle on load (torch.save, pickle, joblib, ...): named in errors, never read.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


@dataclass
class Checkpoint:
    learner: Learner
    config: dict[str, Any]
    path: Path
    resume: dict[str, Any] | None = None
    resume_tensors: dict[str, torch.Tensor] | None = None

    @property
    def step(self) -> int:
        return int(self.config.get("step", 0))


def code_version() -> str:
    version = robot_rl.__version__
    try:
        root = Path(robot_rl.__file__).resolve().parent.parent
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode == 0 and rev.stdout.strip():
            version += f"+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    path: str | os.PathLike[str],
    learner: Learner,
    *,
    data: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    resume: dict[str, Any] | None = None,
    resume_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``learner`` to the directory ``path``. ``resume`` (trainer state as JSON) and
    ``resume_tensors`` (e.g. the sampler's generator state) also save the optimisers and
    RNG states so training can continue exactly."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model.safetensors"
    _save_tensors(model, learner.state_dict())
    if resume is not None:
        tensors, optim_meta = learner.optimizer_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.augment"] = learner.aug_generator.get_state()
        tensors.update({f"extra.{k}": v for k, v in (resume_tensors or {}).items()})
        _save_tensors(out / "resume.safetensors", tensors)
        _write_json(out / "resume.json", {"optimizers": optim_meta, **resume})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": learner.name,
        "learner_config": dataclasses.asdict(learner.config),
        "spec": learner.spec.to_json(),
        "normalizer": learner.normalizer.to_json(),
        "horizons": {"obs": learner.spec.obs_horizon, "action": learner.action_horizon, "execute": learner.exec_horizon},
        "step": learner.steps,
        "seed": learner.seed,
        "data": data or {},
        "metrics": metrics or {},
        "code_version": code_version(),
        "model_sha256": _sha256(model),
    }
    _write_json(out / "config.json", config)
    return out


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    folder = Path(path)
    file = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint directory")
    if not file.is_file():
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" ({', '.join(pickled)}: pickle-based files are never loaded)" if pickled else ""
        raise CheckpointError(f"{folder} has no config.json: not a robot_rl checkpoint (or an interrupted save){hint}")
    try:
        config = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a robot_rl checkpoint config")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: checkpoint format {config.get('format_version')} is not supported (this robot_rl reads {FORMAT_VERSION})")
    return config


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu", resume: bool = False) -> Checkpoint:
    """Rebuild the learner from ``config.json`` and load its weights (safetensors only).

    The model file's sha256 must match the one recorded; ``resume`` also loads the
    optimiser and RNG state written by a training checkpoint.
    """
    folder = Path(path)
    config = read_config(folder)
    model = folder / "model.safetensors"
    if not model.is_file():
        raise CheckpointError(f"{folder} has no model.safetensors")
    if _sha256(model) != config.get("model_sha256"):
        raise CheckpointError(f"{model} does not match the sha256 in config.json: the file is corrupt or from another checkpoint")
    try:
        spec = LearnerSpec.from_json(config["spec"])
        normalizer = Normalizer.from_json(config["normalizer"])
        learner_config = make_config(config["algo"], _lists(config["learner_config"]))
        learner = learner_class(config["algo"])(learner_config, spec, normalizer, seed=int(config.get("seed", 0)), device=device)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}/config.json is incomplete or malformed: {exc}") from exc
    try:
        tensors = load_file(str(model))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{model} cannot be read: {exc}{_not_safetensors(model)}") from exc
    check_weights(tensors)
    try:
        learner.load_state_dict(tensors)
    except ValueError as exc:
        raise CheckpointError(f"{model}: {exc}") from exc
    learner.steps = int(config.get("step", 0))
    ckpt = Checkpoint(learner=learner, config=config, path=folder)
    if resume:
        rfile, rjson = folder / "resume.safetensors", folder / "resume.json"
        if not (rfile.is_file() and rjson.is_file()):
            raise CheckpointError(f"{folder} is not a training checkpoint (no resume.safetensors / resume.json): cannot resume from it")
        try:
            ckpt.resume_tensors = load_file(str(rfile))
            ckpt.resume = json.loads(rjson.read_text())
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{folder}: resume state cannot be read: {exc}{_not_safetensors(rfile)}") from exc
        learner.load_optimizer_state(ckpt.resume_tensors, ckpt.resume["optimizers"])
        torch.set_rng_state(ckpt.resume_tensors["rng.torch"])
        learner.aug_generator.set_state(ckpt.resume_tensors["rng.augment"])
    return ckpt


def check_weights(tensors: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming the first tensor with NaN or infinite values: such weights
    would command garbage (a policy node refuses them before it sends anything)."""
    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"weight {name!r} has {bad} non-finite value(s) of {value.numel()}: refusing these weights")


def _not_safetensors(path: Path) -> str:
    """A hint for an error message when ``path`` holds a pickle or a torch.save archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return ""
    if head.startswith(b"\x80"):
        kind = "a Python pickle"
    elif head.startswith(b"PK\x03\x04"):
        kind = "a zip archive (the torch.save format, which holds a pickle)"
    else:
        return ""
    return f" (the file is {kind}: robot_rl reads weights only as safetensors and never unpickles)"


def _lists(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
