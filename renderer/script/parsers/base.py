"""What the LOG and Markdown parsers share: the script's header fields and scenes as they are read, the issues
found, the line loop and the ``Script`` they make. A format supplies ``feed`` (one line) and ``closing`` (its
checks and scene timing once every line is read)."""

from __future__ import annotations

from renderer.script.model import (
    ERROR,
    HINTS,
    Issue,
    Options,
    Scene,
    Script,
    clip,
    new_issue,
    title_from_path,
)
from renderer.script.parsers.common import opening_issues


class ScriptParser:
    format = ""  # "log" | "markdown"
    no_scenes = ""  # what a script without a single scene is told
    hints: dict[str, str] = HINTS  # how to fix each issue code

    def __init__(self, path: str, options: Options):
        self.path = path
        self.options = options
        self.issues: list[Issue] = []
        self.title: str | None = None
        self.script_id: str | None = None
        self.subtitle: str | None = None
        self.expect_subtitle = False
        self.preamble: list[tuple[int, str]] = []  # text before the first scene
        self.scenes: list[Scene] = []
        self.visual: list[list[str]] = []  # per scene, joined at the end
        self.last_end: str | None = None  # the end of the last header's time range, "[0:00–0:20 …]"
        self.block: str | None = None  # what the lines being read are: "visual", "narration", "onscreen" …
        self.speaker: str | None = None
        self.direction: str | None = None
        self.first_text_line: int | None = None

    def parse(self, text: str) -> Script:
        """Normalised (LF-only) text in, a Script out."""
        limit = self.options.max_line_chars
        for number, raw in enumerate(text.split("\n"), start=1):
            if limit and len(raw) > limit:
                self.issue("line_too_long", ERROR, number, f"the line has {len(raw):,} characters, over the limit of "
                           f"{limit:,} (script.max_line_chars); it is not read: “{clip(raw.strip(), 40)}”")
                continue
            if self.ends(raw):
                break
            self.feed(number, raw)
        return self.finish()

    def ends(self, raw: str) -> bool:
        """The line that ends the script (nothing after it is read)."""
        return False

    def feed(self, number: int, raw: str) -> None:
        raise NotImplementedError

    def closing(self) -> None:
        """The format's checks and scene timing, once every line is read."""

    def finish(self) -> Script:
        opening_issues(self.issue, has_text=self.first_text_line is not None, scenes=self.scenes,  # comments alone
                       first_text_line=self.first_text_line, preamble=self.preamble, no_scenes=self.no_scenes)
        for scene, visual in zip(self.scenes, self.visual):
            scene.visual = " ".join(visual)
        self.closing()
        return Script(path=self.path, title=self.title or title_from_path(self.path), script_id=self.script_id,
                      subtitle=self.subtitle, scenes=self.scenes, issues=self.issues, format=self.format)

    def issue(self, code: str, severity: str, line: int | None, what: str) -> None:
        self.issues.append(new_issue(self.path, code, severity, line, what, self.hints[code]))
