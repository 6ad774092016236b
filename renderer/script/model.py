"""Video scripts: the Script/Scene model, its issues, timing estimates and the format-independent checks.

Pure stdlib and pure data: text in, a ``Script`` out. Parsing never raises on text input; everything wrong
with a script comes back as ``Issue`` records (an error stops that script, a warning is reported and
rendering goes on), each naming file, line and fix.

Two formats, parsed in ``renderer/script/parsers/``: ``log.py`` (the production LOG format) and ``markdown.py``
(a Markdown screenplay). ``parse_text`` detects the format from the content unless told which; both parsers
fill the same model, then ``validate`` adds the checks that do not depend on the format.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

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
    """Parsing settings: the config's ``script:`` block and the voice's ``char_limit``. Build with ``Options.of``.

    No defaults here: they live in the config schema (renderer/config.py: ScriptConfig, the voice's config), which
    this package does not import; whoever parses passes them."""

    format: str  # auto (detected from the content) | log | markdown
    words_per_minute: float  # speaking rate for duration estimates and the too-long check
    min_last_scene_s: float  # shortest scene whose length is estimated (last LOG scene, untimed Markdown)
    # the work one script may ask for (each 0 = no limit); over one is an error naming the setting to raise
    max_size_mb: float  # the file, in MB (10**6 bytes): a larger one is not parsed
    max_line_chars: int  # one line
    max_scenes: int
    max_scene_s: float  # one scene's length
    max_duration_s: float  # the whole script's
    char_limit: int  # narration characters one voice request takes; 0 = no limit

    @classmethod
    def of(cls, format: str, words_per_minute, min_last_scene_s, char_limit, *,  # noqa: A002
           max_size_mb, max_line_chars, max_scenes, max_scene_s, max_duration_s) -> Options:
        """Options from config values (numbers written as text too; a negative ``char_limit`` is no limit). A value
        no script can be timed with (None, NaN, a rate that is not positive, text) is a ValueError naming it."""
        if not (_finite(words_per_minute) and float(words_per_minute) > 0):
            raise ValueError(f"script.words_per_minute={words_per_minute!r}: give a positive number of words a minute")
        if not _finite(min_last_scene_s):
            raise ValueError(f"script.min_last_scene_s={min_last_scene_s!r}: give a number of seconds")
        if not _finite(char_limit):
            raise ValueError(f"voice.char_limit={char_limit!r}: give a number of characters, or 0 for no limit")
        limits = {"max_size_mb": max_size_mb, "max_line_chars": max_line_chars, "max_scenes": max_scenes,
                  "max_scene_s": max_scene_s, "max_duration_s": max_duration_s}
        for name, value in limits.items():
            if not (_finite(value) and float(value) >= 0):
                raise ValueError(f"script.{name}={value!r}: give a number, or 0 for no limit")
        return cls(str(format), float(words_per_minute), float(min_last_scene_s), float(max_size_mb),
                   int(float(max_line_chars)), int(float(max_scenes)), float(max_scene_s), float(max_duration_s),
                   max(0, int(float(char_limit))))


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
    "script_too_large": (
        "Split the script into several files, or raise the limit: script.max_size_mb=… "
        "(python -m renderer.check --max-size-mb …)."
    ),
    "line_too_long": (
        "Break the line into shorter ones (one sentence or paragraph a line), or raise the limit: "
        "script.max_line_chars=… (python -m renderer.check --max-line-chars …)."
    ),
    "too_many_scenes": (
        "Split the script into several scripts, or raise the limit: script.max_scenes=… "
        "(python -m renderer.check --max-scenes …)."
    ),
    "scene_too_long": (
        "Check the timestamps (10:00:00 is ten hours; 10:00 is ten minutes), split the scene, or raise the limit: "
        "script.max_scene_s=… (python -m renderer.check --max-scene-s …)."
    ),
    "script_too_long": (
        "Check the last timestamps, split the script into parts, or raise the limit: script.max_duration_s=… "
        "(python -m renderer.check --max-duration-s …)."
    ),
    "unknown_format": "Use script.format=auto, log or markdown (or --format on the command line).",
    "unreadable_file": "Check that the path exists, is a file and is readable.",
    "internal_error": "This is a bug in the renderer; report it together with the script.",
}


def new_issue(path: str, code: str, severity: str, line: int | None, what: str, hint: str | None = None) -> Issue:
    """An Issue whose message starts with ``file:line:`` (just ``file:`` without a line)."""
    where = f"{path}:{line}" if line is not None else path
    return Issue(code, severity, line, f"{where}: {what}", hint or HINTS[code], path)


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
    script.issues.extend(_limit_issues(script, options))
    for scene in script.scenes[: options.max_scenes or None]:  # past the limit: one error, not one per scene
        script.issues.extend(_scene_issues(script.path, scene, options))
    script.issues.sort(key=lambda issue: issue.line or 0)


def _limit_issues(script: Script, options: Options) -> list[Issue]:
    """The errors of a script that asks for more work than ``options`` allow: scenes, a scene's and its length."""
    issues, path, scenes = [], script.path, script.scenes
    if options.max_scenes and len(scenes) > options.max_scenes:
        what = (f"the script has {len(scenes):,} scenes, over the limit of {options.max_scenes:,} "
                f"(script.max_scenes); scene {options.max_scenes + 1} starts here")
        issues.append(new_issue(path, "too_many_scenes", ERROR, scenes[options.max_scenes].line, what))
    long_scenes = [s for s in scenes if options.max_scene_s and s.duration > options.max_scene_s]
    for scene in long_scenes[:3]:  # a few are enough to show what is wrong
        what = (f"scene {scene.index + 1} “{clip(scene.title)}” lasts {format_time(scene.duration)}, over the "
                f"limit of {format_time(options.max_scene_s)} (script.max_scene_s={options.max_scene_s:g})")
        issues.append(new_issue(path, "scene_too_long", ERROR, scene.line, what))
    if options.max_duration_s and script.duration > options.max_duration_s:
        what = (f"the script lasts {format_time(script.duration)}, over the limit of "
                f"{format_time(options.max_duration_s)} (script.max_duration_s={options.max_duration_s:g})")
        issues.append(new_issue(path, "script_too_long", ERROR, scenes[-1].line, what))
    return issues


def format_time(seconds: float) -> str:
    """65 → '1:05', 3723 → '1:02:03' (whole seconds)."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
    limit = options.char_limit
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
