"""Mux stage: the segments joined by stream copy (ffmpeg's concat demuxer) with the soundtrack.

The segments are the scenes' and, with transitions, the cuts' windows between them, in timeline order.

Nothing is decoded or encoded here, so it takes a fraction of a second however long the video is; the
output gets ``+faststart`` (the index first, for browsers and phones). Without a picture (audio_only) the
soundtrack alone is muxed. If the mux fails for good, a placeholder video of the script's length says what
failed, encoded with safe settings of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import ffmpeg
from renderer.media.encoding import SAFE_AUDIO, audio_args, failure_reason, write_card
from renderer.ops.reliability import RetryPolicy
from renderer.stages.timeline import Timeline

VERSION = "1"
SAFE_VIDEO = {"encode.preset": "ultrafast", "encode.crf": 30}


@dataclass(frozen=True)
class Video(StageOutput):
    path: Path
    duration: float
    timeline: list[dict[str, float]] = field(default_factory=list)  # per scene: start, duration (seconds)


def _concat_list(segments: list[Any], fps: int) -> str:
    """The concat demuxer's script: each file with its exact duration, so no rounding adds up."""
    lines = ["ffconcat version 1.0"]
    for segment in segments:
        if not segment.frames:  # a transition window or a body chunk left with no frames
            continue
        quoted = str(segment.path).replace("'", "'\\''")
        lines += [f"file '{quoted}'", f"duration {segment.frames / fps:.6f}"]
    return "\n".join(lines) + "\n"


def render(inp: NodeInput, *, slug: str, timeout: float) -> Video:
    timeline: Timeline = inp.deps["timeline"]
    sound = inp.deps["soundtrack"]
    out = inp.workdir / f"{slug}-{inp.key[:12]}.mp4"
    if "segments" in inp.deps:
        listing = inp.workdir / f"mux-{inp.key[:12]}.ffconcat"
        listing.write_text(_concat_list(inp.deps["segments"], inp.cfg["format.fps"]), encoding="utf-8")
        args = ["-f", "concat", "-safe", "0", "-i", listing.name, "-i", str(sound.path),
                "-map", "0:v", "-map", "1:a"]
    else:
        args = ["-i", str(sound.path), "-map", "0:a"]
    ffmpeg.run([*args, "-c", "copy", "-movflags", "+faststart", "-fflags", "+bitexact", "-f", "mp4", str(out)],
               timeout=timeout, cwd=inp.workdir, duration=timeline.duration)
    return Video(out, timeline.duration, timeline.to_list(), provider="ffmpeg:concat")


def placeholder(inp: NodeInput, exc: Exception, *, slug: str, timeout: float) -> Video:
    """The script's length, silent, saying what failed (recorded as a fallback, so the report shows it)."""
    timeline: Timeline = inp.deps["timeline"]
    total = timeline.duration
    reason = failure_reason(exc)
    args = ["-f", "lavfi", "-i", f"anullsrc=r={SAFE_AUDIO['encode.audio_rate']}:cl=mono,atrim=duration={total:.6f}"]
    if "segments" in inp.deps:
        w, h, fps = inp.cfg["format.width"], inp.cfg["format.height"], inp.cfg["format.fps"]
        card = write_card(inp.workdir / f"placeholder-{inp.key[:12]}.ass", w, h, total,
                          f"{slug}: rendering failed", reason)
        args += ["-f", "lavfi", "-i", f"color=c=black:s={w}x{h}:r={fps}:d={total:.6f}", "-map", "1:v",
                 "-vf", f"ass=filename={card.name}", "-c:v", "libx264", "-preset", SAFE_VIDEO["encode.preset"],
                 "-crf", str(SAFE_VIDEO["encode.crf"]), "-pix_fmt", "yuv420p", "-r", str(fps)]
    out = inp.workdir / f"{slug}-{inp.key[:12]}-placeholder.mp4"
    ffmpeg.run([*args, "-map", "0:a", *audio_args(SAFE_AUDIO), "-t", f"{total:.6f}", "-movflags", "+faststart",
                "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir)
    return Video(out, total, timeline.to_list(), provider="placeholder",
                 warnings=(f"assembly failed ({reason}); the video is a placeholder that says so",))


def in_timeline_order(comp) -> tuple[str, ...]:
    """Every scene's segments, each cut's transition (if any) after the scene it leaves."""
    nodes = comp.graph.nodes
    names = comp.nodes_of("segment") + comp.nodes_of("transition")
    return tuple(sorted(names, key=lambda name: (nodes[name].scene, nodes[name].stage == "transition")))


def add(comp) -> None:
    timeout, slug = comp.timeout, comp.slug
    deps: dict[str, Any] = {"soundtrack": comp.name("soundtrack"), "timeline": Part(comp.name("timeline"))}
    reads: tuple[str, ...] = ()
    if comp.picture != "none":
        deps["segments"] = in_timeline_order(comp)
        reads = ("format.width", "format.height", "format.fps")  # the concat's clock, the placeholder's frame
    comp.add(Node(
        stage="mux", version=VERSION, reads=reads, deps=deps,
        fn=lambda inp: render(inp, slug=slug, timeout=timeout),
        fallback=lambda inp, exc: placeholder(inp, exc, slug=slug, timeout=timeout),
        retry=RetryPolicy.from_cfg(comp.cfg.retry.assembly)))
