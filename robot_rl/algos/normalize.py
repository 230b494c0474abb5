"""Normalisation saved with every checkpoint.

Low-dim observations are standardised, ``(x - mean) / std``, with the std floored so a
constant element (a fixed joint, a flag) does not blow up. Actions are mapped from the
dataset's ``[min, max]`` per element to ``[-1, 1]`` so tanh-bounded actors cover exactly
the range the data covers; a constant action element maps to 0 and back to its value.
Images are scaled inside the encoder (uint8 -> [-0.5, 0.5]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STD_FLOOR = 1e-3
RANGE_FLOOR = 1e-6


@dataclass
class Normalizer:
    """Per-element statistics: ``state_*`` over the concatenated low-dim keys, ``action_*``."""

    state_mean: np.ndarray
    state_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray

    def __post_init__(self) -> None:
        for name in ("state_mean", "state_std", "action_low", "action_high"):
            value = np.asarray(getattr(self, name), dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"normalizer {name} has non-finite values: {value}")
            setattr(self, name, value)
        self.state_std = np.maximum(self.state_std, STD_FLOOR)
        if np.any(self.action_high < self.action_low):
            raise ValueError("normalizer action_high < action_low")

    @classmethod
    def fit(cls, state: np.ndarray, action: np.ndarray) -> Normalizer:
        """From rows ``state (N, Ds)`` and ``action (N, Da)``."""
        state = np.asarray(state, dtype=np.float64).reshape(len(state), -1)
        action = np.asarray(action, dtype=np.float64).reshape(len(action), -1)
        if len(action) == 0:
            raise ValueError("cannot fit a normalizer on zero rows")
        return cls(state.mean(0), state.std(0), action.min(0), action.max(0))

    @property
    def _center(self) -> np.ndarray:
        return (self.action_high + self.action_low) / 2

    @property
    def _half_range(self) -> np.ndarray:
        half = (self.action_high - self.action_low) / 2
        return np.where(half < RANGE_FLOOR, 1.0, half).astype(np.float32)

    def state(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.state_mean) / self.state_std).astype(np.float32)

    def action(self, a: np.ndarray) -> np.ndarray:
        """Raw -> [-1, 1]."""
        return ((np.asarray(a, dtype=np.float32) - self._center) / self._half_range).astype(np.float32)

    def unaction(self, a: np.ndarray) -> np.ndarray:
        """[-1, 1] -> raw units (clipped to the dataset's range)."""
        raw = np.asarray(a, dtype=np.float32) * self._half_range + self._center
        return np.clip(raw, self.action_low, self.action_high).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("state_mean", "state_std", "action_low", "action_high")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalizer:
        try:
            return cls(**{k: np.asarray(data[k], dtype=np.float32) for k in ("state_mean", "state_std", "action_low", "action_high")})
        except KeyError as exc:
            raise ValueError(f"normalizer is missing {exc}") from exc
