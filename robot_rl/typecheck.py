"""Checking config values against their dataclass field annotations (robot configs,
learner configs): a wrong type is a ``TypeError``, a non-finite number a ``ValueError``,
each naming the field; lists become tuples for tuple fields."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def check_value(where: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the type annotation ``tp`` of a config field (bool, int,
    float, str, Path, tuples, lists, optionals); lists become tuples for tuple fields.

    Raises ``TypeError`` for a wrong type, ``ValueError`` for a non-finite number; both
    start with ``where`` (e.g. "robot 'mock_arm' config field 'fps'"). Other annotations
    are not checked.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return check_value(where, value, options[0])
        for option in options:
            try:
                return check_value(where, value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{where} must be {_describe(tp)}, got {_short(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {_short(value)}")
        return value
    if tp is int:
        if not _is_int(value):
            raise TypeError(f"{where} must be an integer, got {_short(value)}")
        return value
    if tp is float:
        if not (_is_int(value) or isinstance(value, float)):
            raise TypeError(f"{where} must be a number, got {_short(value)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f"{where} must be a finite number, got {_short(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {_short(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise TypeError(f"{where} must be a path, got {_short(value)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be {_describe(tp)}, got {_short(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise TypeError(f"{where} must be {_describe(tp)}, got {_short(value)}")
        item_types = [args[0] if not args or args[-1] is Ellipsis or origin is list else args[i] for i in range(len(value))] if args else [Any] * len(value)
        items = [check_value(f"{where}[{i}]", v, t) for i, (v, t) in enumerate(zip(value, item_types, strict=True))]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a mapping, got {_short(value)}")
        return value
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if tp in names:
        return names[tp]
    if origin in (tuple, list) and args:
        inner = _describe(args[0]).removeprefix("a ").removeprefix("an ")
        return f"a list of {inner}s" if args[-1] is Ellipsis or origin is list else f"a list of {len(args)} {inner}s"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null" for a in args)
    return getattr(tp, "__name__", str(tp))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
