"""Credits card layer (``assembly.credits_card=true``): whose footage the video shows, over the end of its last
scene for ``assembly.credits_card_s`` seconds, fading in: "Footage" and the creators and services, one after the
other, in the theme's font and colours on a band of its background in the title band's slot (renderer/media/
layout.py), so it covers neither the terminal nor the captions; when the title card is on the same (only) scene,
the card waits for it to end. What the band does not hold is counted ("and 4 more"): the credits file has them
all. A video that shows no one's footage (procedural, the user's own library) gets no card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput, Part
from renderer.media import ass, contrast, layout
from renderer.providers.stock import SITES
from renderer.stages.title import TitleTrack

VERSION = "2"  # 2: a band in the title's slot, not the whole frame
FADE_MS = 500
THEME_READS = ("font_family", "font_size", "foreground", "background", "panel_opacity")
LINE_HEIGHT = 1.35  # of the line's font size
CHAR_WIDTH_EM = 0.62  # advance of a character per unit of font size, with room to spare
SEPARATOR = " · "


@dataclass(frozen=True)
class CreditsTrack(TitleTrack):
    """The card's ASS header and events, relative to the scene start, as the title card's."""


def lines_of(credits: list[dict[str, Any]]) -> list[str]:
    """One line per creator and service, in the order they first appear."""
    lines = []
    for credit in credits:
        site = SITES.get(credit.get("service", ""), (credit.get("service", ""), ""))[0]
        lines.append(f"{credit['creator']} on {site}" if credit.get("creator") else site)
    return list(dict.fromkeys(line for line in lines if line))


def rows_of(lines: list[str], cols: int, rows: int) -> list[str]:
    """``lines`` run together (``SEPARATOR`` between them) into at most ``rows`` rows of ``cols`` characters, a
    credit never split; what does not fit is counted in the last row."""
    out: list[str] = []
    for n, line in enumerate(lines):
        if out and len(out[-1]) + len(SEPARATOR) + len(line) <= cols:
            out[-1] += SEPARATOR + line
        elif len(out) < rows:
            out.append(line[:cols])
        else:
            return _counted(out, lines[n:], cols)
    return out


def _counted(out: list[str], left: list[str], cols: int) -> list[str]:
    """``out`` with its last row ending "and N more", credits moved off it until that fits."""
    last = out[-1].split(SEPARATOR)
    while True:
        tail = f"and {len(left)} more"
        row = SEPARATOR.join([*last, tail]) if last else tail
        if len(row) <= cols or not last:
            return [*out[:-1], row]
        left = [last.pop(), *left]


def build_track(credits: list[dict[str, Any]], *, scene_s: float, card_s: float, theme: Any, fmt: Any,
                panel: Any | None = None, not_before_s: float = 0.0) -> CreditsTrack:
    """The card over the last ``card_s`` of a scene ``scene_s`` long, from ``not_before_s`` at the earliest (the
    title card's end, on a one-scene video); ``panel``: ``assembly.panel`` (where the slot is)."""
    lines = lines_of(credits)
    start_s = max(0.0, scene_s - card_s, min(not_before_s, scene_s))
    if not lines or start_s >= scene_s:
        return CreditsTrack("", [])
    where = layout.frame_layout(fmt.width, fmt.height, panel).credits
    scale = min(fmt.width, fmt.height) / 720
    size = max(8, min(round(theme.font_size * scale), int(where.h / (LINE_HEIGHT * 3.6))))
    head_size = round(size * 1.2)
    width = where.w * layout.TITLE_SAFE
    room = max(1, int((where.h - size * 0.6 - head_size * LINE_HEIGHT) // (size * LINE_HEIGHT)))
    rows = rows_of(lines, max(8, int(width // (size * CHAR_WIDTH_EM))), room)
    opacity = contrast.backing_opacity([theme.foreground], theme.background, theme.panel_opacity)
    ink = contrast.readable(theme.foreground, theme.background, opacity)
    start, end = round(start_s * 100), round(scene_s * 100)
    fade = f"\\fad({FADE_MS},0)"
    header = ass.header(fmt.width, fmt.height, ass.plain_styles(theme.font_family, size, ink))
    veil = (f"{{\\pos({round(where.x)},{round(where.y)})\\p1\\bord0\\shad0{fade}{ass.fill(theme.background, opacity)}}}"
            + ass.rect(where.w, where.h))
    block = head_size * LINE_HEIGHT + len(rows) * size * LINE_HEIGHT
    y = where.y + (where.h - block) / 2
    x = round(where.x + where.w / 2)
    events = [ass.Event(start, end, 5, "Shape", veil),
              ass.Event(start, end, 6, "Term", f"{{\\an8\\pos({x},{round(y)})\\fs{head_size}{fade}\\q2}}Footage")]
    y += head_size * LINE_HEIGHT
    for row in rows:
        events.append(ass.Event(start, end, 6, "Term", f"{{\\an8\\pos({x},{round(y)}){fade}\\q2}}{ass.escape(row)}"))
        y += size * LINE_HEIGHT
    return CreditsTrack(header, events)


def _credits(clip: Any) -> tuple[dict[str, str], ...]:
    return tuple(getattr(clip, "credits", ()))


def _last_scene_s(timeline: Any) -> float:
    return timeline.spans[-1].duration


def add(comp) -> None:
    """The card belongs to the last scene: it reads every shot's credits and the last scene's length."""
    last = len(comp.script.scenes) - 1
    shots = tuple(Part(name, _credits) for scene in comp.scenes for name in comp.pictures(scene))

    with_panel = "terminal" in comp.layers
    after_title = last == 0 and "title" in comp.layers  # one scene: the card waits for the title's end

    def fn(inp: NodeInput) -> CreditsTrack:
        credits = [c for shot in inp.deps["credits"] for c in shot]
        return build_track(credits, scene_s=inp.deps["scene_s"], card_s=inp.cfg["assembly.credits_card_s"],
                           theme=OmegaConf.create(inp.tree("theme")), fmt=OmegaConf.create(inp.tree("format")),
                           panel=OmegaConf.create(inp.cfg["assembly.panel"]) if with_panel else None,
                           not_before_s=inp.cfg["assembly.title_card_s"] if after_title else 0.0)

    comp.add(Node(stage="credits", scene=last, version=VERSION, fn=fn,
                  reads=(*(f"theme.{leaf}" for leaf in THEME_READS), "format.width", "format.height",
                         "assembly.credits_card_s", *(("assembly.panel",) if with_panel else ()),
                         *(("assembly.title_card_s",) if after_title else ())),
                  deps={"credits": shots, "scene_s": Part(comp.name("timeline"), _last_scene_s)},
                  fallback=lambda inp, exc: CreditsTrack("", [])))  # no card is better than no video
