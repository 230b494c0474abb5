"""The Learner contract: config dataclass + networks built once + ``update(batch)``.

    learner = make_learner("iql", spec, normalizer, config={"expectile": 0.8}, seed=0)
    metrics = learner.update(data.sample(learner.config.batch_size, gen))  # {name: float tensor}
    policy = learner.policy()             # robot_rl.policies.Policy over robot observations
    tensors = learner.state_dict()        # flat {name: tensor}: networks + optimisers

Each algorithm module defines ``<Algo>Config(LearnerConfig)`` (docstring: the loss and
the paper) and ``<Algo>(Learner)`` with ``build()`` (networks, optimisers) and
``update()``; it registers itself with ``@register_learner``.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.data import LearnerSpec
from robot_rl.algos.nets import ObsEncoder
from robot_rl.algos.normalize import Normalizer
from robot_rl.typecheck import check_value


@dataclass
class LearnerConfig:
    """Fields every learner has.

    ``limits`` maps a field to the interval its value must lie in (``"[1, inf)"``,
    ``"(0, 1]"``; each element of a list field); subclasses add their own, and
    :func:`check_limits` applies those of the whole class hierarchy.
    """

    limits: ClassVar[dict[str, str]] = {
        "batch_size": "[1, inf)",
        "hidden": "[1, inf)",
        "obs_horizon": "[1, inf)",
        "image_channels": "[1, inf)",
        "image_feature_dim": "[1, inf)",
        "augment_pad": "[0, inf)",
    }

    batch_size: int = 256
    """Transitions per update."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of every MLP (actor, critics, value)."""
    obs_horizon: int = 1
    """Frames stacked per observation (To)."""
    image_channels: int = 32
    """Channels of each camera's conv encoder."""
    image_feature_dim: int = 64
    """Output width of each camera's encoder."""
    augment_pad: int = 4
    """Random-shift augmentation of camera frames, in pixels (0: off)."""


# the limits most learners share, for their ``limits`` (learning rates, the discount, the
# target-network rate, the critic count)
OPTIMISER_LIMITS = {"actor_lr": "[0, inf)", "critic_lr": "[0, inf)"}
CRITIC_LIMITS = {"gamma": "[0, 1]", "tau": "[0, 1]", "n_critics": "[1, inf)"}


def _interval(text: str) -> tuple[float, float, bool, bool]:
    low, high = (part.strip() for part in text.strip()[1:-1].split(","))
    return float(low), float(high), text.strip()[0] == "[", text.strip()[-1] == "]"


def _describe_interval(text: str) -> str:
    low, high, closed_low, _ = _interval(text)
    if high == float("inf"):
        return f"{'>=' if closed_low else '>'} {low:g}"
    return f"in {text}"


def config_limits(cls: type[LearnerConfig]) -> dict[str, str]:
    """The limits of a config class and of every class it derives from (nearest wins)."""
    merged: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("limits", {}))
    return merged


def check_limits(name: str, config: LearnerConfig) -> None:
    """``ValueError`` naming the first field (``name.field``) outside its limit."""
    for key, interval in config_limits(type(config)).items():
        value = getattr(config, key)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        low, high, closed_low, closed_high = _interval(interval)
        for i, v in items:
            if v is None:  # optional fields: None means "derive it" (e.g. target_entropy)
                continue
            above = v >= low if closed_low else v > low
            below = v <= high if closed_high else v < high
            if not (above and below):
                where = f"{name}.{key}" + ("" if i is None else f"[{i}]")
                raise ValueError(f"{where} must be {_describe_interval(interval)}, got {v}")


_LEARNERS: dict[str, type[Learner]] = {}


def register_learner(name: str) -> Callable[[type[Learner]], type[Learner]]:
    def wrap(cls: type[Learner]) -> type[Learner]:
        cls.name = name
        _LEARNERS[name] = cls
        return cls

    return wrap


def available_learners() -> list[str]:
    return sorted(_LEARNERS)


def learner_class(name: str) -> type[Learner]:
    if name not in _LEARNERS:
        raise KeyError(f"unknown algorithm {name!r}; available: {available_learners()}")
    return _LEARNERS[name]


def make_config(name: str, overrides: dict[str, Any] | None = None) -> LearnerConfig:
    """The algorithm's config with ``overrides`` (unknown fields are an error).

    Values are checked against the field types (``ValueError`` naming the field: a number,
    an integer, true/false, a string, a list of integers; numbers must be finite) and
    against the config's ``limits`` (e.g. ``gamma`` in [0, 1], learning rates >= 0).
    """
    cls = learner_class(name).config_class
    overrides = dict(overrides or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(overrides) - set(known))
    if unknown:
        raise ValueError(f"{name} has no config field(s) {unknown}; fields: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in overrides.items():
        default = getattr(cls(), key)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                value = float(value) if isinstance(default, float) else int(value)
            except ValueError:
                pass
        try:
            overrides[key] = check_value(f"{name}.{key}", value, hints[key])
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
    try:
        config = cls(**overrides)
    except TypeError as exc:
        raise ValueError(f"{name}: invalid config: {exc}") from exc
    check_limits(name, config)
    return config


def make_learner(
    name: str,
    spec: LearnerSpec,
    normalizer: Normalizer,
    config: LearnerConfig | dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Learner:
    if not isinstance(config, LearnerConfig):
        config = make_config(name, config)
    return learner_class(name)(config, spec, normalizer, seed=seed, device=device)


class Learner(ABC):
    """Base of every algorithm. Subclasses set ``config_class`` and implement
    ``build``, ``update`` and ``act``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[LearnerConfig]] = LearnerConfig
    uses_next: ClassVar[bool] = True
    """False: the learner needs no s' (behaviour cloning keeps truncated last steps)."""

    def __init__(self, config: LearnerConfig, spec: LearnerSpec, normalizer: Normalizer, seed: int = 0, device: str | torch.device = "cpu") -> None:
        check_limits(self.name, config)  # configs built directly, not through make_config
        if config.obs_horizon != spec.obs_horizon:
            raise ValueError(f"config obs_horizon {config.obs_horizon} != spec obs_horizon {spec.obs_horizon}")
        self.config, self.spec, self.normalizer = config, spec, normalizer
        self.device = torch.device(device)
        self.seed = seed
        torch.manual_seed(seed)
        self.aug_generator = torch.Generator().manual_seed(seed + 1)
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.steps = 0
        self.build()
        self.nets.to(self.device)

    # ------------------------------------------------------------- subclass API
    @abstractmethod
    def build(self) -> None:
        """Create ``self.nets[...]`` and ``self.optimizers[...]``."""

    @abstractmethod
    def update(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One gradient step on a batch (see ``robot_rl.algos.data``); returns scalar metrics."""

    @abstractmethod
    def act(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """Action for inference, normalised: ``(B, To, Ds)`` -> ``(B, Da)``, or an action
        chunk ``(B, T, Da)`` for learners with ``action_horizon`` T > 1."""

    @property
    def action_horizon(self) -> int:
        """Actions predicted per inference (T): ``act`` returns ``(B, T, Da)`` when T > 1
        and batches then carry ``action_chunk``."""
        return int(getattr(self.config, "action_horizon", 1))

    @property
    def exec_horizon(self) -> int:
        """Actions of each predicted chunk executed before predicting again (Ta <= T)."""
        return int(getattr(self.config, "exec_horizon", 1))

    # ----------------------------------------------------------------- helpers
    def encoder(self) -> ObsEncoder:
        c = self.config
        return ObsEncoder(self.spec.state_dim, self.spec.image_shapes, c.obs_horizon, c.image_channels, c.image_feature_dim)

    def adam(self, modules: list[nn.Module], lr: float) -> torch.optim.Optimizer:
        params = [p for m in modules for p in m.parameters()]
        return torch.optim.Adam(params, lr=lr, foreach=True)

    def encode(self, encoder: ObsEncoder, batch: dict[str, Any], next_: bool = False, augment: bool = True) -> torch.Tensor:
        prefix = "next_" if next_ else ""
        pad = self.config.augment_pad if augment else 0
        return encoder(batch[f"{prefix}state"], batch.get(f"{prefix}images"), pad, self.aug_generator)

    @staticmethod
    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # ------------------------------------------------------------ inference
    def policy(self) -> Any:
        from robot_rl.policies.learned import LearnedPolicy

        return LearnedPolicy(self)

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Network weights, flat: ``<net>.<param>``."""
        return {f"{k}": v.detach().cpu().contiguous() for k, v in self.nets.state_dict().items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        expected = self.nets.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"weights do not match {self.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for k, v in tensors.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise ValueError(f"weight {k}: checkpoint shape {tuple(v.shape)} != network shape {tuple(expected[k].shape)}")
        self.nets.load_state_dict(tensors)

    def optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Optimiser state as (tensors, JSON): tensors ``optim.<name>.<param index>.<field>``."""
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"steps": self.steps}
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            meta[name] = {"param_groups": sd["param_groups"], "state": {}}
            for pid, st in sd["state"].items():
                fields = {}
                for field_name, value in st.items():
                    if torch.is_tensor(value):
                        tensors[f"optim.{name}.{pid}.{field_name}"] = value.detach().cpu().contiguous()
                        fields[field_name] = "tensor"
                    else:
                        fields[field_name] = value
                meta[name]["state"][str(pid)] = fields
        return tensors, meta

    def load_optimizer_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            if name not in meta:
                raise ValueError(f"resume state has no optimiser {name!r}")
            state = {}
            for pid, fields in meta[name]["state"].items():
                state[int(pid)] = {
                    f: (tensors[f"optim.{name}.{pid}.{f}"].to(self.device) if v == "tensor" else v) for f, v in fields.items()
                }
            opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})
        self.steps = int(meta.get("steps", 0))

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.nets.parameters()))


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``|tau - 1(diff < 0)| * diff^2``, IQL's asymmetric L2 (mean over all elements)."""
    weight = torch.where(diff > 0, expectile, 1 - expectile)
    return (weight * diff.pow(2)).mean()
