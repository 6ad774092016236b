"""Visual stage: one clip per scene from the configured visual provider; a plain backdrop if it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renderer import ffmpeg
from renderer.graph import Node, NodeInput
from renderer.providers.base import VisualClip
from renderer.script import Scene

VERSION = "1"
BACKDROP = "0x14161c"


def backdrop(out: Path, *, duration: float, timeout: float) -> VisualClip:
    """The last resort: a dark still, tiny (assembly scales it)."""
    ffmpeg.run(["-f", "lavfi", "-i", f"color=c={BACKDROP}:s=64x36:r=1:d={duration:.3f}", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)], timeout=timeout)
    return VisualClip(out, duration, "backdrop")


def node(scene: Scene, provider: Any, *, width: int, height: int, timeout: float) -> Node:
    prompt = scene.visual or scene.title
    duration = scene.duration

    def out(inp: NodeInput) -> Path:
        return inp.workdir / f"visual-{scene.index:03d}-{inp.key[:12]}.mp4"

    return Node(
        name=f"visual/{scene.index}",
        stage="visual",
        version=f"{VERSION}.{provider.version}",
        reads=("visual", "format"),
        data={"prompt": prompt, "duration": duration},
        fn=lambda inp: provider.render(prompt, out(inp), width=width, height=height, duration=duration,
                                       timeout=timeout),
        fallback=lambda inp, exc: backdrop(out(inp), duration=duration, timeout=timeout),
    )
