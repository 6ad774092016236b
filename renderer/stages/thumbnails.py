"""Thumbnails stage: a JPEG per scene of the video, for report.html, taken from the segments the video is
joined from (as the join stage joins them). Keyed by the picture alone, so a video whose segments did not change
(a narration edit gives it only a new soundtrack) takes its thumbnails from the cache; if they cannot be made,
the report shows none (the video is fine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput
from renderer.media import thumbnails
from renderer.stages.join import in_timeline_order
from renderer.stages.timeline import Timeline

VERSION = "3"  # 3: a midpoint on a join between segments finds its frame


@dataclass(frozen=True)
class Thumbnails(StageOutput):
    """One JPEG per scene, in scene order (none for a video without a picture)."""

    images: tuple[Path, ...] = ()


def _scenes(timeline: Timeline) -> list[dict[str, float]]:
    return timeline.to_list()


def add(comp) -> None:
    timeout = comp.timeout

    def fn(inp: NodeInput) -> Thumbnails:
        fps = inp.cfg["format.fps"]
        pieces = [(s.path, s.frames / fps) for s in inp.deps["segments"] if s.frames]
        return Thumbnails(thumbnails.extract(pieces, inp.deps["scenes"], inp.workdir, fps=fps, timeout=timeout))

    comp.add(Node(stage="thumbnails", version=VERSION, reads=("format.fps",),
                  deps={"segments": in_timeline_order(comp), "scenes": Part(comp.name("timeline"), _scenes)},
                  fn=fn, fallback=lambda inp, exc: Thumbnails()))
