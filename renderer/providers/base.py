"""What providers return: plain data about a file they rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AudioClip:
    """Narration for one scene; ``path`` is None when the scene is silent."""

    path: Path | None
    duration: float
    provider: str


@dataclass(frozen=True)
class VisualClip:
    path: Path
    duration: float
    provider: str


def words(text: str) -> int:
    return len(text.split())
