"""Robots by name: ``make_robot("sim_lift", fps=20)``.

A robot registers itself with ``@register_robot(ConfigClass)`` where its class is
defined (``ConfigClass.name`` is the registry name). Packages whose robots import heavy
or optional dependencies (MuJoCo, a vendor SDK) declare them lazily in their own
``__init__`` with ``register_lazy(name, "module:Class")``, so listing robots imports
nothing heavy and a missing extra is reported only when that robot is made.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from robot_rl.robots.base import Robot, RobotConfig
from robot_rl.typecheck import check_value

_ROBOTS: dict[str, tuple[type[RobotConfig], type[Robot]]] = {}
_LAZY: dict[str, str] = {}
# Packages that declare robots; importing them runs their register_lazy() calls.
_PROVIDERS = ("robot_rl.robots.mock", "robot_rl.sim", "robot_rl.drivers")

R = TypeVar("R", bound=type[Robot])


def register_robot(config_cls: type[RobotConfig]) -> Callable[[R], R]:
    """Class decorator: register a Robot class under ``config_cls.name``."""
    if not config_cls.name:
        raise ValueError(f"{config_cls.__name__}.name must be set to register a robot")

    def wrap(robot_cls: R) -> R:
        existing = _ROBOTS.get(config_cls.name)
        if existing is not None and existing[1] is not robot_cls:
            raise ValueError(f"robot {config_cls.name!r} is already registered by {existing[1].__qualname__}")
        _ROBOTS[config_cls.name] = (config_cls, robot_cls)
        return robot_cls

    return wrap


def register_lazy(name: str, target: str) -> None:
    """Declare robot ``name`` as ``"package.module:Class"``, imported on first use."""
    _LAZY.setdefault(name, target)


def _load_providers() -> None:
    for module in _PROVIDERS:
        importlib.import_module(module)


def available_robots() -> list[str]:
    _load_providers()
    return sorted(set(_ROBOTS) | set(_LAZY))


def robot_classes(name: str) -> tuple[type[RobotConfig], type[Robot]]:
    _load_providers()
    if name not in _ROBOTS and name in _LAZY:
        module, _, _cls = _LAZY[name].partition(":")
        importlib.import_module(module)  # its @register_robot runs; ImportError names the extra
    if name not in _ROBOTS:
        raise KeyError(f"unknown robot {name!r}; available: {', '.join(available_robots())}")
    return _ROBOTS[name]


def make_robot(name: str, **overrides: Any) -> Robot:
    """Build robot ``name`` from its config class with ``overrides`` applied. Lists (from JSON:
    ROS parameters, a recorded ``robot_spec``) become tuples, as configs hold sequences.

    Raises ``KeyError`` (unknown robot), ``TypeError`` (unknown field, wrong type) or
    ``ValueError`` (a value out of range, limits the safety filter rejects), each naming
    the robot and the field; ``ImportError`` when the robot's extra is not installed.
    """
    config = make_robot_config(name, **overrides)
    _, robot_cls = robot_classes(name)
    return robot_cls(config)


def make_robot_config(name: str, **overrides: Any) -> RobotConfig:
    """The config of robot ``name`` with ``overrides`` checked against the field types and
    applied, and its safety limits checked (see :func:`make_robot`); builds no robot."""
    config_cls, _ = robot_classes(name)
    fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(str(k) for k in set(overrides) - fields)
    if unknown:
        raise TypeError(f"robot {name!r} has no config field(s) {unknown}; fields: {sorted(fields)}")
    hints = typing.get_type_hints(config_cls)
    values = {k: check_value(f"robot {name!r} config field {k!r}", v, hints.get(k, Any)) for k, v in overrides.items()}
    try:
        config = config_cls(**values)
        if not config.fps > 0:
            raise ValueError(f"config field 'fps' must be positive, got {config.fps!r}")
        config.safety_limits()  # the limits every command passes must be valid for this config
    except TypeError as exc:
        raise TypeError(f"robot {name!r}: invalid config: {exc}") from exc
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"robot {name!r}: invalid config: {exc}") from exc
    return config


