"""Offline narration with espeak-ng: one WAV per scene, a voice per speaker."""

from __future__ import annotations

import shutil
import tempfile
import wave
from functools import cache
from pathlib import Path
from typing import Mapping

from renderer.media import ffmpeg
from renderer.providers.base import LOCAL_TIMEOUT_S, SPEAKER_GAP_S, AudioClip, takes


class EspeakError(RuntimeError):
    pass


class EspeakVoice:
    """Built from EspeakVoiceConfig (renderer/config.py), where its settings' defaults live."""

    version = "1"

    def __init__(self, *, name: str, voice: str, rate: int, pitch: int, amplitude: int, word_gap: int,
                 speakers: Mapping[str, str]):
        self.name = name
        self.voice = voice
        self.rate = rate
        self.pitch = pitch
        self.amplitude = amplitude
        self.word_gap = word_gap
        self.speakers = dict(speakers)  # dict() also turns Hydra's DictConfig into plain data
        self.binary = shutil.which("espeak-ng") or shutil.which("espeak")
        if not self.binary:
            raise EspeakError("espeak-ng not found: install it (Debian/Ubuntu: apt-get install espeak-ng)")
        known = _known_voices(self.binary)
        for wanted in {voice, *self.speakers.values()}:
            base, _, variant = wanted.lower().partition("+")
            if base not in known or (variant and variant not in known):
                raise EspeakError(f"unknown espeak-ng voice {wanted!r}: pick a language from `espeak-ng --voices`"
                                  f" (e.g. en-us, en-gb), optionally +variant from `espeak-ng --voices=variant`")

    def synthesize(self, lines: list[tuple[str, str | None]], out: Path, *,
                   timeout: float = LOCAL_TIMEOUT_S) -> AudioClip:
        """Speak (text, speaker) lines into ``out`` (WAV); consecutive lines of one speaker share a take."""
        spoken = takes(lines, self.speakers, self.voice)
        if not spoken:
            return AudioClip(None, 0.0, provider=self.name)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            parts = [self._speak(voice, text, Path(tmp) / f"{n}.wav", timeout) for n, (voice, text) in enumerate(spoken)]
            duration = _join_wavs(parts, out, gap_s=SPEAKER_GAP_S)
        return AudioClip(out, duration, provider=self.name)

    def _speak(self, voice: str, text: str, out: Path, timeout: float) -> Path:
        text_file = out.with_suffix(".txt")
        text_file.write_text(text, encoding="utf-8")
        cmd = [self.binary, "-v", voice, "-s", str(self.rate), "-p", str(self.pitch), "-a", str(self.amplitude),
               "-g", str(self.word_gap), "-b", "1", "-w", str(out), "-f", str(text_file)]
        try:
            ffmpeg.run_tool(cmd, timeout=timeout)
        except ffmpeg.FFmpegError as exc:
            raise EspeakError(f"espeak-ng (voice {voice!r}): {exc}") from exc
        if not out.exists():
            raise EspeakError(f"espeak-ng wrote no audio for voice {voice!r}")
        return out


@cache
def _known_voices(binary: str) -> frozenset[str]:
    """Languages, voice names, files and variants espeak-ng knows (it silently ignores an unknown one)."""
    names: set[str] = set()
    for listing in ("--voices", "--voices=variant"):
        out = ffmpeg.run_tool([binary, listing], timeout=30)
        for row in out.splitlines()[1:]:
            cols = row.split()
            if len(cols) >= 5:
                names.update(c.lower() for c in (cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]))
    return frozenset(names)


def _join_wavs(parts: list[Path], out: Path, *, gap_s: float) -> float:
    """Concatenate same-format WAVs with a short silence between them; return the duration in seconds."""
    with wave.open(str(parts[0])) as first:
        params = first.getparams()
    silence = b"\0" * int(params.framerate * gap_s) * params.sampwidth * params.nchannels
    frames = 0
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        for n, part in enumerate(parts):
            with wave.open(str(part)) as src:
                if n:
                    dst.writeframes(silence)
                    frames += len(silence) // (params.sampwidth * params.nchannels)
                data = src.readframes(src.getnframes())
                dst.writeframes(data)
                frames += src.getnframes()
    return frames / params.framerate
