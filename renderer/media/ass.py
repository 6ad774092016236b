"""ASS (Advanced SubStation Alpha) for the layers libass burns in (the terminal, the title card, the captions,
a placeholder's card). pysubs2 writes the files: their headers, styles and events. Here is what it does not
do: text made safe for libass, override-tag snippets, vector drawings, colours as tags.

Any text is made safe here: nothing a script says can become an override tag or an ffmpeg option,
because the ASS file reaches ffmpeg as a file name, never as filter-graph text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pysubs2

WORD_JOINER = "\u2060"  # invisible; placed after a backslash so "\N", "\h", "\{" stay literal
NO_BREAK_SPACE = "\u00a0"  # libass trims plain spaces at the start and end of a line; this one it keeps
LINE_BREAKS = "\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # shown as a space: an event is one line
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # would reorder the row


def printable(text: str, tab_width: int = 4) -> str:
    """``text`` as one line of printable characters: tabs become spaces, line breaks a space, and other
    control characters (NUL, ESC, CR, bidi overrides ...) are dropped, as a terminal shows none of them."""
    out = []
    for ch in text.replace("\r\n", "\n").replace("\t", " " * tab_width):
        if ch in LINE_BREAKS:
            out.append(" ")
        elif ch not in BIDI_CONTROLS and unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
    return "".join(out)


def escape(text: str) -> str:
    """Plain text -> ASS dialogue text that libass shows verbatim (spaces included)."""
    text = printable(text).replace("\\", "\\" + WORD_JOINER)
    return text.replace("{", "\\{").replace("}", "\\}").replace(" ", NO_BREAK_SPACE)


def rgba(hex_rgb: str, opacity: float = 1.0) -> pysubs2.Color:
    """'#rrggbb' or '#rgb' (+ opacity 0..1) as a pysubs2 colour; its ``a`` is ASS's transparency (0 = opaque)."""
    value = hex_rgb.lstrip("#")
    if len(value) == 3:
        value = "".join(ch * 2 for ch in value)
    return pysubs2.Color(int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16),
                         round((1.0 - max(0.0, min(1.0, opacity))) * 255))


def colour(hex_rgb: str, alpha: float = 1.0) -> str:
    """'#rrggbb' (+ opacity 0..1) -> ASS '&HAABBGGRR'."""
    c = rgba(hex_rgb, alpha)
    return f"&H{c.a:02X}{c.b:02X}{c.g:02X}{c.r:02X}"


def tag_colour(hex_rgb: str) -> str:
    """Inline text colour override block: {\\c&HBBGGRR&}."""
    return "{" + fill(hex_rgb) + "}"


def fill(hex_rgb: str, alpha: float = 1.0) -> str:
    """Primary colour (and its opacity) override tags, for use inside an override block."""
    c = rgba(hex_rgb, alpha)
    return f"\\1c&H{c.b:02X}{c.g:02X}{c.r:02X}&" + (f"\\1a&H{c.a:02X}&" if alpha < 1.0 else "")


def rect(w: float, h: float, r: float = 0.0, *, top: bool = True, bottom: bool = True) -> str:
    """An ASS vector drawing of a rectangle from (0,0); ``r`` rounds its top and/or bottom corners."""
    rt, rb = (r if top else 0.0), (r if bottom else 0.0)
    if rt <= 0 and rb <= 0:
        return f"m 0 0 l {w:.0f} 0 {w:.0f} {h:.0f} 0 {h:.0f}"
    kt, kb = rt * 0.45, rb * 0.45  # control-point offsets approximating a quarter circle
    return (f"m {rt:.0f} 0 l {w - rt:.0f} 0 b {w - kt:.0f} 0 {w:.0f} {kt:.0f} {w:.0f} {rt:.0f} "
            f"l {w:.0f} {h - rb:.0f} b {w:.0f} {h - kb:.0f} {w - kb:.0f} {h:.0f} {w - rb:.0f} {h:.0f} "
            f"l {rb:.0f} {h:.0f} b {kb:.0f} {h:.0f} 0 {h - kb:.0f} 0 {h - rb:.0f} "
            f"l 0 {rt:.0f} b 0 {kt:.0f} {kt:.0f} 0 {rt:.0f} 0")


def circle(d: float) -> str:
    return rect(d, d, d / 2)


@dataclass(frozen=True)
class Event:
    """One dialogue line; times in centiseconds, ``end`` None = until the scene ends."""

    start: int
    end: int | None
    layer: int
    style: str
    text: str

    def shifted(self, offset_cs: int, scene_end_cs: int) -> "Event | None":
        """The event on the script's timeline, clipped to its scene; None if nothing is left."""
        start = self.start + offset_cs
        end = scene_end_cs if self.end is None else min(self.end + offset_cs, scene_end_cs)
        return Event(start, end, self.layer, self.style, self.text) if end > start else None


BUCKET_CS = 1000  # a Track files its events by the 10 s stretches they are on screen in


@dataclass(frozen=True)
class Track:
    """A layer's events, found by time: ``during`` returns those a stretch of the scene shows without reading
    every other event of the scene (a long scene's chunks would otherwise cost chunks × events). The events
    are what it is: its index is built on first use and is no part of its value (nor of a key made from it)."""

    events: tuple[Event, ...]

    @functools.cached_property
    def _index(self) -> tuple[dict[int, list[int]], list[int]]:
        """Event numbers by the buckets they are on screen in, and those that last until the scene ends (few:
        what is still shown at the end)."""
        buckets: dict[int, list[int]] = {}
        lasting = []
        for n, e in enumerate(self.events):
            if e.end is None:
                lasting.append(n)
                continue
            for bucket in range(e.start // BUCKET_CS, max(e.start, e.end - 1) // BUCKET_CS + 1):
                buckets.setdefault(bucket, []).append(n)
        return buckets, lasting

    def during(self, start_cs: int, end_cs: int) -> list[Event]:
        """The events on screen at some time in [start_cs, end_cs), in their order."""
        buckets, lasting = self._index
        events = self.events
        found = {n for n in lasting if events[n].start < end_cs}
        for bucket in range(start_cs // BUCKET_CS, max(start_cs, end_cs - 1) // BUCKET_CS + 1):
            found.update(n for n in buckets.get(bucket, ()) if events[n].start < end_cs and events[n].end > start_cs)
        return [events[n] for n in sorted(found)]


# --------------------------------------------------------------------------- files (written by pysubs2)


def text_spans(events: list[Event], *, layers: tuple[int, ...] | None = None) -> list[tuple[int, int | None]]:
    """When ``events`` put readable words on the picture (centiseconds; end None = the scene's end): the text
    events (not drawings) with a letter or digit once their override tags are dropped, on ``layers`` if given."""
    out = []
    for e in events:
        if e.style == "Shape" or (layers is not None and e.layer not in layers):
            continue
        if any(ch.isalnum() for ch in re.sub(r"\{[^}]*\}", "", e.text)):
            out.append((e.start, e.end))
    return out


def covered_s(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``spans`` (start, end)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def plain_styles(font: str, size: int, foreground: str) -> dict[str, pysubs2.SSAStyle]:
    """The styles of the terminal, the title card and the placeholder card: ``Term`` for text and ``Shape`` for
    drawings, both in ``foreground``, placed by ``\\pos`` from their top-left corner, without outline, shadow or
    margins (their events' override tags say the rest)."""
    plain = pysubs2.SSAStyle(fontname=font, fontsize=size, primarycolor=rgba(foreground),
                             secondarycolor=rgba(foreground), outline=0, shadow=0,
                             alignment=pysubs2.Alignment.TOP_LEFT, marginl=0, marginr=0, marginv=0)
    return {"Term": plain, "Shape": plain.copy()}


def header(width: int, height: int, styles: dict[str, pysubs2.SSAStyle]) -> str:
    """A layer's ASS up to its events: the frame it is drawn on, lines never wrapped, and ``styles``."""
    subs = pysubs2.SSAFile()
    subs.info.update({"PlayResX": str(width), "PlayResY": str(height), "WrapStyle": "2",
                      "ScaledBorderAndShadow": "yes"})
    subs.styles = dict(styles)
    return subs.to_string("ass").rstrip("\n")


def merged(layers: list[tuple[str, list[Event]]]) -> list[tuple[str, list[Event]]]:
    """Layers drawn one over the other as one ASS document where their headers allow it (the same frame and
    settings; every layer's styles kept, each renamed after its layer): each layer's events on ASS layers above
    the previous one's, so libass draws them in the same order and ffmpeg needs one ``ass`` filter, not one per
    layer (each loads fonts and walks every frame: ~6 MB and ~6 % of a 720p segment's CPU time apiece)."""
    docs = [pysubs2.SSAFile.from_string(head, format_="ass") for head, _ in layers]
    if len(layers) < 2 or any(doc.info != docs[0].info for doc in docs):
        return layers
    subs, events, floor = pysubs2.SSAFile(), [], 0
    subs.info = dict(docs[0].info)
    for n, (doc, (_, layer_events)) in enumerate(zip(docs, layers)):
        subs.styles.update({f"{n}.{name}": style for name, style in doc.styles.items()})
        events += [replace(e, layer=e.layer + floor, style=f"{n}.{e.style}") for e in layer_events]
        floor += max((e.layer for e in layer_events), default=0) + 1
    return [(subs.to_string("ass").rstrip("\n"), events)]


def document(head: str, events: Iterable[Event]) -> str:
    """An ASS file for libass: ``head`` (see ``header``) and ``events``, each ended (``Event.shifted``)."""
    subs = pysubs2.SSAFile.from_string(head, format_="ass")
    subs.events = [pysubs2.SSAEvent(start=e.start * 10, end=(e.start if e.end is None else e.end) * 10,
                                    layer=e.layer, style=e.style, text=e.text) for e in events]
    return subs.to_string("ass")


def write(path: Path, head: str, events: Iterable[Event]) -> Path:
    path.write_text(document(head, events), encoding="utf-8")
    return path
