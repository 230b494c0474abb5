"""One entry point = one config dataclass + one function; this turns the dataclass into
argparse options, with each field's ``help`` as its ``--help`` line."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

MISSING = dataclasses.MISSING


def arg(
    default: Any = MISSING,
    *,
    help: str,
    positional: bool = False,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
) -> Any:
    """A config field with its ``--help`` text (positional fields have no default; ``flag`` overrides the
    option name, e.g. ``--from`` for a field that cannot be called ``from``)."""
    meta = {"help": help, "positional": positional, "choices": choices, "flag": flag}
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _unwrap_optional(hints[f.name])
        meta = f.metadata
        help_text = meta.get("help", "").replace("%", "%%")  # argparse %-formats help
        kwargs: dict[str, Any] = {"help": help_text}
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if typing.get_origin(tp) in (list, tuple):
            (inner,) = typing.get_args(tp)[:1]
            kwargs.update(nargs="*", type=inner)
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str, Path):
            kwargs["type"] = tp
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported CLI type {tp!r}")
        if meta.get("positional"):
            if kwargs.get("nargs") == "*":
                kwargs["default"] = f.default_factory() if f.default_factory is not MISSING else []
            parser.add_argument(f.name, metavar=f.name.upper(), **kwargs)
            continue
        if f.default is not MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not MISSING:
            kwargs["default"] = f.default_factory()
        else:
            kwargs["required"] = True
        if "default" in kwargs and kwargs.get("action") is None and kwargs["default"] is not None:
            kwargs["help"] = f"{help_text} (default: {kwargs['default']})"
        parser.add_argument(meta.get("flag") or f"--{f.name.replace('_', '-')}", dest=f.name, **kwargs)


def dataclass_from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
