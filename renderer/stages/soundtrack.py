"""Soundtrack stage: the narration's pieces joined into one AAC track by copying their packets; with a music
bed, every scene's narration and the bed mixed and encoded whole.

Without a bed (the default), each scene's narration is a piece of its own, placed, levelled and encoded by the
narration stage (renderer/stages/narration.py): the join copies their packets (renderer/media/adts.py) into
one AAC track, which the mux copies into the video, so editing one scene's narration costs that clip, its piece
and these copies. A music bed (``audio.music``: a file, or with ``ambient`` a pad synthesised for the script,
written as a WAV and played as a file would be) is set ``audio.music_db`` below the narration, ducked under
the voice, and the mix (the ducking makes it no sum of its parts) measured and corrected
(renderer/media/audio.py, renderer/media/ambient.py), in a few cheap audio-only passes (no run opening more
than ``ffmpeg.MAX_INPUTS`` voice files: a script of many scenes is mixed in submixes first). Its narration is
levelled scene by scene, as the pieces are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import adts, ambient, audio, ffmpeg, loudness
from renderer.media.encoding import (
    SAFE_AUDIO,
    audio_args,
    channel_layout,
    failure_reason,
)
from renderer.ops.reliability import RetryPolicy
from renderer.providers.base import AudioClip
from renderer.stages.timeline import Timeline

SLOT = "background"  # a slot of its own, its tools niced: only the mux needs it, so it takes the time the encodes leave
VERSION = "4"  # 4: each scene's narration levelled on its own (the pad's synthesis: ambient.VERSION, in its data)
JOIN_VERSION = "2"  # 2: the joined packets as they are, with the options to mux them (was an MP4 of them)
CUT_FADE_S = 0.3  # narration cut at a scene end fades out over this


@dataclass(frozen=True)
class Soundtrack(StageOutput):
    """The script's sound, and what ffmpeg needs to copy it into a video as it is meant to play: options before
    its input (the narration's joined packets: the encoder's delay skipped) and on its stream (the padding of
    their last frame marked), applied where it is muxed."""

    path: Path
    duration: float
    input_args: tuple[str, ...] = ()
    stream_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Piece:
    """A stretch of the narration track: a file (or silence) placed ``lead`` in, ``duration`` long."""

    path: Path | None
    duration: float
    lead: float = 0.0
    voice_s: float = 0.0  # how long the file plays: past the piece's end it is faded out and cut
    gain_db: float = 0.0  # what levels its clip


def _placed(i: int, src: int | None, piece: _Piece, rate: int, layout: str) -> str:
    dur, lead = piece.duration, piece.lead
    if src is None:
        return f"anullsrc=r={rate}:cl={layout},atrim=duration={dur:.6f}[a{i}]"
    chain = f"[{src}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts={layout}"
    if piece.gain_db:
        chain += f",volume={piece.gain_db:.3f}dB"
    if lead > 0:
        chain += f",adelay={lead * 1000:.0f}:all=1"
    if lead + piece.voice_s > dur:
        chain += f",afade=t=out:st={max(0.0, dur - CUT_FADE_S):.6f}:d={CUT_FADE_S}"
    return f"{chain},apad,atrim=duration={dur:.6f},asetpts=PTS-STARTPTS[a{i}]"


def _placing(pieces: list[_Piece], label: str, rate: int, layout: str) -> tuple[list[str], list[str]]:
    """Inputs and filter graph that play ``pieces`` one after another, as ``[label]``."""
    args: list[str] = []
    graph: list[str] = []
    for i, piece in enumerate(pieces):
        src = None
        if piece.path is not None:
            src = len(args) // 2
            args += ["-i", str(piece.path)]
        graph.append(_placed(i, src, piece, rate, layout))
    graph.append("".join(f"[a{i}]" for i in range(len(pieces))) + f"concat=n={len(pieces)}:v=0:a=1[{label}]")
    return args, graph


def _batches(pieces: list[_Piece]) -> list[list[_Piece]]:
    """``pieces`` in runs of consecutive pieces reading at most ``ffmpeg.MAX_INPUTS`` files each."""
    batches: list[list[_Piece]] = [[]]
    files = 0
    for piece in pieces:
        if piece.path is not None:
            if files == ffmpeg.MAX_INPUTS:
                batches.append([])
                files = 0
            files += 1
        batches[-1].append(piece)
    return batches


def _submix(pieces: list[_Piece], inp: NodeInput, stem: str, *, timeout: float) -> _Piece:
    """``pieces`` played one after another into one lossless file (``stem``.wav), as a piece of its own."""
    rate, layout = inp.cfg["encode.audio_rate"], channel_layout(inp.cfg)
    args, graph = _placing(pieces, "sub", rate, layout)
    script, out = inp.workdir / f"{stem}.filter", inp.workdir / f"{stem}.wav"
    script.write_text(";\n".join(graph) + "\n", encoding="utf-8")
    ffmpeg.run([*args, *ffmpeg.graph_file(script.name), "-map", "[sub]", "-c:a", "pcm_f32le", "-rf64", "auto",
                "-f", "wav", str(out)], timeout=timeout, cwd=inp.workdir)
    duration = sum(piece.duration for piece in pieces)
    return _Piece(out, duration, voice_s=duration)


def _narration(inp: NodeInput, gains: list[float], stem: str, *,
               timeout: float) -> tuple[list[str], list[str], list[str]]:
    """Inputs and filter graph that place every scene's voice on the timeline at its gain, as ``[narration]``.
    However many scenes speak, no ffmpeg run opens more than ``ffmpeg.MAX_INPUTS`` of their files: past that, runs
    of scenes are mixed into lossless submixes first (and those again, if there are that many)."""
    timeline: Timeline = inp.deps["timeline"]
    voices: list[AudioClip] = inp.deps["voices"]
    pieces = []
    warnings = []
    for i, (span, voice, gain) in enumerate(zip(timeline.spans, voices, gains)):
        lead = timeline.lead if i == 0 else 0.0
        if voice.duration + lead > span.duration + 0.05:
            warnings.append(f"scene {i + 1}: narration ({voice.duration:.1f} s) is longer than the scene "
                            f"({span.duration:.1f} s) and was cut; give the scene more time or shorten the narration")
        pieces.append(_Piece(voice.path, span.duration, lead, voice.duration, gain))
    level = 0
    while sum(piece.path is not None for piece in pieces) > ffmpeg.MAX_INPUTS:
        pieces = [_submix(batch, inp, f"{stem}-narration{level}.{n}", timeout=timeout)
                  for n, batch in enumerate(_batches(pieces))]
        level += 1
    args, graph = _placing(pieces, "narration", inp.cfg["encode.audio_rate"], channel_layout(inp.cfg))
    return args, graph, warnings


def _bed_file(music: audio.Music | ambient.Bed, inp: NodeInput, stem: str) -> Path:
    """The file the bed plays from: the music's own, or the script's pad, synthesised to the timeline's length."""
    if isinstance(music, audio.Music):
        return music.path
    pad = ambient.synthesise(music.seed, inp.deps["timeline"].duration, ambient.Pad.of(inp.tree("audio.ambient")),
                             channels=inp.cfg["encode.audio_channels"])
    return ambient.write_wav(pad, ambient.SYNTH_RATE, inp.workdir / f"{stem}-ambient.wav")


def _measured(inp: NodeInput, *, timeout: float) -> list[loudness.Loudness | None]:
    """Every scene's clip's measurements (taken by the level stage; a clip made elsewhere is measured here, a
    file placed again once); None for a silent scene."""
    unmeasured: dict[Path, loudness.Loudness] = {}
    out: list[loudness.Loudness | None] = []
    for voice in inp.deps["voices"]:
        if voice.path is not None and voice.loudness is None and voice.path not in unmeasured:
            unmeasured[voice.path] = loudness.of_file(voice.path, inp.workdir, timeout=timeout)
        out.append(None if voice.path is None else voice.loudness or unmeasured[voice.path])
    return out


def _placements(inp: NodeInput, measured: list[loudness.Loudness | None]) -> list[loudness.Placement]:
    """Every speaking scene's clip as the narration places it (``_placed``): from its scene's start (the first
    scene's after its lead) until its scene's end, faded out before it where the clip is cut there."""
    timeline: Timeline = inp.deps["timeline"]
    out = []
    for i, (span, voice, clip) in enumerate(zip(timeline.spans, inp.deps["voices"], measured)):
        if clip is None:
            continue
        lead = timeline.lead if i == 0 else 0.0
        cut = lead + voice.duration > span.duration
        out.append(loudness.Placement(clip, span.start + lead, span.start + span.duration,
                                      CUT_FADE_S if cut else 0.0))
    return out


def render(inp: NodeInput, *, timeout: float) -> Soundtrack:
    """The narration, each scene's clip at the gain that levels it (as the narration stage's pieces are), and the
    bed under it: the bed measured and set below the narration's level, the ducked mix (not a sum of its parts)
    measured and corrected, the finished file's true peak checked."""
    timeline: Timeline = inp.deps["timeline"]
    music: audio.Music | ambient.Bed = inp.data["music"]
    cfg = inp.cfg
    target, rate, layout = cfg["audio.loudness_lufs"], cfg["encode.audio_rate"], channel_layout(cfg)
    stem = f"soundtrack-{inp.key[:12]}"
    measured = _measured(inp, timeout=timeout)
    gains = [audio.gain_to(target, clip.lufs) if target and clip is not None else 0.0 for clip in measured]
    level = target or loudness.integrated(loudness.programme(_placements(inp, measured), timeline.duration))
    args, graph, warnings = _narration(inp, gains, stem, timeout=timeout)
    src = len(args) // 2
    args += ["-stream_loop", "-1", "-i", str(_bed_file(music, inp, stem))]
    bed = audio.bed_chain(src, timeline.duration, rate, layout, 0.0, "bed")
    bed_level = audio.measure(args, [bed], "bed", inp.workdir, f"{stem}-bed", timeout=timeout)
    graph.append(audio.bed_chain(src, timeline.duration, rate, layout,
                                 audio.gain_to(level + cfg["audio.music_db"], bed_level), "bed"))
    graph.append(audio.duck("bed", "narration", "mixed", loudness_lufs=level, duck_db=cfg["audio.duck_db"]))
    ceiling = goal = cfg["audio.true_peak_db"]
    out = inp.workdir / f"{stem}.m4a"

    def finished(correction: float, ceiling: float) -> list[str]:
        return [*graph, f"[mixed]volume={correction:.3f}dB,{audio.limiter(ceiling)}[out]"]

    passes = iter(range(1000))
    for attempt in range(audio.MAX_PEAK_PASSES):
        correction = audio.settle(lambda c: audio.measure(args, finished(c, ceiling), "out", inp.workdir,
                                                          f"{stem}-mix{next(passes)}", timeout=timeout),
                                  target) if target else 0.0
        script = inp.workdir / f"{stem}.filter"
        script.write_text(";\n".join(finished(correction, ceiling)) + "\n", encoding="utf-8")
        ffmpeg.run([*args, *ffmpeg.graph_file(script.name), "-map", "[out]", *audio_args(cfg),
                    "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir, duration=timeline.duration)
        over = audio.true_peak_db(out, inp.workdir, f"{stem}-{attempt}", timeout=timeout) - goal
        if over <= 0:
            break
        logger.info("soundtrack: the AAC encode overshot the true-peak ceiling by {:.1f} dB; limiting lower", over)
        ceiling -= over + 0.2
    return Soundtrack(out, timeline.duration, provider="ffmpeg", warnings=tuple(warnings))


def join(inp: NodeInput) -> Soundtrack:
    """The narration's pieces as one AAC track: their packets copied one after another (no tool runs), with the
    options that have the mux skip the encoder's delay at its head and the padding of its last frame, as an
    encode's own are marked for players to skip."""
    timeline: Timeline = inp.deps["timeline"]
    pieces = [piece for piece in inp.deps["pieces"] if piece.path is not None]
    out = inp.workdir / f"soundtrack-{inp.key[:12]}.aac"
    with open(out, "wb") as file:  # a piece read at a time: the track's length costs no memory
        packets = adts.join(((piece.path.read_bytes(), piece.samples, piece.path.name) for piece in pieces), file)
    delay = adts.DELAY_FRAMES * adts.FRAME / inp.cfg["encode.audio_rate"]
    last = pieces[-1].samples % adts.FRAME or adts.FRAME  # the samples the last packet holds
    trim = f"setts=duration=if(eq(N\\,{packets - 1})\\,DURATION*{last}/{adts.FRAME}\\,DURATION)"
    return Soundtrack(out, timeline.duration, input_args=("-itsoffset", f"{-delay:.9f}"),
                      stream_args=("-bsf:a", trim), provider="adts:copy")


def silence(inp: NodeInput, exc: Exception, *, timeout: float) -> Soundtrack:
    """When the narration cannot be mixed, the video still comes out, silent, with safe audio settings; but not
    when its voices' files could not be opened (the open-file limit reached, a file gone): that silence would
    pass for a soundtrack, so the script fails, saying why (a resume renders it again)."""
    voices = [voice.path for voice in inp.deps.get("voices", ()) if voice.path is not None]
    if voices and ffmpeg.could_not_open(exc, voices):
        raise RuntimeError(f"the narration could not be read ({failure_reason(exc)}), and the video would be "
                           "silent: raise the open-file limit (ulimit -n) or free the files, then resume") from exc
    timeline: Timeline = inp.deps["timeline"]
    rate = SAFE_AUDIO["encode.audio_rate"]
    out = inp.workdir / f"soundtrack-{inp.key[:12]}-silence.m4a"
    ffmpeg.run(["-f", "lavfi", "-i", f"anullsrc=r={rate}:cl=mono,atrim=duration={timeline.duration:.6f}",
                *audio_args(SAFE_AUDIO), "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir)
    return Soundtrack(out, timeline.duration, provider="silence",
                      warnings=(f"the soundtrack failed ({failure_reason(exc)}); the video is silent",))


def add(comp) -> None:
    """The soundtrack node: the narration's pieces joined, when the narration stage made them; else the whole
    mix with its bed. A music setting that names nothing playable (or a pad in no key) stops the script here,
    before any rendering. The pad is seeded by the script's slug."""
    timeout = comp.timeout
    deps = {"timeline": Part(comp.name("timeline"))}
    retry, fallback = RetryPolicy.from_cfg(comp.cfg.retry.assembly), lambda inp, exc: silence(inp, exc, timeout=timeout)
    if comp.nodes_of("narration"):
        comp.add(Node(stage="soundtrack", version=JOIN_VERSION, reads=("encode.audio_rate",),
                      deps={**deps, "pieces": comp.nodes_of("narration")},
                      fn=join, fallback=fallback, retry=retry, slot=SLOT))
        return
    if comp.cfg.audio.music == ambient.AMBIENT:
        music = ambient.bed(comp.cfg.audio.ambient, comp.slug)
    else:
        music = audio.pick_music(comp.cfg.audio.music, comp.slug, timeout=timeout)
    comp.add(Node(
        stage="soundtrack", version=VERSION,
        reads=("encode.audio_bitrate", "encode.audio_rate", "encode.audio_channels", *audio.reads(comp.cfg)),
        data={"music": music},
        deps={**deps, "voices": tuple(comp.name("level", i) for i in comp.scenes)},
        fn=lambda inp: behind(render, inp, timeout=timeout), fallback=fallback, retry=retry, slot=SLOT))


def behind(fn, inp: NodeInput, **kwargs):
    """``fn(inp, **kwargs)`` with the tools it runs at a lower priority (``ffmpeg.in_background``)."""
    with ffmpeg.in_background():
        return fn(inp, **kwargs)
