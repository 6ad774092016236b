"""Title card layer: the script's title and subtitle over the first scene's picture for its first seconds,
in the theme's font and colours, faded in and out. A node per scene (as every layer has); only the first
scene's shows anything. ``title.card=true`` adds it on top of the strategy's layers."""

from __future__ import annotations

from dataclasses import dataclass

import pysubs2
from omegaconf import OmegaConf

from renderer import ass
from renderer.graph import Node, NodeInput
from renderer.stages.captions import style_colour

VERSION = "1"
THEME_READS = ("font_family", "foreground", "background", "prompt")
FADE_MS = (400, 600)


@dataclass(frozen=True)
class TitleCard:
    header: str
    events: list[ass.Event]
    warnings: tuple[str, ...] = ()


def header(width: int, height: int, theme, size: int, box_opacity: float) -> str:
    subs = pysubs2.SSAFile()
    subs.info.update({"PlayResX": str(width), "PlayResY": str(height), "WrapStyle": "0",
                      "ScaledBorderAndShadow": "yes"})
    subs.styles.clear()
    subs.styles["Title"] = pysubs2.SSAStyle(
        fontname=theme.font_family, fontsize=size, bold=True, primarycolor=style_colour(theme.foreground),
        outlinecolor=style_colour(theme.background, box_opacity),
        backcolor=style_colour(theme.background, box_opacity),
        borderstyle=1, outline=max(1, round(size * 0.04)), shadow=0, alignment=pysubs2.Alignment.MIDDLE_CENTER,
        marginl=round(width * 0.06), marginr=round(width * 0.06), marginv=0)
    return subs.to_string("ass").rstrip("\n")


def build(title: str, subtitle: str, *, seconds: float, scene_s: float, fmt, theme, settings) -> TitleCard:
    size = max(12, round(settings.font_size * min(fmt.width, fmt.height) / 720))
    shown = min(seconds, scene_s)
    if not title or shown <= 0:
        return TitleCard("", [])
    end = round(shown * 100)
    fade = f"\\fad{FADE_MS}"
    # the whole frame dimmed in the theme's background, the picture still showing through
    veil = (f"{{\\an7\\pos(0,0)\\p1\\bord0\\shad0{ass.fill(theme.background, settings.box_opacity)}{fade}}}"
            f"{ass.rect(fmt.width, fmt.height)}")
    text = f"{{\\an5\\pos({fmt.width // 2},{fmt.height // 2}){fade}}}{_wrapped(title)}"
    if subtitle:
        text += f"\\N{{\\fs{round(size * 0.5)}\\b0{ass.fill(theme.prompt)}}}{_wrapped(subtitle)}"
    head = header(fmt.width, fmt.height, theme, size, settings.box_opacity)
    return TitleCard(head, [ass.Event(0, end, 4, "Title", veil), ass.Event(0, end, 5, "Title", text)])


def _wrapped(text: str) -> str:
    """Escaped for libass, spaces left breakable so a long title wraps within the frame."""
    return ass.escape(text).replace(ass.NO_BREAK_SPACE, " ")


def node(name: str, title: str, subtitle: str, scene_s: float, first: bool) -> Node:
    def fn(inp: NodeInput) -> TitleCard:
        if not first:
            return TitleCard("", [])
        settings = OmegaConf.create(inp.cfg["title"])
        return build(title, subtitle, seconds=settings.seconds, scene_s=scene_s,
                     fmt=OmegaConf.create(inp.tree("format")), theme=OmegaConf.create(inp.tree("theme")),
                     settings=settings)

    reads = ("title", "format.width", "format.height", *(f"theme.{t}" for t in THEME_READS)) if first else ()
    return Node(name=name, stage="title", version=VERSION, reads=reads,
                data={"title": title, "subtitle": subtitle, "scene_s": scene_s} if first else None, fn=fn)


def add(comp) -> None:
    script = comp.script
    for scene in script.scenes:
        comp.add(node(comp.name("title", scene.index), script.title, script.subtitle or "", scene.duration,
                      scene.index == 0))
