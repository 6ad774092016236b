"""Title card layer (``assembly.title_card=true``): the script's title and subtitle over the first scene for
``assembly.title_card_s`` seconds, fading in and out, in the theme's font and colours on a band of its
background. The band sits in the larger free part of the frame beside the terminal panel, at its outer edge
(the captions take the part next to the panel and keep clear of it), so none of them overlap (portrait and
square formats included); without a terminal layer, or with a panel that leaves no room (ui_only fills the
frame), it is centred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput
from renderer.engine.output import StageOutput
from renderer.media import ass

VERSION = "1"
FADE_MS = (400, 600)
EDGE = 0.05  # of the frame's height: the band's distance from the frame's edge (a title-safe margin)
SAFE_WIDTH = 0.9  # of the frame's width: the longest a title or subtitle line may be
CHAR_WIDTH_EM = 0.62  # advance of a monospace character per unit of font size, with room to spare
THEME_READS = ("font_family", "font_size", "foreground", "background", "panel_opacity")


@dataclass(frozen=True)
class TitleTrack(StageOutput):
    """Like a terminal track: an ASS header and events, relative to the scene start."""

    header: str
    events: list[ass.Event]

    def words(self) -> list[tuple[int, int | None]]:
        return ass.text_spans(self.events)


@dataclass(frozen=True)
class Band:
    y: float  # top, in pixels
    h: float


def band(fmt: Any, panel: Any | None, title_size: int) -> Band:
    """Where the title goes: in the larger of the free spans above and below the panel, at its outer edge
    (the top of the frame above the panel, its bottom below it), so the span's inner part, next to the panel,
    is left to the captions; or the middle, without room beside the panel."""
    height = fmt.height
    want = title_size * 3.2  # title, subtitle and a margin
    above = panel.y * height if panel is not None else 0.0
    below = (1 - panel.y - panel.h) * height if panel is not None else 0.0
    room = max(above, below)
    if panel is None or room < want * 0.8:
        return Band((height - want) / 2, want)
    h = min(want, room)
    edge = min(height * EDGE, (room - h) / 2)  # off the frame's edge, as a safe area asks
    return Band(edge, h) if above >= below else Band(height - h - edge, h)


def title_size(theme: Any, fmt: Any) -> int:
    """The title's font size: twice the terminal's, scaled with the frame's shorter side."""
    return max(10, round(theme.font_size * 2 * min(fmt.width, fmt.height) / 720))


def fitted(size: int, text: str, width: int) -> int:
    """``size``, or smaller for a line that would not fit the frame's width (it is one line: not wrapped)."""
    return max(8, min(size, int(width * SAFE_WIDTH / max(1, len(text)) / CHAR_WIDTH_EM)))


def build_track(title: str, subtitle: str, *, duration_s: float, theme: Any, fmt: Any, panel: Any | None
                ) -> TitleTrack:
    scale = min(fmt.width, fmt.height) / 720
    size = title_size(theme, fmt)
    sub_size = max(8, round(theme.font_size * 1.1 * scale))
    head = ass.header(fmt.width, fmt.height, ass.plain_styles(theme.font_family, size, theme.foreground))
    where = band(fmt, panel, size)
    end = round(duration_s * 100)
    fade = f"\\fad({FADE_MS[0]},{FADE_MS[1]})"
    box = (f"{{\\pos(0,{round(where.y)})\\p1\\bord0\\shad0{fade}{ass.fill(theme.background, theme.panel_opacity)}}}"
           + ass.rect(fmt.width, where.h))
    centre_x = fmt.width // 2
    text = (f"{{\\an5\\pos({centre_x},{round(where.y + where.h * (0.4 if subtitle else 0.5))})"
            f"\\fs{fitted(size, title, fmt.width)}{fade}\\q0}}{ass.escape(title)}")
    events = [ass.Event(0, end, 3, "Shape", box), ass.Event(0, end, 4, "Term", text)]
    if subtitle:
        events.append(ass.Event(0, end, 4, "Term", f"{{\\an5\\pos({centre_x},{round(where.y + where.h * 0.78)})"
                                                   f"\\fs{fitted(sub_size, subtitle, fmt.width)}{fade}\\q0}}"
                                                   f"{ass.escape(subtitle)}"))
    return TitleTrack(head, events)


def node(title: str, subtitle: str, *, with_panel: bool) -> Node:
    def fn(inp: NodeInput) -> TitleTrack:
        panel = OmegaConf.create(inp.cfg["assembly.panel"]) if with_panel else None
        return build_track(title, subtitle, duration_s=inp.cfg["assembly.title_card_s"],
                           theme=OmegaConf.create(inp.tree("theme")), fmt=OmegaConf.create(inp.tree("format")),
                           panel=panel)

    reads = (*(f"theme.{leaf}" for leaf in THEME_READS), "format.width", "format.height", "assembly.title_card_s",
             *(("assembly.panel",) if with_panel else ()))
    return Node(stage="title", scene=0, version=VERSION, reads=reads,
                data={"title": title, "subtitle": subtitle}, fn=fn,
                fallback=lambda inp, exc: TitleTrack("", []))  # no card is better than no video


def add(comp) -> None:
    """The card belongs to the first scene only: the segments of the others take no title layer."""
    script = comp.script
    comp.add(node(script.title, script.subtitle or "", with_panel="terminal" in comp.layers))
