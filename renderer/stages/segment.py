"""Segment stage: one scene's video, encoded on its own with the final settings.

The scene's picture (its visual clip looped or cut to fit, or the theme's background) is fitted to the
format and graded, the scene's layers (the terminal, ...) are burnt in by libass (what a layer shows unchanged
throughout a run drawn once and overlaid: renderer/media/still_layer.py), and with
``assembly.transition_s`` the video fades in from black and out to it; the file holds exactly the scene's
frames and no audio. With transitions, the frames each cut's window takes (renderer/stages/transition.py)
are left to it: a scene's segments hold its body, the rest. ``scene_run`` draws a run of a scene's frames
for both. A scene longer than ``encode.chunk_s`` is encoded in chunks of its frames, each a segment of its
own (so one long scene, or a single edited one, still fills the cores). Each segment is its own cache
entry, keyed by its picture, by what its layers show and by its own frames of the timeline alone, so an edit
re-encodes only the scenes it touches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import ass, codecs, ffmpeg, still_layer
from renderer.media.captions import sentence_pauses
from renderer.media.encoding import failure_reason, write_card
from renderer.media.xfade import xfade_name
from renderer.ops.reliability import RetryPolicy
from renderer.stages.timeline import Chunk, body_chunks, shot_bounds, transition_frames

VERSION = "1"


@dataclass(frozen=True)
class Segment(StageOutput):
    path: Path | None  # None: no frames (a body or a transition window left with none); the mux skips it
    frames: int


def shown(layer: Any) -> tuple[str, ass.Track] | None:
    """What a layer puts on the picture (its ASS header and events, found by time), or None when it shows
    nothing."""
    return (layer.header, ass.Track(tuple(layer.events))) if getattr(layer, "events", None) else None


def _picture_chain(cfg: dict[str, Any], pictures: list[Any], chunk: Chunk, bounds: tuple[int, ...] = (),
                   first_input: int = 0) -> tuple[list[str], str]:
    """The scene's picture, fitted and graded, from ``chunk``'s first frame on (timestamps from 0) for as long as
    it is read: its one clip, or its shots one after another (``_shots``); a clip loops, and the last shot goes
    on, past the scene's end. The ffmpeg inputs it reads, numbered from ``first_input`` in the run, and the
    filter chain (without an output label)."""
    w, h, fps = cfg["format.width"], cfg["format.height"], cfg["format.fps"]
    if not pictures:
        return [], f"color=c=0x{cfg['theme.background'].lstrip('#')}:s={w}x{h}:r={fps},setsar=1"
    fit = f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},setsar=1,fps={fps}"
    seek = ""
    if len(pictures) == 1:
        seek = _seek(pictures[0], chunk, fps)
        inputs = ["-stream_loop", "-1", *(["-ss", seek] if seek else []), "-i", str(pictures[0].path)]
        # entered by seeking, the clip gets its own timestamps back (ffmpeg shifted them by the seek, rounded to
        # the stream's time base: so is this), so fps picks the frames a whole render does
        chain = f"[{first_input}:v]" + (f"setpts=round(PTS+{seek}/TB)," if seek else "") + fit
        skip = chunk.offset
    else:
        blend = cfg.get("assembly.shot_transition") or ""
        frames = transition_frames(cfg["assembly.transition_s"], fps) if blend else 0
        inputs, chain, skip = _shots(pictures, bounds, chunk, fit, first_input,
                                     xfade_name(blend, "assembly.shot_transition") if blend else "", frames, fps)
    if skip:  # frame-exact: the same frames a render of the whole scene would show here
        chain += f",trim={'start_pts' if seek else 'start_frame'}={skip},setpts=PTS-STARTPTS"
    if cfg.get("assembly.grade"):
        chain += f",{cfg['assembly.grade']}"
    return inputs, chain


SEEK_MARGIN_S = 1.0  # a chunk entering its clip by seeking decodes this much before its first frame


def _seek(clip: Any, chunk: Chunk, fps: int) -> str:
    """Where a chunk enters its scene's one clip by input seeking (seconds, as ffmpeg reads them; "": decoded
    from the start), so the chunks of a long scene each decode about their own length, not the scene up to them.
    Seeking starts a margin early (a source frame shown at the chunk's first frame may begin before it) and only
    where the chunk ends that margin before the clip does: past its end the clip loops, and a seeked input loops
    to other timestamps."""
    start = chunk.offset / fps - SEEK_MARGIN_S
    if start <= 0 or (chunk.offset + chunk.frames) / fps + SEEK_MARGIN_S > clip.duration:
        return ""
    return f"{start:.3f}"


def _shots(pictures: list[Any], bounds: tuple[int, ...], chunk: Chunk, fit: str, first_input: int, blend: str,
           frames: int, fps: int) -> tuple[list[str], str, int]:
    """A scene's shots one after another (shot ``k`` from frame ``bounds[k]`` to ``bounds[k + 1]``), cut, or
    blended by xfade's ``blend`` over the first ``frames`` of each shot after the first; only the shots the chunk
    shows are read (and the one before, while its blend runs). The inputs, the chain, and the frames to skip to
    the chunk's first."""
    last = len(pictures) - 1
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    frames = max(0, min(frames, *(n - 1 for n in lengths[1:]))) if blend else 0
    first = max(k for k in range(last + 1) if bounds[k] <= chunk.offset)
    if frames and first and chunk.offset < bounds[first] + frames:
        first -= 1  # the chunk starts in a blend: the shot before is half of it
    shown = [k for k in range(first, last + 1) if bounds[k] < chunk.offset + chunk.frames]
    inputs = [arg for k in shown for arg in ("-stream_loop", "-1", "-i", str(pictures[k].path))]
    chain = "".join(f"[{first_input + n}:v]{fit}" + (f",trim=end_frame={lengths[k] + frames}" if k < last else "")
                    + f",setpts=PTS-STARTPTS[shot{n}];" for n, k in enumerate(shown))
    if not frames:
        chain += "".join(f"[shot{n}]" for n in range(len(shown))) + f"concat=n={len(shown)}:v=1:a=0"
    else:  # each blend starts where its shot does: the shot before runs on under it
        into, at = "[shot0]", 0
        for n, k in enumerate(shown[1:], start=1):
            at += lengths[shown[n - 1]]
            label = f"[mix{n}];" if n < len(shown) - 1 else ""
            chain += f"{into}[shot{n}]xfade=transition={blend}:duration={frames / fps:.6f}:offset={at / fps:.6f}{label}"
            into = f"[mix{n}]"
        if len(shown) == 1:
            chain += "[shot0]null"
    return inputs, chain, chunk.offset - bounds[shown[0]]


def _fades(transition_s: float, chunk: Chunk, *, opens: bool, closes: bool) -> str:
    """Fades through black where the scene opens the video (``opens``) and where it closes it (``closes``),
    those that reach into the chunk, timed on the scene's clock (the chunk's frames are stamped with their
    time in the scene while fading), so they run on across chunk boundaries."""
    fade = min(transition_s, chunk.scene_duration / 2)
    if fade <= 0:
        return ""
    out = ""
    if opens and chunk.start < fade:
        out += f",fade=t=in:st=0:d={fade:.3f}"
    if closes and chunk.start + chunk.duration > chunk.scene_duration - fade:
        out += f",fade=t=out:st={chunk.scene_duration - fade:.6f}:d={fade:.3f}"
    if out and chunk.offset:
        out = f",setpts=PTS+{chunk.offset}/(FRAME_RATE*TB){out},setpts=PTS-STARTPTS"
    return out


def _layer_events(track: ass.Track, chunk: Chunk) -> list[ass.Event]:
    """The layer's events moved onto the chunk's clock and clipped to it (only those it shows are read: a long
    scene has many chunks and many events)."""
    offset, end = round(chunk.start * 100), round(chunk.duration * 100)
    moved = (e.shifted(-offset, end) for e in track.during(offset, offset + end))
    return [e for e in moved if e and e.end > 0]


def scene_run(cfg: dict[str, Any], scene: dict[str, Any], run: Chunk, stem: Path, *,
              first_input: int = 0, opens: bool = False, closes: bool = False) -> tuple[list[str], str]:
    """``run`` of a scene's frames as the video shows them (before any transition at its cuts), from what
    ``scene_inputs`` gave it (``scene``): its picture, its layers burnt in (their still parts to
    ``stem``-N-still.rgba, the rest to ``stem``-N.ass), faded where the scene opens or closes the video. The ffmpeg
    inputs it reads (numbered from ``first_input``) and its filter chain, without an output label."""
    pictures, bounds = _pictures(scene, run)
    inputs, chain = _picture_chain(cfg, pictures, run, bounds, first_input)
    drawn: list[tuple[int, str, list[ass.Event]]] = []  # what libass draws over the chain so far, by layer
    for n, (header, track) in enumerate(layer for layer in scene["layers"] if layer):
        events = _layer_events(track, run)
        parts = still_layer.split(events, round(run.duration * 100))
        still = still_layer.render(header, parts.still, cfg["format.width"], cfg["format.height"],
                                   stem.with_name(f"{stem.name}-{n}-still"))
        if still is None:
            drawn.append((n, header, events))
            continue
        chain += _libass(drawn, stem)  # the image goes over what the layers below it draw: they come first
        label = re.sub(r"\W", "_", f"{stem.name}-{n}")  # unique in the graph: a transition's two runs share one
        # the image loops for ever: the overlay ends when the picture does (shortest)
        chain += (f"[{label}_under];[{first_input + inputs.count('-i')}:v]format=yuva420p,loop=loop=-1:size=1:start=0"
                  f"[{label}_still];[{label}_under][{label}_still]overlay=x={still.x}:y={still.y}:format=yuv420"
                  ":eof_action=repeat:shortest=1")
        inputs = inputs + still.input_args()
        drawn = [(n, header, parts.moving)]
    chain += _libass(drawn, stem)
    # the whole frame fades, layers and all
    return inputs, chain + _fades(cfg["assembly.transition_s"], run, opens=opens, closes=closes)


def _libass(layers: list[tuple[int, str, list[ass.Event]]], stem: Path) -> str:
    """The ``ass`` filters drawing ``layers`` (numbered), to append to a chain: one where they merge
    (``ass.merged``), written to ``stem``-N.ass after the first layer it draws; "" for no events."""
    kept = [(n, header, events) for n, header, events in layers if events]
    docs = ass.merged([(header, events) for _, header, events in kept])
    numbers = [n for n, _, _ in kept] if len(docs) == len(kept) else [kept[0][0]]
    return "".join(f",ass=filename={ass.write(stem.with_name(f'{stem.name}-{n}.ass'), header, events).name}"
                   for n, (header, events) in zip(numbers, docs))


def on_threads(inputs: list[str], threads: int) -> list[str]:
    """``inputs`` (ffmpeg's input arguments) with every input's decoders on ``threads`` threads: an option before
    ``-i`` is that input's alone, and an input left to choose decodes on a thread per core and one more (a
    shot's clip, a transition's second scene: ~10 MB and three threads each, beside the encode's one)."""
    out: list[str] = []
    for arg in inputs:
        out += ["-threads", str(threads), arg] if arg == "-i" else [arg]
    return out


def encode(inp: NodeInput, inputs: list[str], chain: str, frames: int, out: Path, *, threads: int,
           timeout: float) -> Path:
    """``frames`` of the filter graph ``chain`` encoded with the settings every segment shares (the script's
    encoder, in the node's data: ``inp.data["encoder"]``), into ``out``."""
    encoder: codecs.Encoder = inp.data["encoder"]
    script = out.with_suffix(".filter")
    script.write_text(f"{chain},{codecs.pixels(encoder)}[v]\n", encoding="utf-8")
    output = codecs.video_args(encoder, preset=inp.cfg["encode.preset"], x264_crf=inp.cfg["encode.crf"],
                               fps=inp.cfg["format.fps"], threads=threads)
    ffmpeg.run([*codecs.device_args(encoder), *on_threads(inputs, threads), "-filter_complex_threads",
                str(threads), *ffmpeg.graph_file(script.name), "-map", "[v]", "-frames:v", str(frames),
                *output, "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir,
               duration=frames / inp.cfg["format.fps"])
    return out


def card(inp: NodeInput, frames: int, stem: str, title: str, reason: str, *, threads: int, timeout: float) -> Path:
    """``frames`` of a black card saying ``title`` and ``reason``, encoded like every segment (``stem``.mp4)."""
    w, h, fps = inp.cfg["format.width"], inp.cfg["format.height"], inp.cfg["format.fps"]
    text = write_card(inp.workdir / f"{stem}-card.ass", w, h, frames / fps, title, reason)
    return encode(inp, [], f"color=c=black:s={w}x{h}:r={fps},setsar=1,ass=filename={text.name}", frames,
                  inp.workdir / f"{stem}.mp4", threads=threads, timeout=timeout)


def _stem(inp: NodeInput, scene: int, part: int) -> str:
    """What the files of ``part`` of ``scene`` are named by (in the work folder)."""
    return f"segment-{scene}.{part}-{inp.key[:12]}"


def _pictures(scene: dict[str, Any], run: Chunk) -> tuple[list[Any], tuple[int, ...]]:
    """The scene's picture: its one clip, or its shots and the frames they start at (cut between sentences)."""
    if "shots" not in scene:
        return [scene["picture"]] if "picture" in scene else [], ()
    shots = scene["shots"]
    return shots, shot_bounds(run.scene_frames, run.fps, len(shots), scene["pauses"])


def render(inp: NodeInput, *, scene: int, part: int, threads: int, timeout: float) -> Segment:
    chunk: Chunk = inp.deps["chunk"]
    if not chunk.frames:  # a body shorter than its count of chunks: this one shows nothing
        return Segment(None, 0, provider="none")
    stem = _stem(inp, scene, part)
    ends = inp.data  # with transitions: whether the scene opens or closes the video (it fades there)
    inputs, chain = scene_run(inp.cfg, inp.deps, chunk, inp.workdir / stem, opens=ends.get("opens", False),
                              closes=ends.get("closes", False))
    out = encode(inp, inputs, chain, chunk.frames, inp.workdir / f"{stem}.mp4", threads=threads, timeout=timeout)
    return Segment(out, chunk.frames, provider="ffmpeg")


def placeholder(inp: NodeInput, exc: Exception, *, scene: int, part: int, threads: int, timeout: float
                ) -> Segment:
    """When a scene cannot be rendered, the video still comes out: the scene's frames say what failed."""
    chunk: Chunk = inp.deps["chunk"]
    reason = failure_reason(exc)
    out = card(inp, chunk.frames, f"{_stem(inp, scene, part)}-placeholder", f"scene {scene + 1}: rendering failed",
               reason, threads=threads, timeout=timeout)
    return Segment(out, chunk.frames, provider="placeholder",
                   warnings=(f"scene {scene + 1} failed to render ({reason}); it is a placeholder that says so",))


def scene_inputs(comp, scene: int) -> dict[str, Any]:
    """What a run of ``scene``'s frames is drawn from: what its layers show (``layers``) and its picture's node
    (``picture``; none for the theme's background, drawn here), or its shots' (``shots``) and where its
    narration pauses (``pauses``: the cuts between shots fall there)."""
    deps: dict[str, Any] = {"layers": tuple(Part(comp.name(layer, scene), shown) for layer in comp.layers
                                            if comp.name(layer, scene) in comp.graph.nodes)}  # some: scene 0 only
    shots = comp.pictures(scene)
    if len(shots) > 1:
        lead = comp.script.scenes[scene].start if scene == 0 else 0.0
        deps.update(shots=shots, pauses=Part(comp.name("voice", scene), _pauses(lead)))
    elif shots:
        deps["picture"] = shots[0]
    return deps


def scene_reads(comp, *scenes: int) -> list[str]:
    """The settings a run of ``scenes``' frames is drawn and encoded with (the shot transition where one is in
    shots). The encoder is not among them: what ``encode.codec`` and ``encode.hw`` resolved to on this machine
    is in the node's data (``comp.encoder``), so a segment is keyed by what encodes it."""
    reads = ["format.width", "format.height", "format.fps", "encode.preset", "encode.crf", "assembly.transition_s"]
    reads.append("theme.background" if comp.picture == "background" else "assembly.grade")
    if any(len(comp.pictures(scene)) > 1 for scene in scenes):
        reads.append("assembly.shot_transition")
    return reads


def _chunk(scene: int, count: int, part: int, transition: int):
    return lambda timeline: body_chunks(timeline, scene, transition, count)[part]


def _pauses(lead: float):
    """Where the scene's narration pauses between sentences, in seconds into the scene (it starts ``lead`` in)."""
    return lambda voice: tuple(round(lead + t, 3) for t in sentence_pauses(getattr(voice, "alignment", None)))


def add(comp) -> None:
    """A node per chunk of every scene (``segment/3.0`` ...): long scenes spread over the cores, and the
    chunks of a scene are counted from its scripted length, so the graph is known before anything runs. With
    transitions, the chunks share the scene's body (its frames less its cuts' windows), and the first and the
    last scene fade in from black and out to it."""
    timeout, threads = comp.timeout, comp.encode_threads
    transition = transition_frames(comp.cfg.assembly.transition_s, comp.cfg.format.fps)
    retry = RetryPolicy.from_cfg(comp.cfg.retry.assembly)
    last = len(comp.chunks) - 1
    for i, count in enumerate(comp.chunks):
        ends = {"opens": i == 0, "closes": i == last} if comp.transitions else {}
        for k in range(count):
            deps = {"chunk": Part(comp.name("timeline"), _chunk(i, count, k, transition)), **scene_inputs(comp, i)}
            comp.add(Node(
                stage="segment", scene=i, part=k, version=VERSION, reads=tuple(scene_reads(comp, i)),
                data={**ends, "encoder": comp.encoder},
                deps=deps, fn=lambda inp, i=i, k=k: render(inp, scene=i, part=k, threads=threads, timeout=timeout),
                fallback=lambda inp, exc, i=i, k=k: placeholder(inp, exc, scene=i, part=k, threads=threads,
                                                                timeout=timeout),
                retry=retry, slot="encode"))
