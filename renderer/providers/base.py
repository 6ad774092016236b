"""What providers return: plain data about a file they rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AudioClip:
    """Narration for one scene; ``path`` is None when the scene is silent."""

    path: Path | None
    duration: float
    provider: str
    # per-character timing when the provider gives it (ElevenLabs /with-timestamps):
    # {"characters": [...], "character_start_times_seconds": [...], "character_end_times_seconds": [...]}
    alignment: dict | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class VisualClip:
    path: Path
    duration: float
    provider: str


def words(text: str) -> int:
    return len(text.split())
