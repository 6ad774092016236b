"""Narration stage: each scene's voice placed on its stretch of the timeline, set to ``audio.loudness_lufs`` and
encoded to AAC on its own (a piece), so that the soundtrack is the pieces joined by copying their packets
(renderer/stages/soundtrack.py, renderer/media/adts.py) and editing one scene's narration encodes that scene's
piece alone: its clip's measurements (taken by the level stage) give its gain, and no other piece changes.

Each scene's narration is levelled on its own, as a leveller sets each speaker: every piece lands on the target,
so the whole soundtrack does too (its gating blocks are the pieces'). A piece spans whole AAC frames, from the
frame one before its scene starts until the one before the next piece's, and where it meets another piece its
first and last frames are silent, so the join has no gap and no click: the clip is placed exactly where its
scene starts (the first after its lead), faded out and cut before that last frame when it is longer than its
scene. Only the frames its clip sounds in are encoded; the silence after them is the encoder's silent packet
repeated (``adts.extended``: it decodes as the encode of the whole stretch, sample for sample). Without a music
bed only; a bed's ducked mix is made whole (renderer/stages/soundtrack.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import adts, audio, ffmpeg, loudness
from renderer.media.encoding import SAFE_AUDIO, audio_args, channel_layout, failure_reason
from renderer.ops.reliability import RetryPolicy
from renderer.providers.base import AudioClip
from renderer.stages.soundtrack import CUT_FADE_S, SLOT, behind
from renderer.stages.timeline import Span, Timeline

VERSION = "1"
SILENT_FRAMES = 3  # encoded after the frames a clip sounds in: the last two give the encoder's silent packet
DURATION_SLACK_S = 0.1  # a clip may sound this much past its duration (a decoder's padding, a resampler's tail)
READS = ("encode.audio_bitrate", "encode.audio_rate", "encode.audio_channels", "audio.loudness_lufs",
         "audio.true_peak_db")


@dataclass(frozen=True)
class Piece(StageOutput):
    """A scene's stretch of the soundtrack as AAC (ADTS), encoded from ``samples`` samples; no file when it
    spans no frame."""

    path: Path | None
    samples: int
    gain_db: float = 0.0  # what levelled its clip


@dataclass(frozen=True)
class Stretch:
    """Where a scene's piece lies on the soundtrack, in samples: from ``first`` for ``samples``, its clip
    starting ``clip_at`` in and playing at most until ``clip_until`` (where its silent last frame begins)."""

    first: int
    samples: int
    clip_at: int
    clip_until: int


def _frame_before(first_frame: int, fps: int, rate: int) -> int:
    """The first sample of the AAC frame before the one video frame ``first_frame`` starts in: a piece starting
    there has a whole frame before its scene."""
    return max(0, (first_frame * rate // fps // adts.FRAME - 1) * adts.FRAME)


def stretch(span: Span, next_frame: int | None, lead: float | None, rate: int) -> Stretch:
    """The piece of a scene on ``span``: from ``_frame_before`` it (the first scene's, whose ``lead`` is given,
    from 0) to the next piece's start, before ``next_frame`` (none: the last scene, to the timeline's end)."""
    first = 0 if lead is not None else _frame_before(span.first_frame, span.fps, rate)
    end = round(span.end * rate) if next_frame is None else max(first, _frame_before(next_frame, span.fps, rate))
    clip_at = round((span.start + (lead or 0.0)) * rate) - first
    until = end - first if next_frame is None else max(0, end - first - adts.FRAME)
    return Stretch(first, end - first, min(clip_at, until), until)


def _where(timeline: Timeline, scene: int) -> dict:
    """What of the timeline a scene's piece depends on: its span, the next one's first frame, the first's lead."""
    spans = timeline.spans
    return {"span": spans[scene], "next": spans[scene + 1].first_frame if scene + 1 < len(spans) else None,
            "lead": timeline.lead if scene == 0 else None}


def _stretch(inp: NodeInput) -> Stretch:
    where = inp.deps["where"]
    return stretch(where["span"], where["next"], where["lead"], inp.cfg["encode.audio_rate"])


def _fade(voice: AudioClip, at: Stretch, rate: int) -> float:
    """How long the clip fades out before it is cut (0: it ends of itself before the piece's last frame)."""
    if at.clip_at + round(voice.duration * rate) <= at.clip_until:
        return 0.0
    return min(CUT_FADE_S, (at.clip_until - at.clip_at) / rate)


def voiced(voice: AudioClip, at: Stretch, rate: int) -> int:
    """The samples of a piece its clip can sound in, as whole frames, then ``SILENT_FRAMES`` of silence: what is
    encoded; the silence after it is the encoder's silent packet repeated (``adts.extended``). More than the
    piece's samples when the clip sounds to its end."""
    sound_ends = min(at.clip_until, at.clip_at + math.ceil((voice.duration + DURATION_SLACK_S) * rate))
    return (-(-sound_ends // adts.FRAME) + SILENT_FRAMES) * adts.FRAME


def _chain(voice: AudioClip, at: Stretch, gain: float, ceiling: float, rate: int, layout: str,
           samples: int | None = None) -> str:
    """The piece's samples: the clip at its level, limited, placed, faded out and cut where it must end, and
    padded with silence to ``samples`` (default: the whole piece's)."""
    chain = (f"[0:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts={layout},volume={gain:.3f}dB,"
             f"{audio.limiter(ceiling)},adelay={at.clip_at}S:all=1")
    if fade := _fade(voice, at, rate):
        chain += f",afade=t=out:st={at.clip_until / rate - fade:.6f}:d={fade:.6f}"
    samples = at.samples if samples is None else samples
    return f"{chain},atrim=end_sample={at.clip_until},apad=whole_len={samples}[out]"


def _silent(inp: NodeInput, samples: int, out: Path, *, timeout: float, safe: bool = False) -> Path:
    """``samples`` of silence as a piece; ``safe``: at the stand-in bitrate (``SAFE_AUDIO``), in case the
    configured one is what failed (the rate and channels must stay the track's, for the join)."""
    cfg = {**inp.cfg, "encode.audio_bitrate": SAFE_AUDIO["encode.audio_bitrate"]} if safe else inp.cfg
    ffmpeg.run(["-f", "lavfi", "-i", f"anullsrc=r={cfg['encode.audio_rate']}:cl={channel_layout(cfg)}",
                "-af", f"atrim=end_sample={samples}", *audio_args(cfg), "-f", "adts", str(out)],
               timeout=timeout, cwd=inp.workdir)
    return out


def render(inp: NodeInput, *, scene: int, timeout: float) -> Piece:
    """The piece at the clip's gain. When its true peak would be over the ceiling at that gain, the limiter takes
    loudness off that no measurement foresaw: the piece is measured and corrected, and the encode's true peak
    checked, as a bed's mix is (renderer/media/audio.py)."""
    voice: AudioClip = inp.deps["voice"]
    cfg = inp.cfg
    rate, layout, target = cfg["encode.audio_rate"], channel_layout(cfg), cfg["audio.loudness_lufs"]
    at = _stretch(inp)
    stem = f"narration-{scene:03d}-{inp.key[:12]}"
    out = inp.workdir / f"{stem}.aac"
    if at.samples == 0:
        return Piece(None, 0, provider="ffmpeg")
    if voice.path is None or at.clip_until <= at.clip_at:
        return Piece(_silent(inp, at.samples, out, timeout=timeout), at.samples, provider="ffmpeg")
    span, lead = inp.deps["where"]["span"], inp.deps["where"]["lead"] or 0.0
    warnings = ()
    if voice.duration + lead > span.duration + 0.05:
        warnings = (f"scene {scene + 1}: narration ({voice.duration:.1f} s) is longer than the scene "
                    f"({span.duration:.1f} s) and was cut; give the scene more time or shorten the narration",)
    measured = voice.loudness or loudness.of_file(voice.path, inp.workdir, timeout=timeout)
    placed = loudness.Placement(measured, at.clip_at / rate, at.clip_until / rate, _fade(voice, at, rate))
    # the clip as it plays here (cut and faded, when it is): its own measurements, placed, say how loud
    playing = loudness.integrated(loudness.programme([placed], at.samples / rate))
    gain = audio.gain_to(target, playing) if target else 0.0
    args, script = ["-i", str(voice.path)], inp.workdir / f"{stem}.filter"

    prefix = min(voiced(voice, at, rate), at.samples)

    def encode(correction: float, ceiling: float, samples: int = prefix) -> None:
        """The piece: its voiced frames encoded, the silence after them added as packets (a scene whose clip
        is short for it costs the encode of its clip, not of its length); all of it where that cannot be."""
        script.write_text(_chain(voice, at, gain + correction, ceiling, rate, layout, samples) + "\n",
                          encoding="utf-8")
        ffmpeg.run([*args, *ffmpeg.graph_file(script.name), "-map", "[out]", *audio_args(cfg),
                    "-f", "adts", str(out)], timeout=timeout, cwd=inp.workdir)
        if samples < at.samples:
            whole = adts.extended(out.read_bytes(), at.samples, out.name)
            if whole is None:
                encode(correction, ceiling, at.samples)
            else:
                out.write_bytes(whole)

    def level(correction: float, ceiling: float, n: int) -> float:
        return audio.measure(args, [_chain(voice, at, gain + correction, ceiling, rate, layout)], "out",
                             inp.workdir, f"{stem}-mix{n}", timeout=timeout)

    goal = ceiling = cfg["audio.true_peak_db"]
    if measured.true_peak_db + gain <= goal:
        # under the ceiling at this gain: the limiter (PEAK_MARGIN_DB below it, for the encode's overs) takes
        # at most that last dB off a few peaks, which moves no loudness the meter sees: one encode
        encode(0.0, ceiling)
        return Piece(out, at.samples, gain, provider="ffmpeg", warnings=warnings)
    passes = iter(range(1000))
    for attempt in range(audio.MAX_PEAK_PASSES):
        correction = audio.settle(lambda c, top=ceiling: level(c, top, next(passes)), target) if target else 0.0
        encode(correction, ceiling)
        over = audio.true_peak_db(out, inp.workdir, f"{stem}-{attempt}", timeout=timeout) - goal
        if over <= 0:
            break
        ceiling -= over + 0.2
    return Piece(out, at.samples, gain, provider="ffmpeg", warnings=warnings)


def silence(inp: NodeInput, exc: Exception, *, scene: int, timeout: float) -> Piece:
    """A piece that cannot be made is silence, saying why; but not when its voice's file could not be opened
    (that silence would pass for narration): the script fails, saying why (a resume renders it again)."""
    voice: AudioClip = inp.deps["voice"]
    if voice.path is not None and ffmpeg.could_not_open(exc, [voice.path]):
        raise RuntimeError(f"scene {scene + 1}'s narration could not be read ({failure_reason(exc)}): raise the "
                           "open-file limit (ulimit -n) or free the file, then resume") from exc
    samples = _stretch(inp).samples
    if samples == 0:
        return Piece(None, 0, provider="silence")
    out = _silent(inp, samples, inp.workdir / f"narration-{scene:03d}-{inp.key[:12]}-silence.aac", timeout=timeout,
                  safe=True)
    return Piece(out, samples, provider="silence",
                 warnings=(f"scene {scene + 1}'s narration could not be mixed ({failure_reason(exc)}); the scene "
                           "is silent",))


def add(comp) -> None:
    timeout = comp.timeout
    for i in comp.scenes:
        comp.add(Node(
            stage="narration", scene=i, version=VERSION, reads=READS,
            deps={"voice": comp.name("level", i), "where": Part(comp.name("timeline"), lambda t, i=i: _where(t, i))},
            fn=lambda inp, i=i: behind(render, inp, scene=i, timeout=timeout),
            fallback=lambda inp, exc, i=i: silence(inp, exc, scene=i, timeout=timeout),
            retry=RetryPolicy.from_cfg(comp.cfg.retry.assembly), slot=SLOT))
