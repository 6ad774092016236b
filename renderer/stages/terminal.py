"""Terminal UI stage: a scene's on-screen text typed out on a themed terminal, as ASS events.

Commands (``$``/``>``) are typed character by character, ``#`` comments faster, output lines appear at once;
after a command's output a fresh prompt waits with a blinking cursor, and the next command is typed there;
the screen scrolls when full. Each visual row yields one event per change (typed character, scroll, blink),
so the cost grows linearly with the text. The schedule is planned at the configured speeds first; when it
cannot finish within the scene, every time is scaled down together and ``speed_scale`` says by how much.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import wcwidth
from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput
from renderer.engine.output import StageOutput
from renderer.config import PALETTE
from renderer.media import ass, contrast, layout, sgr
from renderer.script import Scene

CHAR_WIDTH_EM = 0.515  # advance of DejaVu Sans Mono per unit of ASS font size, as libass lays it out
CURSOR = "\u2588"
TAB_STOP = 8
TRAFFIC_LIGHTS = ("#ff5f56", "#ffbd2e", "#27c93f")
IDLE_HORIZON_CS = 6000  # blink on past the scene's planned end: the last scene may be extended
END_RESERVE_MS = 600  # typing finishes at least this long before the scene ends
VERSION = "4"  # 4: placed by the layout rule, with a shadow; text colours made readable on the panel
TEXT_LAYER = 2  # the typed lines (0: the panel and its shadow, 1: its window's chrome and title)
SHADOW = 0.012  # of the frame's shorter side: how far the panel's shadow falls (right and down), and its blur
SHADOW_OPACITY = 0.45
# the theme settings every terminal is drawn with; an ANSI colour is read only by text whose escape codes show it
THEME_READS = ("background", "foreground", "prompt", "cursor", "comment", "brightBlack", "title_bar", "font_family",
               "font_size", "line_spacing", "padding", "window_chrome", "panel_opacity")


@dataclass(frozen=True)
class Geometry:
    x: float
    y: float
    w: float
    h: float
    font_size: int
    line_h: float
    pad: float
    chrome_h: float
    shadow: float = 0.0  # how far the panel's shadow falls

    @property
    def rows(self) -> int:
        return max(1, int((self.h - self.chrome_h - 2 * self.pad) // self.line_h))

    @property
    def cols(self) -> int:
        return max(8, int((self.w - 2 * self.pad) // (self.font_size * CHAR_WIDTH_EM)))

    def row_xy(self, slot: int) -> tuple[int, int]:
        return round(self.x + self.pad), round(self.y + self.chrome_h + self.pad + slot * self.line_h)


def geometry(theme: Any, fmt: Any, panel: Any) -> Geometry:
    """The terminal's grid in the panel's box: the layout rule's, or where ``panel`` (``assembly.panel``) puts it."""
    scale = min(fmt.width, fmt.height) / 720
    font_size = max(8, round(theme.font_size * scale))
    box = layout.frame_layout(fmt.width, fmt.height, panel).panel
    return Geometry(
        x=box.x, y=box.y, w=box.w, h=box.h,
        font_size=font_size, line_h=font_size * theme.line_spacing, pad=theme.padding * scale,
        chrome_h=round(font_size * 1.7) if theme.window_chrome else 0,
        shadow=max(2.0, SHADOW * min(fmt.width, fmt.height)),
    )


# --------------------------------------------------------------------------- text on a character grid


def cells(ch: str) -> int:
    """Terminal cells a character takes, as a terminal reckons them (wcwidth): 2 for wide East Asian
    characters and emoji, 0 for combining marks, zero-width and control characters."""
    return max(0, wcwidth.wcwidth(ch))


def expand_tabs(text: str, start_col: int = 0) -> str:
    """Tabs to spaces up to the next tab stop, counted in cells from ``start_col`` (where the text begins)."""
    out, col = [], start_col
    for ch in text:
        if ch == "\t":
            width = TAB_STOP - col % TAB_STOP
            out.append(" " * width)
        else:
            width = cells(ch)
            out.append(ch)
        col += width
    return "".join(out)


def display_text(text: str, start_col: int = 0) -> str:
    """What a terminal shows for ``text``: tabs expanded, control characters gone, one line."""
    return ass.printable(expand_tabs(text, start_col))


def styled_display(text: str, start_col: int = 0) -> tuple[str, list[str | None]]:
    """``display_text`` for text that may carry ANSI escape codes: what shows, and each character's colour
    (an ANSI colour name of the theme, '#rrggbb', or None for the line's own colour)."""
    if not sgr.has_escapes(text):
        shown = display_text(text, start_col)
        return shown, [None] * len(shown)
    plain, colours = sgr.parse(text)
    out: list[str] = []
    styles: list[str | None] = []
    col = start_col
    for ch, colour in zip(plain, colours):
        piece = display_text(ch, col)
        out.append(piece)
        styles += [colour] * len(piece)
        col += sum(cells(c) for c in piece)
    return "".join(out), styles


def wrap_styled(text: str, styles: list[str | None], cols: int, first_indent: int = 0
                ) -> list[tuple[str, tuple[str | None, ...]]]:
    """``wrap``, each row with its characters' colours."""
    rows, at = [], 0
    for row in wrap(text, cols, first_indent):
        rows.append((row, tuple(styles[at:at + len(row)])))
        at += len(row)
    return rows


def wrap(text: str, cols: int, first_indent: int = 0) -> list[str]:
    """Hard-wrap at ``cols`` cells (terminals wrap mid-word); the first row starts ``first_indent`` cells in."""
    rows, current, used = [], "", first_indent
    for ch in text:
        width = cells(ch)
        if used + width > cols and current:
            rows.append(current)
            current, used = "", 0
        current += ch
        used += width
    rows.append(current)
    return rows


def truncate(text: str, max_cells: int) -> str:
    """``text`` cut to ``max_cells`` cells, with an ellipsis when something was cut."""
    if sum(cells(ch) for ch in text) <= max_cells:
        return text
    out, used = "", 0
    for ch in text:
        if used + cells(ch) > max_cells - 1:
            break
        out += ch
        used += cells(ch)
    return out + "…"


# --------------------------------------------------------------------------- the typing schedule


@dataclass
class Row:
    """One visual row. Times are in ms while scheduling, centiseconds once ``retime`` has run."""

    text: str
    colour: str
    prompt: str = ""  # already-formatted ASS prefix (prompt symbol in its colour)
    styles: tuple[str | None, ...] = ()  # per character: '#rrggbb' from its escape codes, None = ``colour``
    appear: float = 0
    typing_from: float = 0  # the cursor is solid from here until the last character is typed
    char_times: list[float] = field(default_factory=list)  # when each character shows; empty = all at once
    slots: list[tuple[float, int]] = field(default_factory=list)  # (time, slot) position history
    gone: float | None = None

    @property
    def typed_until(self) -> float:
        return self.char_times[-1] if self.char_times else self.typing_from

    def chars_at(self, t: float) -> int:
        return bisect.bisect_right(self.char_times, t) if self.char_times else len(self.text)

    def slot_at(self, t: float) -> int:
        slot = self.slots[0][1]
        for when, s in self.slots:
            if when <= t:
                slot = s
        return slot

    def type_out(self, start: float, ms_per_char: float) -> float:
        """Type the row's characters from ``start``; return when the last one shows."""
        self.typing_from = start
        self.char_times = [start + (k + 1) * ms_per_char for k in range(len(self.text))]
        return self.typed_until

    def retime(self, clock: Callable[[float], int]) -> None:
        self.appear, self.typing_from = clock(self.appear), clock(self.typing_from)
        self.char_times = [clock(t) for t in self.char_times]
        self.slots = [(clock(t), s) for t, s in self.slots]
        self.gone = None if self.gone is None else clock(self.gone)


class Screen:
    """The rows on screen, oldest first; a row added to a full screen scrolls the top one off."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self.visible: list[Row] = []
        self.history: list[Row] = []

    def add(self, row: Row, at: float) -> Row:
        if len(self.visible) == self.max_rows:
            self.visible.pop(0).gone = at
        self.visible.append(row)
        self.history.append(row)
        row.appear = row.typing_from = at
        for slot, r in enumerate(self.visible):
            if not r.slots or r.slots[-1][1] != slot:
                r.slots.append((at, slot))
        return row


def _resolve(styles: tuple[str | None, ...], theme: Any) -> tuple[str | None, ...]:
    """Colours as hex: ANSI names from the theme's palette; () for a row in its own colour throughout."""
    if not any(styles):
        return ()
    return tuple(None if s is None else s if s.startswith("#") else getattr(theme, s) for s in styles)


def _prompt_prefix(theme: Any, symbol: str) -> str:
    return ass.tag_colour(theme.prompt) + ass.escape(f"{symbol} ")


def _schedule(lines: list[dict], cols: int, max_rows: int, timing: Any, theme: Any) -> tuple[list[Row], float]:
    """Rows with appearance, character and scroll times in ms from the start of typing; and when it all ends.

    A typed line is followed by a pause (the Enter key). A command (or a comment typed at a waiting prompt)
    then runs: its output lines follow, each after a short pause, and a fresh prompt comes back with the
    last one; typing into it starts after another pause. Only a last command without output keeps the
    cursor at its end, as if still running.
    """
    screen = Screen(max_rows)
    comment_colour = getattr(theme, "comment", "") or theme.brightBlack
    t = 0.0
    waiting_prompt: Row | None = None  # a fresh prompt row nothing has been typed into yet
    running = False  # a command was entered and its output has not ended yet
    symbol = "$"  # of the latest command
    for i, line in enumerate(lines):
        kind = line["kind"]
        upcoming = lines[i + 1] if i + 1 < len(lines) else None
        if kind == "output":
            t += timing.output_pause_ms if i else 0
            for text, styles in wrap_styled(*styled_display(line["text"]), cols):
                screen.add(Row(text, theme.foreground, styles=_resolve(styles, theme)), t)
        else:
            at_prompt = kind == "command" or waiting_prompt is not None
            if waiting_prompt is not None:
                t += timing.line_pause_ms  # a moment at the prompt before typing
            if kind == "command":
                symbol = line.get("prompt") or "$"
            indent = len(symbol) + 1 if at_prompt else 0
            colour, ms_per_char = ((theme.foreground, timing.command_ms_per_char) if kind == "command"
                                   else (comment_colour, timing.comment_ms_per_char))
            shown, line_styles = styled_display(line["text"], indent)
            for k, (text, styles) in enumerate(wrap_styled(shown, line_styles, cols, first_indent=indent)):
                if k == 0 and waiting_prompt is not None:
                    row, waiting_prompt = waiting_prompt, None
                    row.text, row.colour, row.styles = text, colour, _resolve(styles, theme)
                else:
                    prefix = _prompt_prefix(theme, symbol) if k == 0 and at_prompt else ""
                    row = screen.add(Row(text, colour, prefix, styles=_resolve(styles, theme)), t)
                t = row.type_out(t, ms_per_char)
            running = at_prompt
            if upcoming is not None:
                t += timing.line_pause_ms  # Enter
        output_ends = upcoming is None or upcoming["kind"] != "output"
        if running and output_ends and (upcoming is not None or kind == "output"):
            next_symbol = (upcoming.get("prompt") if upcoming and upcoming["kind"] == "command" else None) or symbol
            waiting_prompt = screen.add(Row("", theme.foreground, _prompt_prefix(theme, next_symbol)), t)
            running = False
    return screen.history, t


def _speed_factor(needed_ms: float, duration_ms: float, timing: Any) -> float:
    """Time multiplier (<= 1) that makes the typing finish inside the scene."""
    available = max(1.0, duration_ms - timing.start_delay_ms - END_RESERVE_MS)
    return min(1.0, available / needed_ms) if needed_ms > 0 else 1.0


# --------------------------------------------------------------------------- ASS events


def _cursor_visible(t: int, row: Row, cursor_until: int, blink_cs: int) -> bool:
    """Solid while typing; while idle (waiting at a prompt, or after typing) it blinks from the idle start."""
    if t >= cursor_until:
        return False
    if row.typing_from <= t < row.typed_until:
        return True
    idle_since = row.appear if t < row.typing_from else row.typed_until
    return blink_cs <= 0 or ((t - idle_since) // blink_cs) % 2 == 0


def _row_events(row: Row, cursor_until: int, geo: Geometry, blink_cs: int, cursor_colour: str) -> list[ass.Event]:
    """Events for one row: one per change of typed length, position or cursor."""
    keys = {row.appear, row.typing_from, *row.char_times, *(t for t, _ in row.slots), cursor_until}
    if blink_cs > 0:
        keys.update(range(int(row.appear), int(min(row.typing_from, cursor_until)), blink_cs))
        keys.update(range(int(row.typed_until), cursor_until, blink_cs))
    times = sorted(k for k in keys if k >= row.appear and (row.gone is None or k < row.gone))
    pieces = _pieces(row)  # per character, so what is typed so far is a join of the first ones
    colour, cursor = ass.tag_colour(row.colour), ass.tag_colour(cursor_colour) + CURSOR
    events = []
    for i, t in enumerate(times):
        end = times[i + 1] if i + 1 < len(times) else row.gone
        x, y = geo.row_xy(row.slot_at(t))
        shown = "".join(pieces[: row.chars_at(t)])
        tail = cursor if _cursor_visible(t, row, cursor_until, blink_cs) else ""
        events.append(ass.Event(int(t), None if end is None else int(end), TEXT_LAYER, "Term",
                                f"{{\\pos({x},{y})}}{row.prompt}{colour}{shown}{tail}"))
    return events


def _pieces(row: Row) -> list[str]:
    """Each character of the row as ASS text, with a colour tag where its colour differs from the one before."""
    pieces = [ass.escape(ch) for ch in row.text]
    previous = row.colour
    for k, style in enumerate(row.styles):
        wanted = style or row.colour
        if wanted != previous:
            pieces[k] = ass.tag_colour(wanted) + pieces[k]
            previous = wanted
    return pieces


def _chrome(geo: Geometry, theme: Any, title: str, *, body: bool = True) -> list[ass.Event]:
    """The panel, and the title bar with its three dots and the title. The bar is not drawn over the panel
    body but beside it: libass blends every drawn pixel in every frame, so overlapping shapes cost time.
    ``body=False`` leaves the panel body out, for a terminal drawn on its own background colour."""
    x, y = round(geo.x), round(geo.y)
    radius = geo.font_size * 0.5
    chrome_h = round(geo.chrome_h)
    panel = f"{{\\pos({x},{y + chrome_h})\\p1\\bord0\\shad0{ass.fill(theme.background, theme.panel_opacity)}}}"
    events = [*_shadow(geo),
              ass.Event(0, None, 0, "Shape", panel + ass.rect(geo.w, geo.h - chrome_h, radius, top=not chrome_h))
              ] if body else []
    if not chrome_h:
        return events
    bar = f"{{\\pos({x},{y})\\p1\\bord0\\shad0{ass.fill(theme.title_bar)}}}"
    events.append(ass.Event(0, None, 0, "Shape", bar + ass.rect(geo.w, chrome_h, radius, bottom=False)))
    dot = round(chrome_h * 0.4)
    for i, c in enumerate(TRAFFIC_LIGHTS):
        dx = x + round(geo.pad + i * dot * 1.7)
        dy = y + round((chrome_h - dot) / 2)
        events.append(ass.Event(0, None, 1, "Shape", f"{{\\pos({dx},{dy})\\p1\\bord0\\shad0{ass.fill(c)}}}"
                                                     f"{ass.circle(dot)}"))
    size = round(geo.font_size * 0.8)
    label = truncate(display_text(title), max(4, int((geo.w - 2 * geo.pad - 6 * dot) // (size * CHAR_WIDTH_EM))))
    events.append(ass.Event(0, None, 1, "Term",
                            f"{{\\an8\\pos({round(geo.x + geo.w / 2)},{y + round((chrome_h - size * 1.15) / 2)})"
                            f"\\fs{size}}}{ass.tag_colour(theme.foreground)}{ass.escape(label)}"))
    return events


def _shadow(geo: Geometry) -> list[ass.Event]:
    """A soft shadow under the panel: blurred, translucent black strips along its right and bottom edges, offset
    right and down. Only what shows beside the panel is drawn (plus the blur's reach under its edge), in two
    strips rather than one L: libass blends every pixel of a drawing's bounding box in every frame, and an L's
    box is the whole panel. Blur is linear, so the two strips meet without a seam (under the panel)."""
    reach = geo.shadow
    blur = max(1, round(reach / 2))  # libass's cost grows with the blur (its bitmap's margin): soft enough
    x, y = round(geo.x + reach), round(geo.y + reach)
    w, h, inner = round(geo.w), round(geo.h), round(reach + 2 * blur)
    tags = f"\\p1\\bord0\\shad0\\blur{blur}{ass.fill('#000000', SHADOW_OPACITY)}"
    right = f"{{\\pos({x + w - inner},{y}){tags}}}{ass.rect(inner, h)}"
    bottom = f"{{\\pos({x},{y + h - inner}){tags}}}{ass.rect(w - inner, inner)}"
    return [ass.Event(0, None, 0, "Shape", right), ass.Event(0, None, 0, "Shape", bottom)]


def readable_theme(theme: Any, opacity: float) -> Any:
    """``theme`` with every colour text is typed in (foreground, prompt, comment and the ANSI palette) made
    readable (WCAG 4.5:1) on its background at ``opacity`` over any picture; a theme that is already keeps them."""
    colours = {name: contrast.readable(theme[name], theme.background, opacity)
               for name in ("foreground", "prompt", *PALETTE) if name in theme}
    if theme.get("comment"):
        colours["comment"] = contrast.readable(theme.comment, theme.background, opacity)
    return OmegaConf.merge(theme, colours)


@dataclass(frozen=True)
class TerminalTrack(StageOutput):
    """The terminal of one scene: an ASS header and events relative to the scene start."""

    header: str
    events: list[ass.Event]
    speed_scale: float  # > 1 when typing was sped up to fit the scene
    rows: int
    cols: int

    def words(self) -> list[tuple[int, int | None]]:
        """When its typed lines are on screen (its window's title alone is not something to read)."""
        return ass.text_spans(self.events, layers=(TEXT_LAYER,))


def build_track(lines: list[dict], *, title: str, duration_s: float, theme: Any, timing: Any, fmt: Any,
                panel: Any, always_show: bool) -> TerminalTrack:
    """The terminal for one scene. ``lines`` are on-screen lines as dicts with kind/text/prompt."""
    geo = geometry(theme, fmt, panel)
    theme = readable_theme(OmegaConf.create(theme) if not OmegaConf.is_config(theme) else theme,
                           1.0 if always_show else theme.panel_opacity)
    head = ass.header(fmt.width, fmt.height, ass.plain_styles(theme.font_family, geo.font_size, theme.foreground))
    if not lines and not always_show:
        return TerminalTrack(head, [], 1.0, geo.rows, geo.cols)
    if not lines:
        lines = [{"kind": "command", "text": "", "prompt": "$"}]
    rows, needed_ms = _schedule(lines, geo.cols, geo.rows, timing, theme)
    factor = _speed_factor(needed_ms, duration_s * 1000, timing)
    for row in rows:
        row.retime(lambda ms: round((timing.start_delay_ms + ms * factor) / 10))
    horizon = math.ceil(duration_s * 100) + IDLE_HORIZON_CS
    blink = round(timing.cursor_blink_ms / 10)
    # always_show is the terminal-only strategy: the frame is already the theme's background, so a
    # full-frame panel of that colour would change no pixel and cost a blend of the whole frame per frame
    events = _chrome(geo, theme, title, body=not always_show)
    for i, row in enumerate(rows):
        cursor_until = int(rows[i + 1].appear) if i + 1 < len(rows) else horizon
        events += _row_events(row, cursor_until, geo, blink, theme.cursor)
    return TerminalTrack(head, events, 1.0 / factor, geo.rows, geo.cols)


def _typing_warnings(scene: Scene, track: TerminalTrack) -> tuple[str, ...]:
    if track.speed_scale <= 1.01:
        return ()
    return (f"scene {scene.index + 1} ({scene.title}): on-screen text typed {track.speed_scale:.1f}x faster to "
            f"fit its {scene.duration:.0f} s; give the scene more time or shorten the text",)


def node(scene: Scene, script_title: str) -> Node:
    """The graph node for a scene's terminal; if it fails the scene simply has no terminal."""
    lines = [{"kind": line.kind, "text": line.text, "prompt": line.prompt} for line in scene.on_screen]
    palette = sgr.palette_used([line["text"] for line in lines])
    title = f"{script_title} — {scene.title}" if scene.title else script_title
    data = {"lines": lines, "title": title, "duration": scene.duration}

    def fn(inp: NodeInput) -> TerminalTrack:
        track = build_track(lines, title=title, duration_s=scene.duration, theme=OmegaConf.create(inp.tree("theme")),
                            timing=OmegaConf.create(inp.cfg["terminal"]), fmt=OmegaConf.create(inp.tree("format")),
                            panel=OmegaConf.create(inp.cfg["assembly.panel"]),
                            always_show=inp.cfg["assembly.picture"] == "background")
        return dataclasses.replace(track, warnings=_typing_warnings(scene, track))

    def no_terminal(inp: NodeInput, exc: Exception) -> TerminalTrack:
        return TerminalTrack("", [], 1.0, 0, 0)

    return Node(stage="terminal", scene=scene.index, version=VERSION,
                reads=(*(f"theme.{leaf}" for leaf in (*THEME_READS, *palette)), "terminal", "format.width", "format.height",
                       "assembly.panel", "assembly.picture"),
                data=data, fn=fn, fallback=no_terminal)


def add(comp) -> None:
    for scene in comp.script.scenes:
        comp.add(node(scene, comp.script.title))
