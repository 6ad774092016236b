"""Thumbnails stage: a JPEG per scene of the finished video, for report.html. Keyed by the video itself, so
an unchanged video's come from the cache; if they cannot be made, the report shows none (the video is fine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from renderer.engine.node import Node, NodeInput
from renderer.engine.output import StageOutput
from renderer.media import thumbnails

VERSION = "1"


@dataclass(frozen=True)
class Thumbnails(StageOutput):
    """One JPEG per scene, in scene order (none for a video without a picture)."""

    images: tuple[Path, ...] = ()


def add(comp) -> None:
    timeout = comp.timeout

    def fn(inp: NodeInput) -> Thumbnails:
        video = inp.deps["video"]
        return Thumbnails(thumbnails.extract(video.path, video.timeline, inp.workdir, timeout=timeout))

    comp.add(Node(stage="thumbnails", version=VERSION, deps={"video": comp.name("mux")},
                  fn=fn, fallback=lambda inp, exc: Thumbnails()))
