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


def _aligned(chunks: list[str], alignment: dict | None, start: float, end: float) -> list[Cue] | None:
    """Cues timed by the voice's own per-character timing (ElevenLabs /with-timestamps), or None when there
    is none or it does not spell out these chunks. Spaces are skipped: the service may drop them between
    requests."""
    if not alignment:
        return None
    marks = [(ch, t0, t1) for ch, t0, t1 in zip(alignment["characters"], alignment["character_start_times_seconds"],
                                                 alignment["character_end_times_seconds"]) if not ch.isspace()]
    out, pos = [], 0
    for chunk in chunks:
        letters = [ch for ch in chunk if not ch.isspace()]
        said = marks[pos:pos + len(letters)]
        if [ch for ch, _, _ in said] != letters or not said:
            return None
        pos += len(letters)
        out.append(Cue(round(min(start + said[0][1], end), 3), round(min(start + said[-1][2], end), 3), chunk))
    return out


def cues(scene_lines: list[list[str]], spans: list[dict[str, float]], voice_s: list[float],
         lead: float = 0.0, alignments: list[dict | None] | None = None) -> list[Cue]:
    """One scene at a time: its narration timed by the voice's character timing when it has one, else spread
    over its voice clip by length; never past the scene's end. ``lead``: when the first scene starts after
    0:00, its narration (and so its captions) start that late."""
    result: list[Cue] = []
    alignments = alignments or [None] * len(spans)
    for n, (lines, span, speech, alignment) in enumerate(zip(scene_lines, spans, voice_s, alignments)):
        chunks = [c for line in lines for c in _chunks(line)]
        if not chunks:
            continue
        delay = lead if n == 0 else 0.0
        t = span["start"] + delay
        timed = _aligned(chunks, alignment, t, span["start"] + span["duration"])
        if timed is not None:
            result += timed
            continue
        total_chars = sum(len(c) for c in chunks)
        room = span["duration"] - delay
        window = min(speech, room) if speech > 0 else room
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
