"""Level stage: each scene's narration clip shaped (compressed, its peaks limited, relative to its own level) and
measured, once: its loudness measurements are part of its output, cached with it, so the narration stage sets
its scene's loudness without measuring it (renderer/media/loudness.py, renderer/stages/narration.py).

A stage of its own, after the voice stage: what reads only when the words are spoken (the timeline, the
captions, the cuts between shots) starts as soon as the voice has spoken, and the clip is shaped beside the
encodes, niced, in the soundtrack's slot (~0.85 s for a minute of narration, which every burnt-in caption
waited for). A clip that cannot be shaped is used as spoken, saying so; the narration stage then measures it.
"""

from __future__ import annotations

import dataclasses
import math

from renderer.engine.node import Node, NodeInput
from renderer.media import audio
from renderer.media.encoding import failure_reason
from renderer.media.loudness import Loudness
from renderer.ops.reliability import RetryPolicy
from renderer.providers.base import AudioClip
from renderer.stages.soundtrack import SLOT, behind

VERSION = "1"


def render(inp: NodeInput, *, scene: int, timeout: float) -> AudioClip:
    clip: AudioClip = inp.deps["voice"]
    if clip.path is None:
        return dataclasses.replace(clip, loudness=Loudness((), -math.inf))
    out = inp.workdir / f"level-{scene:03d}-{inp.key[:12]}.wav"
    measured = audio.level_voice(clip.path, out, inp.workdir, timeout=timeout)
    return dataclasses.replace(clip, path=out, loudness=measured, provider="ffmpeg")


def as_spoken(inp: NodeInput, exc: Exception, *, scene: int) -> AudioClip:
    clip: AudioClip = inp.deps["voice"]
    return dataclasses.replace(clip, loudness=None, provider="as spoken", warnings=(
        f"scene {scene + 1}'s narration could not be shaped ({failure_reason(exc)}); it plays as spoken",))


def add(comp) -> None:
    timeout = comp.timeout
    for i in comp.scenes:
        comp.add(Node(stage="level", scene=i, version=VERSION, deps={"voice": comp.name("voice", i)},
                      fn=lambda inp, i=i: behind(render, inp, scene=i, timeout=timeout),
                      fallback=lambda inp, exc, i=i: as_spoken(inp, exc, scene=i),
                      retry=RetryPolicy.from_cfg(comp.cfg.retry.assembly), slot=SLOT))
