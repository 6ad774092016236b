"""Fitting a clip to a scene: looped, or held on its last frame, to exactly the scene's length."""

from __future__ import annotations

import random
from pathlib import Path

from renderer.media import ffmpeg
from renderer.providers.procedural import seed_of

FITS = ("loop", "extend")


def fit_clip(src: Path, out: Path, duration: float, *, fit: str, timeout: float,
             size: tuple[int, int] | None = None, start: float = 0.0) -> None:
    """``src`` from ``start`` seconds in, looped (``fit=loop``) or held on its last frame (``extend``) to
    ``duration`` seconds, as an h264 mp4 at ``out``; ``size`` (w, h): scaled to cover it and cropped, so a 4K
    source costs no more downstream than the format needs."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use loop or extend")
    filters = []
    if size:
        w, h = size
        filters.append(f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1")
    seek = ["-ss", f"{start:.3f}"] if start > 0 else []
    if fit == "loop":
        args = ["-stream_loop", "-1", *seek, "-i", str(src)]
    else:
        args = [*seek, "-i", str(src)]
        filters.append(f"tpad=stop_mode=clone:stop_duration={duration:.3f}")
    ffmpeg.run([*args, *(["-vf", ",".join(filters)] if filters else []), "-t", f"{duration:.3f}", "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4", str(out)], timeout=timeout)


def ken_burns(src: Path, out: Path, seed: str, *, width: int, height: int, duration: float, zoom: float, fps: int,
              timeout: float) -> None:
    """A still as a clip of ``duration``: a slow zoom (in or out, 1 to ``zoom``) with a drift across it, both
    seeded by ``seed`` (the scene's Visual line), as an h264 mp4 at ``out``."""
    rng = random.Random(seed_of("ken-burns", seed))
    frames = max(1, round(duration * fps))
    progress = f"(on/{max(1, frames - 1)})"
    zoom_in = rng.random() < 0.5
    z = f"1+{zoom - 1:.4f}*{progress}" if zoom_in else f"{zoom:.4f}-{zoom - 1:.4f}*{progress}"
    sx, sy = rng.choice((0.0, 1.0)), rng.uniform(0.3, 0.7)  # drift from one side to the other
    ex = 1.0 - sx
    x = f"(iw-iw/zoom)*({sx:.3f}+({ex - sx:.3f})*{progress})"
    y = f"(ih-ih/zoom)*{sy:.3f}"
    # zoompan steps in whole pixels: working at twice the size keeps the motion smooth
    w2, h2 = width * 2, height * 2
    vf = (f"scale={w2}:{h2}:force_original_aspect_ratio=increase,crop={w2}:{h2},"
          f"zoompan=z='{z}':x='{x}':y='{y}':d={frames}:s={width}x{height}:fps={fps},setsar=1")
    ffmpeg.run([*ffmpeg.image_input(src), "-vf", vf, "-frames:v", str(frames), "-an", "-c:v", "libx264", "-preset",
                "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4",
                str(out)], timeout=timeout)
