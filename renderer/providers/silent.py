"""No narration audio: scenes keep their timing, the soundtrack is silence."""

from __future__ import annotations

from pathlib import Path

from renderer.providers.base import LOCAL_TIMEOUT_S, AudioClip, words


class SilentVoice:
    """Built from SilentVoiceConfig (renderer/config.py), where its settings' defaults live."""

    version = "1"

    def __init__(self, *, name: str, words_per_minute: float):
        self.name = name
        self.words_per_minute = words_per_minute

    def synthesize(self, lines: list[tuple[str, str | None]], out: Path, *,
                   timeout: float = LOCAL_TIMEOUT_S) -> AudioClip:
        """``lines`` are (text, speaker) pairs; the clip has no file, only the time the words would take."""
        count = sum(words(text) for text, _ in lines)
        return AudioClip(None, count / self.words_per_minute * 60.0 if count else 0.0, provider=self.name)
