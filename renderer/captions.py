"""Captions (SRT, WebVTT) from the narration, timed within each scene's voice clip."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CUE_CHARS = 84  # two lines of 42: the usual broadcast limit


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _chunks(text: str) -> list[str]:
    """Sentences, then words, packed into cues of at most MAX_CUE_CHARS."""
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?…])\s+", text.strip()):
        current = ""
        for word in sentence.split():
            if current and len(current) + 1 + len(word) > MAX_CUE_CHARS:
                out.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        if current:
            out.append(current)
    return out


def cues(scene_lines: list[list[str]], spans: list[dict[str, float]], voice_s: list[float]) -> list[Cue]:
    """One scene at a time: its narration spread over its voice clip by length, never past the scene's end."""
    result: list[Cue] = []
    for lines, span, speech in zip(scene_lines, spans, voice_s):
        chunks = [c for line in lines for c in _chunks(line)]
        if not chunks:
            continue
        total_chars = sum(len(c) for c in chunks)
        window = min(speech, span["duration"]) if speech > 0 else span["duration"]
        t = span["start"]
        for chunk in chunks:
            length = window * len(chunk) / total_chars
            result.append(Cue(round(t, 3), round(t + length, 3), chunk))
            t += length
    return result


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(items: list[Cue]) -> str:
    return "".join(f"{n}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text}\n\n"
                   for n, c in enumerate(items, 1))


def vtt(items: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{c.text}\n\n" for c in items)
