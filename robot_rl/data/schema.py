"""Per-key specs of an episode store and validation of every step against them.

A store's schema is a mapping ``key -> KeySpec`` plus the control rate and the robot
description. Keys follow DESIGN.md: ``obs.<name>`` for observations (``obs.image.<cam>``
for uint8 HWC camera frames), ``action``, ``reward``, ``done``, ``timestamp`` and any
extras. ``reward``, ``done`` and ``timestamp`` are always present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.data.errors import SchemaError

SCHEMA_VERSION = 1
"""Version of the on-disk layout; bumped on any incompatible change."""

_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

_BUILTIN_DEFAULTS: dict[str, Any] = {"reward": 0.0, "done": False}


@dataclass(frozen=True)
class KeySpec:
    """Spec of one per-step key.

    Attributes:
        shape: shape of one step's value, e.g. ``(7,)`` for joint positions or
            ``(224, 224, 3)`` for an RGB frame. ``()`` for scalars.
        dtype: numpy dtype name (``float32``, ``float64``, ``uint8``, ``bool``, ``int64``...).
        units: free text, e.g. ``rad``, ``m/s``, ``s``.
        names: optional per-element names for 1-D keys (joint names, axis names).
        low, high: optional per-element limits (documentation and normalisation hints;
            the safety filter takes its limits from the robot config, never from here).
    """

    shape: tuple[int, ...]
    dtype: str
    units: str = ""
    names: tuple[str, ...] | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(f"shape {self.shape!r} must be a sequence of integers") from exc
        try:
            dt = np.dtype(self.dtype)
        except (TypeError, ValueError, SyntaxError) as exc:
            raise SchemaError(f"unknown dtype {self.dtype!r}") from exc
        if dt.kind not in "biuf":
            raise SchemaError(f"dtype {self.dtype!r} is not supported (use bool, int, uint or float)")
        object.__setattr__(self, "dtype", dt.name)
        if any(s <= 0 for s in self.shape):
            raise SchemaError(f"shape {self.shape} must have positive dimensions")
        for attr in ("names", "low", "high"):
            value = getattr(self, attr)
            if value is None:
                continue
            value = tuple(value)
            object.__setattr__(self, attr, value)
            if len(self.shape) != 1 or len(value) != self.shape[0]:
                raise SchemaError(f"{attr} has {len(value)} entries but shape is {self.shape}")

    @property
    def is_image(self) -> bool:
        """uint8 HWC frames with 1, 3 or 4 channels are stored one frame per chunk."""
        return self.dtype == "uint8" and len(self.shape) == 3 and self.shape[-1] in (1, 3, 4)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def describe(self) -> str:
        return f"shape {self.shape} {self.dtype}" + (f" [{self.units}]" if self.units else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype, "units": self.units}
        for attr in ("names", "low", "high"):
            if getattr(self, attr) is not None:
                out[attr] = list(getattr(self, attr))
        return out

    @classmethod
    def from_json(cls, data: Any) -> KeySpec:
        """A spec from its JSON form; :class:`SchemaError` saying which field is wrong."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a key spec must be a JSON object, got {_short(data)}")
        missing = [f for f in ("shape", "dtype") if f not in data]
        if missing:
            raise SchemaError(f"key spec {_short(data)} has no {' or '.join(missing)}")
        shape, dtype, units = data["shape"], data["dtype"], data.get("units", "")
        if not isinstance(shape, (list, tuple)) or not all(_is_int(s) for s in shape):
            raise SchemaError(f"shape must be a list of integers, got {_short(shape)}")
        if not isinstance(dtype, str):
            raise SchemaError(f"dtype must be a string, got {_short(dtype)}")
        if not isinstance(units, str):
            raise SchemaError(f"units must be a string, got {_short(units)}")
        optional: dict[str, tuple[Any, ...] | None] = {}
        for attr, ok, what in (("names", _is_str, "strings"), ("low", _is_real, "numbers"), ("high", _is_real, "numbers")):
            value = data.get(attr)
            if value is not None and (not isinstance(value, (list, tuple)) or not all(ok(v) for v in value)):
                raise SchemaError(f"{attr} must be a list of {what}, got {_short(value)}")
            optional[attr] = tuple(value) if value is not None else None
        try:
            return cls(shape=tuple(shape), dtype=dtype, units=units, **optional)
        except SchemaError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(f"malformed key spec {_short(data)}: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _builtin_specs() -> dict[str, KeySpec]:
    return {
        "reward": KeySpec((), "float32"),
        "done": KeySpec((), "bool"),
        "timestamp": KeySpec((), "float64", units="s"),
    }


@dataclass(frozen=True)
class StoreSchema:
    """What every step of a store holds, and how the data was recorded.

    Build one with :meth:`build`, which adds the always-present ``reward``, ``done``
    and ``timestamp`` keys::

        schema = StoreSchema.build(
            obs={"joint_pos": KeySpec((7,), "float32", "rad"),
                 "image.wrist": KeySpec((96, 96, 3), "uint8")},
            action=KeySpec((7,), "float32", "rad"),
            fps=20.0,
        )
    """

    keys: Mapping[str, KeySpec]
    fps: float
    robot: Mapping[str, Any] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = dict(self.keys)
        for name, spec in keys.items():
            if not isinstance(name, str) or not _KEY_RE.match(name):
                raise SchemaError(f"invalid key name {name!r}: use letters, digits, '_', '.', '-'")
            if not isinstance(spec, KeySpec):
                raise SchemaError(f"key {name!r}: expected a KeySpec, got {type(spec).__name__}")
        for required in ("action", "reward", "done", "timestamp"):
            if required not in keys:
                raise SchemaError(f"schema is missing the required key {required!r}")
        if not any(k.startswith("obs.") for k in keys):
            raise SchemaError("schema has no observation key (obs.<name>)")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise SchemaError(f"fps must be a positive number, got {self.fps!r}")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "fps", float(self.fps))
        for attr in ("robot", "calibration"):  # stored as JSON: normalise (tuples -> lists) and check
            try:
                object.__setattr__(self, attr, json.loads(json.dumps(dict(getattr(self, attr)), allow_nan=False)))
            except (TypeError, ValueError) as exc:
                raise SchemaError(f"schema {attr} description is not JSON-serialisable: {exc}") from exc

    @classmethod
    def build(
        cls,
        obs: Mapping[str, KeySpec],
        action: KeySpec,
        fps: float,
        extras: Mapping[str, KeySpec] | None = None,
        robot: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
    ) -> StoreSchema:
        keys = {f"obs.{name}": spec for name, spec in obs.items()}
        keys["action"] = action
        keys.update(_builtin_specs())
        for name, spec in (extras or {}).items():
            if name in keys:
                raise SchemaError(f"extra key {name!r} clashes with a built-in key")
            keys[name] = spec
        return cls(keys=keys, fps=fps, robot=dict(robot or {}), calibration=dict(calibration or {}))

    @property
    def obs_keys(self) -> list[str]:
        return [k for k in self.keys if k.startswith("obs.")]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, s in self.keys.items() if s.is_image]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fps": self.fps,
            "keys": {k: s.to_json() for k, s in self.keys.items()},
            "robot": dict(self.robot),
            "calibration": dict(self.calibration),
        }

    @classmethod
    def from_json(cls, data: Any) -> StoreSchema:
        """A schema from its JSON form (a store's attributes); :class:`SchemaError` naming
        the field or key that is wrong."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a store schema must be a JSON object, got {_short(data)}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise SchemaError(
                f"store schema version {_short(version)} is not supported (this robot_rl reads {SCHEMA_VERSION})"
            )
        raw_keys, fps = data.get("keys"), data.get("fps")
        if not isinstance(raw_keys, Mapping):
            raise SchemaError(f"store schema 'keys' must be a JSON object, got {_short(raw_keys)}")
        if not _is_real(fps):
            raise SchemaError(f"store schema 'fps' must be a number, got {_short(fps)}")
        for attr in ("robot", "calibration"):
            if data.get(attr) is not None and not isinstance(data[attr], Mapping):
                raise SchemaError(f"store schema '{attr}' must be a JSON object, got {_short(data[attr])}")
        keys = {}
        for k, v in raw_keys.items():
            try:
                keys[str(k)] = KeySpec.from_json(v)
            except SchemaError as exc:
                raise SchemaError(f"key {str(k)!r}: {exc}") from exc
        try:
            return cls(
                keys=keys,
                fps=float(fps),
                robot=dict(data.get("robot") or {}),
                calibration=dict(data.get("calibration") or {}),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"malformed store schema: {exc}") from exc

    def validate_step(self, step: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check one step against the schema and return it as arrays of the spec dtype.

        Missing ``reward``/``done`` take their defaults (0.0, False); every other key is
        required. Raises :class:`SchemaError` naming the key and the expected spec on a
        missing or unknown key, a wrong shape, an unsafe dtype or a non-finite float.
        """
        unknown = sorted(set(step) - set(self.keys))
        if unknown:
            raise SchemaError(f"unknown key(s) {unknown}; the store has {sorted(self.keys)}")
        out: dict[str, np.ndarray] = {}
        for key, spec in self.keys.items():
            if key in step and step[key] is not None:
                value = step[key]
            elif key in _BUILTIN_DEFAULTS:
                value = _BUILTIN_DEFAULTS[key]
            else:
                raise SchemaError(f"step is missing key {key!r} (expected {spec.describe()})")
            out[key] = _coerce(key, value, spec)
        return out


def _coerce(key: str, value: Any, spec: KeySpec) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"key {key!r}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    if arr.shape != spec.shape:
        raise SchemaError(f"key {key!r}: got shape {arr.shape}, expected {spec.describe()}")
    target = spec.np_dtype
    src = arr.dtype
    if src.kind not in "biuf":
        raise SchemaError(f"key {key!r}: got dtype {src}, expected {spec.describe()}")
    if target.kind == "f":
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(np.asarray(arr, dtype=np.float64)).ravel())
            raise SchemaError(
                f"key {key!r}: non-finite value {arr.ravel()[bad[0]]} at flat index {int(bad[0])} "
                f"({len(bad)} non-finite in this step)"
            )
        return np.array(arr, dtype=target)
    if target.kind == "b":
        if src.kind == "b":
            return np.array(arr, dtype=target)
        if src.kind in "iu" and np.all((arr == 0) | (arr == 1)):
            return np.array(arr, dtype=target)
        raise SchemaError(f"key {key!r}: got {src} values that are not 0/1, expected {spec.describe()}")
    # integer targets: only integers/bools whose values fit
    if src.kind not in "biu":
        raise SchemaError(f"key {key!r}: got dtype {src}, expected {spec.describe()} (no float->int casts)")
    info = np.iinfo(target)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise SchemaError(f"key {key!r}: values outside the {target} range, expected {spec.describe()}")
    return np.array(arr, dtype=target)
