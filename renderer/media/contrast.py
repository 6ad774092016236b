"""Text contrast as WCAG 2.x reckons it (relative luminance, contrast ratio), and the least a backing must cover
for text on it to reach a ratio whatever the picture behind it is: text on a translucent box over a video is read
against the box blended with the picture, at worst with the picture's white (light text) or black (dark text)."""

from __future__ import annotations

READABLE = 4.5  # WCAG 2.x AA for body text


def rgb(hex_rgb: str) -> tuple[int, int, int]:
    value = hex_rgb.lstrip("#")
    if len(value) == 3:
        value = "".join(ch * 2 for ch in value)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def luminance(colour: str | tuple[float, float, float]) -> float:
    """WCAG 2.x relative luminance of '#rrggbb' or an (r, g, b) of 0..255."""
    channels = rgb(colour) if isinstance(colour, str) else colour

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: float, b: float) -> float:
    """The contrast ratio of two relative luminances, 1..21."""
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def _blend(backing: str, opacity: float, behind: int) -> tuple[float, float, float]:
    return tuple(c * opacity + behind * (1 - opacity) for c in rgb(backing))  # type: ignore[return-value]


def worst_ratio(text: str, backing: str, opacity: float) -> float:
    """The text's contrast on ``backing`` at ``opacity`` over the worst picture (white or black behind it)."""
    lum = luminance(text)
    return min(ratio(lum, luminance(_blend(backing, opacity, behind))) for behind in (0, 255))


def backing_opacity(texts: list[str], backing: str, opacity: float, wanted: float = READABLE) -> float:
    """``opacity``, or the least above it at which every one of ``texts`` reaches ``wanted`` on ``backing`` over
    any picture (1.0 when even an opaque backing cannot: then the text colour is what has to change)."""
    for step in range(round(opacity * 100), 101):
        if all(worst_ratio(t, backing, step / 100) >= wanted for t in texts):
            return max(opacity, step / 100)
    return 1.0


def readable(text: str, backing: str, opacity: float = 1.0, wanted: float = READABLE) -> str:
    """``text``, or the nearest colour toward white (on a dark backing) or black (on a light one) that reaches
    ``wanted`` on ``backing`` at ``opacity`` over any picture."""
    if worst_ratio(text, backing, opacity) >= wanted:
        return text
    target = 255 if luminance(backing) < 0.18 else 0
    r, g, b = rgb(text)
    for step in range(1, 101):
        t = step / 100
        mixed = tuple(round(c + (target - c) * t) for c in (r, g, b))
        colour = "#{:02x}{:02x}{:02x}".format(*mixed)
        if worst_ratio(colour, backing, opacity) >= wanted:
            return colour
    return "#ffffff" if target else "#000000"
