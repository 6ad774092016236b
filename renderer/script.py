"""Video scripts: the Script/Scene model and the LOG-format parser.

Pure stdlib and pure data: text in, a ``Script`` out. Parsing never raises on text
input; everything wrong with a script comes back as ``Issue`` records (an error stops
that script, a warning is reported and rendering goes on), each naming file, line and fix.

LOG format in brief (see DESIGN.md, "Input: video scripts")::

    SCRIPT: LOG_0002 — THE DESCENT
    Recovered AI Incident Log            <- optional subtitle
    [0:00 – Cold Open | Terminal Boot-Up] <- scene header: [M:SS – Title | Subtitle], [M:SS] Title, [H:MM:SS …]
    Visual: …                            <- visual prompt (inline and/or following lines)
    Narration: / Narration (Speaker): / Audio (Speaker – direction):  <- narration, one line each
    ON-SCREEN TEXT: / On-screen: / INVITE TEXT: …   <- terminal text: "$ "/"> " commands, "#" comments, output
    END LOG_0002                         <- stops parsing

A label's block runs until the next label, scene header or blank line.
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
    "WARNING",
    "Issue",
    "NarrationLine",
    "OnScreenLine",
    "Scene",
    "Script",
    "parse_file",
    "parse_log",
    "read_text",
]

ERROR = "error"
WARNING = "warning"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Issue:
    code: str  # empty_script, no_scenes, bad_timestamp, timestamp_backwards, empty_scene, unknown_label, …
    severity: str  # "error" | "warning"
    line: int | None  # 1-based line in the file
    message: str  # "<file>:<line>: what is wrong"
    hint: str  # how to fix it
    file: str = ""


@dataclass
class NarrationLine:
    text: str  # verbatim, surrounding “ ” " quote marks stripped
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
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # 0x81 0x8D 0x8F 0x90 0x9D are undefined in cp1252
        return data.decode("cp1252", errors="replace")


def _normalise(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def parse_file(path: str | PathLike, **options) -> Script:
    """read_text + parse_log. An unreadable file gives a Script with an error Issue, never an exception."""
    name = str(path)
    try:
        text = read_text(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported as data
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        issue = Issue(
            "unreadable_file",
            ERROR,
            None,
            f"{name}: cannot read the script: {reason}",
            "Check that the path exists, is a file and is readable.",
            name,
        )
        return Script(name, _stem(name), None, None, [], [issue])
    return parse_log(text, name, **options)


# --------------------------------------------------------------------------- parsing

_SCRIPT_RE = re.compile(r"^\s*SCRIPT\s*:\s*(?P<value>.*)$", re.I)
_END_RE = re.compile(r"^\s*END(?:\s.*)?$")
_BRACKET_RE = re.compile(r"^\s*\[(?P<body>[^\]]*)\](?P<after>.*)$")
_TOKEN_RE = re.compile(r"^(?P<time>[^\s–—|-]+)(?P<rest>.*)$", re.S)
_MSS_RE = re.compile(r"^(\d{1,4}):([0-5]\d(?:\.\d{1,3})?)$", re.A)
_HMMSS_RE = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d(?:\.\d{1,3})?)$", re.A)

_VISUAL_RE = re.compile(r"^\s*visuals?\s*:(?P<inline>.*)$", re.I)
_NARRATION_RE = re.compile(
    r"^\s*(?:narration|narrator|audio|voice[ -]?over)\s*(?:\((?P<paren>[^)]*)\))?\s*:(?P<inline>.*)$", re.I
)
_ONSCREEN_RE = re.compile(r"^\s*on[ -]?screen(?:[ ]+text)?\s*:(?P<inline>.*)$", re.I)
# "INVITE TEXT:", "Error Log Text:" — capitalised word(s) before TEXT (so prose like "the text:" is not a label)
_TEXT_LABEL_RE = re.compile(r"^\s*[A-Z][A-Za-z'-]*(?:[ ]+[A-Z][A-Za-z'-]*)?[ ]+(?:TEXT|Text)\s*:(?P<inline>.*)$")
_UNKNOWN_LABEL_RE = re.compile(r"^\s*(?P<label>[A-Z][A-Za-z ]{0,20}?)\s*(?:\([^)]*\))?\s*:(?P<inline>.*)$")
_PROMPT_RE = re.compile(r"^(?P<prompt>[$>])(?:\s(?P<text>.*))?$", re.S)
_SPEAKER_SPLIT_RE = re.compile(r"\s*[–—]\s*|\s+-\s+")
_ID_SPLIT_RE = re.compile(r"\s*[–—]\s*|\s+-\s+")
_ID_RE = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WHOLE_ID_RE = re.compile(r"^[A-Za-z]+[_-]?\d+[A-Za-z0-9_-]*$")

_OPEN_QUOTES = "“\""
_CLOSE_QUOTES = "”\""
_DASHES = "–—-|"

_HINTS = {
    "empty_script": (
        "Write a SCRIPT: line and at least one scene, e.g. “[0:00 – Title]” followed by Visual: and Narration: lines."
    ),
    "no_scenes": "Start each scene with a timestamp header on its own line, e.g. “[0:00 – Cold Open]”.",
    "bad_timestamp": "Write the time as M:SS or H:MM:SS with seconds 00–59, e.g. “[1:05 – Title]”.",
    "timestamp_backwards": "Put scenes in time order or fix the timestamp.",
    "empty_scene": "Give the scene a Visual: line, narration or ON-SCREEN TEXT:, or delete its header.",
    "unknown_label": (
        "Use Visual:, Narration:, Narration (Speaker):, Audio (Speaker – direction): or ON-SCREEN TEXT:; "
        "delete the line if it is a note to yourself."
    ),
    "text_before_first_scene": "Move this text below a scene header such as “[0:00 – Title]”, or delete it.",
}


@dataclass
class _Header:
    time: str
    title: str
    subtitle: str | None
    strict: bool  # "[time – title]" with nothing after the bracket


@dataclass
class _Label:
    kind: str  # "visual" | "narration" | "onscreen"
    inline: str
    speaker: str | None = None
    direction: str | None = None


def parse_log(
    text: str,
    path: str = "<string>",
    *,
    words_per_minute: float = 150.0,
    min_last_scene_s: float = 4.0,
) -> Script:
    """Parse LOG-format text into a Script; problems are returned as ``Script.issues``."""
    path = str(path)
    try:
        if isinstance(text, (bytes, bytearray)):
            text = _decode(bytes(text))
        return _LogParser(path, words_per_minute, min_last_scene_s).parse(_normalise(str(text)))
    except Exception as exc:  # noqa: BLE001 - safety net: parsing must never raise
        issue = Issue(
            "internal_error",
            ERROR,
            None,
            f"{path}: the script parser failed: {exc!r}",
            "This is a bug in the renderer; report it together with the script.",
            path,
        )
        return Script(path, _stem(path), None, None, [], [issue])


class _LogParser:
    def __init__(self, path: str, words_per_minute: float, min_last_scene_s: float):
        self.path = path
        self.wpm = words_per_minute if _positive(words_per_minute) else 150.0
        self.min_last = min_last_scene_s if _finite(min_last_scene_s) else 4.0
        self.issues: list[Issue] = []
        self.preamble: list[tuple[int, str]] = []  # text before the first scene
        self.title: str | None = None
        self.script_id: str | None = None
        self.subtitle: str | None = None
        self.seen_script_line = False
        self.expect_subtitle = False
        self.scenes: list[Scene] = []
        self.visual: list[list[str]] = []  # per scene, joined at the end
        self.block: str | None = None  # "visual" | "narration" | "onscreen" | "ignored"
        self.speaker: str | None = None
        self.direction: str | None = None
        self.prev_time: tuple[float, str] | None = None  # last well-formed timestamp
        self.first_text_line: int | None = None

    # ---- driver

    def parse(self, text: str) -> Script:
        for number, raw in enumerate(text.split("\n"), start=1):
            if _END_RE.match(raw):
                break
            self.feed(number, raw)
        return self.finish(any(line.strip() for line in text.split("\n")))

    def feed(self, number: int, raw: str) -> None:
        line = raw.strip()
        if not line:
            self.block = None
            return
        if self.first_text_line is None:
            self.first_text_line = number
        header = _match_header(line)
        # inside on-screen text, "[12:03:44] ERROR …" is terminal output, not a new scene
        if header is not None and (self.block != "onscreen" or header.strict):
            self.start_scene(number, line, header)
        elif not self.scenes:
            self.before_first_scene(number, line)
        else:
            self.scene_line(number, raw, line)

    def finish(self, has_text: bool) -> Script:
        if not has_text:
            self.issue("empty_script", ERROR, None, "the script is empty")
        elif not self.scenes:
            what = "no scene header found (expected a line like “[0:00 – Title]”)"
            self.issue("no_scenes", ERROR, self.first_text_line, what)
        else:
            for number, line in self.preamble:
                self.issue(
                    "text_before_first_scene",
                    WARNING,
                    number,
                    f"text before the first scene is ignored: “{_clip(line)}”",
                )
        for i, scene in enumerate(self.scenes):
            scene.visual = " ".join(self.visual[i])
            if i + 1 < len(self.scenes):
                scene.duration = max(0.0, self.scenes[i + 1].start - scene.start)
            else:
                scene.duration = self.last_scene_duration(scene)
            if not (scene.narration or scene.visual or scene.on_screen):
                self.issue(
                    "empty_scene",
                    WARNING,
                    scene.line,
                    f"scene {i + 1} “{_clip(scene.title)}” has no visual, narration or on-screen text",
                )
        self.issues.sort(key=lambda issue: issue.line or 0)
        return Script(
            path=self.path,
            title=self.title or _stem(self.path),
            script_id=self.script_id,
            subtitle=self.subtitle,
            scenes=self.scenes,
            issues=self.issues,
        )

    def last_scene_duration(self, scene: Scene) -> float:
        words = len(scene.narration_text.split())
        estimate = words / self.wpm * 60.0 + 1.0
        return float(math.ceil(max(self.min_last, estimate) - 1e-9))

    # ---- before the first scene

    def before_first_scene(self, number: int, line: str) -> None:
        match = _SCRIPT_RE.match(line)
        if match and not self.seen_script_line:
            self.seen_script_line = True
            self.expect_subtitle = True
            self.script_id, self.title = _split_script_value(match["value"].strip())
            return
        if self.expect_subtitle:
            self.expect_subtitle = False
            if not (_match_label(line) or _UNKNOWN_LABEL_RE.match(line) or _PROMPT_RE.match(line)):
                self.subtitle = line
                return
        self.preamble.append((number, line))

    # ---- scenes

    def start_scene(self, number: int, line: str, header: _Header) -> None:
        seconds = _parse_time(header.time)
        if seconds is None:
            self.issue(
                "bad_timestamp",
                ERROR,
                number,
                f"cannot read the timestamp “{header.time}” in the scene header “{_clip(line)}”",
            )
            start = self.prev_time[0] if self.prev_time else 0.0
        else:
            start = seconds
            if self.prev_time is not None and seconds <= self.prev_time[0]:
                relation = "comes before" if seconds < self.prev_time[0] else "is the same as"
                self.issue(
                    "timestamp_backwards",
                    ERROR,
                    number,
                    f"timestamp {header.time} {relation} the previous scene's {self.prev_time[1]}",
                )
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
        self.block = None

    def scene_line(self, number: int, raw: str, line: str) -> None:
        label = _match_label(line)
        if label is not None:
            self.start_block(number, label)
        elif self.block == "onscreen":
            self.add_on_screen(number, raw)
        elif _PROMPT_RE.match(line):  # a bare "$ cmd" starts on-screen text of its own
            self.block = "onscreen"
            self.add_on_screen(number, raw)
        elif match := _UNKNOWN_LABEL_RE.match(line):
            self.issue(
                "unknown_label",
                WARNING,
                number,
                f"unknown label “{match['label'].strip()}:”; this line and the lines after it up to a blank line "
                f"are not rendered: “{_clip(line)}”",
            )
            self.block = "ignored"
        elif line[0] in _OPEN_QUOTES and self.block in ("visual", "ignored"):
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
        if label.kind == "visual":
            if inline:
                self.visual[-1].append(inline)
        elif label.kind == "narration":
            self.speaker, self.direction = label.speaker, label.direction
            if inline:
                self.add_narration(number, inline, self.speaker, self.direction)
        elif inline:
            self.add_on_screen(number, inline)

    def add_narration(self, number: int, line: str, speaker: str | None, direction: str | None) -> None:
        text = _unquote(line)
        if text:
            self.scenes[-1].narration.append(NarrationLine(text, speaker, direction, number))

    def add_on_screen(self, number: int, raw: str) -> None:
        text = raw.rstrip()
        stripped = text.lstrip()
        if match := _PROMPT_RE.match(stripped):
            item = OnScreenLine((match["text"] or "").strip(), "command", match["prompt"], number)
        elif stripped.startswith("#"):
            item = OnScreenLine(stripped, "comment", "", number)
        else:
            item = OnScreenLine(text, "output", "", number)
        self.scenes[-1].on_screen.append(item)

    def issue(self, code: str, severity: str, line: int | None, what: str) -> None:
        where = f"{self.path}:{line}" if line is not None else self.path
        self.issues.append(Issue(code, severity, line, f"{where}: {what}", _HINTS[code], self.path))


# --------------------------------------------------------------------------- helpers


def _match_header(line: str) -> _Header | None:
    """A line that looks like a scene header (its time may still be unreadable), else None."""
    match = _BRACKET_RE.match(line)
    if match is None:
        return None
    body = match["body"].strip()
    after = match["after"].strip()
    token = _TOKEN_RE.match(body)
    if token is None:
        return None
    time, rest = token["time"], token["rest"].strip()
    has_sep = rest[:1] in _DASHES and rest != ""
    if not time[0].isdigit() or not (":" in time or has_sep):
        return None  # "[Beat]", "[v2: draft]", "[2 seconds later]", "[1]" are not headers
    if has_sep:
        rest = rest[1:].strip()
    strict = not after
    if not rest and after:  # "[0:00] Title" / "[0:00] – Title"
        rest = after.lstrip(_DASHES[:3]).strip()
        after = ""
    title, _, subtitle = rest.partition("|")
    subtitle = subtitle.strip() or after or None
    return _Header(time, title.strip(), subtitle, strict)


def _parse_time(token: str) -> float | None:
    if match := _MSS_RE.match(token):
        return int(match[1]) * 60 + float(match[2])
    if match := _HMMSS_RE.match(token):
        return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return None


def _match_label(line: str) -> _Label | None:
    if match := _VISUAL_RE.match(line):
        return _Label("visual", match["inline"])
    if match := _NARRATION_RE.match(line):
        speaker, direction = _split_speaker(match["paren"])
        return _Label("narration", match["inline"], speaker, direction)
    if match := _ONSCREEN_RE.match(line) or _TEXT_LABEL_RE.match(line):
        return _Label("onscreen", match["inline"])
    return None


def _split_speaker(paren: str | None) -> tuple[str | None, str | None]:
    """'Winston – distorted, low' → ('Winston', 'distorted, low'); 'Winston, calm' → ('Winston', 'calm')."""
    if not paren or not paren.strip():
        return None, None
    parts = _SPEAKER_SPLIT_RE.split(paren.strip(), maxsplit=1)
    if len(parts) == 1:
        parts = paren.strip().split(",", 1)
    speaker = parts[0].strip() or None
    direction = parts[1].strip() if len(parts) > 1 else ""
    return speaker, direction or None


def _split_script_value(value: str) -> tuple[str | None, str | None]:
    """'LOG_0002 — THE DESCENT' → ('LOG_0002', 'THE DESCENT'); 'The Descent' → (None, 'The Descent')."""
    parts = _ID_SPLIT_RE.split(value, maxsplit=1)
    if len(parts) == 2 and _ID_RE.match(parts[0].strip()):
        return parts[0].strip(), parts[1].strip() or None
    if _WHOLE_ID_RE.match(value):
        return value, None
    return None, value or None


def _unquote(line: str) -> str:
    text = line.strip()
    if text[:1] in _OPEN_QUOTES:
        text = text[1:]
    if text[-1:] in _CLOSE_QUOTES:
        text = text[:-1]
    return text.strip()


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stem(path: str) -> str:
    try:
        return Path(path).stem or path or "script"
    except Exception:  # noqa: BLE001
        return path or "script"


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _positive(value) -> bool:
    return _finite(value) and float(value) > 0
