"""What a conversion (export or import) did, for the summary table the CLI prints at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConversionSummary:
    """What a conversion did.

    Attributes:
        source, target: what was converted from / to (paths, with a repo id or format).
        episodes, steps: episodes and steps written.
        keys: ``(source key, target key, shape, dtype, how)`` per converted key; ``how``
            says whether the values are exact (``exact``), decoded from video, sliced out
            of a concatenated state, or a default.
        seconds: wall-clock time of the conversion (s).
        notes: what the user should know (keys skipped, lossy video, ignored metadata).
    """

    source: str
    target: str
    episodes: int = 0
    steps: int = 0
    keys: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
