"""The Markdown screenplay format::

    # LOG_0005 — First Contact                 <- title (an id before a dash is split off, as in LOG)
    *A transmission from the edge of the array* <- optional subtitle
    ## Scene 1: Arrival [0:00]                 <- scene: "## Scene N: Title", "## Title", "## [0:00] Title",
                                                  "## Title | Subtitle"; the [M:SS] timestamp is optional
    *A ship drifts into frame.*                <- a whole-line italic: visual
    **Anya** (whispering): We're not alone.    <- narration with speaker (and direction); plain lines below
                                                  it continue it up to a blank line
    ```                                        <- fenced code block: on-screen text
    $ ping relay-7                             <- "$ "/"> " commands, "#" comments, other lines output
    ```
    > who is there?                            <- a "$ "/"> " line outside a fence: on-screen text to a blank line
    Plain prose.                               <- narration without a speaker

``<!-- comments -->``, horizontal rules and blank lines are ignored. A scene with a timestamp starts there;
one without starts when the previous scene's narration is done (estimated at the configured words per
minute). Each scene runs to the next one's start; the last as long as its narration needs.
"""

from __future__ import annotations

import re

from renderer.script.model import (
    ERROR,
    HINTS,
    WARNING,
    NarrationLine,
    Options,
    Scene,
    Script,
    clip,
    estimated_duration,
    format_time,
)
from renderer.script.parsers.base import ScriptParser
from renderer.script.parsers.common import (
    PROMPT_RE,
    match_header,
    on_screen_line,
    out_of_order,
    parse_time,
    set_durations,
    split_script_value,
    split_speaker,
    unquote,
)

_SCENE_RE = re.compile(r"^##(?:\s+(?P<text>.*))?$")
_HEADING_RE = re.compile(r"^(?P<marks>#{1,6})(?:\s+(?P<text>.*))?$")
_FENCE_RE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
_RULE_RE = re.compile(r"^(?:(?:\*\s*){3,}|(?:-\s*){3,}|(?:_\s*){3,})$")
_ITALIC_RE = re.compile(r"^(?P<mark>[*_])(?![\s*_])(?P<text>.*?\S)(?P=mark)$")
_SPEAKER_RE = re.compile(r"^\*\*(?P<who>[^*]+?)\*\*\s*(?P<paren>\([^)]*\))?\s*:(?P<inline>.*)$")  # **Anya** (low):
_SPEAKER_COLON_INSIDE_RE = re.compile(r"^\*\*(?P<who>[^*]+?):\*\*(?P<inline>.*)$")  # **Anya:** text
_NAME_WITH_PAREN_RE = re.compile(r"^(?P<name>[^()]*)\((?P<paren>[^)]*)\)$")  # "Anya (low)" inside the bold
# linear: the token splits at its first colon and neither it nor the rest gives back what it took (possessive),
# and a bracket holds no "[" (each "[" scans to the next one only)
_TIME_IN_HEADING_RE = re.compile(
    r"\[\s*(?P<token>\d[^\[\]\s–—|:-]*+:[^\[\]\s–—|-]*+)(?:\s*[–—-]\s*(?P<end>\d{1,4}:\d\d(?::\d\d)?))?[^\[\]]*+\]"
)
_SCENE_PREFIX_RE = re.compile(r"^scene\s+\d+[a-z]?\b\s*[:.–—|-]?\s*", re.I)
_CLOSING_HASHES_RE = re.compile(r"(?<!\s)\s+#+$")  # a run is tried from its start only: linear

_HINTS = {
    **HINTS,
    "empty_script": (
        "Write a “# Title” line and at least one scene: “## Scene 1: Title”, an *italic* visual line "
        "and “**Speaker**: narration”."
    ),
    "no_scenes": "Start each scene with a heading on its own line, e.g. “## Scene 1: Arrival”.",
    "bad_timestamp": "Write the time as M:SS or H:MM:SS with seconds 00–59, e.g. “## Scene 2: Title [1:05]”.",
    "text_before_first_scene": "Move this text below a scene heading such as “## Scene 1: Title”, or delete it.",
}


def parse(text: str, path: str, options: Options) -> Script:
    """Parse normalised (LF-only) Markdown screenplay text."""
    return _MarkdownParser(path, options).parse(text)


class _MarkdownParser(ScriptParser):
    format = "markdown"
    no_scenes = "no scene heading found (expected a line like “## Scene 1: Title”)"
    hints = _HINTS

    def __init__(self, path: str, options: Options):
        super().__init__(path, options)
        self.timestamps: list[str | None] = []  # per scene, as written in its heading
        self.fence: tuple[str, int] | None = None  # the open code fence and its line
        self.in_comment = False

    def feed(self, number: int, raw: str) -> None:
        line = raw.strip()
        if self.fence:
            self.fenced_line(number, raw, line)
        elif self.in_comment:
            self.in_comment = "-->" not in line
        elif line.startswith("<!--"):
            self.in_comment = "-->" not in line[4:]
        elif not line:
            self.block = None
        else:
            self.first_text_line = self.first_text_line or number
            self.text_line(number, raw, line)

    def text_line(self, number: int, raw: str, line: str) -> None:
        if match := _SCENE_RE.match(line):
            self.start_scene(number, match["text"] or "")
        elif self.block == "onscreen" and line.startswith("#"):  # a comment in a terminal session
            self.scenes[-1].on_screen.append(on_screen_line(number, raw))
        elif match := _HEADING_RE.match(line):
            self.heading(number, line, len(match["marks"]), match["text"] or "")
        elif match := _FENCE_RE.match(line):
            self.fence = (match["fence"], number)
            self.block = None
        elif _RULE_RE.match(line):
            self.block = None
        elif not self.scenes:
            self.before_first_scene(number, line)
        else:
            self.scene_line(number, raw, line)

    def closing(self) -> None:
        if self.fence:
            marker, number = self.fence
            self.issue("unclosed_code_block", WARNING, number,
                       f"the code block opened here with {marker} is never closed; "
                       "everything after it is shown as on-screen text")
        self.assign_times()

    # ---- headings and text before the first scene

    def heading(self, number: int, line: str, level: int, text: str) -> None:
        """The first "# " heading above the scenes is the title; any other (besides "## " scenes) is reported."""
        if level == 1 and self.title is None and not self.scenes:
            self.script_id, self.title = split_script_value(_CLOSING_HASHES_RE.sub("", text).strip())
            self.expect_subtitle = True
            return
        self.issue("unknown_heading", WARNING, number,
                   f"the heading “{clip(line)}” is neither the title nor a scene; it is ignored")

    def before_first_scene(self, number: int, line: str) -> None:
        if self.expect_subtitle and not (_speaker_match(line) or PROMPT_RE.match(line)):
            self.expect_subtitle = False
            italic = _ITALIC_RE.match(line)
            self.subtitle = italic["text"] if italic else line
            return
        self.expect_subtitle = False
        self.preamble.append((number, line))

    # ---- scenes

    def start_scene(self, number: int, text: str) -> None:
        timestamp, self.last_end, title, subtitle = _scene_heading(text)
        index = len(self.scenes)
        self.scenes.append(
            Scene(
                index=index,
                start=0.0,
                duration=0.0,
                title=title or f"Scene {index + 1}",
                subtitle=subtitle,
                visual="",
                line=number,
            )
        )
        self.visual.append([])
        self.timestamps.append(timestamp)
        self.block = None
        self.expect_subtitle = False

    def scene_line(self, number: int, raw: str, line: str) -> None:
        if match := _speaker_match(line):
            self.block = "narration"
            self.speaker, self.direction = _speaker(match["who"], match.groupdict().get("paren"))
            self.add_narration(number, match["inline"])
        elif match := _ITALIC_RE.match(line):
            self.block = None
            self.visual[-1].append(match["text"].strip())
        elif PROMPT_RE.match(line) or self.block == "onscreen":
            self.block = "onscreen"
            self.scenes[-1].on_screen.append(on_screen_line(number, raw))
        elif self.block == "narration":
            self.add_narration(number, line)
        else:  # plain prose is narration without a speaker
            self.speaker = self.direction = None
            self.add_narration(number, line)

    def fenced_line(self, number: int, raw: str, line: str) -> None:
        marker = self.fence[0]
        if line.startswith(marker) and not line.strip(marker[0]):  # the closing fence
            self.fence = None
        elif not line:
            pass  # blank lines in a code block: nothing to show on a terminal
        elif self.scenes:
            self.scenes[-1].on_screen.append(on_screen_line(number, raw))
        else:
            self.preamble.append((number, line))

    def add_narration(self, number: int, line: str) -> None:
        text = unquote(line)
        if text:
            self.scenes[-1].narration.append(NarrationLine(text, self.speaker, self.direction, number))

    # ---- timing

    def assign_times(self) -> None:
        """Starts from timestamps where given, else where the previous scene's narration ends; then durations."""
        previous: tuple[float, str] | None = None  # the previous scene's start, and how to name it
        next_start = 0.0
        for scene, timestamp in zip(self.scenes, self.timestamps):
            seconds = self.checked_time(scene, timestamp, previous)
            if seconds is None:
                scene.start = next_start
                previous = (next_start, f"{format_time(next_start)} (estimated from its narration)")
            else:
                scene.start = seconds
                previous = (seconds, timestamp)
            next_start = scene.start + estimated_duration(scene.narration_text, self.options)
        set_durations(self.scenes, self.last_end, self.options)

    def checked_time(self, scene: Scene, timestamp: str | None, previous: tuple[float, str] | None) -> float | None:
        """The scene's timestamp in seconds (None if it has none or it is unreadable), reporting problems."""
        if timestamp is None:
            return None
        seconds = parse_time(timestamp)
        if seconds is None:
            self.issue("bad_timestamp", ERROR, scene.line,
                       f"cannot read the timestamp “{timestamp}” in the scene heading “{clip(scene.title)}”")
        elif problem := out_of_order(timestamp, seconds, previous):
            self.issue("timestamp_backwards", ERROR, scene.line, problem)
        return seconds


def _speaker_match(line: str) -> re.Match | None:
    return _SPEAKER_RE.match(line) or _SPEAKER_COLON_INSIDE_RE.match(line)


def _speaker(who: str, paren: str | None) -> tuple[str | None, str | None]:
    """'Anya' → ('Anya', None); 'Anya (low)', 'Anya – low', or 'Anya' with paren '(low)' → ('Anya', 'low')."""
    who = who.strip()
    if match := _NAME_WITH_PAREN_RE.match(who):
        who, paren = match["name"].rstrip(), match["paren"]
    if paren is not None:
        return who or None, paren.strip("() ") or None
    return split_speaker(who, commas=False)


def _scene_heading(text: str) -> tuple[str | None, str | None, str, str | None]:
    """(timestamp, end of its range, title, subtitle) of a scene heading's text.

    'Scene 2: The Reply [1:05]' → ('1:05', None, 'The Reply', None); also '[1:05–1:30] Title | Sub', 'Title'.
    """
    text = _CLOSING_HASHES_RE.sub("", text).strip()
    if header := match_header(text):
        timestamp, end, title, subtitle = header.time, header.end, header.title, header.subtitle
    else:
        timestamp = end = None
        if match := _TIME_IN_HEADING_RE.search(text):
            timestamp, end = match["token"], match["end"]
            text = text[: match.start()] + " " + text[match.end() :]
        title, _, subtitle = text.partition("|")
        title, subtitle = " ".join(title.split()), subtitle.strip() or None
    return timestamp, end, _SCENE_PREFIX_RE.sub("", title, count=1) or title, subtitle
