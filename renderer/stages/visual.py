"""Visual stage: one clip per scene; when the provider fails, its stand-ins are tried in turn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renderer.engine.node import Node, NodeInput, first_that_works
from renderer.ops import health
from renderer.script import Scene

VERSION = "1"


def _source_of(provider: Any, prompt: str) -> dict[str, str]:
    """What a provider that picks from files would use for this prompt (the library's chosen file), so the
    key changes when that file does."""
    fingerprint = getattr(provider, "fingerprint", None)
    return {"source": fingerprint(prompt)} if fingerprint else {}


def node(scene: Scene, provider: Any, *, width: int, height: int, timeout: float,
         backups: list[Any] | None = None, stand_in: bool = False) -> Node:
    """``backups`` are tried in order when ``provider`` fails (none: the failure fails the script).
    ``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached."""
    prompt = scene.visual or scene.title
    duration = scene.duration

    def out(inp: NodeInput) -> Path:
        return inp.workdir / f"visual-{scene.index:03d}-{inp.key[:12]}.mp4"

    def render_with(p: Any) -> Any:
        return lambda inp: health.provider_call(p, lambda: p.render(prompt, out(inp), width=width, height=height,
                                                                    duration=duration, timeout=timeout))

    return Node(
        stage="visual",
        scene=scene.index,
        version=f"{VERSION}.{provider.version}",
        reads=("visual", "format.width", "format.height"),
        data={"prompt": prompt, "duration": duration, **_source_of(provider, prompt)},
        fn=render_with(provider),
        fallback=first_that_works([render_with(b) for b in backups or []]),
        cacheable=not stand_in,
        unkeyed=tuple(f"visual.{name}" for name in getattr(provider, "UNKEYED", ())),
    )


def add(comp) -> None:
    p, fmt = comp.providers, comp.cfg.format
    for scene in comp.script.scenes:
        comp.add(node(scene, p.primary["visual"], width=fmt.width, height=fmt.height, timeout=comp.budget("visual"),
                      backups=p.backups["visual"], stand_in=p.stand_in["visual"]))
