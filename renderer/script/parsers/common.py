"""Pieces both script formats share: timestamps, bracketed scene headers, speakers, quotes, on-screen lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from renderer.script.model import (
    ERROR,
    WARNING,
    OnScreenLine,
    Options,
    Scene,
    clip,
    estimated_duration,
)

_TOKEN_RE = re.compile(r"^(?P<time>[^\s–—|-]+)(?P<rest>.*)$", re.S)
_MSS_RE = re.compile(r"^(\d{1,4}):([0-5]\d(?:\.\d{1,3})?)$", re.A)
_HMMSS_RE = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d(?:\.\d{1,3})?)$", re.A)
_BRACKET_RE = re.compile(r"^\s*\[(?P<body>[^\]]*)\](?P<after>.*)$")
# the end of a time range, "[0:00–0:20 …]": a time followed by the end of the bracket or a separator
_RANGE_END_RE = re.compile(r"^(?P<end>\d{1,4}:\d\d(?::\d\d)?(?:\.\d+)?)\s*(?=$|[–—|-])")
_SPEAKER_SPLIT_RE = re.compile(r"(?<!\s)\s*[–—]\s*|(?<!\s)\s+-\s+")  # tried from a space run's start only: linear
_ID_RE = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WHOLE_ID_RE = re.compile(r"^[A-Za-z]+[_-]?\d+[A-Za-z0-9_-]*$")
PROMPT_RE = re.compile(r"^(?P<prompt>[$>])(?:\s(?P<text>.*))?$", re.S)

OPEN_QUOTES = "“\""
CLOSE_QUOTES = "”\""
_ALL_QUOTES = "“”\""
DASHES = "–—-|"


# --------------------------------------------------------------------------- timestamps


@dataclass
class Header:
    time: str  # the raw time token, e.g. "1:05" (may be unreadable: check with parse_time)
    title: str
    subtitle: str | None
    strict: bool  # "[time – title]" with nothing after the bracket
    end: str | None = None  # "0:20" in "[0:00–0:20 – Title]"


def match_header(line: str) -> Header | None:
    """A line that looks like a bracketed scene header (its time may still be unreadable), else None.

    ``[1:05 – Title | Subtitle]``, ``[1:05] Title``, ``[1:05] – Title``, ``[1:05–1:30] Title`` (a range);
    ``[Beat]`` or ``[2 seconds later]`` are not.
    """
    match = _BRACKET_RE.match(line)
    if match is None:
        return None
    body = match["body"].strip()
    after = match["after"].strip()
    token = _TOKEN_RE.match(body)
    if token is None:
        return None
    time, rest = token["time"], token["rest"].strip()
    has_sep = rest[:1] in DASHES and rest != ""
    if not time[0].isdigit() or not (":" in time or has_sep):
        return None  # "[Beat]", "[v2: draft]", "[2 seconds later]", "[1]" are not headers
    if has_sep:
        rest = rest[1:].strip()
    end, rest = _range_end(rest) if has_sep else (None, rest)
    strict = not after
    if not rest and after:  # "[0:00] Title" / "[0:00] – Title"
        rest = after.lstrip(DASHES[:3]).strip()
        after = ""
    title, _, subtitle = rest.partition("|")
    subtitle = subtitle.strip() or after or None
    return Header(time, title.strip(), subtitle, strict, end)


def _range_end(rest: str) -> tuple[str | None, str]:
    """'0:20 – Cold Open' → ('0:20', 'Cold Open'); '1984 Revisited' → (None, '1984 Revisited')."""
    match = _RANGE_END_RE.match(rest)
    if match is None:
        return None, rest
    rest = rest[match.end() :].strip()
    return match["end"], rest[1:].strip() if rest[:1] in DASHES else rest


def parse_time(token: str) -> float | None:
    """'1:05' → 65.0, '1:02:03' → 3723.0; None when the token is not M:SS or H:MM:SS."""
    if match := _MSS_RE.match(token):
        return int(match[1]) * 60 + float(match[2])
    if match := _HMMSS_RE.match(token):
        return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return None


def last_scene_duration(scene: Scene, end: str | None, options: Options) -> float:
    """The last scene runs to the end of its time range if it has one, else as long as its narration needs."""
    end_s = parse_time(end) if end else None
    if end_s is not None and end_s > scene.start:
        return end_s - scene.start
    return estimated_duration(scene.narration_text, options)


def set_durations(scenes: list[Scene], last_end: str | None, options: Options) -> None:
    """Each scene lasts until the next one starts; the last one as its narration (or a range end) needs."""
    for scene, following in zip(scenes, scenes[1:]):
        scene.duration = max(0.0, following.start - scene.start)
    if scenes:
        scenes[-1].duration = last_scene_duration(scenes[-1], last_end, options)


def out_of_order(timestamp: str, seconds: float, previous: tuple[float, str] | None) -> str | None:
    """What is wrong when a scene does not start after the previous one (None when it does)."""
    if previous is None or seconds > previous[0]:
        return None
    relation = "comes before" if seconds < previous[0] else "is the same as"
    return f"timestamp {timestamp} {relation} the previous scene's {previous[1]}"


def opening_issues(report, *, has_text: bool, scenes: list[Scene], first_text_line: int | None,
                   preamble: list[tuple[int, str]], no_scenes: str) -> None:
    """The issues every format reports once parsed: an empty script, no scenes, text before the first scene.
    ``report(code, severity, line, what)`` records one."""
    if not has_text:
        report("empty_script", ERROR, None, "the script is empty")
    elif not scenes:
        report("no_scenes", ERROR, first_text_line, no_scenes)
    else:
        for number, line in preamble:
            report("text_before_first_scene", WARNING, number, f"text before the first scene is ignored: “{clip(line)}”")


# --------------------------------------------------------------------------- names and quotes


def split_speaker(paren: str | None, *, commas: bool = True) -> tuple[str | None, str | None]:
    """'Winston – distorted, low' → ('Winston', 'distorted, low'); 'Winston, calm' → ('Winston', 'calm')."""
    if not paren or not paren.strip():
        return None, None
    parts = _SPEAKER_SPLIT_RE.split(paren.strip(), maxsplit=1)
    if len(parts) == 1 and commas:
        parts = paren.strip().split(",", 1)
    speaker = parts[0].strip() or None
    direction = parts[1].strip() if len(parts) > 1 else ""
    return speaker, direction or None


def split_script_value(value: str) -> tuple[str | None, str | None]:
    """'LOG_0002 — THE DESCENT' → ('LOG_0002', 'THE DESCENT'); 'The Descent' → (None, 'The Descent')."""
    parts = _SPEAKER_SPLIT_RE.split(value, maxsplit=1)
    if len(parts) == 2 and _ID_RE.match(parts[0].strip()):
        return parts[0].strip(), parts[1].strip() or None
    if _WHOLE_ID_RE.match(value):
        return value, None
    return None, value or None


def unquote(line: str) -> str:
    """The line without the quote marks around it: '“Hi.”' → 'Hi.', '“Hi,' → 'Hi,', 'there.”' → 'there.'.

    Quotes that do not wrap the whole line stay: '“Hi,” she said.' is kept as written.
    """
    text = line.strip()
    start = 1 if text[:1] in OPEN_QUOTES else 0
    end = len(text) - 1 if len(text) > start and text[-1] in CLOSE_QUOTES else len(text)
    inner = text[start:end]
    if any(quote in inner for quote in _ALL_QUOTES):
        return text
    return inner.strip()


def on_screen_line(number: int, raw: str) -> OnScreenLine:
    """'$ ls' → a command (prompt kept apart), '# note' → a comment, anything else → output, spacing kept."""
    text = raw.rstrip()
    stripped = text.lstrip()
    if match := PROMPT_RE.match(stripped):
        return OnScreenLine((match["text"] or "").strip(), "command", match["prompt"], number)
    if stripped.startswith("#"):
        return OnScreenLine(stripped, "comment", "", number)
    return OnScreenLine(text, "output", "", number)
