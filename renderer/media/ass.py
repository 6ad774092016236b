"""ASS (Advanced SubStation Alpha) building blocks for the terminal overlay, rendered by libass.

Any text is made safe here: nothing a script says can become an override tag or an ffmpeg option,
because the ASS file reaches ffmpeg as a file name, never as filter-graph text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

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


def colour(hex_rgb: str, alpha: float = 1.0) -> str:
    """'#rrggbb' (+ opacity 0..1) -> ASS '&HAABBGGRR'."""
    value = hex_rgb.lstrip("#")
    if len(value) == 3:
        value = "".join(ch * 2 for ch in value)
    r, g, b = value[0:2], value[2:4], value[4:6]
    a = round((1.0 - max(0.0, min(1.0, alpha))) * 255)
    return f"&H{a:02X}{b}{g}{r}".upper()


def tag_colour(hex_rgb: str) -> str:
    """Inline text colour override block: {\\c&HBBGGRR&}."""
    return "{" + fill(hex_rgb) + "}"


def fill(hex_rgb: str, alpha: float = 1.0) -> str:
    """Primary colour (and its opacity) override tags, for use inside an override block."""
    bgr = colour(hex_rgb)[4:]
    a = colour(hex_rgb, alpha)[2:4]
    return f"\\1c&H{bgr}&" + (f"\\1a&H{a}&" if alpha < 1.0 else "")


def timestamp(cs: int) -> str:
    """Centiseconds -> H:MM:SS.cc."""
    h, rest = divmod(max(0, cs), 360000)
    m, rest = divmod(rest, 6000)
    s, c = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}"


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

    def line(self) -> str:
        return f"Dialogue: {self.layer},{timestamp(self.start)},{timestamp(self.end or self.start)},{self.style},,0,0,0,,{self.text}"


def header(width: int, height: int, font: str, size: int, foreground: str) -> str:
    fg = colour(foreground)
    return "\n".join([
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 2",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic,"
        " Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment,"
        " MarginL, MarginR, MarginV, Encoding",
        f"Style: Term,{font},{size},{fg},{fg},&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,0,0,7,0,0,0,1",
        f"Style: Shape,{font},{size},{fg},{fg},&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,0,0,7,0,0,0,1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ])
