"""One small JPEG per scene, taken from the finished video at the scene's midpoint (for report.html); made by
the thumbnails stage (renderer/stages/thumbnails.py), so an unchanged video takes its thumbnails from the
cache."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Sequence

from renderer.media import ffmpeg
from renderer.ops.files import copy_atomic

WIDTH = 160  # pixels; the height follows the video's aspect ratio
FOLDER = "thumbs"


def extract(video: Path, timeline: list[dict[str, float]], workdir: Path, *, timeout: float = 60.0
            ) -> tuple[Path, ...]:
    """A JPEG for every scene of ``timeline`` from its midpoint, into ``workdir``, in scene order (one ffmpeg
    run: an input seeked to each midpoint, one frame out of each). A video without a picture (audio only) has
    none."""
    if not timeline or ffmpeg.probe(video).first("video") is None:
        return ()
    stem = workdir / f"thumbs-{uuid.uuid4().hex[:12]}"
    args: list[str] = []
    for span in timeline:  # an accurate seek decodes from the keyframe before; no deblocking: a 160 px
        # thumbnail cannot show it, and it takes about 40% of that decode
        args += ["-skip_loop_filter", "all", "-ss", f"{span['start'] + span['duration'] / 2:.3f}", "-i", str(video)]
    files = tuple(Path(f"{stem}-{n + 1:02d}.jpg") for n in range(len(timeline)))
    for n, path in enumerate(files):
        args += ["-map", f"{n}:v:0", "-frames:v", "1", "-vf", f"scale={WIDTH}:-2", "-q:v", "5", str(path)]
    ffmpeg.run(args, timeout=timeout)
    return files


def publish(files: Sequence[Path], script_dir: Path) -> list[str]:
    """``files`` as ``<script_dir>/thumbs/scene-NN.jpg``, each written atomically; their paths relative to
    ``script_dir``."""
    names = [f"{FOLDER}/scene-{n + 1:02d}.jpg" for n in range(len(files))]
    for path, name in zip(files, names):
        copy_atomic(path, script_dir / name)
    return names
