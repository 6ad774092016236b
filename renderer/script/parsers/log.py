"""The LOG format, the production script format (see DESIGN.md, "Input: video scripts")::

    SCRIPT: LOG_0002 — THE DESCENT
    Recovered AI Incident Log            <- optional subtitle
    [0:00 – Cold Open | Terminal Boot-Up] <- scene header: [M:SS – Title | Subtitle], [M:SS] Title, [H:MM:SS …]
    Visual: …                            <- visual prompt (inline and/or following lines)
    Narration: / Narration (Speaker): / Audio (Speaker – direction):  <- narration
    ON-SCREEN TEXT: / On-screen: / INVITE TEXT: …   <- terminal text: "$ "/"> " commands, "#" comments, output
    END LOG_0002                         <- stops parsing

A label's block runs until the next label, scene header or blank line (a blank line straight after a label
with nothing inline does not end it). Labels pasted in bold (``**Visual:**``) are labels. Quoted or plain lines
outside any block are narration. A scene runs to the next timestamp; the last one to the end of its time range
(``[3:10–3:30 – Title]``) or else as long as its narration needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from renderer.script.model import (
    ERROR,
    WARNING,
    NarrationLine,
    Options,
    Scene,
    Script,
    clip,
)
from renderer.script.parsers.base import ScriptParser
from renderer.script.parsers.common import (
    OPEN_QUOTES,
    PROMPT_RE,
    Header,
    match_header,
    on_screen_line,
    out_of_order,
    parse_time,
    set_durations,
    split_script_value,
    split_speaker,
    unquote,
)

_SCRIPT_RE = re.compile(r"^\s*SCRIPT\s*:\s*(?P<value>.*)$", re.I)
# "END", "END LOG_0002", "END OF LOG" — but not on-screen text such as "END OF TRANSMISSION"
_END_RE = re.compile(r"^\s*END(?:\s+(?:OF\s+)?(?:LOG|SCRIPT)|\s+[\w.-]*\d[\w.-]*)?\s*$")
_VISUAL_RE = re.compile(r"^\s*visuals?\s*:(?P<inline>.*)$", re.I)
_NARRATION_RE = re.compile(
    r"^\s*(?:narration|narrator|audio|voice[ -]?over)\s*(?:\((?P<paren>[^)]*)\))?\s*:(?P<inline>.*)$", re.I
)
_ONSCREEN_RE = re.compile(r"^\s*on[ -]?screen(?:[ ]+text)?\s*:(?P<inline>.*)$", re.I)
# "INVITE TEXT:", "Error Log Text:" — capitalised word(s) before TEXT (so prose like "the text:" is not a label)
_TEXT_LABEL_RE = re.compile(r"^\s*[A-Z][A-Za-z'-]*(?:[ ]+[A-Z][A-Za-z'-]*)?[ ]+(?:TEXT|Text)\s*:(?P<inline>.*)$")
# linear: the label ends in a letter and each space run is matched once (two adjacent ``\s*``, or a label that may
# end in spaces, would try every split of a long run: one line of 4,000 spaces took a second)
_UNKNOWN_LABEL_RE = re.compile(
    r"^\s*(?P<label>[A-Z](?:[A-Za-z ]{0,19}?[A-Za-z])?)\s*+(?:\([^)]*\)\s*)?:(?P<inline>.*)$"
)
# "**Visual:** …" / "**Narration (W)**: …" — labels pasted from a word processor with bold kept
_BOLD_LABEL_RE = re.compile(r"^(?:\*\*|__)(?P<label>[^*_:]+?)(?::(?:\*\*|__)|(?:\*\*|__)\s*:)")


@dataclass
class _Label:
    kind: str  # "visual" | "narration" | "onscreen"
    inline: str
    speaker: str | None = None
    direction: str | None = None


def parse(text: str, path: str, options: Options) -> Script:
    """Parse normalised (LF-only) LOG text."""
    return _LogParser(path, options).parse(text)


class _LogParser(ScriptParser):
    format = "log"
    no_scenes = "no scene header found (expected a line like “[0:00 – Title]”)"

    def __init__(self, path: str, options: Options):
        super().__init__(path, options)
        self.seen_script_line = False
        self.block_is_empty = False  # a label with nothing after it yet: a blank line does not end its block
        self.prev_time: tuple[float, str] | None = None  # last well-formed timestamp

    def ends(self, raw: str) -> bool:
        return bool(_END_RE.match(raw))

    def feed(self, number: int, raw: str) -> None:
        line = _unbold_label(raw.strip())
        if not line:
            if not self.block_is_empty:
                self.block = None
            return
        self.block_is_empty = False
        if self.first_text_line is None:
            self.first_text_line = number
        header = match_header(line)
        # inside on-screen text, "[12:03:44] ERROR …" is terminal output, not a new scene
        if header is not None and (self.block != "onscreen" or header.strict):
            self.start_scene(number, line, header)
        elif not self.scenes:
            self.before_first_scene(number, line)
        else:
            self.scene_line(number, raw, line)

    def closing(self) -> None:
        set_durations(self.scenes, self.last_end, self.options)

    # ---- before the first scene

    def before_first_scene(self, number: int, line: str) -> None:
        match = _SCRIPT_RE.match(line)
        if match and not self.seen_script_line:
            self.seen_script_line = True
            self.expect_subtitle = True
            self.script_id, self.title = split_script_value(match["value"].strip())
            return
        if self.expect_subtitle:
            self.expect_subtitle = False
            if not (_match_label(line) or _UNKNOWN_LABEL_RE.match(line) or PROMPT_RE.match(line)):
                self.subtitle = line
                return
        self.preamble.append((number, line))

    # ---- scenes

    def start_scene(self, number: int, line: str, header: Header) -> None:
        seconds = parse_time(header.time)
        if seconds is None:
            self.issue("bad_timestamp", ERROR, number,
                       f"cannot read the timestamp “{header.time}” in the scene header “{clip(line)}”")
            start = self.prev_time[0] if self.prev_time else 0.0
        else:
            start = seconds
            if problem := out_of_order(header.time, seconds, self.prev_time):
                self.issue("timestamp_backwards", ERROR, number, problem)
            self.prev_time = (seconds, header.time)
        index = len(self.scenes)
        self.scenes.append(
            Scene(
                index=index,
                start=start,
                duration=0.0,
                title=header.title or f"Scene {index + 1}",
                subtitle=header.subtitle,
                visual="",
                line=number,
            )
        )
        self.visual.append([])
        self.last_end = header.end
        self.block = None

    def scene_line(self, number: int, raw: str, line: str) -> None:
        label = _match_label(line)
        if label is not None:
            self.start_block(number, label)
        elif self.block == "onscreen":
            self.scenes[-1].on_screen.append(on_screen_line(number, raw))
        elif PROMPT_RE.match(line):  # a bare "$ cmd" starts on-screen text of its own
            self.block = "onscreen"
            self.scenes[-1].on_screen.append(on_screen_line(number, raw))
        elif match := _UNKNOWN_LABEL_RE.match(line):
            self.issue("unknown_label", WARNING, number,
                       f"unknown label “{match['label'].strip()}:”; this line and the lines after it up to a blank "
                       f"line are not rendered: “{clip(raw.strip())}”")
            self.block = "ignored"
        elif line[0] in OPEN_QUOTES and self.block in ("visual", "ignored"):
            self.block = None  # a quotation ends a visual description: it is spoken
            self.add_narration(number, line, None, None)
        elif self.block == "visual":
            self.visual[-1].append(line)
        elif self.block == "ignored":
            pass
        elif self.block == "narration":
            self.add_narration(number, line, self.speaker, self.direction)
        else:  # quoted or plain prose outside any block is narration
            self.add_narration(number, line, None, None)

    def start_block(self, number: int, label: _Label) -> None:
        self.block = label.kind
        inline = label.inline.strip()
        self.block_is_empty = not inline
        if label.kind == "visual":
            if inline:
                self.visual[-1].append(inline)
        elif label.kind == "narration":
            self.speaker, self.direction = label.speaker, label.direction
            if inline:
                self.add_narration(number, inline, self.speaker, self.direction)
        elif inline:
            self.scenes[-1].on_screen.append(on_screen_line(number, inline))

    def add_narration(self, number: int, line: str, speaker: str | None, direction: str | None) -> None:
        text = unquote(line)
        if text:
            self.scenes[-1].narration.append(NarrationLine(text, speaker, direction, number))


def _unbold_label(line: str) -> str:
    """'**Visual:** A hall.' → 'Visual: A hall.'; lines that are not labels stay as written."""
    unbolded = _BOLD_LABEL_RE.sub(r"\g<label>:", line, count=1)
    is_label = unbolded != line and (_match_label(unbolded) or _UNKNOWN_LABEL_RE.match(unbolded))
    return unbolded if is_label else line


def _match_label(line: str) -> _Label | None:
    if match := _VISUAL_RE.match(line):
        return _Label("visual", match["inline"])
    if match := _NARRATION_RE.match(line):
        speaker, direction = split_speaker(match["paren"])
        return _Label("narration", match["inline"], speaker, direction)
    if match := _ONSCREEN_RE.match(line) or _TEXT_LABEL_RE.match(line):
        return _Label("onscreen", match["inline"])
    return None
