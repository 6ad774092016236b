"""Credits card layer (``assembly.credits_card=true``): whose footage the video shows, over the end of its last
scene for ``assembly.credits_card_s`` seconds, fading in: "Footage" and a line per creator and service, in the
theme's font and colours on its background over the whole frame (it is the ending: it covers the picture, the
terminal and the captions). A video that shows no one's footage (procedural, the user's own library) gets no card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from renderer.engine.node import Node, NodeInput, Part
from renderer.media import ass
from renderer.providers.stock import SITES
from renderer.stages.title import TitleTrack

VERSION = "1"
FADE_MS = 500
THEME_READS = ("font_family", "font_size", "foreground", "background")
LINE_HEIGHT = 1.5  # of the line's font size


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


def build_track(credits: list[dict[str, Any]], *, scene_s: float, card_s: float, theme: Any, fmt: Any
                ) -> CreditsTrack:
    lines = lines_of(credits)
    if not lines:
        return CreditsTrack("", [])
    scale = min(fmt.width, fmt.height) / 720
    size = max(8, round(theme.font_size * 1.1 * scale))
    head_size = round(size * 1.6)
    room = int((fmt.height * 0.8 - head_size * LINE_HEIGHT) // (size * LINE_HEIGHT))
    if len(lines) > room:  # what does not fit is in the credits file, ready for the description
        lines = lines[:max(0, room - 1)] + [f"and {len(lines) - max(0, room - 1)} more"]
    start, end = round(max(0.0, scene_s - card_s) * 100), round(scene_s * 100)
    fade = f"\\fad({FADE_MS},0)"
    header = ass.header(fmt.width, fmt.height, ass.plain_styles(theme.font_family, size, theme.foreground))
    veil = (f"{{\\pos(0,0)\\p1\\bord0\\shad0{fade}{ass.fill(theme.background, 1.0)}}}"
            + ass.rect(fmt.width, fmt.height))
    block = head_size * LINE_HEIGHT + len(lines) * size * LINE_HEIGHT
    y = (fmt.height - block) / 2
    x = fmt.width // 2
    events = [ass.Event(start, end, 5, "Shape", veil),
              ass.Event(start, end, 6, "Term", f"{{\\an8\\pos({x},{round(y)})\\fs{head_size}{fade}\\q2}}Footage")]
    y += head_size * LINE_HEIGHT
    for line in lines:
        events.append(ass.Event(start, end, 6, "Term", f"{{\\an8\\pos({x},{round(y)}){fade}\\q2}}{ass.escape(line)}"))
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

    def fn(inp: NodeInput) -> CreditsTrack:
        credits = [c for shot in inp.deps["credits"] for c in shot]
        return build_track(credits, scene_s=inp.deps["scene_s"], card_s=inp.cfg["assembly.credits_card_s"],
                           theme=OmegaConf.create(inp.tree("theme")), fmt=OmegaConf.create(inp.tree("format")))

    comp.add(Node(stage="credits", scene=last, version=VERSION, fn=fn,
                  reads=(*(f"theme.{leaf}" for leaf in THEME_READS), "format.width", "format.height",
                         "assembly.credits_card_s"),
                  deps={"credits": shots, "scene_s": Part(comp.name("timeline"), _last_scene_s)},
                  fallback=lambda inp, exc: CreditsTrack("", [])))  # no card is better than no video
