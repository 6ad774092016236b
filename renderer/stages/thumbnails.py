"""Thumbnails stage: a JPEG per scene of the finished video, for report.html. Keyed by the video itself, so
an unchanged video's come from the cache; if they cannot be made, the report shows none (the video is fine)."""

from __future__ import annotations

from renderer.engine.graph import Node, NodeInput
from renderer.media import thumbnails

VERSION = "1"


def add(comp) -> None:
    timeout = comp.timeout

    def fn(inp: NodeInput) -> thumbnails.Thumbnails:
        video = inp.deps["video"]
        return thumbnails.extract(video.path, video.timeline, inp.workdir, timeout=timeout)

    comp.add(Node(name=comp.name("thumbnails"), stage="thumbnails", version=VERSION, deps={"video": comp.name("mux")},
                  fn=fn, fallback=lambda inp, exc: thumbnails.Thumbnails()))
