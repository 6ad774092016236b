"""Title card layer (``assembly.title_card=true``): the script's title and subtitle over the first scene for
``assembly.title_card_s`` seconds, fading in and out, in the theme's font and colours on a band of its
background. The band is where the layout rule puts it (renderer/media/layout.py: the top of the title-safe
area; in portrait, the top third below the feed's overlay), clear of the panel and the captions; beside a panel
placed by hand, in the larger free span at its outer edge; centred when there is none (ui_only fills the frame).
The band is at least as opaque as the title needs to read at 4.5:1 over any picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput
from renderer.engine.output import StageOutput
from renderer.media import ass, contrast, layout

VERSION = "2"  # 2: the band from the layout rule, as opaque as the title needs
FADE_MS = (400, 600)
SAFE_WIDTH = layout.TITLE_SAFE  # of the frame's width: the longest a title or subtitle line may be
BAND_LINES = 2.6  # the band's height in title sizes: the title, the subtitle (0.55 of it) and their margins
CHAR_WIDTH_EM = 0.62  # advance of a monospace character per unit of font size, with room to spare
THEME_READS = ("font_family", "font_size", "foreground", "background", "panel_opacity")


@dataclass(frozen=True)
class TitleTrack(StageOutput):
    """Like a terminal track: an ASS header and events, relative to the scene start."""

    header: str
    events: list[ass.Event]

    def words(self) -> list[tuple[int, int | None]]:
        return ass.text_spans(self.events)


def band(fmt: Any, panel: Any | None) -> layout.Box:
    """Where the title goes (``panel``: ``assembly.panel`` when the terminal is shown, else None)."""
    return layout.frame_layout(fmt.width, fmt.height, panel).title


def title_size(theme: Any, fmt: Any, height: float | None = None) -> int:
    """The title's font size: twice the terminal's, scaled with the frame's shorter side; no more than a band
    ``height`` holds."""
    size = max(10, round(theme.font_size * 2 * min(fmt.width, fmt.height) / 720))
    return size if height is None else max(8, min(size, int(height / BAND_LINES)))


def fitted(size: int, text: str, width: int) -> int:
    """``size``, or smaller for a line that would not fit the frame's width (it is one line: not wrapped)."""
    return max(8, min(size, int(width * SAFE_WIDTH / max(1, len(text)) / CHAR_WIDTH_EM)))


def build_track(title: str, subtitle: str, *, duration_s: float, theme: Any, fmt: Any, panel: Any | None
                ) -> TitleTrack:
    scale = min(fmt.width, fmt.height) / 720
    where = band(fmt, panel)
    size = title_size(theme, fmt, where.h)
    sub_size = max(8, min(round(theme.font_size * 1.1 * scale), round(size * 0.55)))
    opacity = contrast.backing_opacity([theme.foreground], theme.background, theme.panel_opacity)
    ink = contrast.readable(theme.foreground, theme.background, opacity)
    head = ass.header(fmt.width, fmt.height, ass.plain_styles(theme.font_family, size, ink))
    end = round(duration_s * 100)
    fade = f"\\fad({FADE_MS[0]},{FADE_MS[1]})"
    box = (f"{{\\pos(0,{round(where.y)})\\p1\\bord0\\shad0{fade}{ass.fill(theme.background, opacity)}}}"
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
