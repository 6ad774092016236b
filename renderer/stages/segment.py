"""Segment stage: one scene's video, encoded on its own with the final settings.

The scene's picture (its visual clip looped or cut to fit, or the theme's background) is fitted to the
format and graded, faded at the cuts, and the scene's layers (the terminal, ...) are burnt in by libass;
the file holds exactly the scene's frames and no audio. Each segment is its own cache entry, keyed by its
picture, by what its layers show and by its span alone, so an edit re-encodes only the scenes it touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderer import ass, ffmpeg
from renderer.compose import PICTURES_WITHOUT_STAGE
from renderer.encoding import failure_reason, video_args, write_card
from renderer.graph import Node, NodeInput, Part
from renderer.reliability import RetryPolicy
from renderer.stages.timeline import Span

VERSION = "1"


@dataclass(frozen=True)
class Segment:
    path: Path
    frames: int
    provider: str
    warnings: tuple[str, ...] = ()


def shown(layer: Any) -> tuple[str, list[ass.Event]] | None:
    """What a layer puts on the picture (its ASS header and events), or None when it shows nothing."""
    return (layer.header, layer.events) if getattr(layer, "events", None) else None


def _picture_chain(cfg: dict[str, Any], picture: Any) -> tuple[list[str], str]:
    w, h, fps = cfg["format.width"], cfg["format.height"], cfg["format.fps"]
    if picture is None:
        return [], f"color=c=0x{cfg['theme.background'].lstrip('#')}:s={w}x{h}:r={fps},setsar=1"
    chain = (f"[0:v]scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},"
             f"setsar=1,fps={fps}")
    if cfg.get("assembly.grade"):
        chain += f",{cfg['assembly.grade']}"
    return ["-stream_loop", "-1", "-i", str(picture.path)], chain


def _fades(transition_s: float, span: Span) -> str:
    fade = min(transition_s, span.duration / 2)
    if fade <= 0:
        return ""
    return f",fade=t=in:st=0:d={fade:.3f},fade=t=out:st={span.duration - fade:.6f}:d={fade:.3f}"


def _encode(inp: NodeInput, inputs: list[str], chain: str, span: Span, out: Path, threads: int,
            timeout: float) -> None:
    script = out.with_suffix(".filter")
    script.write_text(chain + ",format=yuv420p[v]\n", encoding="utf-8")
    ffmpeg.run(["-threads", str(threads), *inputs, "-filter_complex_threads", str(threads),
                "-filter_complex_script", script.name, "-map", "[v]", "-frames:v", str(span.frames),
                *video_args(inp.cfg, threads), "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir)


def render(inp: NodeInput, *, index: int, threads: int, timeout: float) -> Segment:
    span: Span = inp.deps["span"]
    inputs, chain = _picture_chain(inp.cfg, inp.deps.get("picture"))
    end_cs = round(span.duration * 100)
    for n, (header, events) in enumerate(layer for layer in inp.deps["layers"] if layer):
        ass_file = inp.workdir / f"segment-{index:03d}-{inp.key[:12]}-{n}.ass"
        lines = [e.line() for e in (ev.shifted(0, end_cs) for ev in events) if e]
        ass_file.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
        chain += f",ass=filename={ass_file.name}"
    chain += _fades(inp.cfg["assembly.transition_s"], span)  # the whole frame fades, layers and all
    out = inp.workdir / f"segment-{index:03d}-{inp.key[:12]}.mp4"
    _encode(inp, inputs, chain, span, out, threads, timeout)
    return Segment(out, span.frames, "ffmpeg")


def placeholder(inp: NodeInput, exc: Exception, *, index: int, threads: int, timeout: float) -> Segment:
    """When a scene cannot be rendered, the video still comes out: the scene's frames say what failed."""
    span: Span = inp.deps["span"]
    w, h, fps = inp.cfg["format.width"], inp.cfg["format.height"], inp.cfg["format.fps"]
    reason = failure_reason(exc)
    card = write_card(inp.workdir / f"segment-{index:03d}-{inp.key[:12]}-card.ass", w, h, span.duration,
                      f"scene {index + 1}: rendering failed", reason)
    out = inp.workdir / f"segment-{index:03d}-{inp.key[:12]}-placeholder.mp4"
    _encode(inp, [], f"color=c=black:s={w}x{h}:r={fps},setsar=1,ass=filename={card.name}", span, out, threads,
            timeout)
    return Segment(out, span.frames, "placeholder",
                   (f"scene {index + 1} failed to render ({reason}); it is a placeholder that says so",))


def _span(i: int):
    return lambda timeline: timeline.spans[i]


def add(comp) -> None:
    picture, timeout, threads = comp.picture, comp.timeout, comp.encode_threads
    reads = ["format.width", "format.height", "format.fps", "encode.preset", "encode.crf", "assembly.transition_s"]
    reads.append("theme.background" if picture == "background" else "assembly.grade")
    retry = RetryPolicy.from_cfg(comp.cfg.retry.assembly)
    for i in comp.scenes:
        deps: dict[str, Any] = {"span": Part(comp.name("timeline"), _span(i)),
                                "layers": tuple(Part(comp.name(layer, i), shown) for layer in comp.layers)}
        if picture not in PICTURES_WITHOUT_STAGE:
            deps["picture"] = comp.name(picture, i)
        comp.add(Node(
            name=comp.name("segment", i), stage="segment", version=VERSION, reads=tuple(reads), deps=deps,
            fn=lambda inp, i=i: render(inp, index=i, threads=threads, timeout=timeout),
            fallback=lambda inp, exc, i=i: placeholder(inp, exc, index=i, threads=threads, timeout=timeout),
            retry=retry, slot="encode"))
