"""One small JPEG per scene, taken from the finished video at the scene's midpoint (for report.html); made by
the thumbnails stage (renderer/stages/thumbnails.py), so an unchanged video takes its thumbnails from the
cache."""

from __future__ import annotations

import uuid
from pathlib import Path

from renderer.media import ffmpeg

WIDTH = 160  # pixels; the height follows the video's aspect ratio


def extract(video: Path, timeline: list[dict[str, float]], workdir: Path, *, timeout: float = 60.0
            ) -> tuple[Path, ...]:
    """A JPEG for every scene of ``timeline`` from its midpoint, into ``workdir``, in scene order (an input
    seeked to each midpoint, one frame out of each, at most ``ffmpeg.MAX_INPUTS`` inputs per ffmpeg run however
    many scenes there are). A video without a picture (audio only) has none."""
    if not timeline or ffmpeg.probe(video).first("video") is None:
        return ()
    stem = workdir / f"thumbs-{uuid.uuid4().hex[:12]}"
    files = tuple(Path(f"{stem}-{n + 1:02d}.jpg") for n in range(len(timeline)))
    for first in range(0, len(timeline), ffmpeg.MAX_INPUTS):
        spans = timeline[first:first + ffmpeg.MAX_INPUTS]
        args: list[str] = []
        for span in spans:  # an accurate seek decodes from the keyframe before; no deblocking: a 160 px
            # thumbnail cannot show it, and it takes about 40% of that decode
            args += ["-skip_loop_filter", "all", "-ss", f"{span['start'] + span['duration'] / 2:.3f}", "-i",
                     str(video)]
        for n, path in enumerate(files[first:first + len(spans)]):
            args += ["-map", f"{n}:v:0", "-frames:v", "1", "-vf", f"scale={WIDTH}:-2", "-q:v", "5", str(path)]
        ffmpeg.run(args, timeout=timeout)
    return files
