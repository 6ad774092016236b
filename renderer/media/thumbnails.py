"""One small JPEG per scene, taken at the scene's midpoint from the video's pieces (the segments the video is
joined from, for report.html); made by the thumbnails stage (renderer/stages/thumbnails.py) from the picture
alone, so a video whose pictures did not change (a new soundtrack, say) takes its thumbnails from the cache."""

from __future__ import annotations

import bisect
import itertools
import uuid
from pathlib import Path

from renderer.media import ffmpeg

WIDTH = 160  # pixels; the height follows the video's aspect ratio
EPSILON_S = 1e-6  # a time this close to a piece's start (its start summed in floats) is in that piece


def _at(pieces: list[tuple[Path, float]], t: float, fps: float) -> tuple[Path, float]:
    """The piece playing at ``t`` seconds into the pieces played one after another, and ``t`` into it: no later
    than its last frame, so a seek there always finds one."""
    starts = list(itertools.accumulate((seconds for _, seconds in pieces), initial=0.0))[:-1]
    n = max(0, bisect.bisect_right(starts, t + EPSILON_S) - 1)
    path, seconds = pieces[n]
    return path, min(max(0.0, t - starts[n]), max(0.0, seconds - 1 / fps))


def extract(pieces: list[tuple[Path, float]], timeline: list[dict[str, float]], workdir: Path, *, fps: float,
            timeout: float = 60.0) -> tuple[Path, ...]:
    """A JPEG for every scene of ``timeline`` from its midpoint, into ``workdir``, in scene order, from the video
    that ``pieces`` (files with their durations, in seconds, of frames at ``fps``) make played one after another
    (an input seeked to
    each midpoint, one frame out of each, at most ``ffmpeg.MAX_INPUTS`` inputs per ffmpeg run however many
    scenes there are). No pieces (no picture): none."""
    if not timeline or not pieces:
        return ()
    stem = workdir / f"thumbs-{uuid.uuid4().hex[:12]}"
    files = tuple(Path(f"{stem}-{n + 1:02d}.jpg") for n in range(len(timeline)))
    for first in range(0, len(timeline), ffmpeg.MAX_INPUTS):
        spans = timeline[first:first + ffmpeg.MAX_INPUTS]
        args: list[str] = []
        for span in spans:  # an accurate seek decodes from the keyframe before; no deblocking: a 160 px
            # thumbnail cannot show it, and it takes about 40% of that decode
            path, offset = _at(pieces, span["start"] + span["duration"] / 2, fps)
            args += ["-skip_loop_filter", "all", "-ss", f"{offset:.3f}", "-i", str(path)]
        for n, path in enumerate(files[first:first + len(spans)]):
            args += ["-map", f"{n}:v:0", "-frames:v", "1", "-vf", f"scale={WIDTH}:-2", "-q:v", "5", str(path)]
        ffmpeg.run(args, timeout=timeout)
    return files
