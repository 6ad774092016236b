"""Terminal UI stage: a scene's on-screen text typed out on a themed terminal, as ASS events.

Commands (``$``/``>``) are typed character by character, ``#`` comments faster, output lines appear at once;
the cursor blinks while idle and the screen scrolls when full. Each visual row yields one event per change
(typed character, scroll, blink), so the cost grows linearly with the text.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from renderer import ass
from renderer.graph import Node, NodeInput
from renderer.script import Scene

CHAR_WIDTH_EM = 0.515  # advance of DejaVu Sans Mono per unit of ASS font size, as libass lays it out
CURSOR = "\u2588"
TRAFFIC_LIGHTS = ("#ff5f56", "#ffbd2e", "#27c93f")
IDLE_HORIZON_CS = 6000  # blink on past the scene's planned end: the last scene may be extended
VERSION = "1"


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

    @property
    def rows(self) -> int:
        return max(1, int((self.h - self.chrome_h - 2 * self.pad) // self.line_h))

    @property
    def cols(self) -> int:
        return max(8, int((self.w - 2 * self.pad) // (self.font_size * CHAR_WIDTH_EM)))

    def row_xy(self, slot: int) -> tuple[int, int]:
        return round(self.x + self.pad), round(self.y + self.chrome_h + self.pad + slot * self.line_h)


def geometry(theme: Any, fmt: Any, panel: Any) -> Geometry:
    scale = min(fmt.width, fmt.height) / 720
    font_size = max(8, round(theme.font_size * scale))
    return Geometry(
        x=fmt.width * panel.x, y=fmt.height * panel.y, w=fmt.width * panel.w, h=fmt.height * panel.h,
        font_size=font_size, line_h=font_size * theme.line_spacing, pad=theme.padding * scale,
        chrome_h=round(font_size * 1.7) if theme.window_chrome else 0,
    )


def cells(ch: str) -> int:
    """Terminal cells a character takes: 2 for wide East Asian characters, 0 for combining marks."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


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


@dataclass
class Row:
    text: str
    colour: str
    prompt: str = ""  # already-formatted ASS prefix (prompt symbol in its colour)
    appear: int = 0
    char_times: list[int] = field(default_factory=list)  # when each character shows; empty = all at once
    slots: list[tuple[int, int]] = field(default_factory=list)  # (time, slot) position history
    gone: int | None = None

    @property
    def typed_until(self) -> int:
        return self.char_times[-1] if self.char_times else self.appear

    def chars_at(self, t: int) -> int:
        if not self.char_times:
            return len(self.text)
        return sum(1 for ct in self.char_times if ct <= t)

    def slot_at(self, t: int) -> int:
        slot = self.slots[0][1]
        for when, s in self.slots:
            if when <= t:
                slot = s
        return slot


@dataclass(frozen=True)
class TerminalTrack:
    """The terminal of one scene: an ASS header and events relative to the scene start."""

    header: str
    events: list[ass.Event]
    speed_scale: float  # > 1 when typing was sped up to fit the scene
    rows: int
    cols: int


def _plan(lines: list[dict], cols: int, timing: Any, theme: Any) -> list[tuple[str, list[Row], float, float]]:
    """Rows per on-screen line, with the per-character time (ms) and the pause before it (ms)."""
    comment = getattr(theme, "comment", "") or theme.brightBlack
    planned = []
    for line in lines:
        kind, text = line["kind"], line["text"]
        if kind == "command":
            prompt_text = f"{line.get('prompt') or '$'} "
            prompt = ass.tag_colour(theme.prompt) + ass.escape(prompt_text)
            parts = wrap(text, cols, first_indent=len(prompt_text))
            rows = [Row(p, theme.foreground, prompt if i == 0 else "") for i, p in enumerate(parts)]
            planned.append((kind, rows, timing.command_ms_per_char, timing.line_pause_ms))
        elif kind == "comment":
            rows = [Row(p, comment) for p in wrap(text, cols)]
            planned.append((kind, rows, timing.comment_ms_per_char, timing.line_pause_ms))
        else:
            rows = [Row(p, theme.foreground) for p in wrap(text, cols)]
            planned.append((kind, rows, 0, timing.output_pause_ms))
    return planned


def _schedule(planned, duration_ms: float, timing: Any, max_rows: int) -> tuple[list[Row], float]:
    """Give every row its appearance, character and scroll times (centiseconds); scale speed to fit."""
    needed = sum(pause + ms * sum(len(r.text) for r in rows) for _, rows, ms, pause in planned)
    available = max(1.0, duration_ms - timing.start_delay_ms - 600)
    factor = min(1.0, available / needed) if needed else 1.0
    t = timing.start_delay_ms
    screen: list[Row] = []
    all_rows: list[Row] = []
    for kind, rows, ms, pause in planned:
        if kind == "output":
            t += pause * factor
        for row in rows:
            at = round(t / 10)
            if len(screen) == max_rows:
                screen.pop(0).gone = at
            screen.append(row)
            for slot, r in enumerate(screen):
                if not r.slots or r.slots[-1][1] != slot:
                    r.slots.append((at, slot))
            row.appear = at
            if ms:
                row.char_times = [round((t + (k + 1) * ms * factor) / 10) for k in range(len(row.text))]
                t += len(row.text) * ms * factor
            all_rows.append(row)
        if kind != "output":
            t += pause * factor
    return all_rows, (1.0 / factor if factor else 1.0)


def _row_events(row: Row, next_appear: int | None, geo: Geometry, blink_cs: int, horizon: int,
                cursor_colour: str) -> list[ass.Event]:
    """Events for one row: one per change of typed length, position or cursor."""
    is_cursor_row_until = next_appear if next_appear is not None else horizon
    idle_from = row.typed_until
    keys = {row.appear, *row.char_times, *(t for t, _ in row.slots)}
    if blink_cs > 0:
        keys.update(range(idle_from, is_cursor_row_until, blink_cs))
    keys.add(is_cursor_row_until)
    end = row.gone
    times = sorted(k for k in keys if k >= row.appear and (end is None or k < end))
    colour = ass.tag_colour(row.colour)
    events = []
    for i, t in enumerate(times):
        t_next = times[i + 1] if i + 1 < len(times) else end
        if t < is_cursor_row_until and (t < idle_from or blink_cs <= 0 or ((t - idle_from) // blink_cs) % 2 == 0):
            cursor = ass.tag_colour(cursor_colour) + CURSOR
        else:
            cursor = ""
        x, y = geo.row_xy(row.slot_at(t))
        text = f"{{\\pos({x},{y})}}{row.prompt}{colour}{ass.escape(row.text[: row.chars_at(t)])}{cursor}"
        events.append(ass.Event(t, t_next, 2, "Term", text))
    return events


def _chrome(geo: Geometry, theme: Any, title: str) -> list[ass.Event]:
    x, y = round(geo.x), round(geo.y)
    radius = geo.font_size * 0.5
    shape = f"{{\\pos({x},{y})\\p1\\bord0\\shad0"
    events = [ass.Event(0, None, 0, "Shape",
                        f"{shape}{ass.fill(theme.background, theme.panel_opacity)}}}{ass.rect(geo.w, geo.h, radius)}")]
    if geo.chrome_h:
        events.append(ass.Event(0, None, 1, "Shape",
                                f"{shape}{ass.fill(theme.title_bar)}}}{ass.rect(geo.w, geo.chrome_h, radius)}"))
        dot = round(geo.chrome_h * 0.4)
        for i, c in enumerate(TRAFFIC_LIGHTS):
            dx = x + round(geo.pad + i * dot * 1.7)
            dy = y + round((geo.chrome_h - dot) / 2)
            events.append(ass.Event(0, None, 2, "Shape",
                                    f"{{\\pos({dx},{dy})\\p1\\bord0\\shad0{ass.fill(c)}}}{ass.circle(dot)}"))
        size = round(geo.font_size * 0.8)
        max_chars = max(4, int((geo.w - 2 * geo.pad - 6 * dot) // (size * CHAR_WIDTH_EM)))
        label = title if len(title) <= max_chars else title[: max_chars - 1] + "…"
        events.append(ass.Event(0, None, 2, "Term",
                                f"{{\\an8\\pos({round(geo.x + geo.w / 2)},{y + round((geo.chrome_h - size * 1.15) / 2)})"
                                f"\\fs{size}}}{ass.tag_colour(theme.foreground)}{ass.escape(label)}"))
    return events


def build_track(lines: list[dict], *, title: str, duration_s: float, theme: Any, timing: Any, fmt: Any,
                panel: Any, always_show: bool) -> TerminalTrack:
    """The terminal for one scene. ``lines`` are on-screen lines as dicts with kind/text/prompt."""
    geo = geometry(theme, fmt, panel)
    head = ass.header(fmt.width, fmt.height, theme.font_family, geo.font_size, theme.foreground)
    if not lines and not always_show:
        return TerminalTrack(head, [], 1.0, geo.rows, geo.cols)
    if not lines:
        lines = [{"kind": "command", "text": "", "prompt": "$"}]
    planned = _plan(lines, geo.cols, timing, theme)
    rows, speed_scale = _schedule(planned, duration_s * 1000, timing, geo.rows)
    horizon = math.ceil(duration_s * 100) + IDLE_HORIZON_CS
    blink = round(timing.cursor_blink_ms / 10)
    events = _chrome(geo, theme, title)
    for i, row in enumerate(rows):
        next_appear = rows[i + 1].appear if i + 1 < len(rows) else None
        events += _row_events(row, next_appear, geo, blink, horizon, theme.cursor)
    return TerminalTrack(head, events, speed_scale, geo.rows, geo.cols)


def node(scene: Scene, script_title: str) -> Node:
    """The graph node for a scene's terminal; if it fails the scene simply has no terminal."""
    lines = [{"kind": line.kind, "text": line.text, "prompt": line.prompt} for line in scene.on_screen]
    title = f"{script_title} — {scene.title}" if scene.title else script_title
    data = {"lines": lines, "title": title, "duration": scene.duration}

    def fn(inp: NodeInput) -> TerminalTrack:
        cfg = inp.cfg
        return build_track(lines, title=title, duration_s=scene.duration, theme=OmegaConf.create(cfg["theme"]),
                           timing=OmegaConf.create(cfg["terminal"]), fmt=OmegaConf.create(cfg["format"]),
                           panel=OmegaConf.create(cfg["assembly.panel"]),
                           always_show=cfg["assembly.strategy"] == "ui_only")

    def no_terminal(inp: NodeInput, exc: Exception) -> TerminalTrack:
        return TerminalTrack("", [], 1.0, 0, 0)

    return Node(name=f"terminal/{scene.index}", stage="terminal", version=VERSION,
                reads=("theme", "terminal", "format", "assembly.panel", "assembly.strategy"),
                data=data, fn=fn, fallback=no_terminal)
