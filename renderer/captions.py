"""Captions (SRT, WebVTT) from the narration, timed within each scene's voice clip."""

from __future__ import annotations

from dataclasses import dataclass

from renderer.script import sentences, split_text

MAX_CUE_CHARS = 84  # two lines of 42: the usual broadcast limit


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _chunks(text: str) -> list[str]:
    """One cue per sentence; a sentence too long for one is split between words."""
    return [cue for sentence in sentences(" ".join(text.split())) for cue in split_text(sentence, MAX_CUE_CHARS)]


def cues(scene_lines: list[list[str]], spans: list[dict[str, float]], voice_s: list[float],
         lead: float = 0.0) -> list[Cue]:
    """One scene at a time: its narration spread over its voice clip by length, never past the scene's end.
    ``lead``: when the first scene starts after 0:00, its narration (and so its captions) start that late."""
    result: list[Cue] = []
    for n, (lines, span, speech) in enumerate(zip(scene_lines, spans, voice_s)):
        chunks = [c for line in lines for c in _chunks(line)]
        if not chunks:
            continue
        delay = lead if n == 0 else 0.0
        total_chars = sum(len(c) for c in chunks)
        room = span["duration"] - delay
        window = min(speech, room) if speech > 0 else room
        t = span["start"] + delay
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


def _vtt_text(text: str) -> str:
    """WebVTT cue text is markup: '&', '<' and '>' must be escaped or players drop what looks like a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(items: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{_vtt_text(c.text)}\n\n"
                                    for c in items)
