"""Where things go in a frame: the terminal panel, the caption block, the title band and the credits card, placed
by one rule per aspect (landscape 16:9, square 1:1, portrait 9:16) from the frame's size alone, on the thirds and
inside the safe areas (EBU R 95 / SMPTE ST 2046-1: action safe 93 %, title safe 90 % of each side), so that
none of them covers another:

- landscape: the title band across the top of the title-safe area; the panel on the left two thirds (its right
  edge on the right third line, its bottom on the lower third line), so the picture keeps the right third; the
  captions in the lower third, centred, above the title-safe bottom.
- square: the same rows; the panel across the title-safe width (a third of a square is too narrow to type in).
- portrait: the middle third is the panel's, across the title-safe width; the title band in the top third, below
  the zone a phone's feed overlays (account, search: ``UI_TOP``); the captions in the lower third above the
  zone of its caption and buttons (``UI_BOTTOM``).

The credits card takes the title band's slot (they share it in time, never at once: the credits wait for the
title to end). A panel placed by hand (``assembly.panel``: ``ui_only`` fills the frame) is honoured: then the
title band goes to the larger free span beside it and the captions to the free region around it that holds
them best, clear of the band (``free_regions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTION_SAFE = 0.93  # of each side of the frame: where anything drawn stays
TITLE_SAFE = 0.90  # of each side: where text stays
THIRD = 1 / 3
BAND = 0.16  # of the frame's shorter side: the title band's height (a title and a subtitle line)
GAP = 0.025  # of the frame's shorter side, between two boxes
UI_TOP = 0.10  # of a portrait frame's height: what a phone's feed overlays at the top
UI_BOTTOM = 0.20  # ... and at the bottom (the post's caption, the buttons)
PORTRAIT_CAPTION_WIDTH = 0.84  # of a portrait frame's width: the captions keep clear of the buttons at the side


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def overlaps(self, other: "Box") -> bool:
        return (self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom)

    def inside(self, other: "Box") -> bool:
        return (self.x >= other.x - 0.5 and self.y >= other.y - 0.5 and self.right <= other.right + 0.5
                and self.bottom <= other.bottom + 0.5)


@dataclass(frozen=True)
class FrameLayout:
    """The boxes of one frame size, in pixels. ``by_rule``: the panel is the rule's (else placed by hand)."""

    frame: Box
    panel: Box
    captions: Box  # the region the caption block is set in, bottom-centred
    title: Box  # the title band, across the frame
    credits: Box  # the credits card: the title band's slot
    by_rule: bool
    aspect: str

    def title_safe(self) -> Box:
        return safe(self.frame.w, self.frame.h, TITLE_SAFE)


def aspect(width: float, height: float) -> str:
    """landscape (wider than 4:3 or so), portrait (taller than 4:5), or square between them."""
    ratio = width / height
    return "landscape" if ratio >= 1.4 else "portrait" if ratio <= 0.8 else "square"


def safe(width: float, height: float, share: float) -> Box:
    """The centred area of ``share`` of each side (an action- or title-safe area)."""
    return Box(width * (1 - share) / 2, height * (1 - share) / 2, width * share, height * share)


def panel_set(panel: Any | None) -> bool:
    """Whether ``assembly.panel`` places the panel by hand (any of its fractions set)."""
    return panel is not None and any(_get(panel, f) is not None for f in ("x", "y", "w", "h"))


def _get(panel: Any, name: str) -> float | None:
    return panel.get(name) if hasattr(panel, "get") else getattr(panel, name, None)


def rule_boxes(width: float, height: float) -> dict[str, Box]:
    """The rule's panel, caption region and title band for a ``width`` x ``height`` frame."""
    kind = aspect(width, height)
    short = min(width, height)
    gap, band_h = short * GAP, short * BAND
    title = safe(width, height, TITLE_SAFE)
    if kind == "portrait":
        free_top = height * UI_TOP
        band_y = free_top + max(0.0, (height * THIRD - gap - free_top - band_h) / 2)
        band = Box(0.0, band_y, width, band_h)
        panel = Box(title.x, height * THIRD, title.w, height * THIRD)
        cap_w = width * PORTRAIT_CAPTION_WIDTH
        cap_y = panel.bottom + gap
        captions = Box((width - cap_w) / 2, cap_y, cap_w, height * (1 - UI_BOTTOM) - cap_y)
    else:
        band = Box(0.0, title.y, width, band_h)
        top, bottom = band.bottom + gap, height * (1 - THIRD)
        panel_w = width * (1 - THIRD) - title.x if kind == "landscape" else title.w
        panel = Box(title.x, top, panel_w, bottom - top)
        cap_y = panel.bottom + gap
        captions = Box(title.x, cap_y, title.w, title.bottom - cap_y)
    return {"panel": panel, "captions": captions, "title": band}


def frame_layout(width: float, height: float, panel: Any | None = None) -> FrameLayout:
    """The boxes of a frame: the rule's, or around a panel placed by hand (``assembly.panel``'s fractions; those
    left unset are the rule's)."""
    frame = Box(0.0, 0.0, float(width), float(height))
    rule = rule_boxes(width, height)
    if not panel_set(panel):
        return FrameLayout(frame, rule["panel"], rule["captions"], rule["title"], rule["title"], True,
                           aspect(width, height))
    base = rule["panel"]
    fractions = {"x": base.x / width, "y": base.y / height, "w": base.w / width, "h": base.h / height}
    fractions.update({k: float(_get(panel, k)) for k in fractions if _get(panel, k) is not None})
    x, y = min(max(fractions["x"], 0.0), 1.0) * width, min(max(fractions["y"], 0.0), 1.0) * height
    placed = Box(x, y, min(fractions["w"] * width, width - x), min(fractions["h"] * height, height - y))
    band = free_band(frame, placed, rule["title"].h)
    return FrameLayout(frame, placed, free_regions(frame, placed, band)[0], band, band, False, aspect(width, height))


def free_band(frame: Box, panel: Box, band_h: float) -> Box:
    """A title band beside a panel placed by hand: in the larger of the free spans above and below it, at the
    frame's edge (off it by the title-safe margin), so the span's inner part, next to the panel, is left to the
    captions; centred in the frame when neither span holds it."""
    above, below = panel.y - frame.y, frame.bottom - panel.bottom
    room = max(above, below)
    if room < band_h * 0.8:
        return Box(0.0, (frame.h - band_h) / 2, frame.w, band_h)
    h = min(band_h, room)
    edge = min(frame.h * (1 - TITLE_SAFE) / 2, (room - h) / 2)
    return Box(0.0, edge, frame.w, h) if above >= below else Box(0.0, frame.h - h - edge, frame.w, h)


def clear_of(region: Box, card: Box | None, margin: float) -> Box:
    """``region`` less the band ``card`` takes across it: the larger of what is left above and below it."""
    if card is None or not region.overlaps(card):
        return region
    above = Box(region.x, region.y, region.w, card.y - margin - region.y)
    below_y = card.bottom + margin
    below = Box(region.x, below_y, region.w, region.bottom - below_y)
    return max(above, below, key=lambda box: box.h)


def free_regions(frame: Box, panel: Box | None, card: Box | None = None) -> list[Box]:
    """Where captions may go around a panel placed by hand, best first: below it, above, right of it, left of it;
    each clear of the title ``card``. Without a panel: the frame's bottom."""
    W, H = frame.w, frame.h
    margin = min(W, H) * GAP
    if panel is None:
        regions = [Box(margin, margin, W - 2 * margin, H - 2 * margin - H * 0.04)]
    else:
        regions = [Box(margin, panel.bottom + margin, W - 2 * margin, H - panel.bottom - 2 * margin),
                   Box(margin, margin, W - 2 * margin, panel.y - 2 * margin),
                   Box(panel.right + margin, margin, W - panel.right - 2 * margin, H - 2 * margin),
                   Box(margin, margin, panel.x - 2 * margin, H - 2 * margin)]
    return [clear_of(region, card, margin) for region in regions]


def caption_regions(place: FrameLayout, panel_shown: bool, card: Box | None) -> list[Box]:
    """Where a scene's captions may go, best first: the rule's caption block; around a hand-placed panel, the free
    regions (clear of the title ``card`` on the first scene)."""
    if place.by_rule or not panel_shown:
        return [place.captions] if place.by_rule else free_regions(place.frame, None, card)
    return free_regions(place.frame, place.panel, card)
