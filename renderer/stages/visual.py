"""Visual stage: one clip per scene; when the provider fails, its stand-ins are tried in turn.

A provider that picks for the whole script at once (stock footage: no clip twice in a video) gets a ``plan``
node first; each scene's node then reads its own pick from it (a ``Part``: the pick is part of the scene's key,
so the same pick is never fetched twice). The plan asks the services' catalogues, which its key cannot vouch
for: it is redone each run, its searches from the provider's own search cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from renderer.engine.node import Node, NodeInput, Part, first_that_works
from renderer.engine.output import StageOutput
from renderer.ops import health
from renderer.script import Scene

VERSION = "1"


def _source_of(provider: Any, prompt: str) -> dict[str, str]:
    """What a provider that picks from files would use for this prompt (the library's chosen file), so the
    key changes when that file does."""
    fingerprint = getattr(provider, "fingerprint", None)
    return {"source": fingerprint(prompt)} if fingerprint else {}


# the theme's colours a provider that draws in them (``THEMED``: procedural) is given: base, lights, accent
THEME_COLOURS = ("theme.background", "theme.blue", "theme.purple", "theme.cyan", "theme.prompt")
PLAN = "plan"  # the part of the visual stage that picks for the whole script: its node is ``visual.plan``


@dataclass(frozen=True)
class Plan(StageOutput):
    """Every scene's pick, in scene order (plain data: what to fetch and whom to credit, or ``{"error": why}``)."""

    picks: tuple[dict[str, Any], ...]


def _pick(index: int) -> Callable[[Plan], dict[str, Any]]:
    return lambda plan: plan.picks[index]


def node(scene: Scene, provider: Any, *, width: int, height: int, timeout: float,
         backups: list[Any] | None = None, stand_in: bool = False, plan: str | None = None) -> Node:
    """``backups`` are tried in order when ``provider`` fails (none: the failure fails the script).
    ``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached.
    ``plan``: the node whose output holds this scene's pick (``provider.render(..., pick=...)``)."""
    prompt = scene.visual or scene.title
    duration = scene.duration

    def out(inp: NodeInput) -> Path:
        return inp.workdir / f"visual-{scene.index:03d}-{inp.key[:12]}.mp4"

    def render_with(p: Any, picked: bool = False) -> Any:
        def render(inp: NodeInput) -> Any:
            extra = {"pick": inp.deps["pick"]} if picked else {}
            if getattr(p, "THEMED", False):
                extra["palette"] = [inp.cfg[path] for path in THEME_COLOURS]
            return health.provider_call(p, lambda: p.render(prompt, out(inp), width=width, height=height,
                                                            duration=duration, timeout=timeout, **extra))
        render.label = getattr(p, "name", type(p).__name__)  # type: ignore[attr-defined]
        return render

    return Node(
        stage="visual",
        scene=scene.index,
        version=f"{VERSION}.{provider.version}",
        reads=("visual", "format.width", "format.height", *THEME_COLOURS),
        data={"prompt": prompt, "duration": duration, **_source_of(provider, prompt)},
        deps={"pick": Part(plan, _pick(scene.index))} if plan else {},
        fn=render_with(provider, picked=plan is not None),
        fallback=first_that_works([render_with(b) for b in backups or []]),
        cacheable=not stand_in,
        unkeyed=(*(f"visual.{name}" for name in getattr(provider, "UNKEYED", ())),
                 *(() if getattr(provider, "THEMED", False) else THEME_COLOURS)),  # a stand-in's are never cached
    )


def plan_node(scenes: list[Scene], provider: Any, *, width: int, height: int, timeout: float) -> Node:
    """Every scene's pick at once (``provider.plan``): never cached, its searches are (by the provider)."""
    data = [{"prompt": s.visual or s.title, "title": s.title, "duration": s.duration} for s in scenes]

    def plan(inp: NodeInput) -> Plan:
        picks = health.provider_call(provider, lambda: provider.plan(data, width=width, height=height,
                                                                     timeout=timeout))
        return Plan(tuple(picks), provider=provider.name)

    return Node(stage="visual", part=PLAN, version=f"{VERSION}.{provider.version}",
                reads=("visual", "format.width", "format.height"), data=data, cacheable=False, fn=plan,
                unkeyed=tuple(f"visual.{name}" for name in getattr(provider, "UNKEYED", ())))


def add(comp) -> None:
    p, fmt = comp.providers, comp.cfg.format
    primary = p.primary["visual"]
    plan = None
    if hasattr(primary, "plan") and not p.stand_in["visual"]:
        plan = comp.add(plan_node(comp.script.scenes, primary, width=fmt.width, height=fmt.height,
                                  timeout=comp.budget("visual"))).name
    for scene in comp.script.scenes:
        comp.add(node(scene, primary, width=fmt.width, height=fmt.height, timeout=comp.budget("visual"),
                      backups=p.backups["visual"], stand_in=p.stand_in["visual"], plan=plan))
