"""Video scripts: the Script/Scene model, reading files, choosing a parser, and validation.

Pure stdlib and pure data: text in, a ``Script`` out. Parsing never raises on text input; everything wrong
with a script comes back as ``Issue`` records (an error stops that script, a warning is reported and
rendering goes on), each naming file, line and fix.

Two formats, parsed in ``renderer/parsers/``: ``log.py`` (the production LOG format) and ``markdown.py``
(a Markdown screenplay). ``parse_text`` detects the format from the content unless told which; both parsers
fill the same model, then ``validate`` adds the checks that do not depend on the format.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

__all__ = [
    "ERROR",
    "FORMATS",
    "WARNING",
    "Issue",
    "NarrationLine",
    "OnScreenLine",
    "Options",
    "Scene",
    "Script",
    "detect_format",
    "parse_file",
    "parse_log",
    "parse_markdown",
    "parse_text",
    "read_text",
    "sentences",
    "split_text",
    "validate",
]

ERROR = "error"
WARNING = "warning"
FORMATS = ("auto", "log", "markdown")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Issue:
    code: str  # empty_script, no_scenes, bad_timestamp, timestamp_backwards, unknown_label, … (see HINTS)
    severity: str  # "error" | "warning"
    line: int | None  # 1-based line in the file
    message: str  # "<file>:<line>: what is wrong"
    hint: str  # how to fix it
    file: str = ""


@dataclass
class NarrationLine:
    text: str  # verbatim, quote marks around the whole line stripped
    speaker: str | None
    direction: str | None
    line: int


@dataclass
class OnScreenLine:
    text: str  # verbatim; commands without their "$ " / "> " prompt
    kind: str  # "command" | "comment" | "output"
    prompt: str  # "$" or ">" for commands, "" otherwise
    line: int


@dataclass
class Scene:
    index: int  # 0-based
    start: float  # seconds
    duration: float  # seconds
    title: str
    subtitle: str | None
    visual: str
    narration: list[NarrationLine] = field(default_factory=list)
    on_screen: list[OnScreenLine] = field(default_factory=list)
    line: int = 0  # line of the scene header

    @property
    def narration_text(self) -> str:
        return " ".join(n.text for n in self.narration)


@dataclass
class Script:
    path: str
    title: str
    script_id: str | None
    subtitle: str | None
    scenes: list[Scene]
    issues: list[Issue]
    format: str = "log"

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def duration(self) -> float:
        if not self.scenes:
            return 0.0
        last = self.scenes[-1]
        return last.start + last.duration

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["duration"] = self.duration
        return data


@dataclass(frozen=True)
class Options:
    """Parsing settings (``script:`` in the config). Build with ``Options.of``, which never rejects a value."""

    words_per_minute: float = 150.0  # speaking rate for duration estimates and the too-long check
    min_last_scene_s: float = 4.0  # shortest scene whose length is estimated (last LOG scene, untimed Markdown)
    max_narration_chars: int = 5000  # one voice request's limit; 0 = no limit

    @classmethod
    def of(cls, words_per_minute=150.0, min_last_scene_s=4.0, max_narration_chars=5000) -> Options:
        """Unusable values (None, NaN, negative rates, text) fall back to the defaults."""
        default = cls()
        wpm = float(words_per_minute) if _finite(words_per_minute) and float(words_per_minute) > 0 else None
        minimum = float(min_last_scene_s) if _finite(min_last_scene_s) else None
        limit = max(0, int(float(max_narration_chars))) if _finite(max_narration_chars) else None
        return cls(
            wpm or default.words_per_minute,
            default.min_last_scene_s if minimum is None else minimum,
            default.max_narration_chars if limit is None else limit,
        )


# --------------------------------------------------------------------------- issues

HINTS = {
    "empty_script": (
        "Write a SCRIPT: line and at least one scene, e.g. “[0:00 – Title]” followed by Visual: and Narration: lines."
    ),
    "no_scenes": "Start each scene with a timestamp header on its own line, e.g. “[0:00 – Cold Open]”.",
    "bad_timestamp": "Write the time as M:SS or H:MM:SS with seconds 00–59, e.g. “[1:05 – Title]”.",
    "timestamp_backwards": "Put scenes in time order or fix the timestamp.",
    "empty_scene": "Give the scene a visual, narration or on-screen text, or delete its header.",
    "unknown_label": (
        "Use Visual:, Narration:, Narration (Speaker):, Audio (Speaker – direction): or ON-SCREEN TEXT:; "
        "delete the line if it is a note to yourself."
    ),
    "text_before_first_scene": "Move this text below a scene header such as “[0:00 – Title]”, or delete it.",
    "unknown_heading": (
        "Use “# Title” once at the top and “## Scene N: Title” for each scene; delete or demote other headings."
    ),
    "unclosed_code_block": "Close the code block with a line of ``` (the same fence that opened it).",
    "narration_too_long": (
        "Give the scene more time (a later timestamp for the next scene), shorten the narration, "
        "or raise script.words_per_minute if the voice speaks faster."
    ),
    "narration_over_limit": (
        "Nothing to fix: the voice provider sends it in parts. To choose where it breaks, split the scene."
    ),
    "unknown_format": "Use script.format=auto, log or markdown (or --format on the command line).",
    "unreadable_file": "Check that the path exists, is a file and is readable.",
    "internal_error": "This is a bug in the renderer; report it together with the script.",
}


def new_issue(path: str, code: str, severity: str, line: int | None, what: str, hint: str | None = None) -> Issue:
    """An Issue whose message starts with ``file:line:`` (just ``file:`` without a line)."""
    where = f"{path}:{line}" if line is not None else path
    return Issue(code, severity, line, f"{where}: {what}", hint or HINTS[code], path)


# --------------------------------------------------------------------------- reading


def read_text(path: str | PathLike) -> str:
    """The file's text: UTF-8 (BOM stripped), else cp1252; line endings normalised to LF."""
    return _normalise(_decode(Path(path).read_bytes()))


def _decode(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if data.startswith(codecs.BOM_UTF8):  # says UTF-8, has a few bad bytes
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    # cp1252, not latin-1: writers' smart quotes live at 0x91–0x94; 0x81 0x8D 0x8F 0x90 0x9D are undefined
    return data.decode("cp1252", errors="replace")


def _normalise(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- parsing


def parse_file(
    path: str | PathLike,
    *,
    format: str = "auto",  # noqa: A002 - the config key is script.format
    words_per_minute: float = 150.0,
    min_last_scene_s: float = 4.0,
    max_narration_chars: int = 5000,
) -> Script:
    """read_text + parse_text. An unreadable file gives a Script with an error Issue, never an exception."""
    name = str(path)
    try:
        text = read_text(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported as data
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return _failed(name, "unreadable_file", f"cannot read the script: {reason}")
    return parse_text(
        text,
        name,
        format=format,
        words_per_minute=words_per_minute,
        min_last_scene_s=min_last_scene_s,
        max_narration_chars=max_narration_chars,
    )


def parse_text(
    text: str | bytes,
    path: str = "<string>",
    *,
    format: str = "auto",  # noqa: A002
    words_per_minute: float = 150.0,
    min_last_scene_s: float = 4.0,
    max_narration_chars: int = 5000,
) -> Script:
    """Parse a script in the given format ("auto": detected from the content); problems are ``Script.issues``."""
    path = str(path)
    try:
        if isinstance(text, (bytes, bytearray)):
            text = _decode(bytes(text))
        text = _normalise(str(text))
        options = Options.of(words_per_minute, min_last_scene_s, max_narration_chars)
        chosen = str(format).strip().lower()
        if chosen == "auto":
            chosen = detect_format(text)
        if chosen not in FORMATS:
            return _failed(path, "unknown_format", f"unknown script format “{format}” (expected auto, log or markdown)")
        script = _parser(chosen)(text, path, options)
        validate(script, options)
        return script
    except Exception as exc:  # noqa: BLE001 - safety net: parsing must never raise
        return _failed(path, "internal_error", f"the script parser failed: {exc!r}")


def parse_log(text: str | bytes, path: str = "<string>", **options) -> Script:
    """Parse LOG-format text (see renderer/parsers/log.py)."""
    return parse_text(text, path, format="log", **options)


def parse_markdown(text: str | bytes, path: str = "<string>", **options) -> Script:
    """Parse a Markdown screenplay (see renderer/parsers/markdown.py)."""
    return parse_text(text, path, format="markdown", **options)


def _parser(name: str):
    # imported here, not at the top: the parser modules import this module's model
    from renderer.parsers import log, markdown

    return {"log": log.parse, "markdown": markdown.parse}[name]


_LOG_SIGN_RE = re.compile(r"^\s*(?:SCRIPT\s*:|\[\s*\d{1,4}:\d)", re.I)
_MARKDOWN_SCENE_RE = re.compile(r"^##\s")
_MARKDOWN_TITLE_RE = re.compile(r"^#\s")


def detect_format(text: str) -> str:
    """"log" or "markdown", from whichever comes first: a ``SCRIPT:`` line or ``[M:SS`` header (LOG), or a
    ``## `` heading (Markdown). Undecided text is Markdown if it opens with a ``# `` title, else LOG."""
    lines = text.split("\n")
    for line in lines:
        if _LOG_SIGN_RE.match(line):
            return "log"
        if _MARKDOWN_SCENE_RE.match(line):
            return "markdown"
    first = next((line for line in lines if line.strip()), "")
    return "markdown" if _MARKDOWN_TITLE_RE.match(first.lstrip()) else "log"


def _failed(path: str, code: str, what: str) -> Script:
    return Script(path, title_from_path(path), None, None, [], [new_issue(path, code, ERROR, None, what)])


# --------------------------------------------------------------------------- timing and validation

SCENE_PAD_S = 1.0  # an estimated scene outlasts its narration by this much


def speaking_seconds(text: str, words_per_minute: float) -> float:
    """How long ``text`` takes to say at the given rate."""
    return len(text.split()) / words_per_minute * 60.0


def estimated_duration(text: str, options: Options) -> float:
    """A scene length for narration ``text``: its speaking time plus a pad, at least the minimum, whole seconds."""
    needed = max(options.min_last_scene_s, speaking_seconds(text, options.words_per_minute) + SCENE_PAD_S)
    return float(math.ceil(needed - 1e-9))


def validate(script: Script, options: Options) -> None:
    """Add the format-independent issues to ``script`` and sort all issues by line."""
    for scene in script.scenes:
        script.issues.extend(_scene_issues(script.path, scene, options))
    script.issues.sort(key=lambda issue: issue.line or 0)


def _scene_issues(path: str, scene: Scene, options: Options) -> list[Issue]:
    name = f"scene {scene.index + 1} “{clip(scene.title)}”"
    if not (scene.narration or scene.visual or scene.on_screen):
        what = f"{name} has no visual, narration or on-screen text"
        return [new_issue(path, "empty_scene", WARNING, scene.line, what)]
    issues = []
    text = scene.narration_text
    line = scene.narration[0].line if scene.narration else scene.line
    spoken = speaking_seconds(text, options.words_per_minute)
    if spoken > scene.duration + 1e-6:
        what = (
            f"{name} has {len(text.split())} words of narration, about {spoken:.1f} s at "
            f"{options.words_per_minute:g} words per minute, but the scene lasts {scene.duration:g} s; "
            "the narration will be cut"
        )
        issues.append(new_issue(path, "narration_too_long", WARNING, line, what))
    limit = options.max_narration_chars
    if limit and len(text) > limit:
        what = (
            f"{name} has {len(text):,} characters of narration, over the {limit:,}-character limit of one "
            f"voice request; it will be split into {len(split_text(text, limit))} requests"
        )
        issues.append(new_issue(path, "narration_over_limit", WARNING, line, what))
    return issues


# --------------------------------------------------------------------------- splitting text for providers

_SENTENCE_ENDS = (".", "!", "?", "…")
_CLOSING_MARKS = "\"'”’)]"  # may follow a sentence's final stop: “Stop.” (Really?)


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in chunks of at most ``limit`` characters, for providers that cap a request's length.

    Breaks between sentences where it can, else between words, and inside a word only when the word alone is
    longer than ``limit``. Whitespace runs become single spaces; chunks are never empty.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    chunks: list[str] = []
    current = ""
    for unit in _units(" ".join(text.split()), limit):
        joined = f"{current} {unit}" if current else unit
        if len(joined) <= limit:
            current = joined
        else:
            chunks.append(current)
            current = unit
    if current:
        chunks.append(current)
    return chunks


def sentences(text: str):
    """Sentences of single-spaced ``text``: each ends with a word ending in . ! ? or … (closing quotes allowed)."""
    words: list[str] = []
    for word in text.split(" "):
        words.append(word)
        if word.rstrip(_CLOSING_MARKS).endswith(_SENTENCE_ENDS):
            yield " ".join(words)
            words = []
    if words:
        yield " ".join(words)


def _units(text: str, limit: int):
    """Sentences that fit in ``limit``; the words of those that don't; slices of words that don't either."""
    if not text:
        return
    for sentence in sentences(text):
        if len(sentence) <= limit:
            yield sentence
            continue
        for word in sentence.split(" "):
            if len(word) <= limit:
                yield word
            else:
                yield from (word[i : i + limit] for i in range(0, len(word), limit))


# --------------------------------------------------------------------------- small helpers


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def title_from_path(path: str) -> str:
    try:
        return Path(path).stem or path or "script"
    except Exception:  # noqa: BLE001
        return path or "script"


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False
