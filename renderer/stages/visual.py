"""Visual stage: one clip per scene, or per shot; when the provider fails, its stand-ins are tried in turn.

A provider with ``shot_s`` (stock, library, Runway) cuts a long scene into shots of about that long, each its
own node (``visual/3.1``: shot 1 of scene 3) and cache entry, showing a different clip; the shots' count comes
from the scene's scripted length, so the graph is known before anything runs (where the cuts fall is the
segment's business: between two sentences of the narration). Each shot's clip lasts a little longer than an
even share of the scene, so a cut moved to a pause still finds picture.

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
from renderer.stages.timeline import SNAP, shot_count

VERSION = "1"


def _source_of(provider: Any, prompt: str, **shot: int) -> dict[str, str]:
    """What a provider that picks from files would use for this prompt (the library's chosen file), so the
    key changes when that file does."""
    fingerprint = getattr(provider, "fingerprint", None)
    return {"source": fingerprint(prompt, **shot)} if fingerprint else {}


# the theme's colours a provider that draws in them (``THEMED``: procedural) is given: base, lights, accent
THEME_COLOURS = ("theme.background", "theme.blue", "theme.purple", "theme.cyan", "theme.prompt")
PLAN = "plan"  # the part of the visual stage that picks for the whole script: its node is ``visual.plan``


@dataclass(frozen=True)
class Plan(StageOutput):
    """Every scene's picks, in scene order, one per shot (plain data: what to fetch and whom to credit, or
    ``{"error": why}``)."""

    picks: tuple[tuple[dict[str, Any], ...], ...]


def _pick(index: int, shot: int) -> Callable[[Plan], dict[str, Any]]:
    return lambda plan: plan.picks[index][shot]


def shots_of(scene: Scene, provider: Any) -> int:
    """How many shots the scene is cut into by ``provider`` (one unless it has ``shot_s``)."""
    return shot_count(scene.duration, getattr(provider, "shot_s", 0.0))


def shot_duration(scene: Scene, shots: int) -> float:
    """How long each shot's clip lasts: the scene, or an even share of it and the room a cut may move by."""
    return scene.duration if shots == 1 else round(scene.duration / shots * (1 + 2 * SNAP), 2)


def node(scene: Scene, provider: Any, *, width: int, height: int, timeout: float,
         backups: list[Any] | None = None, stand_in: bool = False, plan: str | None = None,
         shot: int = 0, shots: int = 1) -> Node:
    """``backups`` are tried in order when ``provider`` fails (none: the failure fails the script).
    ``stand_in``: ``provider`` replaces the configured one, so the config-derived key must not be cached.
    ``plan``: the node whose output holds this scene's pick (``provider.render(..., pick=...)``).
    ``shot`` of ``shots``: the node is one shot of the scene (the provider is told which; its stand-ins are not)."""
    prompt = scene.visual or scene.title
    duration = shot_duration(scene, shots)
    part = shot if shots > 1 else None
    which = {"shot": shot} if part is not None else {}

    def out(inp: NodeInput) -> Path:
        stem = f"{scene.index:03d}" if part is None else f"{scene.index:03d}.{part}"
        return inp.workdir / f"visual-{stem}-{inp.key[:12]}.mp4"

    def render_with(p: Any, primary: bool = False) -> Any:
        def render(inp: NodeInput) -> Any:
            extra = {"pick": inp.deps["pick"]} if primary and plan else dict(which) if primary else {}
            if getattr(p, "THEMED", False):
                extra["palette"] = [inp.cfg[path] for path in THEME_COLOURS]
            return health.provider_call(p, lambda: p.render(prompt, out(inp), width=width, height=height,
                                                            duration=duration, timeout=timeout, **extra))
        render.label = getattr(p, "name", type(p).__name__)  # type: ignore[attr-defined]
        return render

    return Node(
        stage="visual",
        scene=scene.index,
        part=part,
        version=f"{VERSION}.{provider.version}",
        reads=("visual", "format.width", "format.height", *THEME_COLOURS),
        data={"prompt": prompt, "duration": duration, **which, **_source_of(provider, prompt, **which)},
        deps={"pick": Part(plan, _pick(scene.index, shot))} if plan else {},
        fn=render_with(provider, primary=True),
        fallback=first_that_works([render_with(b) for b in backups or []]),
        cacheable=not stand_in,
        unkeyed=(*(f"visual.{name}" for name in getattr(provider, "UNKEYED", ())),
                 *(() if getattr(provider, "THEMED", False) else THEME_COLOURS)),  # a stand-in's are never cached
        # drawn or transcoded here: it takes its turn with the encodes for the cores (a download waits on none)
        slot="encode" if getattr(provider, "CPU_BOUND", False) else "",
    )


def plan_node(scenes: list[Scene], provider: Any, *, width: int, height: int, timeout: float) -> Node:
    """Every scene's picks at once (``provider.plan``): never cached, its searches are (by the provider)."""
    data = [{"prompt": s.visual or s.title, "title": s.title, "duration": shot_duration(s, shots_of(s, provider)),
             "shots": shots_of(s, provider)} for s in scenes]

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
        shots = shots_of(scene, primary)
        for shot in range(shots):
            comp.add(node(scene, primary, width=fmt.width, height=fmt.height, timeout=comp.budget("visual"),
                          backups=p.backups["visual"], stand_in=p.stand_in["visual"], plan=plan, shot=shot,
                          shots=shots))
