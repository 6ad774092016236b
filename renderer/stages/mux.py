"""Mux stage: the joined picture (renderer/stages/join.py) with the soundtrack, by stream copy.

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
from renderer.media.encoding import SAFE_AUDIO, audio_args, failure_reason
from renderer.ops.reliability import RetryPolicy
from renderer.stages.join import card_args
from renderer.stages.timeline import Timeline

VERSION = "2"  # 2: the joined picture (renderer/stages/join.py) and the soundtrack, two files


@dataclass(frozen=True)
class Video(StageOutput):
    path: Path
    duration: float
    timeline: list[dict[str, float]] = field(default_factory=list)  # per scene: start, duration (seconds)


def render(inp: NodeInput, *, slug: str, timeout: float) -> Video:
    timeline: Timeline = inp.deps["timeline"]
    sound = inp.deps["soundtrack"]
    out = inp.workdir / f"{slug}-{inp.key[:12]}.mp4"
    sound_in = [*sound.input_args, "-i", str(sound.path)]
    if "picture" in inp.deps:
        args = ["-i", str(inp.deps["picture"].path), *sound_in, "-map", "0:v", "-map", "1:a", *sound.stream_args]
    else:
        args = [*sound_in, "-map", "0:a", *sound.stream_args]
    ffmpeg.run([*args, "-c", "copy", "-movflags", "+faststart", "-fflags", "+bitexact", "-f", "mp4", str(out)],
               timeout=timeout, cwd=inp.workdir, duration=timeline.duration)
    return Video(out, timeline.duration, timeline.to_list(), provider="ffmpeg:copy")


def placeholder(inp: NodeInput, exc: Exception, *, slug: str, timeout: float) -> Video:
    """The script's length, silent, saying what failed (recorded as a fallback, so the report shows it)."""
    timeline: Timeline = inp.deps["timeline"]
    total = timeline.duration
    reason = failure_reason(exc)
    args = ["-f", "lavfi", "-i", f"anullsrc=r={SAFE_AUDIO['encode.audio_rate']}:cl=mono,atrim=duration={total:.6f}"]
    if "picture" in inp.deps:
        args += card_args(inp, total, f"{slug}: rendering failed", reason, f"placeholder-{inp.key[:12]}", at=1)
    out = inp.workdir / f"{slug}-{inp.key[:12]}-placeholder.mp4"
    ffmpeg.run([*args, "-map", "0:a", *audio_args(SAFE_AUDIO), "-t", f"{total:.6f}", "-movflags", "+faststart",
                "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir)
    return Video(out, total, timeline.to_list(), provider="placeholder",
                 warnings=(f"assembly failed ({reason}); the video is a placeholder that says so",))


def add(comp) -> None:
    timeout, slug = comp.timeout, comp.slug
    deps: dict[str, Any] = {"soundtrack": comp.name("soundtrack"), "timeline": Part(comp.name("timeline"))}
    reads: tuple[str, ...] = ()
    if comp.picture != "none":
        deps["picture"] = comp.name("join")
        reads = ("format.width", "format.height", "format.fps")  # the placeholder's frame
    comp.add(Node(
        stage="mux", version=VERSION, reads=reads, deps=deps,
        fn=lambda inp: render(inp, slug=slug, timeout=timeout),
        fallback=lambda inp, exc: placeholder(inp, exc, slug=slug, timeout=timeout),
        retry=RetryPolicy.from_cfg(comp.cfg.retry.assembly)))
