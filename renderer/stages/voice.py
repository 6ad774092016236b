"""Voice stage: one narration clip per scene; when the provider fails, its stand-ins are tried in turn.

Whoever spoke it, the clip is shaped (compressed and its peaks limited, relative to its own level) and
measured here, once: its loudness measurements are part of its output, cached with it, so the narration stage
sets its scene's loudness without measuring it (renderer/media/loudness.py, renderer/stages/narration.py)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from renderer.engine.node import Node, NodeInput, first_that_works
from renderer.media import audio
from renderer.media.loudness import Loudness
from renderer.ops import health
from renderer.providers.base import AudioClip
from renderer.script import Scene

VERSION = "2"  # 2: clips shaped and measured (their loudness in the output)


def levelled(speak: Callable[[NodeInput], AudioClip], *, timeout: float) -> Callable[[NodeInput], AudioClip]:
    """``speak``, its clip shaped and measured (``audio.level_voice``); a silent clip measures as silence."""

    def fn(inp: NodeInput) -> AudioClip:
        clip = speak(inp)
        if clip.path is None:
            return dataclasses.replace(clip, loudness=Loudness((), -math.inf))
        return dataclasses.replace(clip, loudness=audio.level_voice(clip.path, inp.workdir, timeout=timeout))

    return fn


SLOT = "voice"  # its own slot: voices waiting for a model that speaks one at a time hold no thread a picture needs


def node(scene: Scene, provider: Any, *, timeout: float, backups: list[Any] | None = None,
         stand_in: bool = False) -> Node:
    """``backups`` are tried in order when ``provider`` fails (none: the failure fails the script).
    ``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached."""
    lines = [(line.text, line.speaker) for line in scene.narration]

    def out(inp: NodeInput):
        return inp.workdir / f"voice-{scene.index:03d}-{inp.key[:12]}.wav"

    def speak_with(p: Any) -> Any:
        return levelled(lambda inp: health.provider_call(p, lambda: p.synthesize(lines, out(inp), timeout=timeout)),
                        timeout=timeout)

    return Node(
        stage="voice",
        scene=scene.index,
        version=f"{VERSION}.{provider.version}",
        reads=("voice",),
        data={"lines": lines},
        fn=speak_with(provider),
        fallback=first_that_works([speak_with(b) for b in backups or []]),
        cacheable=not stand_in,
        unkeyed=tuple(f"voice.{name}" for name in getattr(provider, "UNKEYED", ())),
        slot=SLOT,
    )


def add(comp) -> None:
    """A voice node per scene, the last scene's first: the timeline (and so every segment) waits for its
    length alone, so run first it lets the pictures start while the other scenes are still being spoken."""
    p = comp.providers
    scenes = comp.script.scenes
    for scene in [*scenes[-1:], *scenes[:-1]]:
        comp.add(node(scene, p.primary["voice"], timeout=comp.budget("voice"),
                      backups=p.backups["voice"], stand_in=p.stand_in["voice"]))
