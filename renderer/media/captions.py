"""Captions (SRT, WebVTT) from the narration, timed within each scene's voice clip, word by word where the
voice says when each word is spoken (ElevenLabs' alignment, piper's sentence timing) and estimated where not.
The files are written by pysubs2."""

from __future__ import annotations

from dataclasses import dataclass

import pysubs2

from renderer.script import sentences, split_text

MAX_CUE_CHARS = 84  # two lines of 42: the usual broadcast limit


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    words: tuple[tuple[float, float], ...] = ()  # (start, end) of each word of ``text``; () = estimate them

    def word_times(self) -> list[tuple[str, float, float]]:
        """Each word with when it is said: the voice's timing, or the cue's time shared out by length."""
        words = self.text.split()
        if len(self.words) == len(words):
            return [(w, t0, t1) for w, (t0, t1) in zip(words, self.words)]
        weights = [len(w) + 1 for w in words]
        out, t, step = [], self.start, (self.end - self.start) / max(1, sum(weights))
        for word, weight in zip(words, weights):
            out.append((word, round(t, 3), round(t + weight * step, 3)))
            t += weight * step
        return out


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
        words, k = [], 0
        for word in chunk.split():
            first, last = said[k], said[k + len(word) - 1]
            words.append((round(min(start + first[1], end), 3), round(min(start + last[2], end), 3)))
            k += len(word)
        out.append(Cue(words[0][0], words[-1][1], chunk, tuple(words)))
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


def _subtitles(items: list[Cue], text=lambda t: t) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    for c in items:  # a backslash stays one: "\N" in narration is not a line break
        subs.append(pysubs2.SSAEvent(start=round(c.start * 1000), end=round(c.end * 1000),
                                     text=text(c.text).replace("\\", "\\\u2060")))
    return subs


def srt(items: list[Cue]) -> str:
    return _subtitles(items).to_string("srt", keep_ssa_tags=True)


def _vtt_text(text: str) -> str:
    """WebVTT cue text is markup: '&', '<' and '>' must be escaped or players drop what looks like a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(items: list[Cue]) -> str:
    return _subtitles(items, _vtt_text).to_string("vtt", keep_ssa_tags=True)


SENTENCE_ENDS = ".!?…"


def sentence_pauses(alignment: dict | None) -> tuple[float, ...]:
    """Where the voice pauses between two sentences (seconds into its clip, midway through the pause), from its
    per-character timing; none without one."""
    if not alignment:
        return ()
    marks = list(zip(alignment["characters"], alignment["character_start_times_seconds"],
                     alignment["character_end_times_seconds"]))
    out = []
    for n, (ch, _, end) in enumerate(marks[:-1]):
        if ch in SENTENCE_ENDS and marks[n + 1][0].isspace():
            following = next((t0 for c, t0, _ in marks[n + 1:] if not c.isspace()), None)
            if following is not None:
                out.append(round((end + max(end, following)) / 2, 3))
    return tuple(out)
