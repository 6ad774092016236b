"""Voice stage: one narration clip per scene, as spoken; when the provider fails, its stand-ins are tried in
turn. The level stage then shapes and measures it (renderer/stages/level.py); what needs only its timing (the
timeline, the captions, the cuts between shots) reads it from here, without waiting for that."""

from __future__ import annotations

from typing import Any

from renderer.engine.node import Node, NodeInput, first_that_works
from renderer.ops import health
from renderer.script import Scene

VERSION = "3"  # 3: clips as spoken (shaped and measured by the level stage); 2: shaped and measured here


SLOT = "voice"  # its own slot: voices waiting for a model that speaks one at a time hold no thread a picture needs


def node(scene: Scene, provider: Any, *, timeout: float, backups: list[Any] | None = None,
         stand_in: bool = False) -> Node:
    """``backups`` are tried in order when ``provider`` fails (none: the failure fails the script).
    ``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached."""
    lines = [(line.text, line.speaker) for line in scene.narration]

    def out(inp: NodeInput):
        return inp.workdir / f"voice-{scene.index:03d}-{inp.key[:12]}.wav"

    def speak_with(p: Any) -> Any:
        return lambda inp: health.provider_call(p, lambda: p.synthesize(lines, out(inp), timeout=timeout))

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
