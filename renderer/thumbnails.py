"""One small JPEG per scene, taken from the finished video at the scene's midpoint (for report.html)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from renderer import ffmpeg
from renderer.files import copy_atomic

WIDTH = 160  # pixels; the height follows the video's aspect ratio
FOLDER = "thumbs"


def write(video: Path, timeline: list[dict[str, float]], script_dir: Path, workdir: Path, *,
          timeout: float = 60.0) -> list[str]:
    """``<script_dir>/thumbs/scene-NN.jpg`` for every scene of ``timeline`` (one ffmpeg run: an input seeked to
    each midpoint, one frame out of each); return their paths relative to ``script_dir``. A video without a
    picture (audio only) has none. Each file is written atomically."""
    if not timeline or ffmpeg.probe(video).first("video") is None:
        return []
    work = workdir / "thumbs"
    work.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    for span in timeline:  # an accurate seek decodes from the keyframe before; no deblocking: a 160 px
        # thumbnail cannot show it, and it takes about 40% of that decode
        args += ["-skip_loop_filter", "all", "-ss", f"{span['start'] + span['duration'] / 2:.3f}", "-i", str(video)]
    names = [f"scene-{n + 1:02d}.jpg" for n in range(len(timeline))]
    for n, name in enumerate(names):
        args += ["-map", f"{n}:v:0", "-frames:v", "1", "-vf", f"scale={WIDTH}:-2", "-q:v", "5", str(work / name)]
    ffmpeg.run(args, timeout=timeout)
    for name in names:
        copy_atomic(work / name, script_dir / FOLDER / name)
    shutil.rmtree(work, ignore_errors=True)
    return [f"{FOLDER}/{name}" for name in names]


def safely(video: Path, timeline: list[dict[str, float]], script_dir: Path, workdir: Path, log: Any,
           **kw: Any) -> list[str]:
    """``write``, but a failure costs only the thumbnails (logged): the video is fine."""
    try:
        return write(video, timeline, script_dir, workdir, **kw)
    except (ffmpeg.FFmpegError, OSError) as exc:
        log.warning("no thumbnails for the report: {}", exc)
        return []
