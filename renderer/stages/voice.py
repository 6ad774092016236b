"""Voice stage: one narration clip per scene from the configured voice provider; silence if it fails."""

from __future__ import annotations

from typing import Any

from renderer.graph import Node, NodeInput
from renderer.providers.silent import SilentVoice
from renderer.script import Scene

VERSION = "1"


def node(scene: Scene, provider: Any, *, timeout: float, fallback: Any | None = None,
         stand_in: bool = False) -> Node:
    """``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached."""
    lines = [(line.text, line.speaker) for line in scene.narration]
    backup = fallback or SilentVoice()

    def out(inp: NodeInput):
        return inp.workdir / f"voice-{scene.index:03d}-{inp.key[:12]}.wav"

    return Node(
        name=f"voice/{scene.index}",
        stage="voice",
        version=f"{VERSION}.{provider.version}",
        reads=("voice",),
        data={"lines": lines},
        fn=lambda inp: provider.synthesize(lines, out(inp), timeout=timeout),
        fallback=lambda inp, exc: backup.synthesize(lines, out(inp), timeout=timeout),
        cacheable=not stand_in,
    )
