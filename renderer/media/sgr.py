"""ANSI escape sequences in on-screen text, read the way a terminal reads them.

Output pasted from a real terminal (``script``, ``ls --color``, a test runner) carries SGR colour codes:
``ESC[31m`` red, ``ESC[1;32m`` bold green, ``ESC[38;5;208m``, ``ESC[38;2;r;g;bm``, ``ESC[0m`` reset. The
terminal stage shows such text in the theme's own ANSI palette. Every other escape sequence (cursor moves,
erases, window titles) is consumed and shows nothing, as in a terminal; text without escapes is untouched.
"""

from __future__ import annotations

import re

from renderer.config import ANSI, BRIGHT, PALETTE

ESC = "\x1b"
# CSI (7- or 8-bit) with its parameters, OSC up to BEL or ST, and any other two-character escape
SEQUENCE = re.compile(r"(?:\x1b\[|\x9b)([0-9;:?<=>]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?")
CUBE = (0, 95, 135, 175, 215, 255)  # xterm's 6x6x6 colour cube levels


def has_escapes(text: str) -> bool:
    return ESC in text or "\x9b" in text


def xterm_256(n: int) -> str:
    """Colour ``n`` of the 256-colour palette: 0-15 the theme's names, the cube and grey ramp as hex."""
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        return "#{:02x}{:02x}{:02x}".format(CUBE[n // 36], CUBE[n // 6 % 6], CUBE[n % 6])
    grey = 8 + 10 * (n - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"


class _Pen:
    """The foreground colour SGR parameters leave behind: a palette name, '#rrggbb', or None (the default)."""

    def __init__(self) -> None:
        self.colour: str | int | None = None  # an int 0-7 is a basic colour, brightened while bold
        self.bold = False

    @property
    def style(self) -> str | None:
        if isinstance(self.colour, int):
            return (BRIGHT if self.bold else ANSI)[self.colour]
        return self.colour

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.colour, self.bold = None, False
            elif code == 1:
                self.bold = True
            elif code == 22:
                self.bold = False
            elif 30 <= code <= 37:
                self.colour = code - 30
            elif 90 <= code <= 97:
                self.colour = BRIGHT[code - 90]
            elif code == 39:
                self.colour = None
            elif code in (38, 48) and i + 1 < len(codes):  # extended colour: 5;n or 2;r;g;b
                mode = codes[i + 1]
                if mode == 5 and i + 2 < len(codes):
                    if code == 38:
                        self.colour = xterm_256(min(255, codes[i + 2]))
                    i += 2
                elif mode == 2 and i + 4 < len(codes):
                    if code == 38:
                        self.colour = "#{:02x}{:02x}{:02x}".format(*(min(255, c) for c in codes[i + 2:i + 5]))
                    i += 4
            i += 1  # backgrounds, underline, italics ...: a terminal panel row has no room for them


def parse(text: str) -> tuple[str, list[str | None]]:
    """``text`` without its escape sequences, and each remaining character's colour (see ``_Pen``)."""
    pen, plain, styles, at = _Pen(), [], [], 0
    for match in SEQUENCE.finditer(text):
        plain.append(text[at:match.start()])
        styles += [pen.style] * (match.start() - at)
        if match.group(2) == "m":
            pen.apply(match.group(1))
        at = match.end()
    plain.append(text[at:])
    styles += [pen.style] * (len(text) - at)
    return "".join(plain), styles


def palette_used(texts: list[str]) -> list[str]:
    """The theme's ANSI colour names that these texts' escape codes show, in palette order."""
    used = {style for text in texts if has_escapes(text) for style in parse(text)[1]}
    return [name for name in PALETTE if name in used]
