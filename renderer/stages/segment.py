"""Segment stage: one scene's video, encoded on its own with the final settings.

The scene's picture (its visual clip looped or cut to fit, or the theme's background) is fitted to the
format and graded, the scene's layers (the terminal, ...) are burnt in by libass, and the frame fades at
the cuts; the file holds exactly the scene's frames and no audio. A scene longer than ``encode.chunk_s`` is
encoded in chunks of its frames, each a segment of its own (so one long scene, or a single edited one, still
fills the cores). Each segment is its own cache entry, keyed by its picture, by what its layers show and by
its own frames of the timeline alone, so an edit re-encodes only the scenes it touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import ass, ffmpeg
from renderer.media.captions import sentence_pauses
from renderer.media.encoding import failure_reason, video_args, write_card
from renderer.ops.reliability import RetryPolicy
from renderer.stages.timeline import Chunk, shot_bounds, split

VERSION = "1"


@dataclass(frozen=True)
class Segment(StageOutput):
    path: Path
    frames: int


def shown(layer: Any) -> tuple[str, list[ass.Event]] | None:
    """What a layer puts on the picture (its ASS header and events), or None when it shows nothing."""
    return (layer.header, layer.events) if getattr(layer, "events", None) else None


def _picture_chain(cfg: dict[str, Any], pictures: list[Any], chunk: Chunk, bounds: tuple[int, ...] = ()
                   ) -> tuple[list[str], str]:
    """The scene's picture, fitted and graded, from ``chunk``'s first frame on (timestamps from 0): its one clip,
    or its shots one after another (shot ``k`` from frame ``bounds[k]`` to ``bounds[k + 1]``), of which only
    those the chunk shows are read."""
    w, h, fps = cfg["format.width"], cfg["format.height"], cfg["format.fps"]
    if not pictures:
        return [], f"color=c=0x{cfg['theme.background'].lstrip('#')}:s={w}x{h}:r={fps},setsar=1"
    fit = f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},setsar=1,fps={fps}"
    if len(pictures) == 1:
        chain, skip = f"[0:v]{fit}", chunk.offset
        inputs = ["-stream_loop", "-1", "-i", str(pictures[0].path)]
    else:
        shown = [k for k in range(len(pictures))
                 if bounds[k] < chunk.offset + chunk.frames and bounds[k + 1] > chunk.offset]
        inputs = [arg for k in shown for arg in ("-stream_loop", "-1", "-i", str(pictures[k].path))]
        chain = "".join(f"[{n}:v]{fit},trim=end_frame={bounds[k + 1] - bounds[k]},setpts=PTS-STARTPTS[shot{n}];"
                        for n, k in enumerate(shown))
        chain += "".join(f"[shot{n}]" for n in range(len(shown))) + f"concat=n={len(shown)}:v=1:a=0"
        skip = chunk.offset - bounds[shown[0]]
    if skip:  # frame-exact: the same frames a render of the whole scene would show here
        chain += f",trim=start_frame={skip},setpts=PTS-STARTPTS"
    if cfg.get("assembly.grade"):
        chain += f",{cfg['assembly.grade']}"
    return inputs, chain


def _fades(transition_s: float, chunk: Chunk) -> str:
    """Fades through black at the scene's cuts, those that reach into the chunk, timed on the scene's clock
    (the chunk's frames are stamped with their time in the scene while fading), so they run on across
    chunk boundaries."""
    fade = min(transition_s, chunk.scene_duration / 2)
    if fade <= 0:
        return ""
    out = ""
    if chunk.start < fade:
        out += f",fade=t=in:st=0:d={fade:.3f}"
    if chunk.start + chunk.duration > chunk.scene_duration - fade:
        out += f",fade=t=out:st={chunk.scene_duration - fade:.6f}:d={fade:.3f}"
    if out and chunk.offset:
        out = f",setpts=PTS+{chunk.offset}/(FRAME_RATE*TB){out},setpts=PTS-STARTPTS"
    return out


def _layer_events(events: list[ass.Event], chunk: Chunk) -> list[ass.Event]:
    """The layer's events moved onto the chunk's clock and clipped to it."""
    offset, end = round(chunk.start * 100), round(chunk.duration * 100)
    # a long scene has many chunks and many events: test each before copying it, or chunks × events copies
    inside = (e for e in events if e.start < offset + end and (e.end is None or e.end > offset))
    moved = (e.shifted(-offset, end) for e in inside)
    return [e for e in moved if e and e.end > 0]


def _encode(inp: NodeInput, inputs: list[str], chain: str, chunk: Chunk, out: Path, threads: int,
            timeout: float) -> None:
    script = out.with_suffix(".filter")
    script.write_text(chain + ",format=yuv420p[v]\n", encoding="utf-8")
    ffmpeg.run(["-threads", str(threads), *inputs, "-filter_complex_threads", str(threads),
                "-filter_complex_script", script.name, "-map", "[v]", "-frames:v", str(chunk.frames),
                *video_args(inp.cfg, threads), "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir,
               duration=chunk.duration)


def _stem(inp: NodeInput, scene: int, part: int) -> str:
    """What the files of ``part`` of ``scene`` are named by (in the work folder)."""
    return f"segment-{scene}.{part}-{inp.key[:12]}"


def _pictures(inp: NodeInput, chunk: Chunk) -> tuple[list[Any], tuple[int, ...]]:
    """The scene's picture: its one clip, or its shots and the frames they start at (cut between sentences)."""
    if "shots" not in inp.deps:
        return [inp.deps["picture"]] if "picture" in inp.deps else [], ()
    shots = inp.deps["shots"]
    return shots, shot_bounds(chunk.scene_frames, chunk.fps, len(shots), inp.deps["pauses"])


def render(inp: NodeInput, *, scene: int, part: int, threads: int, timeout: float) -> Segment:
    chunk: Chunk = inp.deps["chunk"]
    pictures, bounds = _pictures(inp, chunk)
    inputs, chain = _picture_chain(inp.cfg, pictures, chunk, bounds)
    stem = _stem(inp, scene, part)
    for n, (header, events) in enumerate(layer for layer in inp.deps["layers"] if layer):
        ass_file = ass.write(inp.workdir / f"{stem}-{n}.ass", header, _layer_events(events, chunk))
        chain += f",ass=filename={ass_file.name}"
    chain += _fades(inp.cfg["assembly.transition_s"], chunk)  # the whole frame fades, layers and all
    out = inp.workdir / f"{stem}.mp4"
    _encode(inp, inputs, chain, chunk, out, threads, timeout)
    return Segment(out, chunk.frames, provider="ffmpeg")


def placeholder(inp: NodeInput, exc: Exception, *, scene: int, part: int, threads: int, timeout: float
                ) -> Segment:
    """When a scene cannot be rendered, the video still comes out: the scene's frames say what failed."""
    chunk: Chunk = inp.deps["chunk"]
    w, h, fps = inp.cfg["format.width"], inp.cfg["format.height"], inp.cfg["format.fps"]
    reason = failure_reason(exc)
    stem = _stem(inp, scene, part)
    card = write_card(inp.workdir / f"{stem}-card.ass", w, h, chunk.duration, f"scene {scene + 1}: rendering failed",
                      reason)
    out = inp.workdir / f"{stem}-placeholder.mp4"
    _encode(inp, [], f"color=c=black:s={w}x{h}:r={fps},setsar=1,ass=filename={card.name}", chunk, out, threads,
            timeout)
    return Segment(out, chunk.frames, provider="placeholder",
                   warnings=(f"scene {scene + 1} failed to render ({reason}); it is a placeholder that says so",))


def _chunk(scene: int, count: int, part: int):
    return lambda timeline: split(timeline.spans[scene], count)[part]


def _pauses(lead: float):
    """Where the scene's narration pauses between sentences, in seconds into the scene (it starts ``lead`` in)."""
    return lambda voice: tuple(round(lead + t, 3) for t in sentence_pauses(getattr(voice, "alignment", None)))


def add(comp) -> None:
    """A node per chunk of every scene (``segment/3.0`` ...): long scenes spread over the cores, and the
    chunks of a scene are counted from its scripted length, so the graph is known before anything runs."""
    picture, timeout, threads = comp.picture, comp.timeout, comp.encode_threads
    reads = ["format.width", "format.height", "format.fps", "encode.preset", "encode.crf", "assembly.transition_s"]
    reads.append("theme.background" if picture == "background" else "assembly.grade")
    retry = RetryPolicy.from_cfg(comp.cfg.retry.assembly)
    for i, count in enumerate(comp.chunks):
        for k in range(count):
            deps: dict[str, Any] = {"chunk": Part(comp.name("timeline"), _chunk(i, count, k)),
                                    "layers": tuple(Part(comp.name(layer, i), shown) for layer in comp.layers
                                                    if comp.name(layer, i) in comp.graph.nodes)}  # some: scene 0 only
            shots = comp.pictures(i)
            if len(shots) > 1:  # the cuts between shots fall where the narration pauses
                deps["shots"] = shots
                deps["pauses"] = Part(comp.name("voice", i), _pauses(comp.script.scenes[i].start if i == 0 else 0.0))
            elif shots:
                deps["picture"] = shots[0]
            comp.add(Node(
                stage="segment", scene=i, part=k, version=VERSION, reads=tuple(reads), deps=deps,
                fn=lambda inp, i=i, k=k: render(inp, scene=i, part=k, threads=threads, timeout=timeout),
                fallback=lambda inp, exc, i=i, k=k: placeholder(inp, exc, scene=i, part=k, threads=threads,
                                                                timeout=timeout),
                retry=retry, slot="encode"))
