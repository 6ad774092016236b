"""What providers return: plain data about a file they rendered, as stage outputs (who made it: ``provider``,
given by keyword)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from renderer.config import LimitsConfig
from renderer.engine.output import StageOutput
from renderer.media.loudness import Loudness

SPEAKER_GAP_S = 0.25  # pause where the speaker changes
# what a call given no timeout may take (the stages give the config's): the schema's limits
LOCAL_TIMEOUT_S = LimitsConfig().ffmpeg_timeout_s  # an offline provider's call, as a tool run
SCENE_TIMEOUT_S = LimitsConfig().scene_timeout_s  # a cloud provider's scene: every request, retry and poll


class ProviderConfigError(ValueError):
    """A provider's settings are wrong (a folder that is not there, a bad value): not an outage, so the script
    stops with the fix instead of falling back."""


@dataclass(frozen=True)
class AudioClip(StageOutput):
    """Narration for one scene; ``path`` is None when the scene is silent."""

    path: Path | None
    duration: float
    # per-character timing when the provider gives it (ElevenLabs /with-timestamps):
    # {"characters": [...], "character_start_times_seconds": [...], "character_end_times_seconds": [...]}
    alignment: dict | None = field(default=None, compare=False, repr=False)
    # its measurements, taken by the level stage as it shapes the clip (renderer/stages/level.py)
    loudness: Loudness | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class VisualClip(StageOutput):
    path: Path
    duration: float
    # whose footage it shows, for the credits (stock): {service, id, kind, creator, creator_url, page_url}
    credits: tuple[dict, ...] = field(default=(), compare=False)


def words(text: str) -> int:
    return len(text.split())


def takes(lines: list[tuple[str, str | None]], voice_of: dict[str, str], default: str) -> list[tuple[str, str]]:
    """(voice, text) takes: consecutive (text, speaker) lines of one speaker joined; empty takes dropped."""
    joined = [(voice_of.get(speaker or "", default), " ".join(text for text, _ in group))
              for speaker, group in groupby(lines, key=lambda line: line[1])]
    return [(voice, text) for voice, text in joined if text.strip()]
