"""renderer.media.layout: the boxes every layer is drawn in, by one rule per aspect — read back from what the
terminal, captions, title and credits stages draw, for every shipped format and the three aspects, with and
without each layer: none covers another, all inside the frame's safe areas."""

from __future__ import annotations

import itertools
import re

import pytest
from omegaconf import OmegaConf

from renderer.config import PanelConfig
from renderer.media import layout
from renderer.media.captions import Cue
from renderer.media.layout import ACTION_SAFE, TITLE_SAFE, Box, frame_layout, safe
from renderer.stages import captions, credits, terminal, title
from tests.conftest import CONF, compose_cfg

FORMATS = sorted(p.stem for p in (CONF / "format").glob("*.yaml"))
SIZES = [(1280, 720), (1920, 1080), (1080, 1920), (720, 1280), (1080, 1080), (640, 360), (360, 640), (480, 480),
         (1440, 1080), (1080, 1350)]
RULE = OmegaConf.structured(PanelConfig())
BY_HAND = OmegaConf.create({"x": 0.05, "y": 0.45, "w": 0.6, "h": 0.48})
LONG = "The first red flag was a loop that nobody could explain, gone again by every morning, then back."
CREDITS = [{"service": "pexels", "creator": f"Creator number {n}"} for n in range(12)]


def _fmt(w: int, h: int):
    return OmegaConf.create({"name": f"{w}x{h}", "width": w, "height": h, "fps": 25})


def drawn(event_text: str) -> Box:
    """The box an ASS drawing covers: its \\pos plus its points' extent."""
    x, y = map(float, re.search(r"\\pos\(([-\d.]+),([-\d.]+)\)", event_text).group(1, 2))
    points = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", event_text.split("}", 1)[1])]
    xs, ys = points[0::2], points[1::2]
    return Box(x + min(xs), y + min(ys), max(xs) - min(xs), max(ys) - min(ys))


def boxes(fmt, theme, settings, *, panel, terminal_on: bool, captions_on: bool, title_on: bool, credits_on: bool
          ) -> dict[str, Box]:
    """What each layer draws on the first (and only) scene, read from its stage's output."""
    out = {}
    if terminal_on:
        geo = terminal.geometry(theme, fmt, panel)
        out["panel"] = Box(geo.x, geo.y, geo.w, geo.h)
    if title_on:
        track = title.build_track("THE DESCENT", "Recovered AI Incident Log — a subtitle", duration_s=3.5,
                                  theme=theme, fmt=fmt, panel=panel if terminal_on else None)
        out["title"] = drawn(next(e.text for e in track.events if e.style == "Shape"))
    if captions_on:
        card = captions.title_card(fmt, panel if terminal_on else None) if title_on else None
        track = captions.build_track([Cue(0.0, 3.0, LONG[:84])], style="words", fmt=fmt, theme=theme,
                                     settings=settings, panel=panel if terminal_on else None, card=card)
        assert track.warnings == ()
        (out["captions"],) = track.boxes
    if credits_on:
        track = credits.build_track(CREDITS, scene_s=12.0, card_s=4.0, theme=theme, fmt=fmt,
                                    panel=panel if terminal_on else None, not_before_s=0.0)
        out["credits"] = drawn(next(e.text for e in track.events if e.style == "Shape"))
    return out


LAYERS = list(itertools.product([True, False], repeat=4))


@pytest.mark.parametrize("size", [*FORMATS, *(f"{w}x{h}" for w, h in SIZES)])
def test_no_layer_covers_another_in_any_format_with_any_layers_on(size):
    cfg = compose_cfg(f"format={size}") if size in FORMATS else compose_cfg()
    fmt = cfg.format if size in FORMATS else _fmt(*map(int, size.split("x")))
    for terminal_on, captions_on, title_on, credits_on in LAYERS:
        if title_on and credits_on:
            continue  # they share a slot, never at once: see the next test
        shown = boxes(fmt, cfg.theme, cfg.captions, panel=RULE, terminal_on=terminal_on, captions_on=captions_on,
                      title_on=title_on, credits_on=credits_on)
        for (a, box_a), (b, box_b) in itertools.combinations(shown.items(), 2):
            assert not box_a.overlaps(box_b), (size, a, box_a, b, box_b)
        action, text = safe(fmt.width, fmt.height, ACTION_SAFE), safe(fmt.width, fmt.height, TITLE_SAFE)
        for name, box in shown.items():
            full_width = name in ("title", "credits")  # a band across the frame; its text keeps to title safe
            assert box.inside(Box(0, action.y, fmt.width, action.h) if full_width else text), (size, name, box)


@pytest.mark.parametrize("size", FORMATS)
def test_a_hand_placed_panel_is_kept_and_the_others_find_room_around_it(size):
    cfg = compose_cfg(f"format={size}")
    shown = boxes(cfg.format, cfg.theme, cfg.captions, panel=BY_HAND, terminal_on=True, captions_on=True,
                  title_on=True, credits_on=False)
    w, h = cfg.format.width, cfg.format.height
    assert shown["panel"] == Box(0.05 * w, 0.45 * h, 0.6 * w, 0.48 * h)
    for (a, box_a), (b, box_b) in itertools.combinations(shown.items(), 2):
        assert not box_a.overlaps(box_b), (size, a, box_a, b, box_b)


def test_a_panel_fraction_set_alone_keeps_the_rule_s_others():
    rule = frame_layout(1280, 720).panel
    moved = frame_layout(1280, 720, {"w": 0.9}).panel
    assert (moved.x, moved.y, moved.h) == (rule.x, rule.y, rule.h) and moved.w == pytest.approx(0.9 * 1280 - 0)


def test_the_credits_card_waits_for_the_title_card_on_a_one_scene_video():
    cfg = compose_cfg()
    track = credits.build_track(CREDITS, scene_s=6.0, card_s=4.0, theme=cfg.theme, fmt=cfg.format,
                                not_before_s=3.5)
    assert {e.start for e in track.events} == {350} and {e.end for e in track.events} == {600}
    assert credits.build_track(CREDITS, scene_s=3.0, card_s=4.0, theme=cfg.theme, fmt=cfg.format,
                               not_before_s=3.5).events == []  # the title takes the whole scene


def test_credits_that_do_not_fit_are_counted():
    rows = credits.rows_of([f"Creator {n} on Pexels" for n in range(30)], cols=60, rows=2)
    assert len(rows) == 2 and all(len(r) <= 60 for r in rows) and re.search(r"and \d+ more$", rows[-1])
    shown = sum(r.count(" on Pexels") for r in rows)
    assert int(re.search(r"and (\d+) more", rows[-1]).group(1)) == 30 - shown


@pytest.mark.parametrize("w,h,kind", [(1280, 720, "landscape"), (1080, 1920, "portrait"), (1080, 1080, "square")])
def test_the_rule_s_composition_per_aspect(w, h, kind):
    """Landscape: the panel on the left two thirds, above the lower third; portrait: the panel is the middle
    third and the captions end above the feed's bottom overlay; square: the panel across the title-safe width."""
    place = frame_layout(w, h)
    assert place.aspect == kind and place.by_rule
    assert place.panel.bottom <= h * 2 / 3 + 0.5 and place.captions.y >= h * 2 / 3
    if kind == "landscape":
        assert place.panel.right == pytest.approx(w * 2 / 3)
    if kind == "portrait":
        assert (place.panel.y, place.panel.h) == pytest.approx((h / 3, h / 3))
        assert place.captions.bottom <= h * (1 - layout.UI_BOTTOM) and place.title.y >= h * layout.UI_TOP
    if kind == "square":
        assert place.panel.w == pytest.approx(w * TITLE_SAFE)


@pytest.mark.parametrize("w,h", [(1080, 1920), (360, 640), (1280, 720)])
def test_a_cue_is_set_in_no_more_lines_than_captions_max_lines_as_its_words_wrap(w, h):
    """Counting characters alone, this cue fits 3 lines of 27 (portrait 1080); broken between words it takes 4."""
    cfg = compose_cfg()
    text = "The keeper arrived on Tuesday morning with groceries, batteries and a borrowed"  # tests/lighthouse.txt
    track = captions.build_track([Cue(0.0, 3.0, text)], style="sentence", fmt=_fmt(w, h), theme=cfg.theme,
                                 settings=cfg.captions, panel=RULE)
    assert track.events[0].text.count("\\N") + 1 <= cfg.captions.max_lines
    assert not track.boxes[0].overlaps(frame_layout(w, h).panel)
