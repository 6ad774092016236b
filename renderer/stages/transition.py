"""Transition stage: each scene cut's transition (ffmpeg's xfade), a segment of its own.

With ``assembly.transition_s``, a cut gets a window of that many frames centred on it (``cut_window`` in
renderer/stages/timeline.py): the scene before the cut runs on through the window (its picture and layers go
on past its end), the scene after it starts there (its first frame held until the cut), and xfade's
``assembly.transition`` blends the one into the other. The window is encoded like the scenes' segments and the
mux joins it between them, so the timeline, the total frames and the sound's sync are those without
transitions. Its key is made of the two scenes' pictures and layers and its own frames alone: it is rendered
again only when one of its two scenes changes. If it cannot be rendered, the scene before the cut runs on
through the window (a hard cut at its end), or failing that a card says what failed.
"""

from __future__ import annotations

from typing import Any

from renderer.engine.node import Node, NodeInput, Part
from renderer.media.encoding import failure_reason
from renderer.media.xfade import xfade_name
from renderer.ops.reliability import RetryPolicy
from renderer.stages import segment
from renderer.stages.segment import Segment
from renderer.stages.timeline import Window, cut_window, transition_frames

VERSION = "1"


def _stem(inp: NodeInput, cut: int) -> str:
    return f"transition-{cut}-{inp.key[:12]}"


def _outgoing(inp: NodeInput, window: Window, stem: str) -> tuple[list[str], str]:
    """The scene before the cut over the whole window, as the video would show it without the transition."""
    return segment.scene_run(inp.cfg, inp.deps, window.outgoing, inp.workdir / f"{stem}-out",
                             opens=inp.data["opens"])


def render(inp: NodeInput, *, cut: int, threads: int, timeout: float) -> Segment:
    window: Window = inp.deps["window"]
    if not window.frames:  # too short a transition, or scenes too short to give it a frame
        return Segment(None, 0, provider="none")
    stem = _stem(inp, cut)
    out_inputs, out_chain = _outgoing(inp, window, stem)
    incoming = {name.removeprefix("next_"): dep for name, dep in inp.deps.items() if name.startswith("next_")}
    in_inputs, in_chain = segment.scene_run(inp.cfg, incoming, window.incoming, inp.workdir / f"{stem}-in",
                                            first_input=out_inputs.count("-i"), closes=inp.data["closes"])
    hold = f",tpad=start={window.before}:start_mode=clone" if window.before else ""
    blend = (f"xfade=transition={xfade_name(inp.cfg['assembly.transition'])}:duration={window.duration:.6f}"
             f":offset=0")
    graph = f"{out_chain}[out];{in_chain}{hold}[in];[out][in]{blend}"
    out = segment.encode(inp, out_inputs + in_inputs, graph, window.frames, inp.workdir / f"{stem}.mp4",
                         threads=threads, timeout=timeout)
    return Segment(out, window.frames, provider="ffmpeg:xfade")


def fallback(inp: NodeInput, exc: Exception, *, cut: int, threads: int, timeout: float) -> Segment:
    """When the transition cannot be rendered, the video still comes out: the scene before the cut runs on
    through the window and cuts hard at its end; if even that fails, the window is a card that says so."""
    window: Window = inp.deps["window"]
    reason, where = failure_reason(exc), f"the cut after scene {cut + 1}"
    stem = _stem(inp, cut)
    try:
        inputs, chain = _outgoing(inp, window, f"{stem}-held")
        out = segment.encode(inp, inputs, chain, window.frames, inp.workdir / f"{stem}-held.mp4", threads=threads,
                             timeout=timeout)
        return Segment(out, window.frames, provider="ffmpeg",
                       warnings=(f"{where} failed to render its transition ({reason}); it is a hard cut",))
    except Exception as error:
        exc.add_note(f"the hard cut failed too: {type(error).__name__}: {error}")
    out = segment.card(inp, window.frames, f"{stem}-placeholder", f"{where}: rendering failed", reason,
                       threads=threads, timeout=timeout)
    return Segment(out, window.frames, provider="placeholder",
                   warnings=(f"{where} failed to render ({reason}); it is a placeholder that says so",))


def _window(cut: int, frames: int):
    return lambda timeline: cut_window(timeline, cut, frames)


def add(comp) -> None:
    """A node per cut (``transition/3``: the cut after scene 3), reading the two scenes' pictures and layers and
    its own window of the timeline."""
    xfade_name(comp.cfg.assembly.transition)  # a mistake stops the script before anything renders
    timeout, threads = comp.timeout, comp.encode_threads
    frames = transition_frames(comp.cfg.assembly.transition_s, comp.cfg.format.fps)
    retry = RetryPolicy.from_cfg(comp.cfg.retry.assembly)
    last = len(comp.script.scenes) - 1
    for c in range(last):
        deps: dict[str, Any] = {"window": Part(comp.name("timeline"), _window(c, frames)),
                                **segment.scene_inputs(comp, c),
                                **{f"next_{name}": dep for name, dep in segment.scene_inputs(comp, c + 1).items()}}
        comp.add(Node(
            stage="transition", scene=c, version=VERSION, reads=(*segment.scene_reads(comp, c, c + 1), "assembly.transition"),
            data={"opens": c == 0, "closes": c + 1 == last, "encoder": comp.encoder}, deps=deps,
            fn=lambda inp, c=c: render(inp, cut=c, threads=threads, timeout=timeout),
            fallback=lambda inp, exc, c=c: fallback(inp, exc, cut=c, threads=threads, timeout=timeout),
            retry=retry, slot="encode"))
