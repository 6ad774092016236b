"""Join stage: the picture, the segments joined by stream copy (ffmpeg's concat demuxer) into one video-only
MP4, in timeline order: the scenes' segments and, with transitions, the cuts' windows between them.

A node of its own, keyed by the segments alone, so that a change to the sound only (a narration edit with the
captions in their own files, a new music bed) takes the joined picture from the cache and the mux copies two
files rather than opening every segment again (~8 ms each: ~0.3 s for a 5-minute video). The price is one more
copy of the picture in the cache. If the join fails for good, a card of the script's length says what failed,
encoded with safe settings of its own, and the mux puts the soundtrack under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import ffmpeg
from renderer.media.encoding import failure_reason, write_card
from renderer.ops.reliability import RetryPolicy
from renderer.stages.timeline import Timeline

VERSION = "1"
SAFE_VIDEO = {"encode.preset": "ultrafast", "encode.crf": 30}
READS = ("format.width", "format.height", "format.fps")  # the concat's clock, the card's frame


@dataclass(frozen=True)
class Picture(StageOutput):
    """The video track of the whole script, no sound."""

    path: Path
    duration: float


def _concat_list(segments: list[Any], fps: int) -> str:
    """The concat demuxer's script: each file with its exact duration, so no rounding adds up."""
    lines = ["ffconcat version 1.0"]
    for segment in segments:
        if not segment.frames:  # a transition window or a body chunk left with no frames
            continue
        quoted = str(segment.path).replace("'", "'\\''")
        lines += [f"file '{quoted}'", f"duration {segment.frames / fps:.6f}"]
    return "\n".join(lines) + "\n"


def render(inp: NodeInput, *, timeout: float) -> Picture:
    duration = inp.deps["duration"]
    stem = f"join-{inp.key[:12]}"
    listing, out = inp.workdir / f"{stem}.ffconcat", inp.workdir / f"{stem}.mp4"
    listing.write_text(_concat_list(inp.deps["segments"], inp.cfg["format.fps"]), encoding="utf-8")
    ffmpeg.run(["-f", "concat", "-safe", "0", "-i", listing.name, "-map", "0:v", "-c", "copy", "-fflags",
                "+bitexact", "-f", "mp4", out.name], timeout=timeout, cwd=inp.workdir, duration=duration)
    return Picture(out, duration, provider="ffmpeg:concat")


def card_args(inp: NodeInput, duration: float, title: str, reason: str, stem: str, *, at: int = 0) -> list[str]:
    """ffmpeg's input and encode of ``duration`` seconds of a card saying ``title`` and ``reason`` in the
    configured frame, with safe settings of its own (input number ``at``, for a command with other inputs)."""
    w, h, fps = inp.cfg["format.width"], inp.cfg["format.height"], inp.cfg["format.fps"]
    text = write_card(inp.workdir / f"{stem}.ass", w, h, duration, title, reason)
    return ["-f", "lavfi", "-i", f"color=c=black:s={w}x{h}:r={fps}:d={duration:.6f}", "-map", f"{at}:v",
            "-vf", f"ass=filename={text.name}", "-c:v", "libx264", "-preset", SAFE_VIDEO["encode.preset"],
            "-crf", str(SAFE_VIDEO["encode.crf"]), "-pix_fmt", "yuv420p", "-r", str(fps)]


def card(inp: NodeInput, exc: Exception, *, slug: str, timeout: float) -> Picture:
    """The script's length of a card saying what failed (recorded as a fallback, so the report shows it)."""
    duration, reason, stem = inp.deps["duration"], failure_reason(exc), f"join-{inp.key[:12]}-card"
    out = inp.workdir / f"{stem}.mp4"
    ffmpeg.run([*card_args(inp, duration, f"{slug}: rendering failed", reason, stem), "-an", "-f", "mp4", out.name],
               timeout=timeout, cwd=inp.workdir)
    return Picture(out, duration, provider="placeholder",
                   warnings=(f"the picture could not be joined ({reason}); the video is a card that says so",))


def in_timeline_order(comp) -> tuple[str, ...]:
    """Every scene's segments, each cut's transition (if any) after the scene it leaves."""
    nodes = comp.graph.nodes
    names = comp.nodes_of("segment") + comp.nodes_of("transition")
    return tuple(sorted(names, key=lambda name: (nodes[name].scene, nodes[name].stage == "transition")))


def _duration(timeline: Timeline) -> float:
    return timeline.duration


def add(comp) -> None:
    timeout, slug = comp.timeout, comp.slug
    comp.add(Node(
        stage="join", version=VERSION, reads=READS,
        deps={"segments": in_timeline_order(comp), "duration": Part(comp.name("timeline"), _duration)},
        fn=lambda inp: render(inp, timeout=timeout),
        fallback=lambda inp, exc: card(inp, exc, slug=slug, timeout=timeout),
        retry=RetryPolicy.from_cfg(comp.cfg.retry.assembly)))
