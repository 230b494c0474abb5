"""Joint-offset (zero) calibration for servo arms.

Put the arm in a known reference pose (usually the zero pose drawn in its manual:
every joint at 0 rad, or a pose set by a jig), read the raw joint positions a few
times, and keep per joint::

    calibrated = sign * (raw - offset)          raw = sign * calibrated + offset

so that the reference pose reads as its nominal angles. ``sign`` (+1 / -1) flips a
joint whose servo counts the other way round than the robot's convention.

    robot-rl calibrate joints --robot so101_follower --robot-config '{"port": "/dev/ttyACM0"}' --id so101
    robot-rl calibrate joints --readings zero_pose.yaml --id koch     # readings: {names: [...], readings: [[...], ...]}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_rl.calibration.camera_info import CalibrationError


@dataclass(frozen=True)
class JointCalibration:
    """Per-joint zero offsets and directions.

    Attributes:
        names: joint names, in the order of the robot's ``joint_pos``.
        offsets: (J,) raw reading at calibrated zero (rad, or the raw unit of the servo).
        signs: (J,) +1 or -1.
        reference: (J,) the nominal pose the readings were taken at (rad).
        spread: (J,) standard deviation of the raw readings (how still the arm was).
    """

    names: tuple[str, ...]
    offsets: tuple[float, ...]
    signs: tuple[int, ...]
    reference: tuple[float, ...] = ()
    spread: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.offsets) != n or len(self.signs) != n:
            raise CalibrationError(
                f"joint calibration: {n} names, {len(self.offsets)} offsets, {len(self.signs)} signs; they must match"
            )
        if any(s not in (1, -1) for s in self.signs):
            raise CalibrationError(f"joint calibration: signs must be +1 or -1, got {list(self.signs)}")
        if not np.all(np.isfinite(self.offsets)):
            raise CalibrationError(f"joint calibration: offsets must be finite, got {list(self.offsets)}")

    def to_calibrated(self, raw: np.ndarray) -> np.ndarray:
        """(..., J) raw readings -> (..., J) calibrated joint positions."""
        raw = self._check(raw)
        return np.asarray(self.signs) * (raw - np.asarray(self.offsets))

    def to_raw(self, calibrated: np.ndarray) -> np.ndarray:
        """(..., J) calibrated joint positions (e.g. a command) -> (..., J) raw servo values."""
        calibrated = self._check(calibrated)
        return np.asarray(self.signs) * calibrated + np.asarray(self.offsets)

    def _check(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1:] != (len(self.names),):
            raise CalibrationError(
                f"joint calibration is for {len(self.names)} joints {list(self.names)}, got shape {values.shape}"
            )
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "offsets": [float(v) for v in self.offsets],
            "signs": [int(v) for v in self.signs],
            "reference": [float(v) for v in self.reference],
            "spread": [float(v) for v in self.spread],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "joint calibration") -> JointCalibration:
        try:
            return cls(
                names=tuple(str(n) for n in doc["names"]),
                offsets=tuple(float(v) for v in doc["offsets"]),
                signs=tuple(int(v) for v in doc["signs"]),
                reference=tuple(float(v) for v in doc.get("reference") or ()),
                spread=tuple(float(v) for v in doc.get("spread") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise CalibrationError(f"{where}: {exc}") from exc
            raise CalibrationError(f"{where}: malformed joint calibration ({exc!r}); needs names, offsets, signs") from exc


def calibrate_joint_offsets(
    readings: np.ndarray,
    reference: Sequence[float] | None = None,
    signs: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    max_spread: float = 0.02,
) -> JointCalibration:
    """Offsets from raw readings taken at a known reference pose.

    Args:
        readings: (J,) or (S, J) raw joint positions, S samples of the arm held still.
        reference: (J,) the nominal pose (rad); default all zeros.
        signs: (J,) +1 / -1; default all +1.
        names: joint names; default ``joint_0``...
        max_spread: largest standard deviation of a joint's samples (raw units) before the
            readings count as "the arm moved" and are refused.
    """
    r = np.atleast_2d(np.asarray(readings, dtype=np.float64))
    if r.ndim != 2 or r.shape[1] == 0 or not np.all(np.isfinite(r)):
        raise CalibrationError(f"joint readings must be (J,) or (samples, J) finite numbers, got shape {np.shape(readings)}")
    j = r.shape[1]
    ref = np.zeros(j) if reference is None else np.asarray(reference, dtype=np.float64)
    sg = np.ones(j, dtype=int) if signs is None else np.asarray(signs, dtype=int)
    nm = tuple(names) if names is not None else tuple(f"joint_{i}" for i in range(j))
    if ref.shape != (j,) or sg.shape != (j,) or len(nm) != j:
        raise CalibrationError(f"{j} joints read, but reference has {ref.size}, signs {sg.size}, names {len(nm)} entries")
    spread = r.std(axis=0)
    moving = [f"{nm[i]} ({spread[i]:.4f})" for i in range(j) if spread[i] > max_spread]
    if moving:
        raise CalibrationError(
            f"the arm moved while reading the reference pose: spread {', '.join(moving)} > {max_spread}; "
            "hold it still and retry"
        )
    raw = r.mean(axis=0)
    offsets = raw - sg * ref
    return JointCalibration(nm, tuple(offsets), tuple(int(s) for s in sg), tuple(ref), tuple(spread))


def read_joint_positions(
    robot: Any, samples: int = 10, period: float = 0.05, key: str = "joint_pos"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(S, J) raw ``key`` observations from a connected Robot (``period`` s apart) and the
    joint names from its observation spec."""
    spec = robot.observation_spec.get(key)
    if spec is None:
        name = getattr(robot.config, "name", "?")
        raise CalibrationError(f"robot {name!r} has no {key!r} observation; it has {sorted(robot.observation_spec)}")
    rows = []
    for i in range(samples):
        rows.append(np.asarray(robot.get_observation()[key], dtype=np.float64).reshape(-1))
        if i + 1 < samples:
            time.sleep(period)
    names = tuple(spec.names) if spec.names else tuple(f"joint_{i}" for i in range(rows[0].size))
    return np.stack(rows), names


def load_readings(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(S, J) readings (and names, when given) from a YAML/JSON file
    ``{names: [...], readings: [[...], ...]}`` (or ``readings: [...]`` for one sample)."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read joint readings: {exc}") from exc
    if not isinstance(doc, dict) or "readings" not in doc:
        raise CalibrationError(f"{path}: expected a mapping with 'readings' (a list of joint values, or a list of such lists)")
    try:
        readings = np.atleast_2d(np.asarray(doc["readings"], dtype=np.float64))
    except (TypeError, ValueError):
        raise CalibrationError(f"{path}: 'readings' must be numbers (one list per sample, equal lengths)") from None
    names = doc.get("names")
    if names is not None and (not isinstance(names, list) or len(names) != readings.shape[-1]):
        raise CalibrationError(f"{path}: 'names' must list one name per joint ({readings.shape[-1]})")
    return readings, tuple(str(n) for n in names) if names is not None else None


def load_joint_calibration(ref: str, root: str | os.PathLike[str] | None = None) -> JointCalibration:
    """The joint calibration ``ref``: an id (latest version), ``ID/vN`` or ``joints/ID[/vN]``,
    from the calibration registry (``robot-rl calibrate joints --id ID``). CalibrationError
    naming the file when it is missing or malformed."""
    from robot_rl.calibration.registry import load_calibration, parse_ref

    text = ref.strip().strip("/")
    kind, id, version = parse_ref(text if text.startswith("joints/") else f"joints/{text}")
    doc = load_calibration(kind, id, version, root)
    return JointCalibration.from_dict(doc, where=doc["path"])
