"""Captions layer: a scene's narration burnt onto its video, a sentence at a time or word by word.

Timing comes from the scene's voice (its per-character alignment where it has one: ElevenLabs, piper),
otherwise from its length shared out by the text. The captions sit in the caption block the layout rule gives
the format (renderer/media/layout.py: the lower third, clear of the panel and the title band); around a panel
placed by hand, in the free region (below it, above it or beside it) that holds a cue in the fewest lines.
Style comes from the theme: its font, its foreground on a box of its background (at least as opaque as the
text needs to read at 4.5:1 over any picture), the spoken word in its prompt colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pysubs2
from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import ass, captions, contrast
from renderer.media import layout as frame
from renderer.media.layout import Box
from renderer.script import Scene

VERSION = "2"  # 2: the caption block from the layout rule, a box as opaque as the text needs
STYLES = ("sentence", "words")
CHAR_WIDTH_EM = 0.62  # advance of a bold monospace character per unit of ASS font size, with room to spare
LINE_HEIGHT = 1.25
SHRINK = 0.75  # the smallest share of captions.font_size a cue is set in to fit beside the panel
THEME_READS = ("font_family", "foreground", "background", "prompt")


class CaptionsError(ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where captions go in a frame: a region's centre column and bottom edge, how many characters fit a
    line and how many lines the region holds."""

    region: Box
    font_size: int
    cols: int
    rows: int

    @property
    def line_h(self) -> float:
        return self.font_size * LINE_HEIGHT

    def box(self, lines: int) -> Box:
        """The area ``lines`` of caption take, bottom-centred in the region (text plus its box's padding)."""
        h = lines * self.line_h + self.font_size * 0.5
        w = min(self.region.w, self.cols * self.font_size * CHAR_WIDTH_EM + self.font_size)
        return Box(self.region.x + (self.region.w - w) / 2, self.region.y + self.region.h - h, w, h)


def layout(fmt: Any, font_size_720: int, max_lines: int, panel: Any | None, longest: int,
           card: Box | None = None, *, panel_shown: bool | None = None,
           texts: list[list[str]] | None = None) -> Layout:
    """Where captions go and at what size: the first of the layout's caption regions (``panel``:
    ``assembly.panel``; ``panel_shown``: whether the terminal is drawn, by default when ``panel`` is given) that
    holds the ``longest`` cue in the fewest lines (the cues' words ``texts``, when given, as ``wrap`` breaks
    them), clear of the title ``card`` where it shows. Where no region
    holds it at the configured size, a smaller one (down to ``SHRINK`` of it) is tried before the captions
    cover anything."""
    shown = panel is not None if panel_shown is None else panel_shown
    place = frame.frame_layout(fmt.width, fmt.height, panel)
    regions = frame.caption_regions(place, shown, card)
    size = max(10, round(font_size_720 * min(fmt.width, fmt.height) / 720))
    best: tuple[int, Layout] | None = None
    for smaller in (size, round(size * (1 + SHRINK) / 2), round(size * SHRINK)):
        for region in regions:
            cols = int((region.w - smaller) // (smaller * CHAR_WIDTH_EM))
            rows = int((region.h - smaller * 0.5) // (smaller * LINE_HEIGHT))
            if cols < 8 or rows < 1:
                continue
            if texts:
                lines = max(len(wrap(words, cols)) for words in texts)
            else:
                lines = math.ceil(longest / cols) if longest else 1
            fits = min(rows, max_lines)
            if lines <= fits and (best is None or lines < best[0]):
                best = (lines, Layout(region, smaller, cols, fits))
        if best is not None:
            break
    if best is None:  # no region holds it: the bottom of the title-safe area, over whatever is there
        region = place.title_safe()
        cols = max(8, int((region.w - size) // (size * CHAR_WIDTH_EM)))
        best = (0, Layout(region, size, cols, max_lines))
    return best[1]


def wrap(words: list[str], cols: int) -> list[list[int]]:
    """Word indexes per line, greedily filled to ``cols`` characters."""
    lines: list[list[int]] = [[]]
    used = 0
    for i, word in enumerate(words):
        need = len(word) + (1 if lines[-1] else 0)
        if lines[-1] and used + need > cols:
            lines.append([])
            used, need = 0, len(word)
        lines[-1].append(i)
        used += need
    return lines


def header(fmt: Any, theme: Any, size: int, box_opacity: float) -> str:
    """The ASS header of the layer: the frame size and a Caption style in the theme's look."""
    caption = pysubs2.SSAStyle(
        fontname=theme.font_family, fontsize=size, bold=True, primarycolor=ass.rgba(theme.foreground),
        outlinecolor=ass.rgba(theme.background, box_opacity), backcolor=ass.rgba(theme.background, box_opacity),
        borderstyle=3, outline=max(2, round(size * 0.25)), shadow=0, alignment=pysubs2.Alignment.BOTTOM_CENTER,
        marginl=0, marginr=0, marginv=0)
    return ass.header(fmt.width, fmt.height, {"Caption": caption})


@dataclass(frozen=True)
class CaptionTrack(StageOutput):
    """A scene's captions: an ASS header and events relative to the scene start; ``boxes``: where they are."""

    header: str
    events: list[ass.Event]
    boxes: tuple[Box, ...] = ()

    def words(self) -> list[tuple[int, int | None]]:
        return ass.text_spans(self.events)


def _text(words: list[str], lines: list[list[int]], spoken: int | None, highlight: str, plain: str) -> str:
    rows = []
    for line in lines:
        parts = []
        for i in line:
            word = ass.escape(words[i])
            parts.append(f"{ass.tag_colour(highlight)}{word}{ass.tag_colour(plain)}" if i == spoken else word)
        rows.append(ass.NO_BREAK_SPACE.join(parts))
    return "\\N".join(rows)


def build_track(cues: list[captions.Cue], *, style: str, fmt: Any, theme: Any, settings: Any,
                panel: Any | None, card: Box | None = None, panel_shown: bool | None = None) -> CaptionTrack:
    """``panel``: ``assembly.panel`` (None: no terminal drawn); ``card``: the title band, on the first scene."""
    if style not in STYLES:
        raise CaptionsError(f"captions.style={style!r}: use one of {', '.join(STYLES)}")
    longest = max((len(c.text) for c in cues), default=0)
    place = layout(fmt, settings.font_size, settings.max_lines, panel, longest, card, panel_shown=panel_shown,
                   texts=[c.text.split() for c in cues])
    highlight = settings.highlight or theme.prompt
    # libass boxes each run of one colour on its own, so a lit word's box overlaps its neighbours': only an
    # opaque box hides that
    wanted = settings.box_opacity if style == "sentence" else 1.0
    head = header(fmt, theme, place.font_size,
                  contrast.backing_opacity([theme.foreground, highlight], theme.background, wanted))
    x = round(place.region.x + place.region.w / 2)
    y = round(place.region.y + place.region.h - place.font_size * 0.25)
    events: list[ass.Event] = []
    boxes = []
    for n, cue in enumerate(cues):  # each stays up until the next begins, the last until the scene ends
        hold = cues[n + 1].start if n + 1 < len(cues) else None
        timed = cue.word_times()
        words = [w for w, _, _ in timed]
        lines = wrap(words, place.cols)
        boxes.append(place.box(len(lines)))
        pos = f"{{\\an2\\pos({x},{y})}}"
        if style == "sentence":
            events.append(ass.Event(_cs(cue.start), _cs(hold) if hold is not None else None, 0, "Caption",
                                    pos + _text(words, lines, None, highlight, theme.foreground)))
            continue
        for i, (_, start, _) in enumerate(timed):
            end = timed[i + 1][1] if i + 1 < len(timed) else hold
            if end is None or _cs(end) > _cs(start):
                events.append(ass.Event(_cs(start), _cs(end) if end is not None else None, 0, "Caption",
                                        pos + _text(words, lines, i, highlight, theme.foreground)))
    warnings = ()
    shown = panel is not None if panel_shown is None else panel_shown
    panel_at = frame.frame_layout(fmt.width, fmt.height, panel).panel
    if shown and any(b.overlaps(panel_at) for b in boxes):
        warnings = (f"captions of {len(boxes)} cue(s) cover the terminal panel: no room around it in "
                    f"{fmt.width}x{fmt.height}; shrink assembly.panel or captions.font_size",)
    return CaptionTrack(head, events, tuple(boxes), warnings=warnings)


def _cs(seconds: float) -> int:
    return round(seconds * 100)


def _voice_timing(clip: Any) -> dict[str, Any]:
    return {"duration": round(getattr(clip, "duration", 0.0), 6), "alignment": getattr(clip, "alignment", None)}


def title_card(fmt: Any, panel: Any | None) -> Box:
    """Where the title card's band is (the first scene, with ``assembly.title_card``), as the title stage places
    it (``panel``: ``assembly.panel`` when the terminal is shown)."""
    return frame.frame_layout(fmt.width, fmt.height, panel).title


def node(scene: Scene, voice: str, *, lead: float, panel_shown: bool, under_title: bool = False) -> Node:
    lines = [line.text for line in scene.narration]

    def fn(inp: NodeInput) -> CaptionTrack:
        timing = inp.deps["voice"]
        span = {"start": 0.0, "duration": max(scene.duration, timing["duration"] + lead)}
        cue_list = captions.cues([lines], [span], [timing["duration"]], lead=lead, alignments=[timing["alignment"]])
        fmt = OmegaConf.create(inp.tree("format"))
        fractions = OmegaConf.create(inp.cfg["assembly.panel"]) if panel_shown else None
        theme = OmegaConf.create(inp.tree("theme"))
        return build_track(cue_list, style=inp.cfg["captions"]["style"], fmt=fmt, theme=theme,
                           settings=OmegaConf.create(inp.cfg["captions"]), panel=fractions,
                           card=title_card(fmt, fractions) if under_title else None)

    return Node(stage="captions", scene=scene.index, version=VERSION,
                reads=("captions", "format.width", "format.height", *(f"theme.{t}" for t in THEME_READS),
                       *(("assembly.panel",) if panel_shown else ())),
                data={"lines": lines, "lead": lead, "duration": scene.duration},
                deps={"voice": Part(voice, _voice_timing)}, fn=fn)


def add(comp) -> None:
    style = comp.cfg.captions.style
    if style not in STYLES:
        raise CaptionsError(f"captions.style={style!r}: use one of {', '.join(STYLES)}")
    panel_shown = "terminal" in comp.layers
    for scene in comp.script.scenes:
        lead = scene.start if scene.index == 0 else 0.0
        comp.add(node(scene, comp.name("voice", scene.index), lead=lead, panel_shown=panel_shown,
                      under_title=scene.index == 0 and "title" in comp.layers))
